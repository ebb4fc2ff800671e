"""The podman backend: each release's Deployment becomes one podman pod.

    helm template ─► Deployment ─► deployment_to_pod() ─► Pod YAML
                                         ─► podman kube play --network none

Why the Deployment is rewritten rather than played as it is (podman 4.3):
- a played Deployment restarts its init container forever; a `kind: Pod`
  with `restartPolicy: Never` runs it once and keeps the exit codes of the
  other containers for the test to read;
- an emptyDir becomes a hostPath directory of the pod's own, mode 0777,
  under the session's work directory (what a kubelet makes of an emptyDir).
  kube play's own emptyDir is a podman volume named after the Kubernetes
  volume (two pods would share one socket), and podman 4.3 sets that
  volume's owner and mode from the *host's* directory at the mount path when
  the image's /var/run is a symlink (Debian's is): with a host /var/run/asya
  (root, 0755) the runtime could not create its socket. A bind-mounted
  directory is not touched by podman; cleanup() removes it;
- kube play deletes an init container once it has run, with its log; the
  pod annotation INIT_CONTAINER_TYPE=always keeps it (its log is part of a
  failure report). It would run again if the pod restarted; these never do;
- exec probes become podman healthchecks driven by systemd timers, which do
  not exist here (every kube play would log errors): they are dropped. The
  k8s suite (tests/e2e/k8s) runs the probes for real, on a kubelet.

No network is ever created: kube play runs with `--network none`; a pod
whose sidecar uses RabbitMQ gets `hostNetwork: true` and is played with
`--network host`, so it shares the host's loopback, where the test broker
listens on 127.0.0.1 (no bridge, no CNI interface: kube play without a
--network would define its podman-default-kube-network).

A release's pre-install hook Jobs (the chart's topology Job, which creates
the release's queues through the broker's management API) run first, as helm
runs them: each Job's pod is played, must exit 0, and is removed
(hook-succeeded) before the release's pod starts. The test broker starts
empty; only these Jobs (and fake-mode sidecars, which declare their own
queues) create queues.
"""

import copy
import json
import os
import secrets
import shutil
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor

from asya_testkit.wait import wait_for

from .base import (
    BROKER_URL,
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
    broker_values,
    deep_merge,
    deployments_of,
    helm_template_command,
    pre_install_jobs,
    queue_volume_values,
    run_command,
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


DOWNWARD_FIELDS = {
    "metadata.namespace": lambda pod_name: "default",
    "metadata.name": lambda pod_name: pod_name,
}


def uses_rabbitmq(container):
    return any(entry.get("name") == "ASYA_TRANSPORT" and entry.get("value") == "rabbitmq"
               for entry in container.get("env") or [])


def deployment_to_pod(deployment, pod_name, extra_labels=None, volume_root="/tmp/asya-e2e-volumes"):
    """The Pod that runs one replica of `deployment` under podman kube play.

    Returns (pod manifest, host directories of its emptyDirs). The pod spec
    is the Deployment's template with these changes (see the module
    docstring): restartPolicy Never; each emptyDir a hostPath directory
    `<volume_root>/<pod>-<name>` (the caller creates it, mode 0777); exec
    probes removed (probes_of keeps them for the tests that run them);
    downward-API env entries resolved (podman 4.3 has no fieldRef for the
    namespace); hostNetwork when the sidecar talks to RabbitMQ; and the pod
    keeps its init containers. Everything else (images, commands, env,
    mounts, securityContext, grace period) is kept.
    """
    replicas = deployment["spec"].get("replicas", 1)
    if replicas != 1:
        raise ValueError(f"{deployment['metadata']['name']}: replicas is {replicas}; "
                         "the podman backend runs exactly one pod per release")
    template = copy.deepcopy(deployment["spec"]["template"])
    spec = template["spec"]
    host_dirs = []
    for volume in spec.get("volumes") or []:
        if "emptyDir" in volume:
            host_dir = f"{volume_root}/{pod_name}-{volume['name']}"
            del volume["emptyDir"]
            volume["hostPath"] = {"path": host_dir, "type": "Directory"}
            host_dirs.append(host_dir)
    for container in (spec.get("initContainers") or []) + spec["containers"]:
        for probe in PROBES:
            container.pop(probe, None)
        for entry in container.get("env") or []:
            # podman 4.3 refuses fieldRef metadata.namespace: resolve it as the
            # kubelet would (the pod's namespace, "default" here).
            field = ((entry.get("valueFrom") or {}).get("fieldRef") or {}).get("fieldPath")
            if field in DOWNWARD_FIELDS:
                entry.pop("valueFrom")
                entry["value"] = DOWNWARD_FIELDS[field](pod_name)
    if any(uses_rabbitmq(container) for container in spec["containers"]):
        spec["hostNetwork"] = True
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
    return pod, sorted(host_dirs)


def job_to_pod(job, pod_name, extra_labels=None):
    """The Pod that runs a hook Job's one attempt: its template, restartPolicy Never,
    on the host's network (the Job talks to the broker on 127.0.0.1)."""
    template = copy.deepcopy(job["spec"]["template"])
    spec = template["spec"]
    spec["hostNetwork"] = True
    spec["restartPolicy"] = "Never"
    labels = dict((template.get("metadata") or {}).get("labels") or {})
    labels.update(extra_labels or {})
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": pod_name, "labels": labels}, "spec": spec}


def probes_of(deployment):
    """{container: {probe: probe spec}} of the Deployment's pod template (for tests that run them)."""
    spec = deployment["spec"]["template"]["spec"]
    return {container["name"]: {probe: copy.deepcopy(container[probe]) for probe in PROBES if probe in container}
            for container in (spec.get("initContainers") or []) + spec["containers"]}


def kube_play_command(pod_yaml_path, host_network=False):
    return ["podman", "kube", "play", "--network", "host" if host_network else "none",
            "--quiet", str(pod_yaml_path)]


def pod_stop_command(pod_name, grace_seconds):
    """`podman pod stop` sends each container its stop signal (SIGTERM) at once and
    SIGKILL only after `grace_seconds`, like a kubelet with the pod's grace period."""
    return ["podman", "pod", "stop", "--time", str(grace_seconds), pod_name]


class PodmanPod:
    """What deploy() made for one release, so that cleanup() can remove it."""

    def __init__(self, release, name, manifest, volumes, probes=None, hooks=()):
        self.release = release
        self.name = name
        self.manifest = manifest
        self.volumes = volumes
        self.probes = probes or {}
        self.hooks = list(hooks)  # pod manifests of the pre-install Jobs, in order
        self.hook_logs = {}  # hook pod name -> its container's log
        self.play_output = ""

    @property
    def grace_seconds(self):
        # Kubernetes' default when the spec has none.
        return int(self.manifest["spec"].get("terminationGracePeriodSeconds", 30))

    def container(self, container):
        return container_name(self.name, container)

    @property
    def host_network(self):
        return bool(self.manifest["spec"].get("hostNetwork"))

    def probe(self, container, probe):
        """The exec command of one of the chart's probes (dropped from the played pod)."""
        return self.probes[container][probe]["exec"]["command"]

    @property
    def container_names(self):
        return [c["name"] for c in self.manifest["spec"]["containers"]]

    @property
    def all_container_names(self):
        return [c["name"] for c in self.manifest["spec"].get("initContainers") or []] + self.container_names


class PodmanBackend(ActorBackend):
    name = "podman"

    def __init__(self, queue_root, work_dir, helm=HELM, broker_url=BROKER_URL, management_url=None):
        super().__init__(queue_root, work_dir, broker_url, management_url)
        self.helm = helm
        self.session_id = secrets.token_hex(3)
        self.env = podman_env()
        self.pods = {}
        self._lock = threading.Lock()
        self.volume_root = self.work_dir / "volumes"

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
        overlay = write_yaml(self.work_dir / f"{release.name}.backend-values.yaml",
                             deep_merge(queue_volume_values(self.queue_root),
                                        broker_values(release, self.broker_url, self.management_url)))
        rendered = run_command(helm_template_command(release, overlay, self.helm)).stdout
        (deployment,) = deployments_of(rendered)
        name = pod_name_for(self.session_id, release.name)
        labels = {SESSION_LABEL: self.session_id}
        manifest, volumes = deployment_to_pod(deployment, name, labels, volume_root=str(self.volume_root))
        hooks = [job_to_pod(job, f"{name}-hook{index}", labels)
                 for index, job in enumerate(pre_install_jobs(rendered))]
        pod = PodmanPod(release, name, manifest, volumes, probes_of(deployment), hooks)
        with self._lock:
            self.releases[release.name] = release
            self.pods[release.name] = pod
        return pod

    def _play(self, pod):
        for host_dir in pod.volumes:
            os.makedirs(host_dir, exist_ok=True)
            os.chmod(host_dir, 0o777)  # an emptyDir's mode: any container user may write
        path = write_yaml(self.work_dir / f"{pod.release.name}.pod.yaml", pod.manifest)
        result = run_command(kube_play_command(path, pod.host_network), env=self.env, check=False)
        pod.play_output = result.stderr  # stdout only lists the new IDs
        if result.returncode != 0:
            raise DeployError(f"podman kube play {path} exited {result.returncode}:\n"
                              f"{result.stdout}{result.stderr}")

    def _run_hooks(self, pod, timeout=300):
        """Run the release's pre-install Jobs one after the other, as helm does; each must exit 0."""
        for hook in pod.hooks:
            hook_name = hook["metadata"]["name"]
            path = write_yaml(self.work_dir / f"{hook_name}.pod.yaml", hook)
            run_command(kube_play_command(path, host_network=True), env=self.env)
            (step,) = hook["spec"]["containers"]
            container = container_name(hook_name, step["name"])

            def exited(container=container):
                result = self._podman("container", "inspect", "--format", "{{json .State}}", container,
                                      check=False)
                state = json.loads(result.stdout) if result.returncode == 0 else None
                return state if state is not None and state["Status"] == "exited" else None

            state = wait_for(exited, f"the pre-install Job {hook_name} of {pod.release.name} to finish",
                             timeout, interval=0.2)
            log = self._podman("logs", container, check=False).stdout
            pod.hook_logs[hook_name] = log
            if state["ExitCode"] != 0:
                raise DeployError(f"the pre-install Job of release {pod.release.name} exited "
                                  f"{state['ExitCode']} (helm install would fail here):\n{log}")
            # hook-delete-policy hook-succeeded
            self._remove_pods([hook_name])

    def deploy(self, releases):
        # Every step mostly waits (helm, podman's locks, runc): on 2 cores, four
        # parallel kube plays start eight pods in about 6 s, one at a time 15 s.
        with ThreadPoolExecutor(max_workers=4) as pool:
            pods = list(pool.map(self.render_pod, releases))
            list(pool.map(self._run_hooks, pods))
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

        wait_for(sidecar_sees_socket, f"the runtime of {release_name} to listen on its socket", timeout,
                 interval=0.2)

    def wait_for_exit(self, release_name, container, timeout=120):
        def exited_state():
            state = self.container_state(release_name, container)
            return state if state is not None and state["Status"] == "exited" else None

        state = wait_for(exited_state, f"container {container} of {release_name} to exit", timeout, interval=0.2)
        return ContainerExit(state["ExitCode"], self.logs(release_name, container))

    def exec(self, release_name, container, argv, timeout=60):
        """Run argv in the container as the kubelet runs an exec probe; returns the CompletedProcess."""
        return self._podman("exec", self._pod(release_name).container(container), *argv,
                            check=False, timeout=timeout)

    def probe_command(self, release_name, container, probe):
        return self._pod(release_name).probe(container, probe)

    def kill_container(self, release_name, container, signal_name="KILL"):
        self._podman("kill", "--signal", signal_name, self._pod(release_name).container(container))

    def start_container(self, release_name, container):
        """Start an exited container of the pod again (a kubelet restart, by hand)."""
        self._podman("start", self._pod(release_name).container(container))

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
            for hook_name, log in pod.hook_logs.items():
                sections.append(f"--- pre-install Job {hook_name}:\n{log.rstrip()}")
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
        The pods' emptyDir directories go with the volume root.
        """
        pods = list(self.pods.values())
        self._remove_pods([pod.name for pod in pods] + [hook["metadata"]["name"] for pod in pods for hook in pod.hooks])
        # Pods of this session that deploy() started but did not record (an
        # exception between play and bookkeeping) carry the session label.
        self._remove_pods(self._podman("pod", "ps", "--quiet", "--filter",
                                       f"label={SESSION_LABEL}={self.session_id}", check=False).stdout.split())
        shutil.rmtree(str(self.volume_root), ignore_errors=True)
