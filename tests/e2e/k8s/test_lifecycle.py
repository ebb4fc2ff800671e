"""The kubelet's side of an actor (issue 16, scenarios 4, 5, 6 and 8).

What only a real kubelet shows: the start and stop order of a native sidecar
(asya-runtime as a restartable init container, `nativeSidecar: auto` on
1.37), the chart's exec probes run by the kubelet during a long call, the
kubelet restarting a runtime that killed itself, and a rolling update by
`helm upgrade` while messages flow. Each test has a namespace and releases of
its own; the broker is the session's.
"""

import re
import threading

from asya_testkit.process import ChildProcess
from asya_testkit.wait import wait_for

from .actors import (
    RUNTIME,
    SIDECAR,
    Releases,
    actor_pods,
    container_status,
    first_line_time,
    one_pod,
    parse_time,
    pod_named,
    timestamped_lines,
)

CLASS_INIT = "k8s-class-init"
SLOW = "k8s-slow"
LONG_CALL = "k8s-long-call"
CRASH_GO = "k8s-crash-go"
CRASH_REQUEUE = "k8s-crash-requeue"
ROLLING = "k8s-rolling"
ROLLING_WINDOW = 4  # messages in flight while the rollout runs
TIMEOUT = 300.0


def runtime_log(kube, namespace, pod_name, previous=False):
    args = ["logs", "--timestamps", pod_name, "-n", namespace, "-c", RUNTIME]
    return kube.kubectl(*args, *(["--previous"] if previous else [])).stdout


def test_native_sidecar_starts_only_after_the_runtime_has_loaded_its_class_handler(kube, namespace, k8s_queues,
                                                                                  release_values, broker_values):
    releases = Releases(kube, namespace, release_values, broker_values)
    releases.install(CLASS_INIT, "class-slow-init.yaml")
    pod = one_pod(kube, namespace, CLASS_INIT)

    init_containers = {c["name"]: c for c in pod["spec"].get("initContainers", [])}
    assert init_containers.get(RUNTIME, {}).get("restartPolicy") == "Always", \
        "nativeSidecar: auto on Kubernetes 1.37 makes asya-runtime a restartable init container"
    name = pod["metadata"]["name"]
    runtime = runtime_log(kube, namespace, name)
    sidecar = kube.kubectl("logs", "--timestamps", name, "-n", namespace, "-c", SIDECAR).stdout
    loaded = first_line_time(runtime, "model: loaded")
    ready = first_line_time(runtime, "ready: ")
    assert loaded and ready and loaded <= ready, runtime
    sidecar_lines = timestamped_lines(sidecar)
    assert sidecar_lines, "the sidecar has logged nothing"
    sidecar_started = parse_time(container_status(pod, SIDECAR)["state"]["running"]["startedAt"])
    # startedAt has whole seconds; the log lines have the kubelet's nanoseconds.
    assert sidecar_started >= ready.replace(microsecond=0), (sidecar_started, ready)
    assert sidecar_lines[0][0] > ready, f"the sidecar logged before the runtime was ready:\n{runtime}\n{sidecar}"

    k8s_queues.send(CLASS_INIT, "k8s-load-1", {"n": 21})
    (done,) = k8s_queues.happy_end("k8s-load-1")
    assert done["payload"] == {"n": 21, "doubled": 42, "loads": 1}


def test_deleting_the_pod_stops_the_sidecar_before_the_runtime_and_the_message_in_flight_completes(
        kube, namespace, k8s_queues, release_values, broker_values, tmp_path):
    releases = Releases(kube, namespace, release_values, broker_values)
    releases.install(SLOW, "slow-handler.yaml")
    pod = one_pod(kube, namespace, SLOW)
    name = pod["metadata"]["name"]
    k8s_queues.wait_for_consumers(SLOW)
    # Followed from before the deletion: a deleted pod's logs go with it.
    followers = {
        container: ChildProcess([kube.kubectl_path, "--kubeconfig", kube.kubeconfig, "logs", "--follow",
                                 "--timestamps", name, "-n", namespace, "-c", container],
                                kube.env, tmp_path / f"{container}.log", label=f"kubectl logs {container}").start()
        for container in (RUNTIME, SIDECAR)
    }
    try:
        k8s_queues.send(SLOW, "k8s-inflight-1", {"label": "k8s-inflight-1", "seconds": 5})
        wait_for(lambda: "slow handler: started k8s-inflight-1" in followers[RUNTIME].log_text(),
                 "the handler to start on k8s-inflight-1", TIMEOUT, interval=0.2)
        kube.kubectl("delete", "pod", name, "-n", namespace, "--wait=false")

        (done,) = k8s_queues.happy_end("k8s-inflight-1")
        for follower in followers.values():
            follower.wait_exit(TIMEOUT)
    finally:
        for follower in followers.values():
            follower.close()

    assert done["payload"] == {"label": "k8s-inflight-1", "slept_seconds": 5}
    sidecar = followers[SIDECAR].log_text()
    runtime = followers[RUNTIME].log_text()
    sidecar_last = timestamped_lines(sidecar)[-1]
    runtime_stopped = first_line_time(runtime, "stopped: socket")
    assert "stopping after" in sidecar_last[1], sidecar
    assert runtime_stopped is not None, runtime
    assert sidecar_last[0] < runtime_stopped, \
        f"the runtime stopped before the sidecar had exited:\n{runtime}\n{sidecar}"
    # The Deployment's next pod consumes the queue; nothing was left behind or repeated.
    k8s_queues.wait_until(lambda: k8s_queues.counts(SLOW) == (0, 1), "the next pod to consume, the queue empty",
                          TIMEOUT)
    assert k8s_queues.finished("happy-end", "k8s-inflight-1") == [done]


def kubelet_probe_metrics(kube, node_name):
    """The kubelet's /metrics/probes, through the apiserver's node proxy.

    The apiserver refuses to proxy to a loopback address, which is where the
    kubelet of the cluster built here listens: then it is asked directly on
    127.0.0.1, with the admin's client certificate (the kubelet authenticates
    it against the cluster's CA and asks the apiserver to authorize it).
    """
    path = "/metrics/probes"
    answer = kube.kubectl("get", "--raw", f"/api/v1/nodes/{node_name}/proxy{path}", check=False)
    if answer.returncode == 0:
        return answer.stdout
    if "address not allowed" not in answer.stderr:
        raise AssertionError(f"cannot read the kubelet's probe metrics: {answer.stderr}")
    port = kube.json("get", "node", node_name)["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"]
    return kube.kubectl("get", "--raw", path, "--server", f"https://127.0.0.1:{port}").stdout


def liveness_successes(kube, pod):
    """The kubelet's count of successful liveness probes of the pod's runtime container."""
    metrics = kubelet_probe_metrics(kube, pod["spec"]["nodeName"])
    labels = (f'container="{RUNTIME}"', f'pod="{pod["metadata"]["name"]}"', 'probe_type="Liveness"',
              'result="successful"')
    total = 0
    for line in metrics.splitlines():
        if line.startswith("prober_probe_total{") and all(label in line for label in labels):
            total += int(float(line.rsplit(" ", 1)[1]))
    return total


def test_the_kubelets_probes_leave_a_call_longer_than_the_liveness_budget_alone(kube, namespace, k8s_queues,
                                                                              release_values, broker_values):
    releases = Releases(kube, namespace, release_values, broker_values)
    releases.install(LONG_CALL, "long-call.yaml", "k8s-probes.yaml")
    pod = one_pod(kube, namespace, LONG_CALL)
    name = pod["metadata"]["name"]
    liveness = next(c for c in pod["spec"].get("initContainers", []) + pod["spec"]["containers"]
                    if c["name"] == RUNTIME)["livenessProbe"]
    k8s_queues.wait_for_consumers(LONG_CALL)
    k8s_queues.send(LONG_CALL, "k8s-long-1", {"label": "k8s-long-1"})
    wait_for(lambda: "gated handler: started k8s-long-1" in runtime_log(kube, namespace, name),
             "the handler to start on k8s-long-1", TIMEOUT, interval=0.5)
    before = liveness_successes(kube, pod)

    # Every probe that passes while the call runs is one the kubelet ran; past
    # twice failureThreshold of them the call has outlived the liveness budget.
    not_ready = []

    def probed_enough():
        current = pod_named(kube, namespace, name)
        ready = {c["type"]: c["status"] for c in current["status"]["conditions"]}.get("Ready")
        if ready != "True":
            not_ready.append(current["status"])
        return liveness_successes(kube, pod) - before > 2 * liveness["failureThreshold"]

    wait_for(probed_enough, "the kubelet to run the liveness probe past its budget during the call", TIMEOUT,
             interval=1.0)
    assert k8s_queues.finished("happy-end", "k8s-long-1") == [], "the call was still running"
    kube.exec(namespace, name, RUNTIME, ["python3", "-c", "open('/tmp/gate-k8s-long-1', 'w').close()"])
    (done,) = k8s_queues.happy_end("k8s-long-1")

    assert done["payload"] == {"label": "k8s-long-1", "gate_opened": True}
    assert not_ready == [], "the pod left the ready set during the call"
    final = pod_named(kube, namespace, name)
    assert container_status(final, RUNTIME)["restartCount"] == 0
    assert container_status(final, SIDECAR)["restartCount"] == 0


def wait_restarted_and_ready(kube, namespace, name):
    def restarted():
        status = container_status(pod_named(kube, namespace, name), RUNTIME)
        return status if status["restartCount"] >= 1 and status.get("ready") and "running" in status["state"] \
            else None
    return wait_for(restarted, f"the kubelet to restart {RUNTIME} of {name} and find it ready", TIMEOUT,
                    interval=0.5)


def test_a_runtime_that_kills_itself_is_restarted_and_the_go_sidecar_fails_its_message(kube, namespace,
                                                                                      k8s_queues,
                                                                                      release_values, broker_values):
    releases = Releases(kube, namespace, release_values, broker_values)
    releases.install(CRASH_GO, "runtime-crash.yaml")
    name = one_pod(kube, namespace, CRASH_GO)["metadata"]["name"]
    k8s_queues.wait_for_consumers(CRASH_GO)

    k8s_queues.send(CRASH_GO, "k8s-crash-go-1", {"label": "k8s-crash-go"})
    (record,) = k8s_queues.error_end("k8s-crash-go-1")
    status = wait_restarted_and_ready(kube, namespace, name)
    # The handler's marker in /tmp (an emptyDir, kept across the restart)
    # makes the same label succeed now.
    k8s_queues.send(CRASH_GO, "k8s-crash-go-2", {"label": "k8s-crash-go"})
    (done,) = k8s_queues.happy_end("k8s-crash-go-2")

    assert status["lastState"]["terminated"]["exitCode"] == 17
    # The Go sidecar's record of a connection failure: its error text, no
    # handler details (the fake sidecar says "runtime closed the connection ...").
    assert re.search(r"connection|EOF", record["payload"]["error"]), record
    assert "details" not in record["payload"], "the crash, not a handler error"
    assert record["payload"]["original_payload"] == {"label": "k8s-crash-go"}
    assert done["payload"] == {"label": "k8s-crash-go", "survived": True}
    assert k8s_queues.finished("happy-end", "k8s-crash-go-1") == [], "the Go sidecar does not retry"
    assert k8s_queues.finished("error-end", "k8s-crash-go-1") == [record]
    assert container_status(pod_named(kube, namespace, name), SIDECAR)["restartCount"] == 0


def test_a_runtime_that_kills_itself_is_restarted_and_the_fake_flavour_redelivers_its_message(
        kube, namespace, k8s_broker, k8s_queues, release_values, broker_values):
    releases = Releases(kube, namespace, release_values, broker_values)
    # The fake flavour takes its transport and broker from the sidecar's env.
    releases.install(CRASH_REQUEUE, "runtime-crash.yaml", "k8s-crash-requeue.yaml", set_values={"sidecar.env": [
        {"name": "ASYA_TRANSPORT", "value": "rabbitmq"},
        {"name": "ASYA_SIDECAR_MODE", "value": "fake"},
        {"name": "ASYA_RABBITMQ_URL", "value": k8s_broker.url},
    ]})
    name = one_pod(kube, namespace, CRASH_REQUEUE)["metadata"]["name"]
    k8s_queues.wait_for_consumers(CRASH_REQUEUE)

    k8s_queues.send(CRASH_REQUEUE, "k8s-crash-rq-1", {"label": "k8s-crash-rq"})
    (done,) = k8s_queues.happy_end("k8s-crash-rq-1")
    status = container_status(pod_named(kube, namespace, name), RUNTIME)

    assert done["payload"] == {"label": "k8s-crash-rq", "survived": True}
    assert status["restartCount"] == 1 and status["lastState"]["terminated"]["exitCode"] == 17
    k8s_queues.wait_until(lambda: k8s_queues.counts(CRASH_REQUEUE) == (0, 1),
                          "the redelivered message acked, the sidecar still consuming", TIMEOUT)
    assert k8s_queues.finished("happy-end", "k8s-crash-rq-1") == [done], "delivered downstream exactly once"
    assert k8s_queues.finished("error-end", "k8s-crash-rq-1") == []


def test_helm_upgrade_to_a_new_handler_rolls_the_pods_while_messages_flow_losing_and_repeating_none(
        kube, namespace, k8s_queues, release_values, broker_values):
    releases = Releases(kube, namespace, release_values, broker_values)
    releases.install(ROLLING, "pipeline-echo.yaml")
    (old_pod,) = actor_pods(kube, namespace, ROLLING)
    k8s_queues.wait_for_consumers(ROLLING)
    sent = []

    def arrived():
        return k8s_queues.finished("happy-end", "k8s-roll")

    def keep_flowing():
        """Publish until ROLLING_WINDOW messages are on their way; return what has arrived."""
        done = arrived()
        while len(sent) - len(done) < ROLLING_WINDOW:
            number = len(sent)
            k8s_queues.send(ROLLING, f"k8s-roll-{number:04d}", {"n": number})
            sent.append(f"k8s-roll-{number:04d}")
        return done

    outcome = {}

    def run_upgrade():
        try:
            releases.upgrade(ROLLING, "k8s-upgrade-v2.yaml")
        except BaseException as exc:  # re-raised by the test's thread
            outcome["error"] = exc

    upgrading = threading.Thread(target=run_upgrade, name="helm upgrade")
    upgrading.start()
    try:
        def rolled_over():
            done = keep_flowing()
            if upgrading.is_alive():
                return False
            if "error" in outcome:
                raise outcome["error"]
            pods = actor_pods(kube, namespace, ROLLING)
            old_gone = all(pod["metadata"]["uid"] != old_pod["metadata"]["uid"] for pod in pods)
            return old_gone and any("doubled" in message["payload"] for message in done)

        k8s_queues.wait_until(rolled_over, "the rollout to finish while messages flow", TIMEOUT)
    finally:
        upgrading.join(TIMEOUT)
    done = k8s_queues.happy_end("k8s-roll", count=len(sent), timeout=TIMEOUT)

    assert sorted(message["id"] for message in done) == sent, "each message in happy-end exactly once"
    by_old = [m for m in done if "doubled" not in m["payload"]]
    by_new = [m for m in done if "doubled" in m["payload"]]
    assert by_old and by_new, "messages flowed before and after the rollout"
    assert all(m["payload"]["doubled"] == 2 * m["payload"]["n"] for m in by_new)
    assert k8s_queues.finished("error-end", "k8s-roll") == []
    (new_pod,) = actor_pods(kube, namespace, ROLLING)
    assert new_pod["metadata"]["uid"] != old_pod["metadata"]["uid"]
