"""What scenarios 3-9 do with an actor on the cluster: install it, find its pods, read their containers.

An actor's pods carry the chart's label ``asya.io/actor=<actor>``; its queue
is ``asya-<actor>`` on the session's broker, which every test shares, so each
scenario's actors and message ids have names of their own.
A container is looked up by name among the pod's init containers too: with
``nativeSidecar`` on, asya-runtime is a restartable init container.
"""

from datetime import datetime
from pathlib import Path

from asya_testkit.wait import wait_for

# The scenarios' values files live with the podman suite's (tests/e2e/values).
E2E_VALUES_DIR = Path(__file__).resolve().parents[1] / "values"
RUNTIME = "asya-runtime"
SIDECAR = "asya-sidecar"
ACTOR_LABEL = "asya.io/actor"
# Bounds on a hang (image pulls are local, but the machine is shared and busy).
POD_TIMEOUT = 300.0


class Releases:
    """helm install/upgrade of the chart with tests/e2e/values/<files>, between the suite's shared
    values (conftest's release_values: common.yaml first, the cluster's files after) and the broker's."""

    def __init__(self, kube, namespace, release_values, broker_values):
        self.kube = kube
        self.namespace = namespace
        self.release_values = release_values
        self.broker_values = broker_values

    def files(self, values_files):
        return self.release_values(*(E2E_VALUES_DIR / name for name in values_files), broker=self.broker_values)

    def install(self, release, *values_files, set_values=None, wait=True):
        return self.kube.helm_install(release, self.namespace, self.files(values_files), set_values=set_values,
                                      wait=wait)

    def upgrade(self, release, *values_files, set_values=None, wait=True):
        return self.kube.helm_upgrade(release, self.namespace, self.files(values_files), set_values=set_values,
                                      wait=wait)


def actor_pods(kube, namespace, actor):
    return kube.pods(namespace, f"{ACTOR_LABEL}={actor}")


def one_pod(kube, namespace, actor, timeout=POD_TIMEOUT):
    """The actor's single pod once it exists and is not terminating."""
    def found():
        live = [pod for pod in actor_pods(kube, namespace, actor) if not pod["metadata"].get("deletionTimestamp")]
        return live[0] if len(live) == 1 else None
    return wait_for(found, f"one pod of actor {actor}", timeout, interval=0.5)


def container_status(pod, name):
    status = pod.get("status", {})
    for entry in status.get("initContainerStatuses", []) + status.get("containerStatuses", []):
        if entry["name"] == name:
            return entry
    raise AssertionError(f"pod {pod['metadata']['name']} has no status for container {name}: {status}")


def pod_named(kube, namespace, name):
    return kube.json("get", "pod", name, "-n", namespace)


def parse_time(text):
    """An API or CRI log timestamp (RFC 3339, 'Z', up to nanoseconds) as an aware datetime."""
    text = text.strip().replace("Z", "+00:00")
    if "." in text:
        head, rest = text.split(".", 1)
        digits = rest[:len(rest) - len(rest.lstrip("0123456789"))]
        zone = rest[len(digits):]
        text = f"{head}.{digits[:6].ljust(6, '0')}{zone}"
    return datetime.fromisoformat(text)


def timestamped_lines(log):
    """(time, text) of each line of a `kubectl logs --timestamps` output."""
    lines = []
    for line in log.splitlines():
        stamp, _, text = line.partition(" ")
        if stamp:
            lines.append((parse_time(stamp), text))
    return lines


def first_line_time(log, fragment):
    """The timestamp of the first line containing `fragment`, or None."""
    for stamp, text in timestamped_lines(log):
        if fragment in text:
            return stamp
    return None
