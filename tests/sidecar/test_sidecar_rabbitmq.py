"""The fake sidecar on a real RabbitMQ, driving the real runtime as a process.

The broker is the project's own (tools/rabbitmq.sh, 127.0.0.1 only, free
ports), started once for this module and stopped at its end. Each test uses actor names of its
own, so its queues are its own; the end queues are shared and every message
is looked up by id. The queues of every route a test publishes are made first
by the chart's own topology script (asya_testkit.rabbitmq.Topology), as a
release's hook Job makes them: the Go sidecar creates none. Both modes: ``fake`` (status dialect, this project's
routing and records) and ``go`` (the asya Go sidecar's list dialect,
runtime-ready file, routing and error-end record).
"""

import os
import secrets
import signal
import socket
import subprocess
import sys

import pytest
from sidecar_testkit import HANDLERS_DIR, SIDECAR_DIR, message_lines

from asya_testkit.paths import REPO_ROOT
from asya_testkit.process import RuntimeProcess
from asya_testkit.rabbitmq import AmqpQueues, Broker, Topology, broker_unavailable_reason, queue_name
from asya_testkit.wait import wait_for

pytestmark = pytest.mark.timeout(180)



@pytest.fixture(scope="module")
def broker():
    reason = broker_unavailable_reason()
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"{reason} (CI is set, so this is a failure, not a skip)", pytrace=False)
        pytest.skip(reason)
    with Broker("sidecar-tests") as instance:  # free loopback ports of its own
        yield instance


@pytest.fixture(scope="module")
def topology(broker):
    return Topology(broker)


@pytest.fixture
def amqp(broker, topology):
    with AmqpQueues(broker.url, topology=topology) as client:
        yield client


def unique(name):
    return f"{name}-{secrets.token_hex(3)}"


def start_runtime(harness, actor, handler, reply_format="status", python=None):
    """The runtime as a process, in the dialect the sidecar mode expects; returns once it is ready."""
    process = RuntimeProcess(handler, python=python, pythonpath=HANDLERS_DIR, mode="payload",
                             env={"ASYA_REPLY_FORMAT": reply_format},
                             socket_dir=harness.socket_dir(actor),
                             log_path=harness._log_path("runtime-" + actor))
    process.label = f"the {actor} runtime"
    harness.processes.append(process)
    process.start()
    return process.wait_until_ready(ready_file=reply_format == "list")


def start_sidecar(harness, broker, actor, *args, mode="fake", env=None, python=None):
    settings = {"ASYA_TRANSPORT": "rabbitmq", "ASYA_SIDECAR_MODE": mode, "ASYA_RABBITMQ_URL": broker.url}
    if mode == "go":
        settings.update({"ASYA_RUNTIME_TIMEOUT": "30s", "ASYA_RUNTIME_READY_TIMEOUT": "30s"})
    settings.update(env or {})
    return harness.start_sidecar(actor, *args, env=settings, python=python)


# ------------------------------------------------------------ fake mode (status dialect)

def test_fake_mode_pipeline_and_fan_out_through_rabbitmq(harness, broker, amqp):
    split, tail = unique("split"), unique("tail")
    start_runtime(harness, split, "fan_out.handle")
    start_runtime(harness, tail, "echo.handle")
    amqp.send(split, "fo-1", {"items": ["a", "b"]}, actors=[split, tail], headers={"trace": "t"})

    sidecars = [start_sidecar(harness, broker, split), start_sidecar(harness, broker, tail)]
    done = amqp.happy_end("fo-1", count=2)

    assert [m["id"] for m in done] == ["fo-1", "fo-1-1"]
    assert [m.get("parent_id") for m in done] == [None, "fo-1"]
    assert [m["payload"] for m in done] == [{"item": "a"}, {"item": "b"}]
    assert all(m["route"] == {"actors": [split, tail], "current": 2} for m in done)
    assert all(m["headers"] == {"trace": "t"} for m in done)
    for sidecar in sidecars:
        sidecar.send_signal(signal.SIGTERM)
        assert sidecar.wait_exit() == 0, sidecar.log_text()
    assert amqp.counts(split) == (0, 0) and amqp.counts(tail) == (0, 0)


def test_fake_mode_handler_error_gets_this_projects_record(harness, broker, amqp):
    actor = unique("raises")
    start_runtime(harness, actor, "raises.handle")
    sent = amqp.send(actor, "bad-1", {"item": "x"})

    start_sidecar(harness, broker, actor)
    (record,) = amqp.error_end("bad-1")

    assert record["error"] == "processing_error"
    assert record["type"] == "InventoryError"
    assert record["actor"] == actor
    assert record["envelope"] == sent


# ------------------------------------------------------------ go mode (list dialect)

def test_go_mode_routes_by_the_route_the_runtime_returns(harness, broker, amqp):
    first, second = unique("first"), unique("second")
    start_runtime(harness, first, "fan_out.handle", "list")
    start_runtime(harness, second, "echo.handle", "list")
    amqp.send(first, "go-1", {"items": [1, 2, 3]}, actors=[first, second], headers={"trace": "g"})

    start_sidecar(harness, broker, first, mode="go")
    start_sidecar(harness, broker, second, mode="go")
    done = amqp.happy_end("go-1", count=3)

    assert [m["id"] for m in done] == ["go-1", "go-1-1", "go-1-2"]
    assert [m.get("parent_id") for m in done] == [None, "go-1", "go-1"]
    assert [m["payload"] for m in done] == [{"item": 1}, {"item": 2}, {"item": 3}]
    # The runtime advanced current once per actor; the sidecar sent it as it was.
    assert all(m["route"] == {"actors": [first, second], "current": 2} for m in done)
    # The Go sidecar drops headers on every hop.
    assert all("headers" not in m for m in done), done


def test_go_mode_empty_reply_sends_the_input_itself_to_happy_end(harness, broker, amqp):
    actor = unique("nothing")
    start_runtime(harness, actor, "nothing.handle", "list")
    sent = amqp.send(actor, "none-1", {"x": 1})

    start_sidecar(harness, broker, actor, mode="go")
    (done,) = amqp.happy_end("none-1")

    assert done == sent


def test_go_mode_error_gets_the_go_sidecars_error_end_record(harness, broker, amqp):
    actor = unique("raises")
    start_runtime(harness, actor, "raises.handle", "list")
    amqp.send(actor, "gerr-1", {"item": "x"})

    sidecar = start_sidecar(harness, broker, actor, mode="go")
    (record,) = amqp.error_end("gerr-1")

    assert record["id"] == "gerr-1"
    assert record["route"] == {"actors": [actor], "current": 0}
    payload = record["payload"]
    assert payload["error"] == "processing_error"
    assert payload["details"]["type"] == "InventoryError"
    assert "no stock for item 'x'" in payload["details"]["message"]
    assert "Traceback" in payload["details"]["traceback"]
    assert payload["original_payload"] == {"item": "x"}
    wait_for(lambda: message_lines(sidecar), "the sidecar's log line")
    [line] = message_lines(sidecar)
    assert line["outcome"] == "error" and line["error"] == "processing_error"


def test_go_mode_refuses_a_message_for_another_actor(harness, broker, amqp):
    actor = unique("mine")
    start_runtime(harness, actor, "echo.handle", "list")
    amqp.send(actor, "wrong-1", {"x": 1}, actors=["someone-else", actor])

    start_sidecar(harness, broker, actor, mode="go")
    (record,) = amqp.error_end("wrong-1")

    assert "Route mismatch" in record["payload"]["error"]
    assert record["payload"]["original_payload"] == {"x": 1}


def test_go_mode_waits_for_runtime_ready_before_consuming(harness, broker, amqp):
    actor = unique("late")
    amqp.send(actor, "late-1", {"x": 1})
    sidecar = start_sidecar(harness, broker, actor, mode="go")
    wait_for(lambda: "starting: mode=go" in sidecar.log_text(), "the sidecar to start")
    # A bare socket file is not enough: the Go sidecar waits for runtime-ready.
    os.makedirs(harness.socket_dir(actor), exist_ok=True)
    stray = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stray.bind(harness.socket_path(actor))
    stray.listen(1)
    try:
        assert amqp.counts(actor) == (1, 0), "nothing consumes before the runtime is ready"
    finally:
        stray.close()
        os.unlink(harness.socket_path(actor))

    start_runtime(harness, actor, "echo.handle", "list")
    (done,) = amqp.happy_end("late-1")
    assert done["route"]["current"] == 1
    assert "runtime ready" in sidecar.log_text()


def test_go_mode_gives_up_when_the_runtime_never_gets_ready(harness, broker, amqp):
    actor = unique("lonely")
    amqp.send(actor, "lonely-1", {"x": 1})

    sidecar = start_sidecar(harness, broker, actor, mode="go", env={"ASYA_RUNTIME_READY_TIMEOUT": "1s"})

    assert sidecar.wait_exit() == 1, sidecar.log_text()
    assert "runtime not ready after 1s" in sidecar.log_text()
    assert amqp.counts(actor) == (1, 0), "the message is left in its queue"


def test_go_mode_on_rabbitmq_runs_on_python_37_with_the_images_pika(harness, broker, amqp, python37):
    # The pinned, sha256-checked wheel the image unpacks; a pure-Python wheel
    # also imports straight from the zip.
    wheels = harness.path("wheels")
    subprocess.run([sys.executable, str(REPO_ROOT / "tools" / "fetch_wheels.py"), wheels],
                   check=True, stdout=subprocess.DEVNULL)
    (wheel,) = [os.path.join(wheels, name) for name in os.listdir(wheels) if name.startswith("pika-")]
    actor = unique("py37")
    start_runtime(harness, actor, "fan_out.handle", "list", python=python37)
    amqp.send(actor, "py37-1", {"items": ["a", "b"]})

    sidecar = start_sidecar(harness, broker, actor, mode="go", python=python37,
                            env={"PYTHONPATH": os.pathsep.join([SIDECAR_DIR, wheel])})
    done = amqp.happy_end("py37-1", count=2)

    assert [m["id"] for m in done] == ["py37-1", "py37-1-1"]
    sidecar.send_signal(signal.SIGTERM)
    assert sidecar.wait_exit() == 0, sidecar.log_text()


# ------------------------------------------------------------ acknowledgement and redelivery

def test_message_is_unacked_while_in_the_handler_and_redelivered_after_sidecar_sigkill(harness, broker, amqp):
    actor = unique("gated")
    start_runtime(harness, actor, "gated.handle", "list")
    started, gate = harness.path("started"), harness.path("gate")
    amqp.send(actor, "kill-1", {"started": started, "gate": gate})

    doomed = start_sidecar(harness, broker, actor, mode="go")
    wait_for(lambda: os.path.exists(started), "the handler to start")
    # prefetch 1, not acked: the broker holds it for this consumer.
    assert amqp.counts(actor) == (0, 1)
    doomed.send_signal(signal.SIGKILL)
    doomed.wait_exit()
    amqp.wait_until(lambda: amqp.counts(actor) == (1, 0), "the broker to take the message back")
    os.unlink(started)
    open(gate, "w").close()  # the orphaned call ends; its reply goes nowhere

    survivor = start_sidecar(harness, broker, actor, mode="go")
    (done,) = amqp.happy_end("kill-1")

    assert done["payload"]["gate"] == gate
    assert os.path.exists(started), "the survivor ran the handler again"
    survivor.send_signal(signal.SIGTERM)
    assert survivor.wait_exit() == 0
    assert amqp.finished("happy-end", "kill-1") == [done], "delivered once"


def test_fake_mode_requeues_a_message_whose_runtime_crashed_and_it_completes_once(harness, broker, amqp):
    """A deliberate difference: the Go sidecar sends such a message to error-end."""
    actor = unique("crashy")
    runtime = start_runtime(harness, actor, "crash_once.handle", "status")
    marker, calls = harness.path("crashed"), harness.path("calls")
    amqp.send(actor, "crash-1", {"marker": marker, "calls": calls})

    sidecar = start_sidecar(harness, broker, actor, mode="fake")
    assert runtime.wait_exit() == 17, runtime.log_text()
    wait_for(lambda: "outcome=requeued" in sidecar.log_text(), "the sidecar to requeue the message")
    assert amqp.finished("error-end", "crash-1") == []
    start_runtime(harness, actor, "crash_once.handle", "status")

    (done,) = amqp.happy_end("crash-1")
    assert done["payload"]["marker"] == marker
    with open(calls) as handle:
        assert handle.read().count("call") == 2, "one crashed call, one that completed"
    sidecar.send_signal(signal.SIGTERM)
    assert sidecar.wait_exit() == 0, sidecar.log_text()
    assert amqp.finished("happy-end", "crash-1") == [done]
    assert amqp.finished("error-end", "crash-1") == []


def test_fake_mode_sends_a_message_that_kills_the_runtime_every_time_to_error_end_after_max_lost_calls(
        harness, broker, amqp):
    actor, mode = unique("poison"), "fake"
    reply_format = "status"
    max_lost_calls = 2
    runtime = start_runtime(harness, actor, "crash.handle", reply_format)
    amqp.send(actor, "poison-1", {"n": 1})
    sidecar = start_sidecar(harness, broker, actor, mode=mode, env={"ASYA_MAX_LOST_CALLS": str(max_lost_calls)})

    crashes = 0
    while not amqp.finished("error-end", "poison-1"):
        amqp.wait_until(lambda current=runtime: not current.alive() or amqp.finished("error-end", "poison-1"),
                        "the runtime to die on poison-1, or poison-1 in error-end")
        if runtime.alive():
            break
        assert runtime.wait_exit() == 17, runtime.log_text()
        crashes += 1
        assert crashes <= max_lost_calls, f"the runtime died {crashes} times on one message:\n{sidecar.log_text()}"
        runtime = start_runtime(harness, actor, "crash.handle", reply_format)

    (record,) = amqp.error_end("poison-1")
    outcomes = [line["outcome"] for line in message_lines(sidecar) if line.get("id") == "poison-1"]
    assert outcomes == ["requeued"] * (max_lost_calls - 1) + ["error"], sidecar.log_text()
    assert 1 <= crashes <= max_lost_calls
    assert amqp.finished("happy-end", "poison-1") == []
    assert record["error"] == "runtime_unavailable", record
    assert f"ASYA_MAX_LOST_CALLS={max_lost_calls}" in record["message"], record
    assert amqp.counts(actor)[0] == 0, "nothing left to redeliver"


def test_go_mode_fails_a_message_whose_runtime_crashed_and_every_message_while_it_is_down(harness, broker, amqp):
    actor = unique("gocrash")
    runtime = start_runtime(harness, actor, "crash_once.handle", "list")
    marker, calls = harness.path("crashed"), harness.path("calls")
    amqp.send(actor, "crash-1", {"marker": marker, "calls": calls})
    sidecar = start_sidecar(harness, broker, actor, mode="go")

    assert runtime.wait_exit() == 17, runtime.log_text()
    (record,) = amqp.error_end("crash-1")
    # The crash's reason, the input's payload; acknowledged, never redelivered.
    assert record["payload"]["error"].startswith("Runtime error: runtime closed the connection"), record
    assert record["payload"]["original_payload"] == {"marker": marker, "calls": calls}
    # While the runtime is down, a message fails at once (no waiting for it to return).
    amqp.send(actor, "down-1", {"marker": marker, "calls": calls})
    (down,) = amqp.error_end("down-1")
    assert down["payload"]["error"].startswith("Runtime error: cannot connect to"), down

    # The killed runtime left its socket and ready file: gone, so that "ready" means the new one.
    for leftover in ("asya-runtime.sock", "runtime-ready"):
        os.unlink(os.path.join(harness.socket_dir(actor), leftover))
    start_runtime(harness, actor, "crash_once.handle", "list")
    amqp.send(actor, "after-1", {"marker": marker, "calls": calls})
    (done,) = amqp.happy_end("after-1")
    assert done["payload"]["marker"] == marker
    sidecar.send_signal(signal.SIGTERM)
    assert sidecar.wait_exit() == 0, sidecar.log_text()
    assert amqp.counts(actor) == (0, 0), "nothing requeued"
    assert amqp.finished("error-end", "crash-1") == [record], "failed once"
    assert [line["outcome"] for line in message_lines(sidecar)] == ["error", "error", "ok"]


def test_go_mode_runtime_timeout_fails_the_message_then_exits_before_acking_so_it_fails_again(
        harness, broker, amqp):
    actor = unique("stuck")
    start_runtime(harness, actor, "gated.handle", "list")
    started, gate = harness.path("started"), harness.path("gate")
    amqp.send(actor, "stuck-1", {"started": started, "gate": gate})
    timeout = {"ASYA_RUNTIME_TIMEOUT": "1s"}

    first = start_sidecar(harness, broker, actor, mode="go", env=timeout)
    assert first.wait_exit() == 1, first.log_text()
    (record,) = amqp.error_end("stuck-1")
    assert record["payload"]["error"] == "Runtime timeout exceeded after 1s"
    # Not acknowledged: the broker has it again.
    amqp.wait_until(lambda: amqp.counts(actor) == (1, 0), "stuck-1 back in its queue")

    # The runtime is still in the first call: the restarted sidecar's call times out too.
    second = start_sidecar(harness, broker, actor, mode="go", env=timeout)
    assert second.wait_exit() == 1, second.log_text()
    records = amqp.error_end("stuck-1", count=2)
    assert records[0] == records[1], "two identical error-end records"
    open(gate, "w").close()


def test_a_broker_killed_mid_message_loses_nothing(harness, broker):
    # A broker of its own: killing the module's would take the other tests' queues with it.
    actor = unique("brokerdown")
    start_runtime(harness, actor, "gated.handle", "list")
    gate = harness.path("gate")
    started = {message_id: harness.path(f"started-{message_id}") for message_id in ("bk-1", "bk-2")}
    with Broker("broker-crash") as own:
        with AmqpQueues(own.url, topology=Topology(own)) as queues:  # confirmed: both on the broker's disk
            for message_id, marker in started.items():
                queues.send(actor, message_id, {"started": marker, "gate": gate})
        sidecar = start_sidecar(harness, own, actor, mode="go")
        wait_for(lambda: os.path.exists(started["bk-1"]), "the handler to start on bk-1")

        own.kill()
        assert sidecar.wait_exit() == 4, sidecar.log_text()  # EXIT_BROKER: the pod restarts it
        assert "broker failure" in sidecar.log_text()
        open(gate, "w").close()  # the orphaned call ends; its reply has nowhere to go
        own.start_again()
        restarted = start_sidecar(harness, own, actor, mode="go")

        with AmqpQueues(own.url) as queues:
            done = queues.happy_end("bk", count=2)
            assert [m["id"] for m in done] == ["bk-1", "bk-2"]
            assert [m["payload"]["started"] for m in done] == [started["bk-1"], started["bk-2"]]
            assert queues.finished("error-end", "bk") == []
            queues.wait_until(lambda: queues.counts(actor) == (0, 1), "the restarted sidecar to ack both")
            assert queues.finished("happy-end", "bk") == done, "each delivered once"
        restarted.send_signal(signal.SIGTERM)
        assert restarted.wait_exit() == 0, restarted.log_text()


def test_two_sidecars_on_one_queue_take_each_message_once(harness, broker, amqp):
    actor, count = unique("work"), 100
    for replica in ("a", "b"):
        start_runtime(harness, actor + "-" + replica, "echo.handle", "list")
    for n in range(count):
        amqp.send(actor, f"cc-{n}", {"n": n})

    sidecars = [start_sidecar(harness, broker, actor, mode="go",
                              env={"ASYA_SOCKET_DIR": harness.socket_dir(actor + "-" + r)})
                for r in ("a", "b")]
    amqp.wait_until(lambda: len(amqp.finished("happy-end", "cc")) >= count, "every message to finish")
    for sidecar in sidecars:
        sidecar.send_signal(signal.SIGTERM)
    assert [s.wait_exit() for s in sidecars] == [0, 0]

    ids = sorted(m["id"] for m in amqp.finished("happy-end", "cc"))
    assert ids == sorted(f"cc-{n}" for n in range(count))
    handled = [line["id"] for s in sidecars for line in message_lines(s)]
    assert sorted(handled) == ids, "each message handled by exactly one sidecar"


def _redeclare_refused(broker, declare):
    """True when the broker refuses `declare(channel)` (PRECONDITION_FAILED: different properties)."""
    import pika
    connection = pika.BlockingConnection(pika.URLParameters(broker.url))
    try:
        declare(connection.channel())
        return False
    except pika.exceptions.ChannelClosedByBroker as exc:
        return exc.reply_code == 406
    finally:
        if connection.is_open:
            connection.close()


# ------------------------------------------------------------ topology

def test_the_charts_topology_is_the_one_the_go_sidecar_routes_through(harness, broker, amqp, topology):
    actor = unique("topo")
    topology.provision(actor)
    assert topology.missing(actor, "happy-end") is None
    # A durable queue asya-<actor> on a durable topic exchange "asya": declaring
    # either with other properties is refused.
    assert _redeclare_refused(broker, lambda ch: ch.queue_declare(queue_name(actor), durable=False))
    assert _redeclare_refused(broker, lambda ch: ch.exchange_declare("asya", exchange_type="direct", durable=True))
    start_runtime(harness, actor, "echo.handle", "list")
    sidecar = start_sidecar(harness, broker, actor, mode="go")
    amqp.wait_for_consumers(actor)
    # Bound with the bare actor name, the key the Go sidecar publishes with.
    amqp.publish_raw(actor, b'{"id": "topo-1", "route": {"actors": ["%s"], "current": 0}, "payload": {"x": 1}}'
                     % actor.encode())
    (done,) = amqp.happy_end("topo-1")
    assert done["route"] == {"actors": [actor], "current": 1}
    sidecar.send_signal(signal.SIGTERM)
    assert sidecar.wait_exit() == 0


def test_the_old_full_name_binding_key_routes_nothing(broker, amqp, topology):
    """This project once bound asya-<actor> with the key asya-<actor>: the Go sidecar
    publishes with <actor>, mandatory=false, so each of its messages was dropped."""
    import pika
    actor = unique("oldkey")
    topology.provision(actor)
    with pytest.raises(pika.exceptions.UnroutableError):
        amqp.publish_raw(actor, b'{"id": "old-1"}', routing_key=queue_name(actor))
    assert amqp.counts(actor) == (0, 0)


def test_the_charts_check_names_an_old_binding_and_apply_adds_the_right_one(broker, amqp, topology):
    import pika
    actor = unique("legacy")
    topology.provision("happy-end", "error-end")
    # What this project's kit and fake sidecar used to make: bound with the full name only.
    connection = pika.BlockingConnection(pika.URLParameters(broker.url))
    try:
        channel = connection.channel()
        channel.queue_declare(queue_name(actor), durable=True)
        channel.queue_bind(queue_name(actor), "asya", routing_key=queue_name(actor))
    finally:
        connection.close()
    assert topology.missing(actor) == (f"the queue {queue_name(actor)} is not bound to asya with routing key "
                                       f"{actor} (messages the sidecar publishes for it would be dropped)")
    topology.provision(actor)
    assert topology.missing(actor) is None
    amqp.publish_raw(actor, b'{"id": "legacy-1"}')  # mandatory: routed now
    assert amqp.counts(actor) == (1, 0)


def test_go_mode_never_creates_its_queue_and_gives_up_on_a_missing_one(harness, broker, amqp, topology):
    actor = unique("noqueue")
    start_runtime(harness, actor, "echo.handle", "list")
    sidecar = start_sidecar(harness, broker, actor, mode="go",
                            env={"ASYA_QUEUE_RETRY_MAX_ATTEMPTS": "3", "ASYA_QUEUE_RETRY_BACKOFF": "200ms"})
    wait_for(lambda: "attempt 1 of 3" in sidecar.log_text(), "the sidecar to find no queue")
    # As with the Go sidecar, the 404 closed the channel: a queue made now comes too late.
    topology.provision(actor)
    assert sidecar.wait_exit() == 4, sidecar.log_text()
    log = sidecar.log_text()
    assert f"queue {queue_name(actor)} does not exist on the broker" in log
    assert "topology.provision job" in log
    assert amqp.counts(actor) == (0, 0), "the sidecar never consumed it"


def test_fake_mode_declares_the_queues_it_uses_on_an_empty_broker(harness, broker):
    actor = unique("selfmade")
    start_runtime(harness, actor, "echo.handle")
    start_sidecar(harness, broker, actor)
    with AmqpQueues(broker.url) as bare:  # no Topology: nothing made by the test
        bare.wait_for_consumers(actor)
        bare.send(actor, "self-1", {"x": 1})
        (done,) = bare.happy_end("self-1")
    assert done["route"] == {"actors": [actor], "current": 1}
