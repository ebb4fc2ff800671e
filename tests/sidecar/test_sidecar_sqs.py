"""The fake sidecar on SQS (moto's server on 127.0.0.1), driving the real runtime as a process.

The server is started once for this module and stopped at its end; its
state lives in its process only. Each test creates its queues the way the
docs tell a user to (CreateQueue of asya-<actor>, asya-happy-end,
asya-error-end: the sidecar creates none) and uses actor names of its own;
the end queues are shared and every message is looked up by id.
"""

import os
import secrets
import signal
import subprocess
import sys
import zipfile

import pytest
from sidecar_testkit import SIDECAR_DIR, message_lines

from asya_testkit.paths import REPO_ROOT
from asya_testkit.sqs import SqsQueues, SqsServer, queue_name, sqs_unavailable_reason
from asya_testkit.wait import wait_for

pytestmark = pytest.mark.timeout(180)

ENDS = ("happy-end", "error-end")


@pytest.fixture(scope="module")
def server():
    reason = sqs_unavailable_reason()
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"{reason} (CI is set, so this is a failure, not a skip)", pytrace=False)
        pytest.skip(reason)
    with SqsServer("sidecar-tests") as instance:
        yield instance


@pytest.fixture
def sqs(server):
    with SqsQueues(server.endpoint) as client:
        client.create(*ENDS)
        yield client


def unique(name):
    return f"{name}-{secrets.token_hex(3)}"


def start_sidecar(harness, server, actor, *args, mode="go", env=None, python=None):
    settings = dict(server.sidecar_env(), ASYA_TRANSPORT="sqs", ASYA_SIDECAR_MODE=mode)
    if mode == "go":
        settings.update({"ASYA_RUNTIME_TIMEOUT": "30s", "ASYA_RUNTIME_READY_TIMEOUT": "30s"})
    settings.update(env or {})
    return harness.start_sidecar(actor, *args, env=settings, python=python)


def stop(sidecar):
    sidecar.send_signal(signal.SIGTERM)
    assert sidecar.wait_exit() == 0, sidecar.log_text()


def test_go_mode_pipeline_and_fan_out_through_sqs(harness, server, sqs):
    first, second = unique("first"), unique("second")
    sqs.create(first, second)
    harness.start_runtime(first, "fan_out.handle", reply_format="list")
    harness.start_runtime(second, "echo.handle", reply_format="list")
    sqs.send(first, "sq-1", {"items": [1, 2, 3]}, actors=[first, second])

    sidecars = [start_sidecar(harness, server, first), start_sidecar(harness, server, second)]
    done = sqs.happy_end("sq-1", count=3)

    assert [m["id"] for m in done] == ["sq-1", "sq-1-1", "sq-1-2"]
    assert [m.get("parent_id") for m in done] == [None, "sq-1", "sq-1"]
    assert [m["payload"] for m in done] == [{"item": 1}, {"item": 2}, {"item": 3}]
    assert all(m["route"] == {"actors": [first, second], "current": 2} for m in done)
    for sidecar in sidecars:
        stop(sidecar)
    # Deleted after the results were sent: nothing visible, nothing in flight.
    assert sqs.counts(first) == (0, 0) and sqs.counts(second) == (0, 0)
    # The Go sidecar's default visibility timeout: twice ASYA_RUNTIME_TIMEOUT.
    assert "visibility_timeout=60s" in sidecars[0].log_text()


def test_fake_mode_pipeline_through_sqs(harness, server, sqs):
    actor, tail = unique("split"), unique("tail")
    sqs.create(actor, tail)
    harness.start_runtime(actor, "fan_out.handle")
    harness.start_runtime(tail, "echo.handle")
    sqs.send(actor, "sqf-1", {"items": ["a", "b"]}, actors=[actor, tail], headers={"trace": "t"})

    start_sidecar(harness, server, actor, mode="fake")
    start_sidecar(harness, server, tail, mode="fake")
    done = sqs.happy_end("sqf-1", count=2)

    assert [m["id"] for m in done] == ["sqf-1", "sqf-1-1"]
    assert [m["payload"] for m in done] == [{"item": "a"}, {"item": "b"}]
    assert all(m["route"] == {"actors": [actor, tail], "current": 2} for m in done)


def test_go_mode_error_gets_the_go_sidecars_error_end_record(harness, server, sqs):
    actor = unique("raises")
    sqs.create(actor)
    harness.start_runtime(actor, "raises.handle", reply_format="list")
    sqs.send(actor, "sqerr-1", {"item": "x"})

    sidecar = start_sidecar(harness, server, actor)
    (record,) = sqs.error_end("sqerr-1")

    assert record["id"] == "sqerr-1"
    assert record["route"] == {"actors": [actor], "current": 0}
    assert record["payload"]["error"] == "processing_error"
    assert record["payload"]["details"]["type"] == "InventoryError"
    assert record["payload"]["original_payload"] == {"item": "x"}
    wait_for(lambda: message_lines(sidecar), "the sidecar's log line")
    assert [line["outcome"] for line in message_lines(sidecar)] == ["error"]
    sqs.wait_until(lambda: sqs.counts(actor) == (0, 0), "the failed message to be deleted")


def test_fake_mode_runtime_crash_makes_the_message_visible_again_and_it_completes_once(harness, server, sqs):
    actor = unique("crashy")
    sqs.create(actor)
    runtime = harness.start_runtime(actor, "crash_once.handle")
    marker, calls = harness.path("crashed"), harness.path("calls")
    sqs.send(actor, "sqcrash-1", {"marker": marker, "calls": calls})

    # The visibility timeout (10 min) is far beyond the test: only
    # ChangeMessageVisibility 0 can bring the message back in time.
    sidecar = start_sidecar(harness, server, actor, mode="fake", env={"ASYA_SQS_VISIBILITY_TIMEOUT": "600"})
    assert runtime.wait_exit() == 17, runtime.log_text()
    wait_for(lambda: "outcome=requeued" in sidecar.log_text(), "the sidecar to give the message back")
    harness.start_runtime(actor, "crash_once.handle")

    (done,) = sqs.happy_end("sqcrash-1")
    assert done["payload"]["marker"] == marker
    with open(calls) as handle:
        assert handle.read().count("call") == 2, "one crashed call, one that completed"
    stop(sidecar)
    assert sqs.finished("happy-end", "sqcrash-1") == [done]
    assert sqs.finished("error-end", "sqcrash-1") == []
    assert sqs.counts(actor) == (0, 0)


def test_go_mode_fails_a_message_whose_runtime_crashed_and_deletes_it(harness, server, sqs):
    actor = unique("gocrash")
    sqs.create(actor)
    runtime = harness.start_runtime(actor, "crash_once.handle", reply_format="list")
    marker, calls = harness.path("crashed"), harness.path("calls")
    sqs.send(actor, "sqgocrash-1", {"marker": marker, "calls": calls})

    sidecar = start_sidecar(harness, server, actor)
    assert runtime.wait_exit() == 17, runtime.log_text()
    (record,) = sqs.error_end("sqgocrash-1")

    # The Go sidecar's rule on every transport: error-end, deleted, never redelivered.
    assert record["payload"]["error"].startswith("Runtime error: runtime closed the connection"), record
    assert record["payload"]["original_payload"] == {"marker": marker, "calls": calls}
    sqs.wait_until(lambda: sqs.counts(actor) == (0, 0), "the failed message to be deleted")
    stop(sidecar)
    assert [line["outcome"] for line in message_lines(sidecar)] == ["error"]
    with open(calls) as handle:
        assert handle.read().count("call") == 1, "never called again"


def test_go_mode_runtime_timeout_fails_the_message_then_exits_before_deleting_it(harness, server, sqs):
    actor = unique("stuck")
    sqs.create(actor)
    harness.start_runtime(actor, "gated.handle", reply_format="list")
    started, gate = harness.path("started"), harness.path("gate")
    sqs.send(actor, "sqstuck-1", {"started": started, "gate": gate})
    # The visibility timeout is then the Go sidecar's default, twice this: 2 s.
    timeout = {"ASYA_RUNTIME_TIMEOUT": "1s"}

    first = start_sidecar(harness, server, actor, env=timeout)
    assert first.wait_exit() == 1, first.log_text()
    (record,) = sqs.error_end("sqstuck-1")
    assert record["payload"]["error"] == "Runtime timeout exceeded after 1s"
    # Not deleted: visible again once its visibility timeout ends.
    sqs.wait_until(lambda: sqs.counts(actor) == (1, 0), "sqstuck-1 to be visible again")

    # The runtime is still in the first call: the restarted sidecar's call times out too.
    second = start_sidecar(harness, server, actor, env=timeout)
    assert second.wait_exit() == 1, second.log_text()
    records = sqs.error_end("sqstuck-1", count=2)
    assert records[0] == records[1], "two identical error-end records"
    open(gate, "w").close()


def test_sidecar_sigkill_mid_message_is_redelivered_after_the_visibility_timeout(harness, server, sqs):
    actor = unique("gated")
    sqs.create(actor)
    harness.start_runtime(actor, "gated.handle", reply_format="list")
    started, gate = harness.path("started"), harness.path("gate")
    sqs.send(actor, "sqkill-1", {"started": started, "gate": gate})
    # Long enough for the check below on a busy machine, short for the test.
    visibility = {"ASYA_SQS_VISIBILITY_TIMEOUT": "10"}

    doomed = start_sidecar(harness, server, actor, env=visibility)
    wait_for(lambda: os.path.exists(started), "the handler to start")
    assert sqs.counts(actor) == (0, 1), "received, invisible, not deleted"
    doomed.send_signal(signal.SIGKILL)
    doomed.wait_exit()
    sqs.wait_until(lambda: sqs.counts(actor) == (1, 0), "the message to become visible again")
    os.unlink(started)
    open(gate, "w").close()  # the orphaned call ends; its reply goes nowhere

    survivor = start_sidecar(harness, server, actor, env=visibility)
    (done,) = sqs.happy_end("sqkill-1")

    assert done["payload"]["gate"] == gate
    assert os.path.exists(started), "the survivor ran the handler again"
    stop(survivor)
    assert sqs.finished("happy-end", "sqkill-1") == [done], "delivered once"
    assert sqs.counts(actor) == (0, 0)


def test_a_missing_queue_stops_the_sidecar_with_the_queues_name(harness, server, sqs):
    actor = unique("nowhere")
    harness.start_runtime(actor, "echo.handle", reply_format="list")

    sidecar = start_sidecar(harness, server, actor, env={"ASYA_QUEUE_RETRY_MAX_ATTEMPTS": "2",
                                                         "ASYA_QUEUE_RETRY_BACKOFF": "100ms"})

    assert sidecar.wait_exit() == 4, sidecar.log_text()
    log = sidecar.log_text()
    assert f"queue {queue_name(actor)}: cannot resolve its URL" in log, log
    assert f"SQS queue {queue_name(actor)} cannot be resolved at {server.endpoint} after 2 attempt(s)" in log
    assert not sqs.exists(actor), "the sidecar creates no queue"


def test_go_mode_on_sqs_runs_on_python_37_with_the_images_wheels(harness, server, sqs, python37):
    # The pinned, sha256-checked wheels the image unpacks, unpacked the same way.
    wheels, vendor = harness.path("wheels"), harness.path("vendor")
    subprocess.run([sys.executable, str(REPO_ROOT / "tools" / "fetch_wheels.py"), wheels],
                   check=True, stdout=subprocess.DEVNULL)
    for name in os.listdir(wheels):
        with zipfile.ZipFile(os.path.join(wheels, name)) as wheel:
            wheel.extractall(vendor)
    actor = unique("py37")
    sqs.create(actor)
    harness.start_runtime(actor, "fan_out.handle", reply_format="list", python=python37)
    sqs.send(actor, "sq37-1", {"items": ["a", "b"]})

    sidecar = start_sidecar(harness, server, actor, python=python37,
                            env={"PYTHONPATH": os.pathsep.join([SIDECAR_DIR, vendor])})
    done = sqs.happy_end("sq37-1", count=2)

    assert [m["id"] for m in done] == ["sq37-1", "sq37-1-1"]
    stop(sidecar)

