"""Black-box lifecycle: stop signals, the message in flight, and one message at a time.

The slow handler creates payload["started"] when it begins and finishes only
once the test creates payload["gate"], so every ordering here is set by the
test itself, never by how long something takes.
"""

import os
import signal
import threading
from pathlib import Path

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


STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def blocked_signals(pid, thread_id):
    """The signals a thread of pid blocks, from /proc/<pid>/task/<tid>/status (SigBlk)."""
    status = Path(f"/proc/{pid}/task/{thread_id}/status").read_text()
    mask = int(next(line.split()[1] for line in status.splitlines() if line.startswith("SigBlk:")), 16)
    return {number for number in range(1, 65) if mask & (1 << (number - 1))}


@pytest.mark.parametrize("env", [{}, {"ASYA_HANDLER_TIMEOUT": "30"}], ids=["access-log", "access-log+deadline"])
def test_only_the_main_thread_can_take_a_stop_signal(runtime_factory, env):
    # Otherwise the kernel may hand SIGTERM to a helper thread while the main
    # thread sits in accept(), and the runtime stops only at the next client.
    runtime = runtime_factory("echo.echo", "echo", env).wait_until_ready(ready_file=True)
    threads = sorted(int(tid) for tid in os.listdir(f"/proc/{runtime.pid}/task"))
    helpers = [tid for tid in threads if tid != runtime.pid]

    assert len(helpers) == (2 if env else 1), "the access-log writer, and the deadline's watchdog"
    for tid in helpers:
        assert set(STOP_SIGNALS) <= blocked_signals(runtime.pid, tid), f"thread {tid}"
    assert not set(STOP_SIGNALS) & blocked_signals(runtime.pid, runtime.pid), "the main thread takes them"
    assert runtime.stop() == 0
