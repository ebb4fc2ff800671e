"""The podman adapter, checked without running a pod: what it turns each release into.

These run wherever helm is installed (make helm). The same releases on a real
kubelet, kind included, are the k8s suite's (tests/e2e/k8s, make e2e-k8s).
"""

import kubernetes_validate
import pytest
import yaml
from backends.base import (
    BROKER_URL,
    HELM,
    QUEUE_MOUNT_PATH,
    QUEUE_VOLUME,
    SIDECAR_CONTAINER,
    broker_values,
    deep_merge,
    deployments_of,
    helm_template_command,
    pre_install_jobs,
    queue_volume_values,
    run_command,
    write_yaml,
)
from backends.podman import (
    INIT_CONTAINER_TYPE,
    PodmanPod,
    deployment_to_pod,
    job_to_pod,
    kube_play_command,
    pod_stop_command,
    probes_of,
)
from releases import LATE_RELEASES, RELEASES, SLOW

KUBERNETES_VERSION = "1.32.0"  # the schema version the rendered pods are validated against
HOST_QUEUE_DIR = "/tmp/asya-e2e-test/queues"


@pytest.fixture(scope="module")
def render(tmp_path_factory):
    """render(release, overlay) -> the release's Deployment, rendered by the pinned helm."""
    if not HELM.exists():
        pytest.skip(f"helm is not at {HELM}: run make helm")
    work_dir = tmp_path_factory.mktemp("renders")

    def render_release(release, overlay):
        overlay_path = write_yaml(work_dir / f"{release.name}.yaml", overlay)
        (deployment,) = deployments_of(run_command(helm_template_command(release, overlay_path)).stdout)
        return deployment

    return render_release


def podman_overlay(release=None):
    overlay = queue_volume_values(HOST_QUEUE_DIR)
    return deep_merge(overlay, broker_values(release)) if release is not None else overlay


def volumes_by_name(spec):
    return {volume["name"]: volume for volume in spec["volumes"]}


def all_containers(spec):
    return spec.get("initContainers", []) + spec["containers"]


# ---------------------------------------------------------------- podman

ALL_RELEASES = RELEASES + list(LATE_RELEASES.values())


def test_the_releases_topology_job_runs_first_as_a_pod_on_the_hosts_loopback(tmp_path):
    (release,) = [each for each in RELEASES if each.name == SLOW]
    if not HELM.exists():
        pytest.skip(f"helm is not at {HELM}: run make helm")
    management = "http://127.0.0.1:15999"
    overlay = write_yaml(tmp_path / "overlay.yaml", deep_merge(podman_overlay(), broker_values(release, BROKER_URL,
                                                                                               management)))
    (job,) = pre_install_jobs(run_command(helm_template_command(release, overlay)).stdout)
    pod = job_to_pod(job, "asya-e2e-x-slow-hook0", {"asya-e2e-session": "x"})
    spec = pod["spec"]
    assert (pod["kind"], spec["hostNetwork"], spec["restartPolicy"]) == ("Pod", True, "Never")
    (step,) = spec["containers"]
    assert step["command"][3] == "apply"
    env = {entry["name"]: entry.get("value") for entry in step["env"]}
    assert (env["ASYA_RABBITMQ_URL"], env["ASYA_RABBITMQ_MANAGEMENT_URL"]) == (BROKER_URL, management)
    assert pod["metadata"]["labels"]["asya-e2e-session"] == "x"


@pytest.mark.parametrize("release", ALL_RELEASES, ids=lambda r: r.name)
def test_podman_pod_runs_once_with_volumes_of_its_own(render, release):
    deployment = render(release, podman_overlay(release))

    pod, own_dirs = deployment_to_pod(deployment, "asya-e2e-abc123-x", volume_root="/v")

    spec = pod["spec"]
    assert pod["kind"] == "Pod" and pod["metadata"]["name"] == "asya-e2e-abc123-x"
    assert spec["restartPolicy"] == "Never"
    volumes = volumes_by_name(spec)
    # Each emptyDir is a directory of this pod's own on the host, so podman
    # never derives its owner from the host's /var/run (see podman.py).
    assert not [name for name, volume in volumes.items() if "emptyDir" in volume]
    assert own_dirs == ["/v/asya-e2e-abc123-x-asya-runtime", "/v/asya-e2e-abc123-x-asya-socket",
                        "/v/asya-e2e-abc123-x-asya-tmp"]
    for name in ("asya-runtime", "asya-socket", "asya-tmp"):
        assert volumes[name]["hostPath"] == {"path": f"/v/asya-e2e-abc123-x-{name}", "type": "Directory"}
    # The queue directory stays the one host directory every pod shares.
    assert volumes[QUEUE_VOLUME]["hostPath"] == {"path": HOST_QUEUE_DIR, "type": "Directory"}
    for container in all_containers(spec):
        for mount in container.get("volumeMounts", []):
            assert mount["name"] in volumes, f"{container['name']} mounts a volume the pod lacks"
    sidecar = next(c for c in spec["containers"] if c["name"] == SIDECAR_CONTAINER)
    assert {"name": QUEUE_VOLUME, "mountPath": QUEUE_MOUNT_PATH} in sidecar["volumeMounts"]
    assert pod["metadata"]["annotations"][INIT_CONTAINER_TYPE] == "always"
    # Every e2e sidecar talks to the broker on the host's loopback.
    assert spec["hostNetwork"] is True
    assert {"name": "ASYA_RABBITMQ_URL", "value": BROKER_URL} in sidecar["env"]
    assert not [entry for c in all_containers(spec) for entry in c.get("env", []) if "valueFrom" in entry]
    kubernetes_validate.validate(pod, KUBERNETES_VERSION, strict=True)


def test_podman_pod_keeps_everything_but_probes_restart_policy_volumes_and_downward_env(render):
    deployment = render(RELEASES[0], podman_overlay(RELEASES[0]))
    template = deployment["spec"]["template"]["spec"]

    pod, _ = deployment_to_pod(deployment, "p")

    for before, after in zip(all_containers(template), all_containers(pod["spec"])):
        for key in ("name", "image", "command", "args", "securityContext", "resources", "volumeMounts"):
            assert before.get(key) == after.get(key), f"{before['name']}.{key} changed"
        assert not {"startupProbe", "readinessProbe", "livenessProbe"} & set(after)
        # The namespace from the downward API becomes its value, as the kubelet resolves it.
        resolved = [dict(entry, value="default") if "valueFrom" in entry else entry
                    for entry in before.get("env", [])]
        for entry in resolved:
            entry.pop("valueFrom", None)
        assert after.get("env", []) == resolved
    assert pod["spec"]["terminationGracePeriodSeconds"] == template["terminationGracePeriodSeconds"]
    assert pod["spec"]["securityContext"] == template["securityContext"]


def test_the_chart_probes_are_kept_for_the_tests_that_run_them(render):
    pod_probes = probes_of(render(RELEASES[0], podman_overlay(RELEASES[0])))

    runtime = pod_probes["asya-runtime"]
    assert {"livenessProbe", "readinessProbe"} <= set(runtime)
    assert runtime["livenessProbe"]["exec"]["command"][-1] == "--probe"


def test_two_podman_pods_of_one_release_share_no_volume(render):
    deployment = render(RELEASES[0], podman_overlay())

    _, first = deployment_to_pod(deployment, "asya-e2e-aaaaaa-pkg")
    _, second = deployment_to_pod(deployment, "asya-e2e-bbbbbb-pkg")

    assert not set(first) & set(second)


def test_podman_adapter_refuses_a_deployment_of_several_replicas(render):
    deployment = render(RELEASES[0], podman_overlay())
    deployment["spec"]["replicas"] = 2

    with pytest.raises(ValueError, match="replicas is 2"):
        deployment_to_pod(deployment, "p")


def test_podman_commands_use_no_network_and_the_pods_grace_period(render):
    slow = next(r for r in RELEASES if r.name == SLOW)
    pod, volumes = deployment_to_pod(render(slow, podman_overlay()), "asya-e2e-abc123-slow")

    assert kube_play_command("/w/slow.pod.yaml") == [
        "podman", "kube", "play", "--network", "none", "--quiet", "/w/slow.pod.yaml"]
    # A hostNetwork pod shares the host's loopback; no network is defined
    # (kube play without --network would define podman-default-kube-network).
    assert kube_play_command("/w/slow.pod.yaml", host_network=True) == [
        "podman", "kube", "play", "--network", "host", "--quiet", "/w/slow.pod.yaml"]
    # tests/e2e/values/slow-handler.yaml gives the pod 90 s to finish its message.
    assert pod_stop_command("asya-e2e-abc123-slow", PodmanPod(slow, "asya-e2e-abc123-slow", pod, volumes).grace_seconds) == [
        "podman", "pod", "stop", "--time", "90", "asya-e2e-abc123-slow"]


# ---------------------------------------------------------------- both

def test_no_scenario_values_file_sets_pod_volumes():
    # The backend's overlay sets workload.template.spec.volumes (the queue
    # directory) and helm replaces lists whole: a scenario's volumes would
    # silently disappear.
    for release in ALL_RELEASES:
        spec = yaml.safe_load(release.values_path.read_text()).get("workload", {}).get("template", {}).get("spec", {})
        assert "volumes" not in spec, f"{release.values_file} sets workload.template.spec.volumes"

