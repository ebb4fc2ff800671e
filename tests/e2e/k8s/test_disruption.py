"""Scenario 10: the chart's PodDisruptionBudget, enforced by the real eviction API.

Two replicas, `maxUnavailable: 1`: the first eviction is granted, a second one
while the first pod's replacement is not Ready yet is refused with the
budget's reason, and once the replacement is Ready the budget allows one again.
"""

import json

from asya_testkit.wait import wait_for

from .kube import INSTANCE_LABEL, WAIT_TIMEOUT
from .test_install import TWO_ACTORS

PDB_VALUES = {"handler": "my_package.echo.echo", "replicaCount": 2, "podDisruptionBudget": {"enabled": True, "maxUnavailable": 1},
              "test": {"enabled": False}}


def evict(kube, namespace, pod):
    eviction = {"apiVersion": "policy/v1", "kind": "Eviction",
                "metadata": {"name": pod, "namespace": namespace}}
    return kube.kubectl("create", "--raw", f"/api/v1/namespaces/{namespace}/pods/{pod}/eviction", "-f", "-",
                        input=json.dumps(eviction), check=False)


def disruptions_allowed(kube, namespace, release):
    budgets = kube.json("get", "poddisruptionbudgets", "-n", namespace, "-l", f"{INSTANCE_LABEL}={release}")["items"]
    assert len(budgets) == 1, budgets
    status = budgets[0].get("status", {})
    # The controller has counted this generation's pods only when observedGeneration caught up.
    if status.get("observedGeneration") != budgets[0]["metadata"]["generation"]:
        return None
    return status.get("disruptionsAllowed")


def test_pod_disruption_budget_refuses_a_second_eviction(kube, namespace, release_values, broker_values):
    release = f"{namespace[-7:]}-pdb"
    kube.helm_install(release, namespace, release_values(TWO_ACTORS, broker=broker_values), set_values=PDB_VALUES)
    first, second = (pod["metadata"]["name"] for pod in
                     kube.wait_pods_ready(namespace, f"{INSTANCE_LABEL}={release}", count=2))
    wait_for(lambda: disruptions_allowed(kube, namespace, release) == 1,
             "the budget to allow one disruption", WAIT_TIMEOUT, interval=0.5)

    granted = evict(kube, namespace, first)
    assert granted.returncode == 0, granted.stdout + granted.stderr

    refused = evict(kube, namespace, second)
    assert refused.returncode != 0, "a second eviction was granted while one pod was already disrupted"
    assert "disruption budget" in refused.stderr, refused.stderr
    assert kube.json("get", "pod", second, "-n", namespace)["metadata"].get("deletionTimestamp") is None

    # The replacement of the evicted pod becomes Ready: the budget allows one again.
    kube.wait_pods_ready(namespace, f"{INSTANCE_LABEL}={release}", count=2)
    wait_for(lambda: disruptions_allowed(kube, namespace, release) == 1,
             "the budget to allow one disruption again", WAIT_TIMEOUT, interval=0.5)
