"""Messages through actors the kubelet runs (issue 16, scenarios 3 and 7).

Each test installs its release with `helm install --wait` into a namespace of
its own, publishes to the first actor's queue on the session's RabbitMQ and
waits for the results in happy-end or error-end. The sidecar is the fake one
standing in for the asya Go sidecar (list dialect, its error-end record).
"""

from .actors import RUNTIME, SIDECAR, Releases, actor_pods, container_status

PIPE_RELEASE = "k8s-pipeline"
ECHO = "k8s-pipe-echo"
VALIDATE = "k8s-pipe-validate"
DEADLINE = "k8s-handler-timeout"


def test_a_two_actor_pipeline_reaches_happy_end_and_a_failing_message_error_end(kube, namespace, k8s_queues,
                                                                              release_values, broker_values):
    releases = Releases(kube, namespace, release_values, broker_values)
    releases.install(PIPE_RELEASE, "k8s-pipeline.yaml")
    for actor in (ECHO, VALIDATE):
        k8s_queues.wait_for_consumers(actor)

    k8s_queues.send(ECHO, "k8s-pipe-ok", {"amount": 7, "note": "kept"}, actors=[ECHO, VALIDATE])
    k8s_queues.send(ECHO, "k8s-pipe-bad", {"note": "no amount"}, actors=[ECHO, VALIDATE])

    (done,) = k8s_queues.happy_end("k8s-pipe-ok")
    (failed,) = k8s_queues.error_end("k8s-pipe-bad")

    assert done["payload"] == {"amount": 7, "valid": True}
    assert done["route"] == {"actors": [ECHO, VALIDATE], "current": 2}
    # The Go sidecar's record: the route as the failing actor saw it, the
    # runtime's error and the payload that actor got (the echo's output).
    assert failed["route"] == {"actors": [ECHO, VALIDATE], "current": 1}
    assert failed["payload"]["error"] == "processing_error"
    assert failed["payload"]["details"]["type"] == "ValueError"
    assert "numeric 'amount'" in failed["payload"]["details"]["message"]
    assert failed["payload"]["original_payload"] == {"note": "no amount"}
    for actor in (ECHO, VALIDATE):
        (pod,) = actor_pods(kube, namespace, actor)
        assert [container_status(pod, name)["restartCount"] for name in (RUNTIME, SIDECAR)] == [0, 0]


def test_a_handler_past_handler_timeout_goes_to_error_end_and_the_pod_keeps_serving(kube, namespace, k8s_queues,
                                                                                 release_values, broker_values):
    releases = Releases(kube, namespace, release_values, broker_values)
    releases.install(DEADLINE, "handler-timeout.yaml")
    k8s_queues.wait_for_consumers(DEADLINE)

    k8s_queues.send(DEADLINE, "k8s-hang-1", {"label": "k8s-hang-1", "seconds": 120})
    k8s_queues.send(DEADLINE, "k8s-after-1", {"label": "k8s-after-1", "seconds": 0})
    (record,) = k8s_queues.error_end("k8s-hang-1")
    (done,) = k8s_queues.happy_end("k8s-after-1")

    assert record["payload"]["error"] == "processing_error"
    assert record["payload"]["details"]["type"] == "HandlerTimeout"
    assert record["payload"]["original_payload"] == {"label": "k8s-hang-1", "seconds": 120}
    assert done["payload"] == {"label": "k8s-after-1", "slept_seconds": 0}
    (pod,) = actor_pods(kube, namespace, DEADLINE)
    assert [container_status(pod, name)["restartCount"] for name in (RUNTIME, SIDECAR)] == [0, 0], \
        "the deadline is the runtime's: neither container restarted"
    assert all(condition["status"] == "True" for condition in pod["status"]["conditions"]
               if condition["type"] in ("Ready", "ContainersReady"))
