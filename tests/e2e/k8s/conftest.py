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
import subprocess
from pathlib import Path

import pytest
from backends.base import COMMON_VALUES, IMAGES

from asya_testkit.rabbitmq import AmqpQueues, Broker, broker_unavailable_reason

from .cluster import ClusterUnavailable, open_cluster
from .kube import CLUSTER_VALUES, HOST_NETWORK_VALUES, Kube, unique_name, values_file

RABBITMQ_MANIFEST = Path(__file__).resolve().parent / "manifests" / "rabbitmq.yaml"

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
    for name, value in cluster.figures.items():
        FIGURES.append(f"cluster {name}: {value:.1f}" + ("" if "MB" in name else " s"))
    before, after = getattr(cluster, "footprint_before", None), getattr(cluster, "footprint_after", None)
    if before is not None and before != after:
        changed = {key: {"before": before[key], "after": after[key]} for key in before if before[key] != after[key]}
        pytest.fail(f"the cluster left the host changed: {changed}", pytrace=False)


@pytest.fixture(scope="session")
def kube(k8s_cluster):
    """Kube on the session's cluster, with the e2e images on its node."""
    k8s_cluster.import_images(IMAGES)
    return Kube(k8s_cluster.kubeconfig, env=getattr(k8s_cluster, "env", None))


class BrokerEndpoints:
    """Where the pods reach the suite's RabbitMQ (`url`) and where the test does (`test_url`)."""

    def __init__(self, url, test_url, broker=None):
        self.url = url
        self.test_url = test_url
        self.broker = broker  # the kit's Broker when it runs on this host


@pytest.fixture(scope="session")
def k8s_broker(k8s_cluster, kube):
    """The suite's RabbitMQ: on 127.0.0.1 when the pods share the host's loopback, else in the cluster."""
    if not k8s_cluster.reaches_host_loopback:
        yield from in_cluster_broker(kube)
        return
    reason = broker_unavailable_reason()
    if reason:
        pytest.skip(reason)
    with Broker("k8s") as broker:
        yield BrokerEndpoints(broker.url, broker.url, broker)


def in_cluster_broker(kube):
    """manifests/rabbitmq.yaml in a namespace of its own, reached by the test through a port-forward."""
    namespace = kube.create_namespace(unique_name("asya-broker"))
    try:
        kube.kubectl("apply", "-n", namespace, "-f", str(RABBITMQ_MANIFEST))
        kube.kubectl("rollout", "status", "deployment/asya-rabbitmq", "-n", namespace, "--timeout=600s",
                     timeout=660)
        forward = subprocess.Popen(
            [kube.kubectl_path, "--kubeconfig", kube.kubeconfig, "port-forward", "-n", namespace,
             "--address", "127.0.0.1", "service/asya-rabbitmq", ":5672"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=kube.env)
        try:
            line = forward.stdout.readline()  # "Forwarding from 127.0.0.1:<port> -> 5672"
            match = re.search(r"127\.0\.0\.1:(\d+)", line)
            if not match:
                raise RuntimeError(f"kubectl port-forward to the in-cluster broker said: {line!r}")
            yield BrokerEndpoints(
                f"amqp://guest:guest@asya-rabbitmq.{namespace}.svc.cluster.local:5672/",
                f"amqp://guest:guest@127.0.0.1:{match.group(1)}/")
        finally:
            forward.terminate()
            forward.wait(30)
    finally:
        kube.delete_namespace(namespace, wait=False)


@pytest.fixture(scope="session")
def k8s_queues(k8s_broker):
    with AmqpQueues(k8s_broker.test_url) as client:
        yield client


@pytest.fixture(scope="session")
def broker_values(k8s_broker, tmp_path_factory):
    """A values file pointing the sidecars (asya flavor) at the session's broker."""
    values = {"sidecar": {"rabbitmq": {"url": k8s_broker.url}}}
    if k8s_broker.broker is not None:  # the release's topology Job uses the host broker's management API
        values["topology"] = {"rabbitmq": {"managementUrl": k8s_broker.broker.management_url}}
    return values_file(tmp_path_factory.mktemp("values") / "broker.yaml", values)


@pytest.fixture(scope="session")
def release_values(k8s_cluster):
    """release_values(*scenario_files, broker=None): the --values files of a release on this cluster, in order."""
    cluster_files = [CLUSTER_VALUES] + ([HOST_NETWORK_VALUES] if k8s_cluster.host_network_only else [])

    def files(*scenario_files, broker=None):
        return [COMMON_VALUES, *scenario_files, *cluster_files] + ([broker] if broker else [])

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

