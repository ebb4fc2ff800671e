"""The kind backend: the same releases installed with helm on a kind cluster.

    kind create cluster --config <tests/e2e/kind-config.yaml with this run's queue dir>
    kind load docker-image IMAGE          (or podman save + kind load image-archive)
    helm install RELEASE charts/asya-actor --wait=watcher ...   (one per release)

The pods run as the chart renders them (a Deployment, probes, restartPolicy
Always); the queue directory is the same host directory as with podman,
mounted into the node by the cluster config and into the pods by a hostPath
volume. Pods, logs and exec go through the kubernetes Python client, not
kubectl's output.

Needs docker, kind, helm (make helm) and a registry for kind's node image;
check_available() names the first one missing. `python -m backends.kind
--preflight` (run with tests/e2e/ on sys.path) prints the same line, for the Makefile.
"""

import os
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import yaml

from asya_testkit.wait import wait_for

from .base import (
    CHART_DIR,
    HELM,
    IMAGES,
    REPO_ROOT,
    SIDECAR_CONTAINER,
    SIDECAR_SEES_SOCKET,
    ActorBackend,
    BackendUnavailable,
    ContainerExit,
    DeployError,
    helm_values_args,
    queue_volume_values,
    run_command,
    write_yaml,
)

CLUSTER_NAME = "asya-e2e"
NAMESPACE = "asya-e2e"
KIND_CONFIG = REPO_ROOT / "tests" / "e2e" / "kind-config.yaml"
# Where the node sees the host's queue directory (the extraMount's containerPath).
NODE_QUEUE_DIR = "/var/local/asya-e2e/queues"
INSTANCE_LABEL = "app.kubernetes.io/instance"
HELM_WAIT_TIMEOUT = "5m"
KEEP_CLUSTER_VARIABLE = "ASYA_E2E_KEEP_CLUSTER"
NODE_IMAGE_VARIABLE = "ASYA_E2E_KIND_NODE_IMAGE"


# ---------------------------------------------------------------- what it would run
# Pure functions: the unit tests check these command lines and objects
# without a cluster.

def kind_cluster_config(host_queue_dir, node_image=None, config_path=KIND_CONFIG):
    """tests/e2e/kind-config.yaml with its queue mount pointed at `host_queue_dir`."""
    config = yaml.safe_load(config_path.read_text())
    mounts = [mount for node in config["nodes"] for mount in node.get("extraMounts") or []
              if mount["containerPath"] == NODE_QUEUE_DIR]
    if len(mounts) != 1:
        raise ValueError(f"{config_path} must have exactly one extraMount at {NODE_QUEUE_DIR}")
    mounts[0]["hostPath"] = str(host_queue_dir)
    if node_image:
        for node in config["nodes"]:
            node["image"] = node_image
    return config


def node_images(config):
    return sorted({node["image"] for node in config["nodes"] if node.get("image")})


def create_cluster_command(config_path, kubeconfig):
    return ["kind", "create", "cluster", "--name", CLUSTER_NAME, "--config", str(config_path),
            "--kubeconfig", str(kubeconfig), "--wait", "180s"]


def delete_cluster_command(kubeconfig):
    return ["kind", "delete", "cluster", "--name", CLUSTER_NAME, "--kubeconfig", str(kubeconfig)]


def image_load_commands(image, source, archive_dir):
    """Commands that put `image` on the node, from docker or (through an archive) podman."""
    if source == "docker":
        return [["kind", "load", "docker-image", "--name", CLUSTER_NAME, image]]
    if source == "podman":
        archive = os.path.join(str(archive_dir), image.rsplit("/", 1)[-1].replace(":", "_") + ".tar")
        return [
            ["podman", "save", "--format", "docker-archive", "--output", archive, image],
            ["kind", "load", "image-archive", "--name", CLUSTER_NAME, archive],
        ]
    raise ValueError(f"unknown image source {source!r}")


def queue_values():
    """The queue volume of every pod: the node's mount of the host directory."""
    return queue_volume_values(NODE_QUEUE_DIR)


def helm_install_command(release, overlay_path, kubeconfig, helm=HELM):
    command = [str(helm), "install", release.name, str(CHART_DIR), "--namespace", NAMESPACE,
               "--kubeconfig", str(kubeconfig), *helm_values_args(release, overlay_path)]
    if release.becomes_ready:
        # Ready = the startup and readiness probes see the runtime's socket.
        command += ["--wait=watcher", "--timeout", HELM_WAIT_TIMEOUT]
    return command


def namespace_manifest():
    return {"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": NAMESPACE, "labels": {"app.kubernetes.io/part-of": "asya"}}}


def scale_to_zero_patch():
    """Scaling to zero stops the pod the way a rollout does (SIGTERM, then the
    grace period) and, unlike deleting it, starts no replacement."""
    return {"spec": {"replicas": 0}}


BROKER_NOT_REACHABLE = ("the scenarios talk to RabbitMQ on the host's 127.0.0.1, which kind's pods cannot reach; "
                        "a broker inside the cluster is not provided yet")


def missing_prerequisite(which=shutil.which, run=subprocess.run, helm=HELM, node_image=None):
    """One line naming the first thing `make e2e-kind` lacks here, or None."""
    if which("kind") is None:
        return "kind is not installed (https://kind.sigs.k8s.io/docs/user/quick-start/#installation)"
    if which("docker") is None:
        return "docker is not installed (kind runs its node as a docker container)"
    info = run(["docker", "info", "--format", "{{.ServerVersion}}"], capture_output=True, text=True)
    if info.returncode != 0:
        detail = (info.stderr.strip().splitlines() or ["no output"])[-1]
        return f"docker's daemon does not answer (docker info: {detail})"
    if not os.access(str(helm), os.X_OK):
        return f"helm is not at {helm} (make helm installs it)"
    config = kind_cluster_config("/unused", node_image or os.environ.get(NODE_IMAGE_VARIABLE))
    for image in node_images(config):
        if run(["docker", "image", "inspect", image], capture_output=True).returncode == 0:
            continue
        pull = run(["docker", "pull", image], capture_output=True, text=True)
        if pull.returncode != 0:
            detail = (pull.stderr.strip().splitlines() or ["no output"])[-1]
            return f"kind's node image {image} is not in docker and cannot be pulled (no registry?): {detail}"
    return None


# ---------------------------------------------------------------- the backend

class LogFollower(threading.Thread):
    """Collects a container's log while its pod stops; the API forgets it after deletion."""

    def __init__(self, core, pod_name, container):
        super().__init__(daemon=True)
        self.core = core
        self.pod_name = pod_name
        self.container = container
        self.chunks = []

    def run(self):
        try:
            response = self.core.read_namespaced_pod_log(
                self.pod_name, NAMESPACE, container=self.container, follow=True,
                _preload_content=False)
            for chunk in response.stream():
                self.chunks.append(chunk.decode("utf-8", "replace"))
        except Exception as exc:  # the log is best effort; the exit code is what is asserted
            self.chunks.append(f"\n(log stream ended: {exc!r})")

    @property
    def text(self):
        return "".join(self.chunks)


class KindBackend(ActorBackend):
    name = "kind"

    def __init__(self, queue_root, work_dir, helm=HELM, broker_url=None, management_url=None):
        super().__init__(queue_root, work_dir)
        self.helm = helm
        self.kubeconfig = self.work_dir / "kubeconfig"
        self.cluster_created = False
        self.stopped_logs = {}
        self.env = dict(os.environ)
        self.env.setdefault("CONTAINERS_CONF", str(REPO_ROOT / ".tools" / "containers.conf"))
        self.core = None
        self.apps = None

    @classmethod
    def check_available(cls):
        reason = missing_prerequisite()
        if reason:
            raise BackendUnavailable(reason)
        # The scenarios publish to RabbitMQ on this host's 127.0.0.1, which a
        # kind node's pods cannot reach; a broker inside the cluster is not
        # provided yet (docs/e2e.md).
        raise BackendUnavailable(BROKER_NOT_REACHABLE)

    # -- deploy

    def _run(self, argv, timeout=600):
        return run_command(argv, env=self.env, timeout=timeout)

    def create_cluster(self):
        existing = self._run(["kind", "get", "clusters"]).stdout.split()
        if CLUSTER_NAME in existing:
            raise DeployError(f"a kind cluster named {CLUSTER_NAME} exists already (left by an earlier "
                              f"run?); remove it with: kind delete cluster --name {CLUSTER_NAME}")
        config = kind_cluster_config(self.queue_root, os.environ.get(NODE_IMAGE_VARIABLE))
        config_path = write_yaml(self.work_dir / "kind-config.yaml", config)
        self.cluster_created = True  # from here on, cleanup() deletes it
        self._run(create_cluster_command(config_path, self.kubeconfig))

    def image_source(self, image):
        if subprocess.run(["docker", "image", "inspect", image], capture_output=True).returncode == 0:
            return "docker"
        if shutil.which("podman") and subprocess.run(["podman", "image", "exists", image],
                                                     env=self.env).returncode == 0:
            return "podman"
        raise DeployError(f"image {image} is neither in docker nor in podman (make images builds it)")

    def load_images(self):
        for image in IMAGES:
            for command in image_load_commands(image, self.image_source(image), self.work_dir):
                self._run(command)
            for archive in self.work_dir.glob("*.tar"):
                archive.unlink()  # on the node now; each is 100+ MB

    def connect(self):
        from kubernetes import client, config

        api_client = config.new_client_from_config(config_file=str(self.kubeconfig))
        self.core = client.CoreV1Api(api_client)
        self.apps = client.AppsV1Api(api_client)

    def install(self, release):
        overlay = write_yaml(self.work_dir / f"{release.name}.queue-values.yaml", queue_values())
        self._run(helm_install_command(release, overlay, self.kubeconfig, self.helm))

    def deploy(self, releases):
        self.create_cluster()
        self.load_images()
        self.connect()
        self.core.create_namespace(namespace_manifest())
        for release in releases:
            self.releases[release.name] = release
        with ThreadPoolExecutor(max_workers=4) as pool:
            list(pool.map(self.install, releases))

    # -- observe

    def current_pod(self, release_name):
        """The release's pod that is not being deleted, or None."""
        pods = self.core.list_namespaced_pod(
            NAMESPACE, label_selector=f"{INSTANCE_LABEL}={release_name}").items
        live = [pod for pod in pods if pod.metadata.deletion_timestamp is None]
        live.sort(key=lambda pod: pod.metadata.creation_timestamp)
        return live[-1] if live else None

    @staticmethod
    def container_status(pod, container):
        for status in (pod.status.container_statuses or []) if pod else []:
            if status.name == container:
                return status
        return None

    def exec_in(self, pod_name, container, argv):
        """Run `argv` in a container; return its exit code."""
        from kubernetes.stream import stream

        response = stream(self.core.connect_get_namespaced_pod_exec, pod_name, NAMESPACE,
                          container=container, command=argv, stderr=True, stdin=False,
                          stdout=True, tty=False, _preload_content=False)
        try:
            response.run_forever(timeout=30)
            return response.returncode
        finally:
            response.close()

    def wait_ready(self, release_name, timeout=120):
        def sidecar_sees_socket():
            pod = self.current_pod(release_name)
            if pod is None or pod.status.phase != "Running":
                return False
            try:
                return self.exec_in(pod.metadata.name, SIDECAR_CONTAINER, SIDECAR_SEES_SOCKET) == 0
            except Exception:  # the sidecar not started yet, or restarting: ask again
                return False

        wait_for(sidecar_sees_socket, f"the runtime of {release_name} to listen on its socket", timeout,
                 interval=0.5)

    def logs(self, release_name, container):
        if (release_name, container) in self.stopped_logs:
            return self.stopped_logs[(release_name, container)]
        pod = self.current_pod(release_name)
        if pod is None:
            return ""
        status = self.container_status(pod, container)
        # A container that crashed and waits to restart has an empty current
        # log; the one that says why it crashed is the previous one.
        previous = bool(status and status.restart_count and not (status.state and status.state.running))
        return self.core.read_namespaced_pod_log(pod.metadata.name, NAMESPACE, container=container,
                                                 previous=previous)

    def wait_for_exit(self, release_name, container, timeout=120):
        def first_termination():
            status = self.container_status(self.current_pod(release_name), container)
            if status is None:
                return None
            if status.state and status.state.terminated:
                return status.state.terminated.exit_code, False
            if status.last_state and status.last_state.terminated:
                return status.last_state.terminated.exit_code, True
            return None

        exit_code, restarted = wait_for(first_termination, f"container {container} of {release_name} to exit",
                                        timeout, interval=0.5)
        pod = self.current_pod(release_name)
        log = self.core.read_namespaced_pod_log(pod.metadata.name, NAMESPACE, container=container,
                                                previous=restarted)
        return ContainerExit(exit_code, log)

    def stop_pod(self, release_name):
        from kubernetes import watch

        pod = self.current_pod(release_name)
        if pod is None:
            raise DeployError(f"release {release_name} has no running pod to stop")
        pod_name = pod.metadata.name
        grace = pod.spec.termination_grace_period_seconds or 30
        containers = [c.name for c in pod.spec.containers]
        followers = [LogFollower(self.core, pod_name, container) for container in containers]
        for follower in followers:
            follower.start()
        deployments = self.apps.list_namespaced_deployment(
            NAMESPACE, label_selector=f"{INSTANCE_LABEL}={release_name}").items
        for deployment in deployments:
            self.apps.patch_namespaced_deployment_scale(deployment.metadata.name, NAMESPACE,
                                                        scale_to_zero_patch())
        # The kubelet writes the containers' final states before the pod
        # object goes; watching from the version read above misses nothing.
        last_seen = pod
        deadline = time.monotonic() + grace + 60
        watcher = watch.Watch()
        for event in watcher.stream(self.core.list_namespaced_pod, NAMESPACE,
                                    field_selector=f"metadata.name={pod_name}",
                                    resource_version=pod.metadata.resource_version,
                                    timeout_seconds=grace + 60):
            last_seen = event["object"]
            if event["type"] == "DELETED" or time.monotonic() > deadline:
                watcher.stop()
        exits = {}
        for follower in followers:
            follower.join(timeout=30)
            status = self.container_status(last_seen, follower.container)
            terminated = status.state.terminated if status and status.state else None
            self.stopped_logs[(release_name, follower.container)] = follower.text
            exits[follower.container] = ContainerExit(terminated.exit_code if terminated else None,
                                                      follower.text)
        return exits

    def failure_report(self, release_names=None):
        if self.core is None:
            return ""
        sections = []
        for release_name in release_names or sorted(self.releases):
            try:
                pods = self.core.list_namespaced_pod(
                    NAMESPACE, label_selector=f"{INSTANCE_LABEL}={release_name}").items
            except Exception as exc:
                sections.append(f"===== release {release_name}: cannot list pods: {exc!r}")
                continue
            for pod in pods:
                sections.append(f"===== pod {pod.metadata.name} (release {release_name}), phase {pod.status.phase}")
                statuses = (pod.status.init_container_statuses or []) + (pod.status.container_statuses or [])
                for status in statuses:
                    sections.append(f"--- {status.name}: restarts {status.restart_count}, state {status.state}")
                    for previous in ([False, True] if status.restart_count else [False]):
                        try:
                            text = self.core.read_namespaced_pod_log(
                                pod.metadata.name, NAMESPACE, container=status.name, previous=previous)
                        except Exception as exc:
                            text = f"(no log: {exc!r})"
                        label = "previous run" if previous else "log"
                        sections.append(f"{label}:\n{text.rstrip()}")
        return "\n".join(sections)

    # -- cleanup

    def cleanup(self):
        if self.cluster_created and not os.environ.get(KEEP_CLUSTER_VARIABLE):
            run_command(delete_cluster_command(self.kubeconfig), env=self.env, check=False)


def main(argv):
    if argv != ["--preflight"]:
        print("usage: python -m backends.kind --preflight", file=sys.stderr)
        return 2
    reason = missing_prerequisite() or BROKER_NOT_REACHABLE
    print(f"e2e-kind: skipped: {reason}")
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
