"""The fake sidecar as a process, driving the real runtime as a process.

Each test pushes envelopes into the directory queues, runs the sidecar (and
runtime) exactly as a pod would, and checks where the messages ended up.
Sidecars mostly run with --max-messages so they end on their own; nothing
here asserts a duration.
"""

import os
import signal
import socket

import pytest
from sidecar_testkit import SIGTERM_IN_STOP_WAIT, message_lines

from asya_testkit.wait import wait_for

pytestmark = pytest.mark.timeout(180)


def test_output_goes_to_the_next_actor_queue_with_current_advanced(harness):
    harness.start_runtime("first", "echo.handle")
    pushed = harness.push("first", "m-1", ["first", "second"], {"n": 1},
                          headers={"trace": "t-9"})

    code, sidecar = harness.run_sidecar("first", "--max-messages", "1")

    assert code == 0, sidecar.log_text()
    [forwarded] = harness.messages("second")
    assert forwarded["id"] == "m-1"
    assert forwarded["payload"] == {"n": 1}
    assert forwarded["headers"] == {"trace": "t-9"}
    assert forwarded["route"] == {"actors": ["first", "second"], "current": 1}
    assert pushed["route"]["current"] == 0
    assert harness.messages("happy-end") == [] and harness.messages("error-end") == []
    assert harness.leftovers("first") == {}
    [line] = message_lines(sidecar)
    assert line["id"] == "m-1" and line["outcome"] == "ok" and line["destination"] == "second"


def test_two_actor_route_finishes_in_happy_end(harness):
    harness.start_runtime("first", "echo.handle")
    harness.start_runtime("second", "echo.handle")
    harness.push("first", "m-1", ["first", "second"], {"text": "hi"})

    for actor in ("first", "second"):
        code, sidecar = harness.run_sidecar(actor, "--max-messages", "1")
        assert code == 0, sidecar.log_text()

    [done] = harness.messages("happy-end")
    assert done["id"] == "m-1"
    assert done["payload"] == {"text": "hi"}
    assert done["route"] == {"actors": ["first", "second"], "current": 2}
    assert harness.leftovers("first", "second") == {}


def test_fan_out_keeps_the_id_on_item_0_and_numbers_the_rest(harness):
    harness.start_runtime("split", "fan_out.handle")
    harness.push("split", "order-7", ["split"], {"items": ["a", "b", "c"]})

    code, sidecar = harness.run_sidecar("split", "--max-messages", "1")

    assert code == 0, sidecar.log_text()
    done = {m["id"]: m for m in harness.messages("happy-end")}
    assert sorted(done) == ["order-7", "order-7-1", "order-7-2"]
    assert [done[i]["payload"] for i in ("order-7", "order-7-1", "order-7-2")] == [
        {"item": "a"}, {"item": "b"}, {"item": "c"}]
    assert "parent_id" not in done["order-7"]
    assert done["order-7-1"]["parent_id"] == "order-7"
    assert done["order-7-2"]["parent_id"] == "order-7"
    assert all(m["route"]["current"] == 1 for m in done.values())
    [line] = message_lines(sidecar)
    assert line["results"] == "3" and line["destination"] == "happy-end"


def test_fan_out_children_travel_on_and_keep_their_parent(harness):
    harness.start_runtime("split", "fan_out.handle")
    harness.start_runtime("after", "echo.handle")
    harness.push("split", "m", ["split", "after"], {"items": [1, 2]})

    assert harness.run_sidecar("split", "--max-messages", "1")[0] == 0
    assert harness.run_sidecar("after", "--max-messages", "2")[0] == 0

    done = {m["id"]: m for m in harness.messages("happy-end")}
    assert sorted(done) == ["m", "m-1"]
    assert done["m-1"]["parent_id"] == "m" and "parent_id" not in done["m"]
    assert all(m["route"]["current"] == 2 for m in done.values())


@pytest.mark.parametrize("handler, payload", [
    ("nothing.handle", {"x": 1}),
    ("fan_out.handle", {"items": []}),
])
def test_empty_result_completes_the_message_with_no_output(harness, handler, payload):
    harness.start_runtime("sink", handler)
    harness.push("sink", "m-1", ["sink", "never"], payload)

    code, sidecar = harness.run_sidecar("sink", "--max-messages", "1")

    assert code == 0, sidecar.log_text()
    assert harness.leftovers("sink", "never", "happy-end", "error-end") == {}
    [line] = message_lines(sidecar)
    assert line["outcome"] == "completed" and line["results"] == "0"


def test_envelope_mode_handler_can_add_a_step(harness):
    harness.start_runtime("router", "add_step.handle", mode="envelope")
    harness.push("router", "m-1", ["router", "last"], {"then": "inserted"})

    assert harness.run_sidecar("router", "--max-messages", "1")[0] == 0

    [forwarded] = harness.messages("inserted")
    assert forwarded["route"] == {"actors": ["router", "inserted", "last"], "current": 1}
    assert harness.messages("last") == []


def test_handler_exception_sends_the_original_envelope_to_error_end(harness):
    harness.start_runtime("stock", "raises.handle")
    pushed = harness.push("stock", "m-1", ["stock", "next"], {"item": "lamp"})

    code, sidecar = harness.run_sidecar("stock", "--max-messages", "1")

    assert code == 0, sidecar.log_text()
    [record] = harness.messages("error-end")
    assert record["id"] == "m-1"
    assert record["actor"] == "stock"
    assert record["error"] == "processing_error"
    assert "no stock for item 'lamp'" in record["message"]
    assert record["type"] == "InventoryError"
    assert "raises.py" in record["traceback"]
    assert record["envelope"] == pushed
    assert harness.leftovers("stock", "next", "happy-end") == {}
    [line] = message_lines(sidecar)
    assert line["outcome"] == "error" and line["error"] == "processing_error"
    assert line["destination"] == "error-end"


def test_runtime_crash_mid_call_sends_the_message_to_error_end(harness):
    runtime = harness.start_runtime("fragile", "crash.handle")
    pushed = harness.push("fragile", "m-1", ["fragile"], {"x": 1})

    code, sidecar = harness.run_sidecar("fragile", "--max-messages", "1")

    assert code == 0, sidecar.log_text()
    assert runtime.wait_exit() == 17
    [record] = harness.messages("error-end")
    assert record["error"] == "runtime_unavailable"
    assert record["envelope"] == pushed
    assert harness.leftovers("fragile", "happy-end") == {}


def test_dead_socket_message_goes_to_error_end_and_sidecar_exits_not_ready(harness):
    runtime = harness.start_runtime("gone", "echo.handle")
    runtime.send_signal(signal.SIGKILL)
    runtime.wait_exit()
    assert os.path.exists(harness.socket_path("gone")), "a killed runtime leaves its socket file"
    pushed = harness.push("gone", "m-1", ["gone"], {"x": 1})

    code, sidecar = harness.run_sidecar("gone", env={"ASYA_READY_TIMEOUT": "0.5"})

    assert code == 3, sidecar.log_text()
    [record] = harness.messages("error-end")
    assert record["error"] == "runtime_unavailable"
    assert record["envelope"] == pushed
    assert harness.leftovers("gone", "happy-end") == {}
    expected = f"runtime not ready after 0.5s: socket {harness.socket_path('gone')} unreachable"
    assert expected in sidecar.log_text()


def test_message_waits_for_a_restarted_runtime_instead_of_failing(harness):
    runtime = harness.start_runtime("flaky", "echo.handle")
    runtime.send_signal(signal.SIGKILL)
    runtime.wait_exit()
    harness.push("flaky", "m-1", ["flaky"], {"x": 1})

    sidecar = harness.start_sidecar("flaky", "--max-messages", "1")
    wait_for(lambda: "runtime unreachable" in sidecar.log_text(), "the sidecar to notice the dead runtime")
    harness.start_runtime("flaky", "echo.handle")

    assert sidecar.wait_exit() == 0, sidecar.log_text()
    [done] = harness.messages("happy-end")
    assert done["id"] == "m-1"
    assert harness.messages("error-end") == []


def test_sigterm_while_runtime_is_down_puts_the_message_back(harness):
    runtime = harness.start_runtime("down", "echo.handle")
    runtime.send_signal(signal.SIGKILL)
    runtime.wait_exit()
    harness.push("down", "m-1", ["down"], {"x": 1})

    sidecar = harness.start_sidecar("down")
    wait_for(lambda: "runtime unreachable" in sidecar.log_text(), "the sidecar to notice the dead runtime")
    sidecar.send_signal(signal.SIGTERM)

    assert sidecar.wait_exit() == 0, sidecar.log_text()
    assert len(harness.store.pending("down")) == 1
    assert harness.store.in_flight("down") == []
    assert harness.leftovers("happy-end", "error-end") == {}


def test_call_timeout_sends_the_message_to_error_end(harness):
    harness.start_runtime("slow", "gated.handle")
    started, gate = harness.path("started"), harness.path("gate")
    pushed = harness.push("slow", "m-1", ["slow"], {"started": started, "gate": gate})
    try:
        code, sidecar = harness.run_sidecar("slow", "--max-messages", "1",
                                            env={"ASYA_CALL_TIMEOUT": "0.3"})
        # The handler is called, but on a busy machine maybe only after the
        # sidecar gave up on the call: the frame waits in the socket until the
        # runtime reads it. Wait for the call instead of assuming it came
        # within the 0.3 s.
        wait_for(lambda: os.path.exists(started), "the handler to be called")
    finally:
        open(gate, "w").close()  # let the runtime's handler return

    assert code == 0, sidecar.log_text()
    [record] = harness.messages("error-end")
    assert record["error"] == "timeout"
    assert record["envelope"] == pushed
    assert harness.leftovers("slow", "happy-end") == {}


def test_runtime_never_ready_exits_nonzero_and_leaves_the_queue_alone(harness):
    harness.push("lonely", "m-1", ["lonely"], {"x": 1})

    code, sidecar = harness.run_sidecar("lonely", env={"ASYA_READY_TIMEOUT": "0.2"})

    assert code == 3
    expected = f"runtime not ready after 0.2s: socket {harness.socket_path('lonely')} missing"
    assert expected in sidecar.log_text()
    assert len(harness.store.pending("lonely")) == 1
    assert harness.leftovers("happy-end", "error-end") == {}


def test_sigterm_mid_message_finishes_it_then_exits_without_taking_more(harness):
    harness.start_runtime("slow", "gated.handle")
    started, gate = harness.path("started"), harness.path("gate")
    harness.push("slow", "m-1", ["slow", "next"], {"started": started, "gate": gate})
    harness.push("slow", "m-2", ["slow", "next"], {"started": started, "gate": gate})

    sidecar = harness.start_sidecar("slow")
    wait_for(lambda: os.path.exists(started), "the handler to start on m-1")
    sidecar.send_signal(signal.SIGTERM)
    wait_for(lambda: "received SIGTERM" in sidecar.log_text(), "the sidecar to see SIGTERM")
    open(gate, "w").close()

    assert sidecar.wait_exit() == 0, sidecar.log_text()
    [forwarded] = harness.messages("next")
    assert forwarded["id"] == "m-1"
    assert harness.messages("error-end") == []
    [waiting] = harness.messages("slow")
    assert waiting["id"] == "m-2"
    assert harness.store.in_flight("slow") == []


def test_queued_file_that_is_not_json_goes_to_error_end(harness):
    harness.start_runtime("strict", "echo.handle")
    harness.store.enqueue("strict", b"{not json")

    code, sidecar = harness.run_sidecar("strict", "--max-messages", "1")

    assert code == 0, sidecar.log_text()
    [record] = harness.messages("error-end")
    assert record["error"] == "invalid_message"
    assert record["raw"] == "{not json"
    assert record["envelope"] is None


def test_message_without_id_is_named_after_its_queue_file(harness):
    harness.start_runtime("anon", "fan_out.handle")
    harness.push("anon", None, ["anon"], {"items": ["a", "b"]})
    [file_name] = harness.store.pending("anon")

    assert harness.run_sidecar("anon", "--max-messages", "1")[0] == 0

    stem = file_name[: -len(".json")]
    assert sorted(m["id"] for m in harness.messages("happy-end")) == [stem, stem + "-1"]


def test_missing_actor_name_is_a_configuration_error(harness):
    code, sidecar = harness.run_sidecar("", env={})

    assert code == 2
    assert "ASYA_ACTOR_NAME is not set" in sidecar.log_text()


def test_two_sidecars_on_one_queue_never_take_the_same_message(harness):
    count = 120
    for replica in ("a", "b"):
        harness.start_runtime("work", "echo.handle", socket_dir=harness.socket_dir("work-" + replica))
    for n in range(count):
        harness.push("work", f"m-{n}", ["work"], {"n": n})

    sidecars = [harness.start_sidecar("work", socket_dir=harness.socket_dir("work-" + r))
                for r in ("a", "b")]
    wait_for(lambda: len(harness.store.pending("happy-end")) >= count, "every message to finish")
    for sidecar in sidecars:
        sidecar.send_signal(signal.SIGTERM)
    assert [s.wait_exit() for s in sidecars] == [0, 0]

    ids = [m["id"] for m in harness.messages("happy-end")]
    assert sorted(ids) == sorted(f"m-{n}" for n in range(count))
    handled = [line["id"] for s in sidecars for line in message_lines(s)]
    assert sorted(handled) == sorted(ids), "each message handled by exactly one sidecar"
    assert harness.leftovers("work", "error-end") == {}


def test_batch_with_fan_out_and_sidecar_restarts_loses_and_repeats_nothing(harness):
    harness.start_runtime("split", "fan_out.handle")
    harness.start_runtime("tail", "echo.handle")
    expected = set()
    for n in range(60):
        items = list(range(n % 4))  # 0 to 3 items: empty results and fan-outs
        harness.push("split", f"b-{n}", ["split", "tail"], {"items": items})
        # Item 0 keeps the id, item i is b-n-i; no items, no result.
        expected.update(f"b-{n}" if i == 0 else f"b-{n}-{i}" for i in range(len(items)))

    tail = harness.start_sidecar("tail")
    # Stop and replace the first actor's sidecar twice while the batch flows.
    for stop_after in (len(expected) // 3, 2 * len(expected) // 3):
        split = harness.start_sidecar("split")
        # Its stop handlers are in place once it logs that it is starting.
        wait_for(lambda s=split: "actor=split starting" in s.log_text(), "the sidecar to start")
        wait_for(lambda n=stop_after: len(harness.store.pending("happy-end")) >= n, "progress")
        split.send_signal(signal.SIGTERM)
        assert split.wait_exit() == 0, split.log_text()
    harness.start_sidecar("split")
    wait_for(lambda: len(harness.store.pending("happy-end")) >= len(expected), "the batch to finish")
    tail.send_signal(signal.SIGTERM)
    assert tail.wait_exit() == 0

    ids = [m["id"] for m in harness.messages("happy-end")]
    assert len(ids) == len(set(ids)), "no duplicates"
    assert set(ids) == expected, "nothing dropped"
    assert harness.messages("error-end") == []
    assert harness.leftovers("split", "tail") == {}


@pytest.mark.parametrize("mode", ["fake", "go"])
def test_sigterm_while_the_main_thread_is_inside_stop_wait_still_stops_the_sidecar(harness, mode):
    # The hook signals the sidecar at the one racy point a busy machine hits now
    # and then: fake mode in the empty queue's poll loop (a runtime is up), go
    # mode in the wait for runtime-ready (no runtime).
    if mode == "fake":
        harness.start_runtime("calm", "echo.handle")
    sidecar = harness.start_sidecar("calm", launcher=SIGTERM_IN_STOP_WAIT,
                                    env={"ASYA_SIDECAR_MODE": mode})

    code = sidecar.wait_exit()

    assert "test hook: SIGTERM sent inside stop.wait" in sidecar.log_text(), sidecar.log_text()
    assert code == 0, sidecar.log_text()
    assert "received SIGTERM: finishing the message in flight" in sidecar.log_text()


def test_sidecar_and_runtime_work_on_python_37(harness, python37):
    harness.start_runtime("split", "fan_out.handle", python=python37)
    harness.push("split", "m", ["split"], {"items": ["x", "y"]})

    code, sidecar = harness.run_sidecar("split", "--max-messages", "1", python=python37)

    assert code == 0, sidecar.log_text()
    assert sorted(m["id"] for m in harness.messages("happy-end")) == ["m", "m-1"]


def test_exit_when_idle_option_ends_a_sidecar_with_an_empty_queue(harness):
    harness.start_runtime("quiet", "echo.handle")
    harness.push("quiet", "m-1", ["quiet"], {"x": 1})

    code, sidecar = harness.run_sidecar("quiet", "--exit-when-idle", "0.2")

    assert code == 0, sidecar.log_text()
    assert [m["id"] for m in harness.messages("happy-end")] == ["m-1"]
    assert "idle for 0.2s; exiting" in sidecar.log_text()


def test_message_claimed_by_a_sidecar_that_was_killed_is_processed_by_the_next(harness):
    harness.start_runtime("work", "echo.handle", socket_dir=harness.socket_dir("fast"))
    slow_runtime = harness.start_runtime("work", "gated.handle", socket_dir=harness.socket_dir("slow"))
    started, gate = harness.path("started"), harness.path("gate")
    harness.push("work", "m-1", ["work"], {"started": started, "gate": gate})

    doomed = harness.start_sidecar("work", socket_dir=harness.socket_dir("slow"))
    wait_for(lambda: os.path.exists(started), "the first sidecar to claim m-1")
    doomed.send_signal(signal.SIGKILL)
    doomed.wait_exit()
    open(gate, "w").close()  # the orphaned call may end; its reply goes nowhere
    slow_runtime.stop()
    assert len(harness.store.in_flight("work")) == 1, "the killed sidecar's claim is still held"

    code, survivor = harness.run_sidecar("work", "--max-messages", "1",
                                         socket_dir=harness.socket_dir("fast"))

    assert code == 0, survivor.log_text()
    assert "requeued 1 message(s) left by dead consumers" in survivor.log_text()
    [done] = harness.messages("happy-end")
    assert done["id"] == "m-1"
    assert harness.leftovers("work", "error-end") == {}


def _refuses_connections(path):
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except OSError:
        return True
    finally:
        probe.close()
    return False


def test_pod_stop_with_a_call_still_in_the_runtime_backlog_requeues_it(harness):
    # Two sidecars share one runtime: m-1 is being handled, m-2's call waits in
    # the runtime's listen backlog when the whole "pod" gets SIGTERM.
    runtime = harness.start_runtime("busy", "gated.handle")
    gate = harness.path("gate")
    harness.push("busy", "m-1", ["busy"], {"started": harness.path("started-1"), "gate": gate})
    first = harness.start_sidecar("busy")
    wait_for(lambda: os.path.exists(harness.path("started-1")), "m-1 to be in the handler")
    harness.push("busy", "m-2", ["busy"], {"started": harness.path("started-2"), "gate": gate})
    second = harness.start_sidecar("busy", env={"ASYA_LOG_LEVEL": "DEBUG"})
    wait_for(lambda: "id=m-2 sent" in second.log_text(), "m-2's call to wait in the backlog")

    for sidecar in (first, second):
        sidecar.send_signal(signal.SIGTERM)
        wait_for(lambda s=sidecar: "received SIGTERM" in s.log_text(), "the sidecars to see SIGTERM")
    runtime.send_signal(signal.SIGTERM)
    wait_for(lambda: _refuses_connections(harness.socket_path("busy")), "the runtime to stop accepting")
    open(gate, "w").close()

    assert [first.wait_exit(), second.wait_exit(), runtime.wait_exit()] == [0, 0, 0], second.log_text()
    assert [m["id"] for m in harness.messages("happy-end")] == ["m-1"]
    assert [m["id"] for m in harness.messages("busy")] == ["m-2"]
    assert not os.path.exists(harness.path("started-2")), "m-2 never reached the handler"
    assert harness.messages("error-end") == [] and harness.store.in_flight("busy") == []
