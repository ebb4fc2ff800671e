"""Black-box lifecycle: stop signals, the message in flight, and one message at a time.

The slow handler creates payload["started"] when it begins and finishes only
once the test creates payload["gate"], so every ordering here is set by the
test itself, never by how long something takes.
"""

import signal
import threading

import pytest

from asya_testkit.gated import GatedMessage
from asya_testkit.wire import call, envelope_for, read_until_eof


def test_sigterm_while_idle_exits_0_and_removes_the_socket(runtime_factory):
    runtime = runtime_factory("echo.echo", "echo")
    assert call(runtime.socket_path, envelope_for(1))["status"] == "ok"

    assert runtime.stop(signal.SIGTERM) == 0

    assert not runtime.socket_path.exists()
    assert "stopped" in runtime.log_text()


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_stop_signal_during_a_slow_handler_still_delivers_its_reply(runtime_factory, tmp_path, stop_signal):
    runtime = runtime_factory("slow.wait_for_gate", "slow")
    message = GatedMessage(tmp_path, "in-flight").send(runtime.socket_path)
    message.wait_started()

    runtime.send_signal(stop_signal)
    message.release()
    reply = message.reply()  # read_reply checks that the whole frame arrived

    assert reply["status"] == "ok"
    assert reply["result"]["payload"]["tag"] == "in-flight"
    assert runtime.wait_exit() == 0
    assert not runtime.socket_path.exists()
    assert "Traceback" not in runtime.log_text()


def test_connection_waiting_at_stop_gets_no_partial_reply(runtime_factory, tmp_path):
    runtime = runtime_factory("slow.wait_for_gate", "slow")
    in_flight = GatedMessage(tmp_path, "in-flight").send(runtime.socket_path)
    in_flight.wait_started()
    waiting = GatedMessage(tmp_path, "waiting", gate=in_flight.gate).send(runtime.socket_path)

    runtime.send_signal(signal.SIGTERM)
    in_flight.release()

    assert in_flight.reply()["status"] == "ok"
    assert runtime.wait_exit() == 0
    with waiting.client:
        try:
            leftover = read_until_eof(waiting.client)
        except ConnectionResetError:
            leftover = b""
    assert leftover == b"", "a waiting client is refused, never half answered"
    assert not waiting.started.exists()


def test_messages_are_served_one_at_a_time(runtime_factory, tmp_path):
    runtime = runtime_factory("slow.wait_for_gate", "slow")
    first = GatedMessage(tmp_path, "first").send(runtime.socket_path)
    first.wait_started()
    second = GatedMessage(tmp_path, "second")
    second.release()  # the second message could finish at once if it were let in
    second.send(runtime.socket_path)

    second_reply = []
    reader = threading.Thread(target=lambda: second_reply.append(second.reply()), daemon=True)
    reader.start()
    assert not second.started.exists(), "the second message started while the first was in flight"
    first.release()
    first_reply = first.reply()
    reader.join(30)

    assert first_reply["result"]["payload"] == {
        "tag": "first",
        "in_flight_at_entry": 0,
        "finished_before_entry": 0,
    }
    assert second_reply[0]["result"]["payload"] == {
        "tag": "second",
        "in_flight_at_entry": 0,
        "finished_before_entry": 1,
    }
