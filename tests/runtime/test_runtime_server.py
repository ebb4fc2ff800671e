"""ActorServer and main() in-process: the server loop, binding, and start-up errors.

The black-box tests cover the same behaviour on every interpreter; these run
in the test process so that the line-coverage report includes the server.
"""

import logging
import os
import signal
import socket
import stat
import threading

import pytest

import asya_runtime
from asya_runtime import ActorServer, StartupError, load_config
from asya_testkit.paths import SOCKET_NAME
from asya_testkit.wait import wait_for
from asya_testkit.wire import call, connect, encode_envelope, envelope_for, exchange, frame, read_reply


@pytest.fixture
def in_process_server(load_fixture_handler, socket_dir):
    """start(scenario, spec, **variables) -> a bound ActorServer serving on a thread."""
    running = []

    def start(scenario, spec, **variables):
        environ = {"ASYA_HANDLER": spec, "ASYA_SOCKET_DIR": str(socket_dir)}
        environ.update(variables)
        server = ActorServer(load_config(environ), load_fixture_handler(scenario, spec))
        server.bind()
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        running.append((server, thread))
        return server

    yield start
    for server, thread in running:
        server.shutdown()
        thread.join(30)
        server.close()


def test_serves_one_message_after_another_until_shutdown(in_process_server):
    server = in_process_server("lowercase", "lowercase.process")

    for text in ("ONE", "Two", "three"):
        reply = call(server.socket_path, envelope_for({"text": text}))
        assert reply["result"]["payload"] == {"text": text.lower()}


def test_shutdown_stops_the_loop_and_close_removes_the_socket(load_fixture_handler, socket_dir):
    config = load_config({"ASYA_HANDLER": "echo.echo", "ASYA_SOCKET_DIR": str(socket_dir)})
    server = ActorServer(config, load_fixture_handler("echo", "echo.echo"))
    server.bind()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    assert call(server.socket_path, envelope_for(1))["status"] == "ok"

    server.shutdown()
    thread.join(30)
    server.close()

    assert not thread.is_alive()
    assert not os.path.exists(server.socket_path)


def test_validation_off_accepts_an_envelope_without_route(in_process_server):
    server = in_process_server("echo", "echo.echo", ASYA_ENABLE_VALIDATION="false")

    reply = call(server.socket_path, {"payload": {"x": 1}, "route": {"current": "anything"}})
    assert reply["status"] == "ok" and reply["result"]["payload"] == {"x": 1}

    reply = call(server.socket_path, {"payload": {"x": 2}})
    assert reply["status"] == "ok" and reply["result"]["payload"] == {"x": 2}


def test_validation_off_still_requires_an_object_with_payload(in_process_server):
    server = in_process_server("echo", "echo.echo", ASYA_ENABLE_VALIDATION="false")

    for body in ([1, 2], {"route": {"actors": ["a"], "current": 0}}):
        reply = call(server.socket_path, body)
        assert reply["error"] == "processing_error"
        assert "'payload'" in reply["message"]


def test_validation_off_envelope_mode_without_route_still_calls_the_handler(in_process_server):
    server = in_process_server(
        "envelope_router",
        "envelope_router.payload_only",
        ASYA_HANDLER_MODE="envelope",
        ASYA_ENABLE_VALIDATION="0",
    )

    reply = call(server.socket_path, {"payload": 1, "headers": {"trace": "t"}})

    assert reply["status"] == "ok", reply
    assert reply["result"]["payload"] == {"seen_headers": {"trace": "t"}}


def test_client_silent_past_the_io_timeout_gets_a_connection_error(in_process_server):
    server = in_process_server("echo", "echo.echo", ASYA_IO_TIMEOUT="0.05")

    with connect(server.socket_path) as client:
        client.sendall(frame(b'{"payload": 1}')[:6])  # and then nothing more
        reply = read_reply(client)

    assert b'"error":"connection_error"' in reply
    assert call(server.socket_path, envelope_for("next"))["status"] == "ok"


def test_reply_to_a_vanished_client_is_dropped_and_serving_goes_on(in_process_server, tmp_path):
    server = in_process_server("slow", "slow.wait_for_gate")
    started, gate = tmp_path / "started", tmp_path / "gate"

    with connect(server.socket_path) as client:
        client.sendall(frame(encode_envelope(envelope_for({"started": str(started), "gate": str(gate)}))))
        wait_for(started.exists, "the handler to start")
    gate.touch()  # the handler finishes after its client is gone

    second_gate = tmp_path / "second-gate"
    second_gate.touch()
    reply = call(
        server.socket_path, envelope_for({"started": str(tmp_path / "s2"), "gate": str(second_gate)})
    )
    assert reply["status"] == "ok"


def test_oversized_frame_is_refused_in_process(in_process_server):
    server = in_process_server("echo", "echo.echo", ASYA_MAX_MESSAGE_SIZE="16")

    reply = exchange(server.socket_path, b"\x00\x00\x00\x11").body()

    assert b'"error":"connection_error"' in reply and b"ASYA_MAX_MESSAGE_SIZE=16" in reply


def test_client_that_leaves_without_sending_gets_nothing_and_serving_goes_on(in_process_server):
    server = in_process_server("echo", "echo.echo")

    with connect(server.socket_path) as client:
        client.shutdown(socket.SHUT_WR)
        assert client.recv(1) == b""

    assert call(server.socket_path, envelope_for("next"))["status"] == "ok"


def test_a_huge_error_message_is_cut_short_in_the_log(in_process_server, caplog):
    server = in_process_server("raises", "raises.score")

    reply = call(
        server.socket_path,
        {"id": "big", "route": {"actors": ["a"], "current": 0}, "payload": {"score": "x" * 50000}},
    )

    assert len(reply["message"]) > 50000, "the reply keeps the whole message"
    logged = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(logged) == 1, "logged once"
    assert len(logged[0]) < 10000 and "characters cut" in logged[0]
    assert all(len(line) < 2100 for line in logged[0].splitlines()), "the traceback's lines are cut too"


# --------------------------------------------------------------------------
# bind() and close()
# --------------------------------------------------------------------------


def make_server(socket_dir, load_fixture_handler):
    config = load_config({"ASYA_HANDLER": "echo.echo", "ASYA_SOCKET_DIR": str(socket_dir)})
    return ActorServer(config, load_fixture_handler("echo", "echo.echo"))


def test_bind_creates_the_directory_and_a_0666_socket(load_fixture_handler, socket_dir):
    server = make_server(socket_dir / "nested" / "dir", load_fixture_handler)
    server.bind()
    try:
        mode = os.stat(server.socket_path).st_mode
        assert stat.S_ISSOCK(mode)
        assert stat.S_IMODE(mode) == 0o666
        assert sorted(os.listdir(str(socket_dir / "nested" / "dir"))) == [SOCKET_NAME, "runtime-ready"], (
            "the socket and the ready file, no temporary file"
        )
    finally:
        server.close()


def test_bind_replaces_a_stale_socket(load_fixture_handler, socket_dir):
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(socket_dir / SOCKET_NAME))
    stale.close()  # the file stays, nobody listens: what a killed runtime leaves
    server = make_server(socket_dir, load_fixture_handler)

    server.bind()
    try:
        with connect(server.socket_path):
            pass
    finally:
        server.close()


def test_bind_refuses_a_socket_that_someone_serves(load_fixture_handler, socket_dir):
    first = make_server(socket_dir, load_fixture_handler)
    first.bind()
    try:
        with pytest.raises(StartupError) as raised:
            make_server(socket_dir, load_fixture_handler).bind()
        assert "another process already serves" in str(raised.value)
        assert "ASYA_SOCKET_DIR" in str(raised.value)
    finally:
        first.close()


def test_bind_refuses_a_file_that_is_not_a_socket(load_fixture_handler, socket_dir):
    (socket_dir / SOCKET_NAME).write_text("precious")
    server = make_server(socket_dir, load_fixture_handler)

    with pytest.raises(StartupError) as raised:
        server.bind()

    assert "is not a socket" in str(raised.value)
    assert (socket_dir / SOCKET_NAME).read_text() == "precious"


def test_bind_reports_a_socket_dir_that_cannot_be_created(load_fixture_handler, socket_dir):
    (socket_dir / "a-file").write_text("")
    server = make_server(socket_dir / "a-file" / "sub", load_fixture_handler)

    with pytest.raises(StartupError) as raised:
        server.bind()

    assert "cannot create ASYA_SOCKET_DIR" in str(raised.value)


def test_close_leaves_a_socket_that_another_runtime_put_in_place(load_fixture_handler, socket_dir):
    old = make_server(socket_dir, load_fixture_handler)
    old.bind()
    os.unlink(old.socket_path)
    new = make_server(socket_dir, load_fixture_handler)
    new.bind()
    try:
        old.close()
        assert os.path.exists(new.socket_path)
    finally:
        new.close()


# --------------------------------------------------------------------------
# main()
# --------------------------------------------------------------------------


def test_main_reports_a_bad_configuration_in_its_first_line(capsys):
    code = asya_runtime.main({"ASYA_HANDLER": "echo.echo", "ASYA_CHUNK_SIZE": "lots"})

    first_line = capsys.readouterr().err.splitlines()[0]
    assert code == 2
    assert first_line.startswith("asya-runtime: error: ASYA_CHUNK_SIZE='lots'")


def test_main_reports_an_unloadable_handler(capsys, handler_scenario):
    handler_scenario("not_callable")

    code = asya_runtime.main({"ASYA_HANDLER": "not_callable.process"})

    assert code == 3
    assert "not callable" in capsys.readouterr().err.splitlines()[0]


def test_main_shows_the_import_traceback_after_the_first_line(capsys, handler_scenario):
    handler_scenario("import_raises")

    code = asya_runtime.main({"ASYA_HANDLER": "import_raises.process"})

    lines = capsys.readouterr().err.splitlines()
    assert code == 3
    assert "RuntimeError: model weights not found" in lines[0]
    assert lines[1] == "Traceback (most recent call last):"
    assert any("import_raises.py" in line and "_load_weights" in line for line in lines)
    assert not any("asya_runtime.py" in line for line in lines[1:])
    assert lines[-1] == "RuntimeError: model weights not found at /models/weights.bin"


def test_main_reports_a_socket_it_cannot_create(capsys, handler_scenario, socket_dir):
    handler_scenario("echo")
    (socket_dir / SOCKET_NAME).write_text("")
    previous = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGINT)}
    try:
        code = asya_runtime.main({"ASYA_HANDLER": "echo.echo", "ASYA_SOCKET_DIR": str(socket_dir)})
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)

    assert code == 2
    assert "is not a socket" in capsys.readouterr().err.splitlines()[0]


def test_main_serves_until_sigterm_then_removes_the_socket(handler_scenario, socket_dir, caplog):
    handler_scenario("echo")
    caplog.set_level(logging.INFO, logger="asya.runtime")
    socket_path = socket_dir / SOCKET_NAME
    replies = []

    def client_then_sigterm():
        try:
            wait_for(socket_path.exists, "the socket")
            replies.append(call(socket_path, envelope_for("hello")))
        finally:
            os.kill(os.getpid(), signal.SIGTERM)

    previous = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGINT)}
    client = threading.Thread(target=client_then_sigterm, daemon=True)
    client.start()
    try:
        code = asya_runtime.main({"ASYA_HANDLER": "echo.echo", "ASYA_SOCKET_DIR": str(socket_dir)})
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    client.join(30)

    assert code == 0
    assert replies[0]["result"]["payload"] == "hello"
    assert not socket_path.exists()
    ready = [r.getMessage() for r in caplog.records if r.getMessage().startswith("ready:")]
    assert ready and "handler echo.echo" in ready[0] and str(socket_path) in ready[0]


class _PublicOnlyListener:
    """A listening socket that offers only the public API (no CPython-private _accept)."""

    def __init__(self, listener):
        self._real = listener

    def accept(self):
        return self._real.accept()

    def __getattr__(self, name):
        if name == "_accept":
            raise AttributeError(name)
        return getattr(self._real, name)


def test_connections_are_accepted_through_the_public_api_when_the_private_one_is_missing(
    load_fixture_handler, socket_dir
):
    config = load_config({"ASYA_HANDLER": "echo.echo", "ASYA_SOCKET_DIR": str(socket_dir)})
    server = ActorServer(config, load_fixture_handler("echo", "echo.echo"))
    server.bind()
    server._listener = _PublicOnlyListener(server._listener)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        assert [call(server.socket_path, envelope_for(n))["result"]["payload"] for n in range(3)] == [0, 1, 2]
    finally:
        server.shutdown()
        thread.join(30)
        server.close()
    assert not thread.is_alive()


def test_the_heap_warm_up_runs_on_glibc_only():
    import platform

    on_glibc = platform.libc_ver()[0] == "glibc"
    assert asya_runtime.warm_up_glibc_heap() is on_glibc
