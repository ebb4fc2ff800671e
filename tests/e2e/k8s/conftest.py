"""Fixtures of the k8s suite (`make e2e-k8s`): one cluster per session, the chart installed for real.

Where the cluster comes from is decided in cluster.open_cluster(): built here
(the default), or the one named by $ASYA_E2E_KUBECONFIG (`make e2e-k8s
KUBECONFIG=...`). A cluster built here is torn down at the end of the session,
failed or not, and the session then fails if it left anything on the host
(processes, mounts, kubepods cgroups, network namespaces, shim sockets) or
changed the kernel settings the kubelet wants.

Each test gets a namespace of its own (`namespace`), deleted afterwards; a
failed test's report shows that namespace's pods, their logs and events.
"""

import os
import re

import pytest
from backends.base import COMMON_VALUES, IMAGES

from asya_testkit.rabbitmq import AmqpQueues, Broker, broker_unavailable_reason

from .cluster import ClusterUnavailable, open_cluster
from .kube import CLUSTER_VALUES, Kube, unique_name, values_file

KUBECONFIG_VARIABLE = "ASYA_E2E_KUBECONFIG"
FIGURES = []


@pytest.fixture(scope="session")
def k8s_cluster(tmp_path_factory):
    """The session's cluster: `.kubeconfig`, `.name`, `.reaches_host_loopback`, `.work_dir`."""
    kubeconfig = os.environ.get(KUBECONFIG_VARIABLE) or None
    try:
        cluster = open_cluster(kubeconfig, tmp_path_factory.mktemp("existing-cluster"))
        with cluster:
            yield cluster
    except ClusterUnavailable as exc:
        if os.environ.get("CI"):
            pytest.fail(f"{exc} (CI is set, so this is a failure, not a skip)", pytrace=False)
        pytest.skip(str(exc))
    for name, seconds in cluster.figures.items():
        FIGURES.append(f"cluster {name}: {seconds:.1f} s")
    before, after = getattr(cluster, "footprint_before", None), getattr(cluster, "footprint_after", None)
    if before is not None and before != after:
        changed = {key: {"before": before[key], "after": after[key]} for key in before if before[key] != after[key]}
        pytest.fail(f"the cluster left the host changed: {changed}", pytrace=False)


@pytest.fixture(scope="session")
def kube(k8s_cluster):
    """Kube on the session's cluster, with the e2e images on its node."""
    k8s_cluster.import_images(IMAGES)
    return Kube(k8s_cluster.kubeconfig, env=getattr(k8s_cluster, "env", None))


@pytest.fixture(scope="session")
def k8s_broker(k8s_cluster):
    """The test broker on 127.0.0.1: hostNetwork pods of a cluster built here reach it there."""
    if not k8s_cluster.reaches_host_loopback:
        pytest.skip("this cluster's pods cannot reach the host's 127.0.0.1; an in-cluster broker is not provided yet")
    reason = broker_unavailable_reason()
    if reason:
        pytest.skip(reason)
    with Broker("k8s") as broker:
        yield broker


@pytest.fixture(scope="session")
def k8s_queues(k8s_broker):
    with AmqpQueues(k8s_broker.url) as client:
        yield client


@pytest.fixture(scope="session")
def broker_values(k8s_broker, tmp_path_factory):
    """A values file pointing the sidecars (asya flavor) at the session's broker."""
    return values_file(tmp_path_factory.mktemp("values") / "broker.yaml",
                       {"sidecar": {"rabbitmq": {"url": k8s_broker.url}}})


@pytest.fixture(scope="session")
def release_values():
    """release_values(*scenario_files, broker=None): the --values files of a release on this cluster, in order."""
    def files(*scenario_files, broker=None):
        return [COMMON_VALUES, *scenario_files, CLUSTER_VALUES] + ([broker] if broker else [])

    return files


@pytest.fixture
def namespace(request, kube):
    """A fresh namespace for one test, deleted after it (without waiting for its pods to go)."""
    prefix = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower())[:40].strip("-")
    name = kube.create_namespace(unique_name(prefix))
    request.node.k8s_namespace = name
    yield name
    kube.delete_namespace(name, wait=False)


@pytest.fixture
def record_figure():
    return FIGURES.append


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when != "call" or not report.failed:
        return
    name, kube_client = getattr(item, "k8s_namespace", None), item.funcargs.get("kube")
    if name is None or kube_client is None:
        return
    try:
        text = kube_client.report(name)
    except Exception as exc:  # the report must never hide the test's own failure
        text = f"(could not collect the pods' states: {exc!r})"
    report.sections.append((f"pods, logs and events of {name}", text))


def pytest_terminal_summary(terminalreporter):
    if FIGURES:
        terminalreporter.section("k8s figures")
        for line in FIGURES:
            terminalreporter.write_line(line)

