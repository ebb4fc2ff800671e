"""Scenarios 1 and 2 on a real kubelet: `helm install --wait`, `helm test`, and what the pods run.

1. A release with two actors (the chart's `actors` list) becomes Ready under
   `helm install --wait`, and `helm test` passes; the same with the pinned helm 3.
2. The init container copied the repository's runtime into the model
   container, and every container runs with the security context the chart
   renders: non-root, no capabilities, a read-only root filesystem.
"""

import hashlib
import json

import pytest

from .kube import HELM, HELM3, INSTANCE_LABEL, REPO_ROOT, VALUES_DIR, pod_ready

TWO_ACTORS = VALUES_DIR / "two-actors.yaml"
RUNTIME_SOURCE = REPO_ROOT / "runtime" / "asya_runtime.py"
RUNTIME_IN_POD = "/opt/asya/asya_runtime.py"
RUNTIME_CONTAINER = "asya-runtime"


def actors(*names):
    return [{"name": name, "handler": "my_package.echo.echo"} for name in names]


def install_two_actors(kube, namespace, release_values, broker_values, helm, names):
    release = "pair"
    kube.helm_install(release, namespace, release_values(TWO_ACTORS, broker=broker_values),
                      set_values={"actors": actors(*names)}, helm=helm)
    return release


def deployments(kube, namespace, release):
    return kube.json("get", "deployments", "-n", namespace, "-l", f"{INSTANCE_LABEL}={release}")["items"]


@pytest.mark.parametrize("helm", [HELM, HELM3], ids=["helm4", "helm3"])
def test_two_actors_install_and_pass_helm_test(kube, namespace, release_values, broker_values, helm):
    names = (f"{namespace[-7:]}-a", f"{namespace[-7:]}-b")
    release = install_two_actors(kube, namespace, release_values, broker_values, helm, names)

    # --wait returned: both Deployments report their pod available.
    found = {item["metadata"]["name"]: item["status"].get("availableReplicas", 0)
             for item in deployments(kube, namespace, release)}
    assert len(found) == 2 and all(count == 1 for count in found.values()), found
    pods = kube.release_pods(namespace, release)
    serving = [pod for pod in pods if pod["metadata"]["labels"].get("app.kubernetes.io/component") != "test"]
    assert len(serving) == 2 and all(pod_ready(pod) for pod in serving), [
        (pod["metadata"]["name"], pod["status"].get("phase")) for pod in serving]

    result = kube.helm_test(release, namespace, helm=helm, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    phases = {pod["metadata"]["name"]: pod["status"]["phase"]
              for pod in kube.release_pods(namespace, release)
              if pod["metadata"]["labels"].get("app.kubernetes.io/component") == "test"}
    assert len(phases) == 2 and set(phases.values()) == {"Succeeded"}, phases


def in_container(kube, namespace, pod, container, code):
    """Run Python in a container of the pod (every image here has python3); return its stdout."""
    return kube.exec(namespace, pod, container, ["python3", "-c", code]).stdout.strip()


def test_runtime_copied_and_containers_run_as_the_chart_renders(kube, namespace, release_values,
                                                                broker_values):
    names = (f"{namespace[-7:]}-a", f"{namespace[-7:]}-b")
    files = release_values(TWO_ACTORS, broker=broker_values)
    release = install_two_actors(kube, namespace, release_values, broker_values, HELM, names)
    rendered = {document["metadata"]["name"]: document["spec"]
                for document in kube.helm_template(release, namespace, files,
                                                   set_values={"actors": actors(*names)})
                if document["kind"] == "Deployment"}
    assert len(rendered) == 2

    expected_sum = hashlib.sha256(RUNTIME_SOURCE.read_bytes()).hexdigest()
    for deployment in rendered.values():
        spec = deployment["template"]["spec"]
        selector = ",".join(f"{key}={value}" for key, value in deployment["selector"]["matchLabels"].items())
        pod = kube.wait_pods_ready(namespace, selector)[0]
        pod_name, live = pod["metadata"]["name"], pod["spec"]

        copied = in_container(kube, namespace, pod_name, RUNTIME_CONTAINER,
                              f"import hashlib; print(hashlib.sha256(open({RUNTIME_IN_POD!r}, 'rb').read()).hexdigest())")
        assert copied == expected_sum, f"{RUNTIME_IN_POD} in {pod_name} is not the repository's runtime"

        # The test message NOTES.txt offers, through kubectl exec, under the pod's
        # non-root user and read-only root filesystem.
        called = kube.exec(namespace, pod_name, RUNTIME_CONTAINER,
                           ["python3", RUNTIME_IN_POD, "--call", '{"ping": 1}'], check=False)
        assert called.returncode == 0, called.stdout + called.stderr
        (echoed,) = json.loads(called.stdout)
        assert echoed["payload"] == {"ping": 1} and echoed["id"].startswith("call-"), echoed

        assert live.get("securityContext") == spec.get("securityContext")
        live_containers = {c["name"]: c for c in live.get("initContainers", []) + live["containers"]}
        rendered_containers = {c["name"]: c for c in spec.get("initContainers", []) + spec["containers"]}
        assert set(live_containers) == set(rendered_containers)
        for container_name, container in rendered_containers.items():
            assert live_containers[container_name].get("securityContext") == container.get("securityContext"), (
                container_name)

        statuses = pod["status"].get("initContainerStatuses", []) + pod["status"]["containerStatuses"]
        running = [status["name"] for status in statuses if "running" in (status.get("state") or {})]
        assert RUNTIME_CONTAINER in running, statuses
        run_as = spec["securityContext"]["runAsUser"]
        assert run_as != 0
        for container_name in running:
            identity = in_container(kube, namespace, pod_name, container_name, "\n".join([
                "import os",
                "caps = [l.split()[1] for l in open('/proc/self/status') if l.startswith('CapEff')][0]",
                "try:",
                "    open('/asya-write-probe', 'w')",
                "    root_fs = 'writable'",
                "except OSError:",
                "    root_fs = 'read-only'",
                "print(os.getuid(), os.getgid(), int(caps, 16), root_fs)",
            ]))
            assert identity == f"{run_as} {spec['securityContext']['runAsGroup']} 0 read-only", (
                container_name, identity)



# The first releases whose CRI mounts an image volume (the kubelet's ImageVolume
# feature passes an image reference the runtime must mount read-only).
IMAGE_VOLUME_RUNTIMES = {"containerd": (2, 1), "cri-o": (1, 31)}


def image_volume_support(node):
    """(True, "") when the node's container runtime mounts image volumes, else (False, what is missing)."""
    runtime = node["status"]["nodeInfo"]["containerRuntimeVersion"]  # e.g. containerd://1.6.20
    name, _, version = runtime.partition("://")
    needed = IMAGE_VOLUME_RUNTIMES.get(name)
    if needed is None:
        return False, f"the container runtime {runtime} is not one known to mount image volumes"
    parts = tuple(int(part) for part in version.split("~")[0].split("-")[0].split(".")[:2])
    if parts < needed:
        return False, (f"the node's container runtime {runtime} cannot mount image volumes "
                       f"({name} {'.'.join(map(str, needed))} or newer is needed)")
    return True, ""


def test_runtime_delivered_by_image_volume(kube, namespace, release_values, broker_values):
    nodes = kube.json("get", "nodes")["items"]
    supported, missing = image_volume_support(nodes[0])
    if not supported:
        pytest.skip(f"runtimeDelivery: imageVolume not run: {missing}")
    name = f"{namespace[-7:]}-iv"
    kube.helm_install(name, namespace, release_values(TWO_ACTORS, broker=broker_values),
                      set_values={"handler": "my_package.echo.echo", "runtimeDelivery": "imageVolume",
                                  "test": {"enabled": False}})
    pod = kube.wait_pods_ready(namespace, f"{INSTANCE_LABEL}={name}")[0]
    assert not any(container["name"] != RUNTIME_CONTAINER for container in pod["spec"].get("initContainers", [])
                   if container.get("restartPolicy") != "Always"), "imageVolume must not copy with an init container"
    copied = in_container(kube, namespace, pod["metadata"]["name"], RUNTIME_CONTAINER,
                          f"import hashlib; print(hashlib.sha256(open({RUNTIME_IN_POD!r}, 'rb').read()).hexdigest())")
    assert copied == hashlib.sha256(RUNTIME_SOURCE.read_bytes()).hexdigest()
