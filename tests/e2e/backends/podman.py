"""The podman backend: each release's Deployment becomes one podman pod.

    helm template ─► Deployment ─► deployment_to_pod() ─► Pod YAML
                                         ─► podman kube play --network none

Why the Deployment is rewritten rather than played as it is (podman 4.3):
- a played Deployment restarts its init container forever; a `kind: Pod`
  with `restartPolicy: Never` runs it once and keeps the exit codes of the
  other containers for the test to read;
- kube play names an emptyDir's volume after the Kubernetes volume name, so
  two pods with an `asya-socket` emptyDir would share one volume (and one
  socket); each pod's emptyDirs get its own names, removed in cleanup();
- kube play deletes an init container once it has run, with its log; the
  pod annotation INIT_CONTAINER_TYPE=always keeps it (its log is part of a
  failure report). It would run again if the pod restarted; these never do;
- exec probes become podman healthchecks driven by systemd timers, which do
  not exist here (every kube play would log errors): they are dropped. The
  kind backend runs the probes for real.

No network is ever created: kube play runs with `--network none`, and the
containers talk over the socket volume and the queue directory only.
"""

import copy
import json
import os
import secrets
import shutil
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor

from .base import (
    HELM,
    IMAGES,
    REPO_ROOT,
    RUNTIME_CONTAINER,
    SIDECAR_CONTAINER,
    SIDECAR_SEES_SOCKET,
    ActorBackend,
    BackendUnavailable,
    ContainerExit,
    DeployError,
    deployments_of,
    helm_template_command,
    queue_volume_values,
    run_command,
    wait_until,
    write_yaml,
)

CONTAINERS_CONF = REPO_ROOT / ".tools" / "containers.conf"
SESSION_LABEL = "asya-e2e-session"
PROBES = ("startupProbe", "readinessProbe", "livenessProbe")
INIT_CONTAINER_TYPE = "io.podman.annotations.init.container.type"


def podman_env():
    """The environment for podman: the project's containers.conf unless one is set.

    Without it podman fails here (ulimits) or creates a bridge network.
    """
    env = dict(os.environ)
    env.setdefault("CONTAINERS_CONF", str(CONTAINERS_CONF))
    return env


def pod_name_for(session_id, release_name):
    return f"asya-e2e-{session_id}-{release_name}"


def container_name(pod_name, container):
    """kube play names each container `<pod>-<container>`."""
    return f"{pod_name}-{container}"


def deployment_to_pod(deployment, pod_name, extra_labels=None):
    """The Pod that runs one replica of `deployment` under podman kube play.

    Returns (pod manifest, names of the per-pod emptyDir volumes). The pod
    spec is the Deployment's template with three changes (see the module
    docstring): restartPolicy Never, emptyDirs renamed `<pod>-<name>`
    everywhere they are mounted, exec probes removed; and the pod keeps its
    init containers. Everything else (images, commands, env, mounts,
    securityContext, grace period) is kept.
    """
    replicas = deployment["spec"].get("replicas", 1)
    if replicas != 1:
        raise ValueError(f"{deployment['metadata']['name']}: replicas is {replicas}; "
                         "the podman backend runs exactly one pod per release")
    template = copy.deepcopy(deployment["spec"]["template"])
    spec = template["spec"]
    renamed = {}
    for volume in spec.get("volumes") or []:
        if "emptyDir" in volume:
            renamed[volume["name"]] = f"{pod_name}-{volume['name']}"
            volume["name"] = renamed[volume["name"]]
    for container in (spec.get("initContainers") or []) + spec["containers"]:
        for mount in container.get("volumeMounts") or []:
            mount["name"] = renamed.get(mount["name"], mount["name"])
        for probe in PROBES:
            container.pop(probe, None)
    spec["restartPolicy"] = "Never"
    metadata = template.get("metadata") or {}
    labels = dict(metadata.get("labels") or {})
    labels.update(extra_labels or {})
    annotations = dict(metadata.get("annotations") or {})
    annotations[INIT_CONTAINER_TYPE] = "always"
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": pod_name, "labels": labels, "annotations": annotations},
        "spec": spec,
    }
    return pod, sorted(renamed.values())


def kube_play_command(pod_yaml_path):
    return ["podman", "kube", "play", "--network", "none", "--quiet", str(pod_yaml_path)]


def pod_stop_command(pod_name, grace_seconds):
    """`podman pod stop` sends each container its stop signal (SIGTERM) at once and
    SIGKILL only after `grace_seconds`, like a kubelet with the pod's grace period."""
    return ["podman", "pod", "stop", "--time", str(grace_seconds), pod_name]


class PodmanPod:
    """What deploy() made for one release, so that cleanup() can remove it."""

    def __init__(self, release, name, manifest, volumes):
        self.release = release
        self.name = name
        self.manifest = manifest
        self.volumes = volumes
        self.play_output = ""

    @property
    def grace_seconds(self):
        # Kubernetes' default when the spec has none.
        return int(self.manifest["spec"].get("terminationGracePeriodSeconds", 30))

    def container(self, container):
        return container_name(self.name, container)

    @property
    def container_names(self):
        return [c["name"] for c in self.manifest["spec"]["containers"]]

    @property
    def all_container_names(self):
        return [c["name"] for c in self.manifest["spec"].get("initContainers") or []] + self.container_names


class PodmanBackend(ActorBackend):
    name = "podman"

    def __init__(self, queue_root, work_dir, helm=HELM):
        super().__init__(queue_root, work_dir)
        self.helm = helm
        self.session_id = secrets.token_hex(3)
        self.env = podman_env()
        self.pods = {}
        self._lock = threading.Lock()

    # -- availability

    @classmethod
    def check_available(cls):
        if shutil.which("podman") is None:
            raise BackendUnavailable("podman is not installed (make podman installs it)")
        env = podman_env()
        if not os.path.exists(env["CONTAINERS_CONF"]):
            raise BackendUnavailable(f"{env['CONTAINERS_CONF']} is missing (make podman writes it)")
        if not (HELM.exists() and os.access(str(HELM), os.X_OK)):
            raise BackendUnavailable(f"helm is not at {HELM} (make helm installs it)")
        missing = [image for image in IMAGES
                   if subprocess.run(["podman", "image", "exists", image], env=env).returncode != 0]
        if missing:
            raise BackendUnavailable(f"images missing from podman: {', '.join(missing)} (make images builds them)")

    # -- deploy

    def _podman(self, *args, check=True, timeout=300):
        return run_command(["podman", *args], env=self.env, check=check, timeout=timeout)

    def render_pod(self, release):
        """helm template the release and convert its Deployment; records the pod."""
        overlay = write_yaml(self.work_dir / f"{release.name}.queue-values.yaml",
                             queue_volume_values(self.queue_root))
        rendered = run_command(helm_template_command(release, overlay, self.helm)).stdout
        (deployment,) = deployments_of(rendered)
        name = pod_name_for(self.session_id, release.name)
        manifest, volumes = deployment_to_pod(deployment, name, {SESSION_LABEL: self.session_id})
        pod = PodmanPod(release, name, manifest, volumes)
        with self._lock:
            self.releases[release.name] = release
            self.pods[release.name] = pod
        return pod

    def _play(self, pod):
        path = write_yaml(self.work_dir / f"{pod.release.name}.pod.yaml", pod.manifest)
        result = run_command(kube_play_command(path), env=self.env, check=False)
        pod.play_output = result.stderr  # stdout only lists the new IDs
        if result.returncode != 0:
            raise DeployError(f"podman kube play {path} exited {result.returncode}:\n"
                              f"{result.stdout}{result.stderr}")

    def deploy(self, releases):
        # Both steps mostly wait (helm, podman's locks, runc): on 2 cores, four
        # parallel kube plays start eight pods in about 6 s, one at a time 15 s.
        with ThreadPoolExecutor(max_workers=4) as pool:
            pods = list(pool.map(self.render_pod, releases))
            list(pool.map(self._play, pods))

    # -- observe

    def _pod(self, release_name):
        try:
            return self.pods[release_name]
        except KeyError:
            raise KeyError(f"release {release_name!r} was not deployed by this backend") from None

    def container_state(self, release_name, container):
        """podman's State of the container (Status, ExitCode, ...), or None if it is gone."""
        result = self._podman("container", "inspect", "--format", "{{json .State}}",
                              self._pod(release_name).container(container), check=False)
        if result.returncode != 0:
            return None
        return json.loads(result.stdout)

    def logs(self, release_name, container):
        result = subprocess.run(["podman", "logs", self._pod(release_name).container(container)],
                                env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, timeout=60)
        return result.stdout

    def wait_ready(self, release_name, timeout=120):
        pod = self._pod(release_name)

        def sidecar_sees_socket():
            state = self.container_state(release_name, RUNTIME_CONTAINER)
            if state is not None and state["Status"] == "exited":
                raise DeployError(f"{pod.container(RUNTIME_CONTAINER)} exited {state['ExitCode']} "
                                  f"instead of becoming ready:\n{self.logs(release_name, RUNTIME_CONTAINER)}")
            probe = self._podman("exec", pod.container(SIDECAR_CONTAINER), *SIDECAR_SEES_SOCKET,
                                 check=False, timeout=30)
            return probe.returncode == 0

        wait_until(sidecar_sees_socket, timeout, f"the runtime of {release_name} to listen on its socket")

    def wait_for_exit(self, release_name, container, timeout=120):
        def exited_state():
            state = self.container_state(release_name, container)
            return state if state is not None and state["Status"] == "exited" else None

        state = wait_until(exited_state, timeout, f"container {container} of {release_name} to exit")
        return ContainerExit(state["ExitCode"], self.logs(release_name, container))

    def stop_pod(self, release_name):
        pod = self._pod(release_name)
        self._podman(*pod_stop_command(pod.name, pod.grace_seconds)[1:],
                     timeout=pod.grace_seconds + 60)
        exits = {}
        for container in pod.container_names:
            state = self.container_state(release_name, container)
            exits[container] = ContainerExit(state["ExitCode"] if state else None,
                                             self.logs(release_name, container))
        return exits

    def failure_report(self, release_names=None):
        names = release_names or sorted(self.pods)
        sections = []
        for release_name in names:
            pod = self.pods.get(release_name)
            if pod is None:
                continue
            sections.append(f"===== pod {pod.name} (release {release_name})")
            if pod.play_output.strip():
                sections.append(f"--- podman kube play said:\n{pod.play_output.rstrip()}")
            for container in pod.all_container_names:
                state = self.container_state(release_name, container)
                if state is None:
                    sections.append(f"--- {container}: no such container (never created, or removed)")
                    continue
                sections.append(f"--- {container} ({state['Status']}, exit code {state['ExitCode']}):\n"
                                f"{self.logs(release_name, container).rstrip()}")
        return "\n".join(sections)

    # -- cleanup

    def _remove_pods(self, pods):
        """Kill, then remove: with podman 4.3, `pod stop --time 0` and then `pod rm`
        take about 3 s for eight pods, while `pod rm --force --time 0` alone takes 25 s."""
        if pods:
            self._podman("pod", "stop", "--ignore", "--time", "0", *pods, check=False)
            self._podman("pod", "rm", "--force", "--ignore", *pods, check=False)

    def cleanup(self):
        """Remove every pod (with its containers) and every per-pod volume.

        Runs after failures too, so each step ignores what is already gone.
        """
        pods = list(self.pods.values())
        self._remove_pods([pod.name for pod in pods])
        # Pods of this session that deploy() started but did not record (an
        # exception between play and bookkeeping) carry the session label.
        self._remove_pods(self._podman("pod", "ps", "--quiet", "--filter",
                                       f"label={SESSION_LABEL}={self.session_id}", check=False).stdout.split())
        volumes = [volume for pod in pods for volume in pod.volumes]
        if volumes:
            existing = set(self._podman("volume", "ls", "--quiet", check=False).stdout.split())
            to_remove = [volume for volume in volumes if volume in existing]
            if to_remove:
                self._podman("volume", "rm", "--force", *to_remove, check=False)
