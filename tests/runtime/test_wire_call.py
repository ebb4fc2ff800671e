"""Black-box, every interpreter: `asya_runtime.py --call JSON`, the test-message client.

The client runs as a user runs it, a separate process of the same interpreter
with ASYA_SOCKET_DIR pointing at a real runtime. Its contract: the reply as
indented JSON on stdout; exit 0 for an ok reply, 1 for an error reply (in
either reply dialect), 2 when no runtime answers (one line on stderr saying
why) and for a usage error.
"""

import collections
import json
import re

import pytest
import yaml

from asya_testkit.gated import GatedMessage
from asya_testkit.paths import CHART_DIR, RUNTIME_SCRIPT, SOCKET_NAME
from asya_testkit.process import ChildProcess, clean_environment, run_to_exit
from asya_testkit.wire import call, envelope_for

CALL_ID = re.compile(r"call-[0-9a-f]{16}")
LIST = {"ASYA_REPLY_FORMAT": "list"}


class ClientRun(collections.namedtuple("ClientRun", "code stdout stderr")):
    def reply(self):
        return json.loads(self.stdout)


def run_client(python, socket_dir, *args, stdin=None, **env):
    """`python asya_runtime.py ARGS` with ASYA_SOCKET_DIR=socket_dir (and env), run to its exit."""
    environment = clean_environment(ASYA_SOCKET_DIR=str(socket_dir), **env)
    return ClientRun(*run_to_exit(python, environment, args=[str(arg) for arg in args], stdin=stdin))


def as_argument(value):
    return json.dumps(value, ensure_ascii=False)


def assert_no_runtime_answers(run, why):
    assert run.code == 2, run
    assert run.stdout == ""
    lines = run.stderr.splitlines()
    assert len(lines) == 1, run.stderr
    assert why in lines[0]


# Not an array: echoed by a payload-mode handler, an array is a fan-out.
PAYLOADS = [
    {"text": "Héllo wörld", "scores": [1, 2.5, None, True, False], "nested": {"list": [[]]}},
    "a plain string",
    42,
]


@pytest.mark.parametrize("payload", PAYLOADS, ids=["object", "string", "number"])
def test_a_payload_comes_back_in_an_ok_reply_and_the_client_exits_0(python, shared_runtime, payload):
    runtime = shared_runtime("echo.echo", "echo")

    run = run_client(python, runtime.socket_dir, "--call", as_argument(payload))

    assert (run.code, run.stderr) == (0, "")
    reply = run.reply()
    assert reply["status"] == "ok"
    assert reply["result"]["payload"] == payload
    assert run.stdout.splitlines()[1].startswith("  "), "the reply is printed indented, for a reader"


def test_each_call_is_wrapped_in_a_new_envelope_with_a_one_actor_route(python, shared_runtime):
    runtime = shared_runtime("echo.echo", "echo")

    first, second = (
        run_client(python, runtime.socket_dir, "--call", "{}").reply()["result"] for _ in range(2)
    )

    assert CALL_ID.fullmatch(first["id"]), first["id"]
    assert CALL_ID.fullmatch(second["id"]), second["id"]
    assert first["id"] != second["id"]
    assert first["route"] == {"actors": ["asya-call"], "current": 0}
    assert first["headers"] == {}


def test_the_route_names_the_actor_of_asya_actor_name(python, shared_runtime):
    runtime = shared_runtime("echo.echo", "echo")

    run = run_client(python, runtime.socket_dir, "--call", "{}", ASYA_ACTOR_NAME="scorer")

    assert run.reply()["result"]["route"] == {"actors": ["scorer"], "current": 0}


def test_an_error_reply_is_printed_and_the_client_exits_1(python, shared_runtime):
    runtime = shared_runtime("raises.score", "raises")

    run = run_client(python, runtime.socket_dir, "--call", '{"score": "high"}')

    assert (run.code, run.stderr) == (1, "")
    reply = run.reply()
    assert (reply["status"], reply["error"]) == ("error", "processing_error")
    assert reply["message"] == "ValueError: could not convert string to float: 'high'"
    assert 'raises.py", line 7, in _parse_score' in reply["traceback"]


def test_dash_reads_the_payload_from_stdin(python, shared_runtime):
    runtime = shared_runtime("echo.echo", "echo")

    run = run_client(python, runtime.socket_dir, "--call", "-", stdin='{\n  "text": "from stdin, ü"\n}\n')

    assert run.code == 0, run
    assert run.reply()["result"]["payload"] == {"text": "from stdin, ü"}


def test_with_envelope_the_json_is_sent_as_the_whole_envelope(python, shared_runtime):
    runtime = shared_runtime("echo.echo", "echo")
    envelope = {
        "id": "given-7",
        "route": {"actors": ["clean", "score"], "current": 1},
        "headers": {"trace": "t-9"},
        "payload": {"x": 1},
    }

    run = run_client(python, runtime.socket_dir, "--envelope", "--call", as_argument(envelope))

    assert run.code == 0, run
    assert run.reply()["result"] == envelope


def test_with_envelope_nothing_is_added_to_an_incomplete_envelope(python, shared_runtime):
    runtime = shared_runtime("echo.echo", "echo")

    run = run_client(python, runtime.socket_dir, "--envelope", "--call", '{"payload": 1}')

    assert run.code == 1, run
    assert run.reply()["message"] == "envelope has no 'route' field"


# (handler, scenario, payload, exit code, the reply it prints)
LIST_DIALECT = [
    ("echo.echo", "echo", {"a": 1}, 0, lambda reply: [out["payload"] for out in reply] == [{"a": 1}]),
    (
        "fan_out.split_sentences",
        "fan_out",
        {"text": "One. Two"},
        0,
        lambda reply: [out["payload"] for out in reply] == [{"sentence": "One"}, {"sentence": "Two"}],
    ),
    ("returns_none.discard", "returns_none", {"a": 1}, 0, lambda reply: reply == []),
    (
        "raises.score",
        "raises",
        {"score": "high"},
        1,
        lambda reply: (
            [item["error"] for item in reply] == ["processing_error"]
            and reply[0]["details"]["type"] == "ValueError"
        ),
    ),
]


@pytest.mark.parametrize(
    "handler, scenario, payload, exit_code, printed",
    LIST_DIALECT,
    ids=["ok", "fan-out", "no-output", "error"],
)
def test_list_dialect_replies_exit_0_when_ok_and_1_on_an_error(
    python, shared_runtime, handler, scenario, payload, exit_code, printed
):
    runtime = shared_runtime(handler, scenario, LIST)

    run = run_client(python, runtime.socket_dir, "--call", as_argument(payload))

    assert run.code == exit_code, run
    assert printed(run.reply()), run.stdout


def test_a_lone_surrogate_escape_in_the_payload_is_sent_and_comes_back(python, shared_runtime):
    # "\ud800" is valid JSON text; the runtime carries lone surrogates both ways (docs/protocol.md).
    runtime = shared_runtime("echo.echo", "echo")

    run = run_client(python, runtime.socket_dir, "--call", r'{"text": "lone \ud800 surrogate"}')

    assert run.code == 0, run
    assert run.reply()["result"]["payload"] == {"text": "lone \ud800 surrogate"}


@pytest.mark.parametrize("directory_exists", [True, False], ids=["empty-directory", "no-directory"])
def test_no_runtime_exits_2_with_a_line_naming_the_socket_path(python, socket_dir, directory_exists):
    directory = socket_dir if directory_exists else socket_dir / "absent"

    run = run_client(python, directory, "--call", "{}")

    assert_no_runtime_answers(run, str(directory / SOCKET_NAME))


def test_the_stale_socket_of_a_killed_runtime_exits_2_with_a_line_naming_it(python, runtime_factory):
    runtime = runtime_factory("echo.echo", "echo")
    runtime.kill()  # SIGKILL: the socket file stays, nobody listens on it
    assert runtime.socket_path.is_socket()

    run = run_client(python, runtime.socket_dir, "--call", "{}")

    assert_no_runtime_answers(run, str(runtime.socket_path))


def test_a_runtime_that_dies_during_the_call_exits_2_saying_no_reply_came(python, runtime_factory, tmp_path):
    runtime = runtime_factory("slow.wait_for_gate", "slow")
    message = GatedMessage(tmp_path, "dies")
    client = ChildProcess(
        [getattr(python, "path", python), RUNTIME_SCRIPT, "--call", as_argument(message.payload)],
        clean_environment(ASYA_SOCKET_DIR=str(runtime.socket_dir)),
        tmp_path / "client.log",
        label="client",
    ).start()
    message.wait_started()

    runtime.kill()

    assert client.wait_exit() == 2, client.log_text()
    lines = client.log_lines()
    assert len(lines) == 1, client.log_text()
    assert "without a whole reply" in lines[0]


def test_timeout_gives_up_on_a_call_in_flight_and_exits_2(python, runtime_factory, tmp_path):
    runtime = runtime_factory("slow.wait_for_gate", "slow")
    message = GatedMessage(tmp_path, "too-slow")

    run = run_client(python, runtime.socket_dir, "--call", as_argument(message.payload), "--timeout", "0.5")

    assert_no_runtime_answers(run, f"no reply from {runtime.socket_path} within 0.5 s")
    message.wait_started()  # the message was delivered: it was the reply that never came
    message.release()
    after = GatedMessage(tmp_path, "after", gate=message.gate)
    assert call(runtime.socket_path, envelope_for(after.payload))["result"]["payload"]["tag"] == "after"


USAGE_ERRORS = [
    (["--call", "{"], "not JSON"),
    (["--call", "hello"], "not JSON"),
    (["--call", ""], "not JSON"),
    (["--call", '{"a": 1} {"b": 2}'], "not JSON"),
    (["--call", "NaN"], "not JSON"),
    (["--call", "[-Infinity]"], "not JSON"),
    (["--call"], "--call"),
    (["--envelope"], "--call"),
    (["--prob"], "unrecognized arguments: --prob"),
    (["--call", "{}", "--verbose"], "unrecognized arguments: --verbose"),
    (["--call", "{}", "--timeout", "0"], "--timeout"),
    (["--call", "{}", "--timeout", "0", "--envelope"], "--timeout"),
    (["--call", "{}", "--timeout", "-1", "--envelope"], "--timeout"),
    (["--call", "{}", "--timeout", "nan"], "--timeout"),
    (["--call", "{}", "--timeout", "inf"], "--timeout"),
    (["--call", "{}", "--timeout", "soon"], "--timeout"),
]


@pytest.mark.parametrize(
    "args, why", USAGE_ERRORS, ids=[" ".join(args)[:40] or "empty" for args, _ in USAGE_ERRORS]
)
def test_a_usage_error_exits_2_with_the_usage_and_no_reply(python, shared_runtime, args, why):
    # A runtime is serving, so exit 2 cannot come from finding none.
    runtime = shared_runtime("echo.echo", "echo")

    run = run_client(python, runtime.socket_dir, *args)

    assert (run.code, run.stdout) == (2, ""), run
    assert "usage: " in run.stderr
    assert why in run.stderr.splitlines()[-1], run.stderr
    assert "Traceback" not in run.stderr


def test_help_lists_the_options_and_exits_0(python, socket_dir):
    run = run_client(python, socket_dir, "--help")

    assert run.code == 0, run
    for option in ("--call", "--envelope", "--timeout", "--probe", "--version"):
        assert option in run.stdout


def test_version_is_the_charts_app_version(python, socket_dir):
    app_version = yaml.safe_load((CHART_DIR / "Chart.yaml").read_text())["appVersion"]

    run = run_client(python, socket_dir, "--version")

    assert run.code == 0, run
    assert run.stdout == f"asya runtime {app_version}\n"
