"""Fixtures of the e2e suite: one backend per session, with every scenario's actors.

`pytest tests/e2e --backend podman --ignore=tests/e2e/k8s` (make e2e). The same chart on a
real kubelet (a cluster built here, kind, or any kubeconfig) is tests/e2e/k8s (make e2e-k8s).
The test broker (tools/rabbitmq.sh: RabbitMQ on free 127.0.0.1 ports, state
under .tools/rabbitmq/e2e-<port>) is started once, empty, before any pod (each
release's own topology Job creates its queues, as on a cluster), and
stopped at the end of the session, failed or not; two sessions at once get
a broker each. The backend
is created once: it deploys all the releases of releases.py, the tests share
them, and its finalizer removes every pod, container and volume even when
deploying or a test failed. A failed test gets the pods' states and logs
appended to its report. Figures a test measures (messages per second) are
printed at the end of the run.

A backend whose tools are missing skips the scenarios with one reason, except
podman under CI (the CI variable set), where it is a failure: CI must run the
podman e2e for real.
"""

import shutil
import sys
import tempfile
from pathlib import Path

import pytest

E2E_DIR = Path(__file__).resolve().parent
sys.path[:0] = [str(E2E_DIR), str(E2E_DIR.parents[1] / "fake-sidecar")]

import e2e_session  # noqa: E402  (path set just above)
from releases import RELEASES  # noqa: E402

from asya_testkit.rabbitmq import AmqpQueues, Broker, broker_unavailable_reason  # noqa: E402

FIGURES = []

BACKENDS = ("podman",)


def pytest_addoption(parser):
    parser.addoption("--backend", choices=BACKENDS, default="podman",
                     help="where the e2e pods run: podman (this machine); clusters are tests/e2e/k8s's")


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "releases(*names): the releases a scenario uses; a failure report shows their pods")
    e2e_session.set_backend(config.getoption("--backend", default="podman"))


@pytest.fixture(scope="session")
def e2e_work_dir():
    """Holds the queue directory and the backend's files (rendered pods, values, kubeconfig)."""
    path = Path(tempfile.mkdtemp(prefix="asya-e2e-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def queue_root(e2e_work_dir):
    path = e2e_work_dir / "queues"
    path.mkdir()
    # The sidecars run as UID 65532 and the test as whoever runs pytest: every
    # queue directory must be writable by both (the queue module makes its
    # own directories 0777 for the same reason).
    path.chmod(0o777)
    return path


@pytest.fixture(scope="session")
def broker():
    reason = e2e_session.unavailable_reason() or broker_unavailable_reason()
    if reason:
        if e2e_session.failing_instead_of_skipping():
            pytest.fail(reason + " (CI is set, so this is a failure, not a skip)", pytrace=False)
        pytest.skip(reason)
    with Broker("e2e") as instance:  # free loopback ports of its own
        yield instance


@pytest.fixture(scope="session")
def backend(request, queue_root, e2e_work_dir, broker):
    reason = e2e_session.unavailable_reason()
    if reason:
        if e2e_session.failing_instead_of_skipping():
            pytest.fail(reason + " (CI is set, so this is a failure, not a skip)", pytrace=False)
        pytest.skip(reason)
    files_dir = e2e_work_dir / "backend"
    files_dir.mkdir()
    instance = e2e_session.backend_class()(queue_root, files_dir, broker_url=broker.url,
                                            management_url=broker.management_url)
    with e2e_session.deployed(instance, RELEASES):
        yield instance


@pytest.fixture(scope="session")
def queues(broker):
    """The tests' side of RabbitMQ: publish to actors, wait in happy-end and error-end."""
    with AmqpQueues(broker.url) as client:
        yield client


@pytest.fixture
def record_figure():
    """record_figure(text): a measured figure, printed at the end of the run."""
    return FIGURES.append


def pytest_terminal_summary(terminalreporter):
    if FIGURES:
        terminalreporter.section("e2e figures")
        for line in FIGURES:
            terminalreporter.write_line(line)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when != "call" or not report.failed:
        return
    instance = item.funcargs.get("backend")
    if instance is None:
        return
    marker = item.get_closest_marker("releases")
    releases = list(marker.args) if marker else None
    try:
        text = instance.failure_report(releases)
    except Exception as exc:  # the report must never hide the test's own failure
        text = f"(could not collect pod logs: {exc!r})"
    report.sections.append((f"pods and logs ({instance.name})", text))
