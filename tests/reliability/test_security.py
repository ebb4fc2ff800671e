"""Security checks: the socket's mode and owner, nothing from a message is
ever executed or imported, a message cannot choose the handler, and log
lines stay short whatever a message holds."""

import base64
import json
import os
import pickle
import shutil
import stat
import subprocess
import sys

import pytest
from hypothesis import given

from asya_testkit.inprocess import make_server, serve_one
from asya_testkit.wire import call, encode_envelope, exchange, frame, simple_route

from . import runtime_process
from .strategies import envelope_like

OTHER_UID = 1  # "daemon" on Debian: stands in for a sidecar running as another user
RUNTIME_UID = 65534  # "nobody"

# ---------------------------------------------------------------- the socket


def test_socket_is_0666_owned_by_the_runtime_user_in_a_directory_it_created():
    with runtime_process("echo_handler.echo", socket_dir="created/by/runtime") as runtime:
        socket_stat = os.lstat(runtime.socket_path)
        dir_mode = stat.S_IMODE(os.stat(runtime.socket_dir).st_mode)

        assert stat.S_ISSOCK(socket_stat.st_mode)
        assert stat.S_IMODE(socket_stat.st_mode) == 0o666
        assert socket_stat.st_uid == os.geteuid()
        # A created directory must let another user reach the socket, and let nobody else write there.
        assert dir_mode & 0o011 == 0o011, f"directory mode {dir_mode:o} keeps other users from connecting"
        assert dir_mode & 0o022 == 0, f"directory mode {dir_mode:o} lets other users replace the socket"


def _interpreter_usable_by(uid):
    candidates = [sys.executable, "/usr/bin/python3", shutil.which("python3")]
    for candidate in dict.fromkeys(c for c in candidates if c):
        try:
            probe = subprocess.run(
                [candidate, "-c", "import json, socket"], user=uid, cwd="/", capture_output=True, check=False
            )
        except OSError:  # e.g. a venv interpreter under a home directory only root may enter
            continue
        if probe.returncode == 0:
            return candidate
    return None


def _needs_root_and_interpreter():
    if os.geteuid() != 0:
        pytest.skip("switching users needs root; run as root to check cross-UID access")
    python = _interpreter_usable_by(RUNTIME_UID)
    if python is None:
        pytest.skip(f"no Python interpreter on this machine is executable by uid {RUNTIME_UID}")
    return python


CLIENT_AS_OTHER_USER = """
import json, socket, struct, sys
body = json.dumps({"route": {"actors": ["a"], "current": 0}, "payload": "from another uid"}).encode()
with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
    sock.settimeout(60)
    sock.connect(sys.argv[1])
    sock.sendall(struct.pack(">I", len(body)) + body)
    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
print(data[4:].decode())
"""


def _connect_as_other_user(python, socket_path):
    return subprocess.run(
        [python, "-c", CLIENT_AS_OTHER_USER, str(socket_path)],
        user=OTHER_UID,
        cwd="/",
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _emptydir_like(runtime):
    runtime.socket_dir.mkdir()
    os.chmod(runtime.socket_dir, 0o777)  # what Kubernetes gives an emptyDir


def test_a_sidecar_under_another_uid_can_use_the_socket_of_a_runtime_running_as_nobody():
    python = _needs_root_and_interpreter()
    runtime = runtime_process("echo_handler.echo", python=python, user=RUNTIME_UID, private_copy=True)
    _emptydir_like(runtime)
    with runtime:
        assert os.lstat(runtime.socket_path).st_uid == RUNTIME_UID
        client = _connect_as_other_user(python, runtime.socket_path)

    assert client.returncode == 0, client.stderr
    assert json.loads(client.stdout)["result"]["payload"] == "from another uid"


def test_a_directory_the_runtime_creates_under_umask_077_still_lets_another_uid_connect():
    # The socket is chmod-ed to 0666 whatever the umask; the directory the
    # runtime creates around it must not undo that (docs/protocol.md: "a
    # sidecar running under a different UID can connect").
    python = _needs_root_and_interpreter()
    runtime = runtime_process(
        "echo_handler.echo",
        python=python,
        user=RUNTIME_UID,
        umask=0o077,
        private_copy=True,
        socket_dir="shared/asya",
    )
    shared = runtime.workdir / "shared"
    shared.mkdir()
    os.chmod(shared, 0o1777)
    with runtime:
        dir_mode = stat.S_IMODE(os.stat(runtime.socket_dir).st_mode)
        client = _connect_as_other_user(python, runtime.socket_path)

    assert client.returncode == 0, f"socket directory created with mode {dir_mode:o}: {client.stderr.strip()}"


def test_a_symlink_at_the_socket_path_is_refused_and_its_target_left_alone():
    runtime = runtime_process("echo_handler.echo")
    runtime.socket_dir.mkdir()
    target = runtime.workdir / "precious.txt"
    target.write_text("keep me\n")
    os.symlink(target, runtime.socket_path)
    try:
        with pytest.raises(RuntimeError, match="before it was ready"):
            runtime.start().wait_until_ready()
        assert runtime.process.returncode != 0
        assert os.path.islink(runtime.socket_path)
        assert target.read_text() == "keep me\n"
    finally:
        runtime.__exit__(None, None, None)


# ------------------------------------------------- nothing runs from a message


class _RunsACommandWhenUnpickled:
    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def hostile_messages(marker):
    """Messages that would run `touch marker` or load code if anything in
    them were executed, unpickled, deserialised into objects or imported."""
    touch = f"touch {marker}"
    pickled = pickle.dumps(_RunsACommandWhenUnpickled(touch), protocol=0)
    code_strings = [
        f"__import__('os').system('{touch}')",
        f"exec(\"import os; os.system('{touch}')\")",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        f"!!python/object/apply:os.system ['{touch}']",
        pickled.decode("ascii"),
        base64.b64encode(pickle.dumps(_RunsACommandWhenUnpickled(touch))).decode("ascii"),
        "this",
        "antigravity",
    ]
    object_payloads = [
        {"__class__": "subprocess.Popen", "args": ["touch", str(marker)]},
        {"__reduce__": ["os.system", [touch]]},
        {"py/reduce": [{"py/function": "os.system"}, {"py/tuple": [touch]}]},
        {"py/object": "security_probe.evil"},
        {"$type": "System.Diagnostics.Process", "__module__": "os", "__qualname__": "system"},
        {"__import__": "this", "module": "antigravity", "function": "evil"},
    ]
    names_the_other_handler = {
        "handler": "security_probe.evil",
        "ASYA_HANDLER": "security_probe.evil",
        "ASYA_HANDLER_MODE": "envelope",
        "module": "security_probe",
        "function": "evil",
    }
    route = {"actors": ["security_probe.evil", "os.system"], "current": 0}
    envelopes = [{"route": route, "payload": payload} for payload in code_strings + object_payloads]
    envelopes.append({"route": route, "headers": names_the_other_handler, "payload": "x"})
    envelopes.append(dict(names_the_other_handler, route=route, payload="x", id="security_probe.evil"))
    envelopes.append(
        {"route": dict(route, handler="security_probe.evil"), "payload": names_the_other_handler}
    )
    raw_bodies = [pickled, pickle.dumps(_RunsACommandWhenUnpickled(touch)), f"{touch}\n".encode()]
    return envelopes, raw_bodies


def loaded_modules(runtime):
    reply = call(runtime.socket_path, {"route": simple_route(), "payload": {"probe": "modules"}})
    return set(reply["result"]["payload"]["modules"])


def test_a_message_never_runs_code_loads_modules_or_picks_another_handler():
    runtime = runtime_process("security_probe.serve")
    evil_marker = runtime.workdir / "evil-ran"
    command_marker = runtime.workdir / "command-ran"
    runtime.env["SECURITY_PROBE_EVIL_MARKER"] = str(evil_marker)
    empty_cwd = runtime.workdir / "cwd"
    empty_cwd.mkdir()
    runtime.cwd = str(empty_cwd)
    envelopes, raw_bodies = hostile_messages(command_marker)
    with runtime:
        # Go once through every path a reply can take, so lazy imports inside
        # the runtime happen before the first count.
        call(runtime.socket_path, {"route": simple_route(), "payload": 1})
        exchange(runtime.socket_path, frame(b"\xff"), half_close=True)
        exchange(runtime.socket_path, frame(b"{}"), half_close=True)
        exchange(runtime.socket_path, frame(b'{"route":{"actors":["a"],"current":0},"payload":NaN}'), half_close=True)
        call(
            runtime.socket_path,
            {"route": simple_route(), "payload": {"probe": "raise_with_payload", "text": "x"}},
        )
        exchange(runtime.socket_path, b"\x00\x00\x00\x09{", half_close=True)
        modules_before = loaded_modules(runtime)

        replies = [call(runtime.socket_path, envelope) for envelope in envelopes]
        raw_replies = [exchange(runtime.socket_path, frame(body), half_close=True).reply() for body in raw_bodies]
        modules_after = loaded_modules(runtime)
        files_left_in_cwd = os.listdir(empty_cwd)

    assert all(reply["status"] == "ok" for reply in replies), replies
    assert {reply["result"]["payload"]["handled_by"] for reply in replies} == {"serve"}
    assert [reply["error"] for reply in raw_replies] == ["processing_error"] * len(raw_bodies)
    assert modules_after == modules_before, (
        f"modules loaded by messages: {sorted(modules_after - modules_before)}"
    )
    assert not evil_marker.exists(), "the handler named in a message ran"
    assert not command_marker.exists(), "a command from a message ran"
    assert files_left_in_cwd == [], "the runtime created files while handling messages"


def _echo(payload):
    return payload


@pytest.fixture(scope="module")
def warmed_server():
    server = make_server(_echo)
    # Go once through every reply path, so the runtime's own lazy imports are done.
    for request in (
        frame(b'{"route":{"actors":["a"],"current":0},"payload":1}'),
        frame(b"\xff"),
        frame(b"[]"),
    ):
        serve_one(server, request, half_close=False)
    return server


@given(value=envelope_like)
def test_no_json_message_makes_the_runtime_import_anything(warmed_server, value):
    before = set(sys.modules)
    serve_one(warmed_server, frame(encode_envelope(value)), half_close=False).reply()

    assert set(sys.modules) == before


# ---------------------------------------------------------------- logs

ONE_MB = 1024 * 1024
LOG_LINE_CAP = 8192  # far above a useful log line, far below a payload


def test_log_lines_stay_short_whatever_size_the_message_is():
    big = "payload-start " + "x" * ONE_MB + " payload-end"
    route = simple_route()
    with runtime_process("security_probe.serve", env={"ASYA_LOG_LEVEL": "DEBUG"}) as runtime:
        handler_error = call(
            runtime.socket_path, {"route": route, "payload": {"probe": "raise_with_payload", "text": big}}
        )
        call(runtime.socket_path, {"route": route, "payload": big})
        long_id_error = call(
            runtime.socket_path,
            {"id": big, "route": route, "payload": {"probe": "raise_with_payload", "text": "x"}},
        )
        bad_route = call(
            runtime.socket_path, {"id": "r", "route": {"actors": [big], "current": 5}, "payload": big}
        )
        exchange(runtime.socket_path, frame(big.encode() + b"\xff"), half_close=True)
        exchange(runtime.socket_path, frame(b"[" + big.encode()), half_close=True)
        runtime.stop()
        lines = runtime.log_lines()

    # The sidecar still gets the whole story; only the log is capped.
    assert big in handler_error["message"]
    assert long_id_error["status"] == "error" and bad_route["status"] == "error"
    too_long = [f"{len(line)} characters: {line[:120]}..." for line in lines if len(line) > LOG_LINE_CAP]
    assert not too_long, "log lines over the cap:\n" + "\n".join(too_long)
    assert not any("payload-start" in line and "payload-end" in line for line in lines)
