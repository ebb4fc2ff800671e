"""The pipeline, error and crash scenarios again, on SQS.

The same chart, images and values files as on RabbitMQ, with
`sidecar.transport: sqs` and `sidecar.sqs.endpoint` pointing at an SQS server
(moto's, asya_testkit.sqs) on 127.0.0.1, which the hostNetwork pods reach on
the host's loopback. The module has a server, a backend and pods of its own
(SQS_RELEASES), all removed at its end. The queues are created the way
docs/protocol.md tells a user to, before any pod starts: CreateQueue of
asya-<actor> for every actor and end queue (the chart and the sidecar create
none on SQS).
"""

import subprocess

import e2e_session
import pytest
from backends.base import IMAGES, RUNTIME_CONTAINER, SIDECAR_CONTAINER
from backends.podman import podman_env
from releases import CRASH, RAISES, ROUTER, SPLITTER, SQS_RELEASES

from asya_testkit.endqueues import ERROR_END, HAPPY_END
from asya_testkit.sqs import DUMMY_CREDENTIALS, REGION, SqsQueues, SqsServer, sqs_unavailable_reason
from asya_testkit.wait import wait_for

if e2e_session.unavailable_reason() and not e2e_session.failing_instead_of_skipping():
    pytest.skip(e2e_session.unavailable_reason(), allow_module_level=True)


@pytest.fixture(scope="module")
def sqs_server():
    reason = e2e_session.unavailable_reason() or sqs_unavailable_reason()
    if reason:
        if e2e_session.failing_instead_of_skipping():
            pytest.fail(reason + " (CI is set, so this is a failure, not a skip)", pytrace=False)
        pytest.skip(reason)
    if e2e_session.backend_name() != "podman":
        pytest.skip(f"the SQS scenarios run on the podman backend; {e2e_session.backend_name()} has no SQS server")
    (sidecar_image,) = [image for image in IMAGES if "sidecar" in image]
    check = subprocess.run(["podman", "run", "--rm", "--network", "none", "--entrypoint", "python3", sidecar_image,
                            "-c", "import boto3"], env=podman_env(), capture_output=True, text=True, timeout=120)
    if check.returncode != 0:
        pytest.fail(f"{sidecar_image} cannot import boto3 (built from a tree without the SQS transport?); "
                    f"make images rebuilds it:\n{check.stderr}", pytrace=False)
    with SqsServer("e2e-sqs") as server:
        yield server


@pytest.fixture(scope="module")
def queues(sqs_server):
    """The tests' side of SQS; every queue the releases use exists before they start."""
    with SqsQueues(sqs_server.endpoint) as client:
        client.create(*[release.name for release in SQS_RELEASES], HAPPY_END, ERROR_END)
        yield client


@pytest.fixture(scope="module")
def backend(sqs_server, queues, queue_root, e2e_work_dir):
    """The SQS releases as podman pods (named `backend` so that a failure report shows their logs)."""
    files_dir = e2e_work_dir / "backend-sqs"
    files_dir.mkdir()
    instance = e2e_session.backend_class()(queue_root, files_dir,
                                           sqs=(sqs_server.endpoint, REGION, DUMMY_CREDENTIALS))
    with e2e_session.deployed(instance, SQS_RELEASES):
        yield instance


def outcomes(log, message_id):
    return [line.split("outcome=")[1].split()[0] for line in log.splitlines()
            if f"id={message_id} " in line and "outcome=" in line]


@pytest.mark.releases(ROUTER, SPLITTER)
def test_two_releases_route_dynamically_then_fan_out_to_happy_end_on_sqs(backend, queues):
    backend.wait_ready(ROUTER)
    backend.wait_ready(SPLITTER)
    queues.send(ROUTER, "sqs-pipe-1", {"text": "alpha beta gamma"})
    queues.send(ROUTER, "sqs-solo-1", {"text": "alone"})

    fanned_out = queues.happy_end("sqs-pipe-1", count=3)
    (unsplit,) = queues.happy_end("sqs-solo-1")

    assert [m["id"] for m in fanned_out] == ["sqs-pipe-1", "sqs-pipe-1-1", "sqs-pipe-1-2"]
    assert [m.get("parent_id") for m in fanned_out] == [None, "sqs-pipe-1", "sqs-pipe-1"]
    assert [m["payload"] for m in fanned_out] == [
        {"word": "alpha", "position": 0, "of": 3},
        {"word": "beta", "position": 1, "of": 3},
        {"word": "gamma", "position": 2, "of": 3},
    ]
    assert all(m["route"] == {"actors": [ROUTER, SPLITTER], "current": 2} for m in fanned_out)
    assert unsplit["route"] == {"actors": [ROUTER], "current": 1}
    # The chart's sqs.endpoint reached the sidecar, and with no visibility
    # timeout set it uses the Go sidecar's default, twice runtimeTimeout (300 s).
    started = [line for line in backend.logs(ROUTER, SIDECAR_CONTAINER).splitlines() if "starting:" in line]
    assert f"sqs={queues.client.meta.endpoint_url} " in started[0], started
    assert "visibility_timeout=600s" in started[0], started
    # Each input was deleted once its results were sent.
    queues.wait_until(lambda: queues.counts(ROUTER) == (0, 0) and queues.counts(SPLITTER) == (0, 0),
                      "the router's and the splitter's queues to be empty")


@pytest.mark.releases(RAISES)
def test_handler_exception_sends_the_message_to_error_end_on_sqs(backend, queues):
    backend.wait_ready(RAISES)
    sent = queues.send(RAISES, "sqs-bad-1", {"price": 3})
    queues.send(RAISES, "sqs-good-1", {"amount": 5})

    (record,) = queues.error_end("sqs-bad-1")
    (good,) = queues.happy_end("sqs-good-1")

    assert record["id"] == "sqs-bad-1"
    assert record["route"] == {"actors": [RAISES], "current": 0}
    assert record["payload"]["error"] == "processing_error"
    assert record["payload"]["details"]["type"] == "ValueError"
    assert record["payload"]["original_payload"] == sent["payload"]
    assert good["payload"] == {"amount": 5, "valid": True}
    queues.wait_until(lambda: queues.counts(RAISES) == (0, 0), "both messages to be deleted")


@pytest.mark.releases(CRASH)
def test_runtime_crash_mid_message_goes_to_error_end_and_the_next_message_succeeds_on_sqs(backend, queues):
    """The Go sidecar's rule, on SQS as on RabbitMQ: the message whose runtime died in the call
    is sent to error-end and deleted, never retried; once the runtime is back, messages succeed."""
    if backend.name != "podman":
        pytest.skip("drives containers with podman start")
    backend.wait_ready(CRASH)
    queues.send(CRASH, "sqs-crash-1", {"label": "sqs-crash-1"})

    runtime = backend.wait_for_exit(CRASH, RUNTIME_CONTAINER)
    assert runtime.exit_code == 17, runtime.log
    (record,) = queues.error_end("sqs-crash-1")
    assert record["payload"]["error"].startswith("Runtime error: runtime closed the connection"), record
    assert record["payload"]["original_payload"] == {"label": "sqs-crash-1"}

    backend.start_container(CRASH, RUNTIME_CONTAINER)
    # The killed runtime's socket file is still there: wait for the new runtime's own ready line.
    wait_for(lambda: backend.logs(CRASH, RUNTIME_CONTAINER).count(" asya-runtime: ready:") >= 2,
             "the restarted runtime to be ready", 120, interval=0.2)
    queues.send(CRASH, "sqs-crash-after-1", {"label": "sqs-crash-1"})  # its marker exists: no crash
    (done,) = queues.happy_end("sqs-crash-after-1")

    assert done["payload"] == {"label": "sqs-crash-1", "survived": True}
    assert outcomes(backend.logs(CRASH, SIDECAR_CONTAINER), "sqs-crash-1") == ["error"]
    queues.wait_until(lambda: queues.counts(CRASH) == (0, 0), "both messages to be deleted")
    assert queues.finished(ERROR_END, "sqs-crash-1") == [record], "failed once, never redelivered"
