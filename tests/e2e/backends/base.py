"""What every e2e backend offers, and what the backends share.

A backend takes helm releases of charts/asya-actor (one per actor) and runs
their pods somewhere real: podman pods on this machine (podman.py); the k8s
suite (tests/e2e/k8s) runs the chart on real clusters. The scenarios in tests/e2e talk to the actors only the way
a user's pipeline would: through RabbitMQ, plus the containers' logs and exit
codes, which the backend fetches.

    test ──publish──► RabbitMQ 127.0.0.1:<port>, queue asya-<actor>
                           │ (the pod shares the host's loopback)
                           ▼
              pod: asya-sidecar ──unix socket──► asya-runtime (model image)
                           │
                           ▼
    test ◄──consume── asya-happy-end, asya-error-end

The sidecar image is this project's fake sidecar. With the chart's
`sidecar.flavor: asya` it stands in for the asya Go sidecar (same variables,
`list` dialect, runtime-ready file); with `flavor: fake` plus
ASYA_TRANSPORT=rabbitmq in its env it uses this project's `status` dialect.
The sidecars also mount a queue directory (the file transport), which no
scenario uses any more; `make demo` and tests/sidecar still do.
"""

import abc
import copy
import subprocess
from pathlib import Path

import yaml

REPO_ROOT = Path(__file__).resolve().parents[3]
CHART_DIR = REPO_ROOT / "charts" / "asya-actor"
VALUES_DIR = REPO_ROOT / "tests" / "e2e" / "values"
COMMON_VALUES = VALUES_DIR / "common.yaml"
# The URL the rendered pods get when no session broker is set (the adapter
# tests); a session's broker (conftest.py) has free ports of its own.
BROKER_URL = "amqp://guest:guest@127.0.0.1:5672/"
HELM = REPO_ROOT / ".tools" / "bin" / "helm"

# Names the chart gives the pod's containers.
RUNTIME_CONTAINER = "asya-runtime"
SIDECAR_CONTAINER = "asya-sidecar"
SOCKET_PATH = "/var/run/asya/asya-runtime.sock"

# The queue directory: tests/e2e/values/common.yaml mounts the volume QUEUE_VOLUME at
# QUEUE_MOUNT_PATH in every sidecar (the sidecar image's ASYA_QUEUE_DIR); the
# backend says where the volume comes from (queue_volume_values).
QUEUE_VOLUME = "asya-queues"
QUEUE_MOUNT_PATH = "/var/asya/queues"

# Every image the e2e pods use; `make images` builds them all with podman.
IMAGES = (
    "localhost/asya-runtime:dev",
    "localhost/asya-sidecar-fake:dev",
    "localhost/asya-e2e-model-debian:dev",
    "localhost/asya-e2e-model-conda37:dev",
)

# Asked of the sidecar, in its own container: does it see the runtime's
# socket? Python, because the sidecar image is sure to have it.
SIDECAR_SEES_SOCKET = [
    "python3", "-c",
    f"import os, stat, sys; sys.exit(0 if stat.S_ISSOCK(os.stat({SOCKET_PATH!r}).st_mode) else 1)",
]


class Release:
    """One helm release of the chart = one actor; its name is the actor's queue."""

    def __init__(self, name, values_file, becomes_ready=True):
        self.name = name
        self.values_file = values_file
        # False for a release whose runtime must fail to start: nothing may
        # wait for it to become ready (helm --wait would time out).
        self.becomes_ready = becomes_ready

    @property
    def values_path(self):
        return VALUES_DIR / self.values_file

    def __repr__(self):
        return f"Release({self.name!r}, {self.values_file!r})"


class BackendUnavailable(Exception):
    """A tool the backend needs is missing; the message says which, in one line."""


class DeployError(Exception):
    """Releases could not be rendered or started; the message holds the tool's output."""


class ContainerExit:
    """How one container ended: its exit code and its whole log."""

    def __init__(self, exit_code, log):
        self.exit_code = exit_code
        self.log = log

    @property
    def first_line(self):
        lines = self.log.splitlines()
        return lines[0] if lines else ""

    def __repr__(self):
        return f"ContainerExit(exit_code={self.exit_code}, first_line={self.first_line!r})"


def queue_volume_values(host_path):
    """Values that make the volume QUEUE_VOLUME a hostPath directory.

    Given as one more values file after tests/e2e/values/common.yaml (which mounts
    the volume into the sidecar), because the path differs per backend and
    per run. `Directory`, not `DirectoryOrCreate`: a missing directory is a
    harness bug, and creating it would make it root-owned 0755, which the
    sidecars (non-root) could not write.
    """
    return {"workload": {"template": {"spec": {"volumes": [
        {"name": QUEUE_VOLUME, "hostPath": {"path": str(host_path), "type": "Directory"}},
    ]}}}}


def broker_values(release, url=BROKER_URL, management_url=None):
    """Values that point the release's sidecar at the test broker.

    `sidecar.rabbitmq.url` for the asya flavor, and ASYA_RABBITMQ_URL in
    `sidecar.env` for a fake-flavor sidecar on RabbitMQ. helm replaces lists
    whole, so the scenario's own `sidecar.env` entries are carried over.
    With `management_url`, the release's topology Job uses that management API.
    """
    values = yaml.safe_load(release.values_path.read_text()) or {}
    env = [entry for entry in (values.get("sidecar") or {}).get("env") or []
           if entry.get("name") != "ASYA_RABBITMQ_URL"]
    env.append({"name": "ASYA_RABBITMQ_URL", "value": url})
    values = {"sidecar": {"rabbitmq": {"url": url}, "env": env}}
    if management_url:
        values["topology"] = {"rabbitmq": {"managementUrl": management_url}}
    return values


def deep_merge(base, extra):
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def helm_values_args(release, overlay_path):
    """`--values` arguments: the shared e2e values, the scenario's, the backend's overlay."""
    return ["--values", str(COMMON_VALUES), "--values", str(release.values_path),
            "--values", str(overlay_path)]


def helm_template_command(release, overlay_path, helm=HELM):
    return [str(helm), "template", release.name, str(CHART_DIR),
            *helm_values_args(release, overlay_path)]


def write_yaml(path, data):
    path = Path(path)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def deployments_of(rendered_text):
    """The Deployment documents of a `helm template` output (the test pod is left out)."""
    return kinds_of(rendered_text, "Deployment")


def kinds_of(rendered_text, kind):
    """The documents of one kind of a `helm template` output, in order."""
    return [copy.deepcopy(doc) for doc in yaml.safe_load_all(rendered_text)
            if doc and doc.get("kind") == kind]


def pre_install_jobs(rendered_text):
    """The Jobs helm would run before installing the release (hook pre-install), in order."""
    return [job for job in kinds_of(rendered_text, "Job")
            if "pre-install" in (job["metadata"].get("annotations") or {}).get("helm.sh/hook", "").split(",")]


def run_command(argv, env=None, timeout=300, check=True, input_text=None):
    """Run a command, capturing its output; on failure, raise with the output."""
    result = subprocess.run(argv, env=env, timeout=timeout, capture_output=True, text=True,
                            input=input_text)
    if check and result.returncode != 0:
        raise DeployError(f"`{' '.join(map(str, argv))}` exited {result.returncode}:\n"
                          f"{result.stdout}{result.stderr}")
    return result


class ActorBackend(abc.ABC):
    """Runs chart releases as real pods; one instance per test session."""

    name = "?"

    def __init__(self, queue_root, work_dir, broker_url=BROKER_URL, management_url=None):
        self.queue_root = Path(queue_root)
        self.work_dir = Path(work_dir)
        self.broker_url = broker_url
        self.management_url = management_url
        self.releases = {}

    @classmethod
    @abc.abstractmethod
    def check_available(cls):
        """Raise BackendUnavailable naming the first missing tool or image."""

    @abc.abstractmethod
    def deploy(self, releases):
        """Install every release and start its pod; do not wait for readiness."""

    @abc.abstractmethod
    def wait_ready(self, release_name, timeout=120):
        """Return once the runtime listens and the sidecar sees its socket."""

    @abc.abstractmethod
    def wait_for_exit(self, release_name, container, timeout=120):
        """Wait for the container's first exit; return its ContainerExit."""

    @abc.abstractmethod
    def logs(self, release_name, container):
        """The container's log so far (stdout and stderr)."""

    @abc.abstractmethod
    def stop_pod(self, release_name):
        """Stop the release's pod as Kubernetes does: SIGTERM to every container,
        SIGKILL only after the pod's terminationGracePeriodSeconds. Wait for the
        end and return {container: ContainerExit}."""

    @abc.abstractmethod
    def failure_report(self, release_names=None):
        """Text for a failed test: each pod's containers, their states and logs."""

    @abc.abstractmethod
    def cleanup(self):
        """Remove everything deploy created, whatever state it is in."""
