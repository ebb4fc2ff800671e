"""KEDA wakes an actor from zero and puts it back (issue 16, scenario 9).

KEDA's operator, built from its Go module by tools/keda/build.sh, runs as a
host process against the cluster (keda.KedaOperator, started and stopped by
the fixture). The release has `autoscaling.keda.enabled` with
`minReplicaCount: 0`; its ScaledObject's RabbitMQ trigger reads the actor's
queue through a TriggerAuthentication whose `host` comes from a Secret (the
broker's AMQP URL), both made by the test as a user would.

Only 0 <-> 1: the operator scales between zero and one itself; beyond one
the HPA it creates asks KEDA's metrics API server through a Service, which
this loopback-only cluster does not route (docs/e2e.md).
"""

import os
import time

import pytest

from . import keda
from .actors import RUNTIME, SIDECAR, Releases, actor_pods, container_status

ACTOR = "k8s-keda"
AUTH = "k8s-keda-broker"  # named in tests/e2e/values/k8s-keda.yaml
TIMEOUT = 300.0


@pytest.fixture
def keda_operator(k8s_cluster, kube, namespace, tmp_path):
    if k8s_cluster.name != "local":
        pytest.skip("KEDA runs here as a host process next to the cluster built here; "
                    "on another cluster install KEDA with its own chart")
    reason = keda.unavailable_reason()
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"{reason} (CI is set, so this is a failure, not a skip)", pytrace=False)
        pytest.skip(reason)
    kubectl = [kube.kubectl_path, "--kubeconfig", kube.kubeconfig]
    with keda.KedaOperator(k8s_cluster.kubeconfig, kubectl, namespace, tmp_path / "keda") as operator:
        yield operator


def broker_authentication(url):
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": AUTH}, "stringData": {"host": url}}
    authentication = {
        "apiVersion": "keda.sh/v1alpha1", "kind": "TriggerAuthentication", "metadata": {"name": AUTH},
        "spec": {"secretTargetRef": [{"parameter": "host", "name": AUTH, "key": "host"}]},
    }
    return [secret, authentication]


def replicas(kube, namespace, deployment):
    return kube.json("get", "deployment", deployment, "-n", namespace)["spec"].get("replicas")


def test_keda_wakes_an_actor_from_zero_for_a_message_and_scales_it_back_to_zero(
        kube, namespace, keda_operator, k8s_broker, k8s_queues, release_values, broker_values, record_figure):
    releases = Releases(kube, namespace, release_values, broker_values)
    kube.apply(broker_authentication(k8s_broker.url), namespace)
    # No --wait: KEDA takes the Deployment to zero while helm would wait for a pod.
    releases.install(ACTOR, "k8s-keda.yaml", wait=False)
    (scaled,) = kube.json("get", "scaledobjects.keda.sh", "-n", namespace)["items"]
    deployment = scaled["spec"]["scaleTargetRef"]["name"]
    queue = scaled["spec"]["triggers"][0]["metadata"]["queueName"]

    def at_zero():
        return replicas(kube, namespace, deployment) == 0 and not actor_pods(kube, namespace, ACTOR)

    k8s_queues.wait_until(at_zero, "KEDA to scale the idle actor to zero", TIMEOUT)
    conditions = {c["type"]: c["status"]
                  for c in kube.json("get", "scaledobject", scaled["metadata"]["name"], "-n", namespace)
                  ["status"]["conditions"]}
    assert conditions.get("Ready") == "True", (conditions, keda_operator.log()[-3000:])

    published = time.monotonic()
    k8s_queues.send(ACTOR, "k8s-keda-1", {"woken": True})
    k8s_queues.wait_until(lambda: replicas(kube, namespace, deployment) == 1,
                          "KEDA to scale the actor to one for the queued message", TIMEOUT)
    scaled_up = time.monotonic()
    (done,) = k8s_queues.happy_end("k8s-keda-1", timeout=TIMEOUT)
    finished = time.monotonic()
    (pod,) = actor_pods(kube, namespace, ACTOR)
    k8s_queues.wait_until(at_zero, "KEDA to scale the actor back to zero after the cooldown", TIMEOUT)
    back_at_zero = time.monotonic()

    assert done["payload"] == {"woken": True}
    assert queue == f"asya-{ACTOR}", "KEDA watches the queue the sidecar consumes"
    assert [container_status(pod, name)["restartCount"] for name in (RUNTIME, SIDECAR)] == [0, 0]
    assert k8s_queues.finished("happy-end", "k8s-keda-1") == [done]
    cooldown = scaled["spec"]["cooldownPeriod"]
    record_figure(f"KEDA: publish -> replicas 1: {scaled_up - published:.1f} s; publish -> happy-end "
                  f"(pod started, message processed): {finished - published:.1f} s; happy-end -> no pod "
                  f"(cooldown {cooldown} s, polling {scaled['spec']['pollingInterval']} s): "
                  f"{back_at_zero - finished:.1f} s")
