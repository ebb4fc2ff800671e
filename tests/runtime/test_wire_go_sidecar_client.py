"""The runtime's list dialect decoded by Go, as the asya Go sidecar decodes it.

go_sidecar_client/main.go dials the socket, sends one frame and decodes the
reply with encoding/json into the response type the Go sidecar uses, then
names where its router would send each response. Run against the oldest and
the newest interpreter.
"""

import os
import shutil
import subprocess

import pytest

from asya_testkit.interpreters import find_interpreter
from asya_testkit.process import RuntimeProcess
from asya_testkit.wire import encode_envelope
from conftest import HANDLERS_DIR

CLIENT_SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "go_sidecar_client", "main.go")
LIST = {"ASYA_REPLY_FORMAT": "list"}
ROUTE = {"actors": ["clean", "score", "store"], "current": 1}


@pytest.fixture(scope="session")
def go_client(tmp_path_factory):
    go = shutil.which("go") or ("/usr/local/go/bin/go" if os.path.exists("/usr/local/go/bin/go") else None)
    if go is None:
        pytest.skip("no Go toolchain (go on PATH or /usr/local/go/bin/go): the Go decoding check needs one")
    binary = tmp_path_factory.mktemp("go") / "go_sidecar_client"
    subprocess.run([go, "build", "-o", str(binary), CLIENT_SOURCE], check=True, timeout=600,
                   cwd=str(tmp_path_factory.getbasetemp()))
    return str(binary)


@pytest.fixture(scope="module", params=[7, 13], ids=["py3.7", "py3.13"])
def oldest_and_newest(request):
    interpreter, why_missing = find_interpreter(request.param)
    if interpreter is None:
        pytest.skip(why_missing)
    return interpreter


@pytest.fixture
def runtime(oldest_and_newest):
    started = []

    def start(handler, scenario, env):
        process = RuntimeProcess(handler, python=oldest_and_newest, pythonpath=HANDLERS_DIR / scenario, env=env)
        started.append(process)
        return process.start().wait_until_ready(ready_file=True)

    yield start
    for process in started:
        process.close()


def route_by_go(go_client, socket_path, envelope):
    body = envelope if isinstance(envelope, bytes) else encode_envelope(envelope)
    done = subprocess.run([go_client, str(socket_path)], input=body, capture_output=True, timeout=60)
    return done.returncode, done.stdout.decode().splitlines(), done.stderr.decode()


def test_payload_mode_results_go_to_the_next_actor(go_client, runtime):
    rt = runtime("lowercase.process", "lowercase", LIST)

    status, lines, _ = route_by_go(go_client, rt.socket_path, {"id": "m", "route": ROUTE, "payload": {"text": "AB"}})

    assert (status, lines) == (0, ['store {"text":"ab"}'])


def test_the_last_actor_sends_its_result_to_happy_end(go_client, runtime):
    rt = runtime("echo.echo", "echo", LIST)

    status, lines, _ = route_by_go(go_client, rt.socket_path, {"id": "m", "route": dict(ROUTE, current=2), "payload": 7})

    assert (status, lines) == (0, ["happy-end 7"])


def test_fan_out_sends_every_item_on(go_client, runtime):
    rt = runtime("fan_out.split_sentences", "fan_out", LIST)

    status, lines, _ = route_by_go(go_client, rt.socket_path,
                                   {"id": "m", "route": ROUTE, "payload": {"text": "A. B"}})

    assert (status, lines) == (0, ['store {"sentence":"A"}', 'store {"sentence":"B"}'])


@pytest.mark.parametrize(
    "handler, scenario, body, expected",
    [
        ("raises.score", "raises", {"id": "m", "route": ROUTE, "payload": {"score": "x"}},
         "error-end processing_error ValueError: ValueError: could not convert string to float: 'x'"),
        ("echo.echo", "echo", b"{not json", "error-end msg_parsing_error ProcessingError: message is not valid JSON"),
    ],
    ids=["handler-error", "not-json"],
)
def test_errors_go_to_error_end(go_client, runtime, handler, scenario, body, expected):
    rt = runtime(handler, scenario, LIST)

    status, lines, _ = route_by_go(go_client, rt.socket_path, body)

    assert status == 0 and len(lines) == 1
    assert lines[0].startswith(expected)


def test_envelope_mode_reference_handler_that_adds_a_step(go_client, runtime):
    rt = runtime("reference_handlers.add_step_and_advance", "reference_runtime", dict(LIST, ASYA_HANDLER_MODE="envelope"))

    status, lines, _ = route_by_go(go_client, rt.socket_path, {"id": "m", "route": ROUTE, "payload": {}})

    assert (status, lines) == (0, ['review {"checked":true}'])


def test_the_status_dialect_is_not_what_the_go_sidecar_decodes(go_client, runtime):
    rt = runtime("echo.echo", "echo", {})

    status, _, stderr = route_by_go(go_client, rt.socket_path, {"id": "m", "route": ROUTE, "payload": 1})

    assert status == 2 and "cannot unmarshal object" in stderr
