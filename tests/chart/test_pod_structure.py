"""The pod the chart renders: what a user's actor pod will actually contain."""

import pytest
from chart_helpers import CI_VALUES_DIR, RELEASE, container, documents, env_of, pod_spec, runtime_values

SOCKET_DIR = "/var/run/asya"
RUNTIME_DIR = "/opt/asya"
RUNTIME_PATH = "/opt/asya/asya_runtime.py"


def mounts_by_name(container_spec):
    return {mount["name"]: mount for mount in container_spec.get("volumeMounts", [])}


def volumes_by_name(spec):
    return {volume["name"]: volume for volume in spec["volumes"]}


@pytest.fixture(scope="module")
def package_pod(ci_renders):
    return pod_spec(documents(ci_renders["package-handler-values"]))


def test_init_container_copies_the_runtime_into_the_shared_volume(package_pod):
    init = container(package_pod, "asya-runtime-init", key="initContainers")
    # The runtime image's tag defaults to the chart's appVersion.
    assert init["image"] == "localhost/asya-runtime:0.1.0"
    assert init["args"] == [RUNTIME_DIR]
    assert mounts_by_name(init)["asya-runtime"] == {"name": "asya-runtime", "mountPath": RUNTIME_DIR}
    assert volumes_by_name(package_pod)["asya-runtime"] == {"name": "asya-runtime", "emptyDir": {}}


def test_model_container_mounts_the_runtime_read_only(package_pod):
    runtime = container(package_pod, "asya-runtime")
    assert mounts_by_name(runtime)["asya-runtime"] == {
        "name": "asya-runtime", "mountPath": RUNTIME_DIR, "readOnly": True}


def test_model_container_runs_the_runtime_with_the_default_interpreter(package_pod):
    runtime = container(package_pod, "asya-runtime")
    assert runtime["command"] == ["python3", RUNTIME_PATH]
    assert "args" not in runtime
    assert runtime["image"] == "localhost/asya-e2e-model-debian:dev"


@pytest.mark.parametrize("values_file, python", [
    ("conda-values", "/opt/conda/bin/python"),
    ("standalone-script-values", "/opt/conda/bin/python"),
    ("gpu-values", "/usr/bin/python3"),
])
def test_command_uses_python_executable(ci_renders, values_file, python):
    runtime = container(pod_spec(documents(ci_renders[values_file])), "asya-runtime")
    assert runtime["command"] == [python, RUNTIME_PATH]


def test_first_class_values_become_asya_variables(package_pod):
    env = dict(env_of(container(package_pod, "asya-runtime")))
    assert env["PYTHONPATH"] == "/app"
    assert env["ASYA_HANDLER"] == "my_package.handler.process"
    assert env["ASYA_HANDLER_MODE"] == "payload"
    assert env["ASYA_INCLUDE_METADATA"] == "false"
    assert env["ASYA_CHUNK_SIZE"] == "4096"
    assert env["ASYA_ENABLE_VALIDATION"] == "true"
    assert env["ASYA_LOG_LEVEL"] == "INFO"
    assert env["ASYA_LOG_FORMAT"] == "text"
    assert env["ASYA_ACCESS_LOG"] == "true"
    # 0 means "the runtime's default", so the chart leaves the variable out.
    assert "ASYA_MAX_MESSAGE_SIZE" not in env


def test_envelope_mode_values(ci_renders):
    spec = pod_spec(documents(ci_renders["envelope-mode-values"]))
    env = dict(env_of(container(spec, "asya-runtime")))
    assert env["ASYA_HANDLER"] == "routing.router.route"
    assert env["ASYA_HANDLER_MODE"] == "envelope"
    assert env["ASYA_CHUNK_SIZE"] == "65536"
    # A large integer must reach the runtime as digits, not as 1.34217728e+08.
    assert env["ASYA_MAX_MESSAGE_SIZE"] == "134217728"


def test_log_values_reach_the_runtime(chart):
    values = runtime_values()
    values.update(logFormat="json", accessLog=False)
    env = dict(env_of(container(pod_spec(chart.template(values)), "asya-runtime")))
    assert env["ASYA_LOG_FORMAT"] == "json"
    # Rendered as the word the runtime parses, like the other booleans, not YAML's False.
    assert env["ASYA_ACCESS_LOG"] == "false"


def test_container_env_wins_over_chart_values(chart):
    values = runtime_values(env=[
        {"name": "ASYA_HANDLER", "value": "script.predict"},
        {"name": "ASYA_LOG_LEVEL", "value": "DEBUG"},
        {"name": "PYTHONPATH", "value": "/foo/bar"},
    ])
    values.update(handler="my_package.handler.process", logLevel="WARNING")
    env = env_of(container(pod_spec(chart.template(values)), "asya-runtime"))
    names = [name for name, _ in env]
    assert len(names) == len(set(names)), f"duplicate env entries: {names}"
    assert dict(env)["ASYA_HANDLER"] == "script.predict"
    assert dict(env)["ASYA_LOG_LEVEL"] == "DEBUG"
    # The user's entries keep their order and come first ($(VAR) references need that).
    assert names[:3] == ["ASYA_HANDLER", "ASYA_LOG_LEVEL", "PYTHONPATH"]


def test_handler_may_come_only_from_container_env(ci_renders):
    env = env_of(container(pod_spec(documents(ci_renders["standalone-script-values"])),
                           "asya-runtime"))
    assert ("ASYA_HANDLER", "script.predict") in env
    assert ("PYTHONPATH", "/foo/bar") in env
    assert [name for name, _ in env].count("ASYA_HANDLER") == 1


def test_env_from_satisfies_the_handler_requirement(chart):
    values = runtime_values(envFrom=[{"configMapRef": {"name": "model-settings"}}])
    values["handler"] = ""
    runtime = container(pod_spec(chart.template(values)), "asya-runtime")
    assert runtime["envFrom"] == [{"configMapRef": {"name": "model-settings"}}]
    assert "ASYA_HANDLER" not in dict(env_of(runtime))


def test_multiple_pythonpath_entries_are_kept_verbatim(ci_renders):
    env = dict(env_of(container(pod_spec(documents(ci_renders["multiple-pythonpath-values"])),
                                "asya-runtime")))
    assert env["PYTHONPATH"] == "/app:/opt/models"


def test_socket_dir_is_set_once_and_shared_with_the_sidecar(package_pod):
    runtime = container(package_pod, "asya-runtime")
    sidecar = container(package_pod, "asya-sidecar")
    assert env_of(runtime).count(("ASYA_SOCKET_DIR", SOCKET_DIR)) == 1
    assert mounts_by_name(runtime)["asya-socket"]["mountPath"] == SOCKET_DIR
    assert mounts_by_name(sidecar)["asya-socket"]["mountPath"] == SOCKET_DIR
    assert "readOnly" not in mounts_by_name(sidecar)["asya-socket"]
    assert volumes_by_name(package_pod)["asya-socket"] == {"name": "asya-socket", "emptyDir": {}}


def test_fake_sidecar_image_and_env(chart):
    values = runtime_values()
    values["sidecar"] = {"flavor": "fake"}
    sidecar = container(pod_spec(chart.template(values)), "asya-sidecar")
    assert sidecar["image"] == "localhost/asya-sidecar-fake:dev"
    assert env_of(sidecar) == [("ASYA_SOCKET_DIR", SOCKET_DIR), ("ASYA_ACTOR_NAME", RELEASE),
                               ("ASYA_CALL_TIMEOUT", "300")]


def test_sidecar_env_and_mounts_from_values(chart):
    values = runtime_values()
    values["workload"]["template"]["spec"]["volumes"] = [
        {"name": "queues", "hostPath": {"path": "/srv/asya-queues", "type": "Directory"}}]
    values.update(actorName="resize", sidecar={
        "flavor": "fake",
        "image": {"repository": "ghcr.io/example/sidecar", "tag": "1.2.3", "pullPolicy": "Always"},
        "env": [{"name": "ASYA_QUEUE_DIR", "value": "/var/asya/queues"}],
        "extraVolumeMounts": [{"name": "queues", "mountPath": "/var/asya/queues"}],
        "resources": {"limits": {"memory": "64Mi"}},
    })
    spec = pod_spec(chart.template(values))
    sidecar = container(spec, "asya-sidecar")
    assert sidecar["image"] == "ghcr.io/example/sidecar:1.2.3"
    assert sidecar["imagePullPolicy"] == "Always"
    assert env_of(sidecar) == [("ASYA_SOCKET_DIR", SOCKET_DIR), ("ASYA_ACTOR_NAME", "resize"),
                               ("ASYA_CALL_TIMEOUT", "300"), ("ASYA_QUEUE_DIR", "/var/asya/queues")]
    assert mounts_by_name(sidecar)["queues"]["mountPath"] == "/var/asya/queues"
    assert sidecar["resources"] == {"limits": {"memory": "64Mi"}}
    assert volumes_by_name(spec)["queues"]["hostPath"]["path"] == "/srv/asya-queues"


def test_users_other_containers_init_containers_and_volumes_are_kept(chart):
    values = runtime_values(volumeMounts=[{"name": "weights", "mountPath": "/models"}])
    spec = values["workload"]["template"]["spec"]
    spec["containers"].append({"name": "metrics-exporter", "image": "example/exporter:1"})
    spec["initContainers"] = [{"name": "download-weights", "image": "example/fetch:1"}]
    spec["volumes"] = [{"name": "weights", "emptyDir": {}}]
    spec["serviceAccountName"] = "model-reader"
    values["nativeSidecar"] = False
    rendered = pod_spec(chart.template(values))
    assert [each["name"] for each in rendered["containers"]] == [
        "asya-runtime", "metrics-exporter", "asya-sidecar"]
    assert [each["name"] for each in rendered["initContainers"]] == [
        "asya-runtime-init", "download-weights"]
    assert {"weights", "asya-runtime", "asya-socket"} <= set(volumes_by_name(rendered))
    assert mounts_by_name(container(rendered, "asya-runtime"))["weights"]["mountPath"] == "/models"
    assert rendered["serviceAccountName"] == "model-reader"


def test_volume_from_values_file_is_kept_and_mounted(ci_renders):
    spec = pod_spec(documents(ci_renders["conda-values"]))
    assert volumes_by_name(spec)["models"]["persistentVolumeClaim"]["claimName"] == "conda-models"
    assert mounts_by_name(container(spec, "asya-runtime"))["models"]["readOnly"] is True


def probe_commands(container_spec):
    return {kind: container_spec[kind]["exec"]["command"]
            for kind in ("startupProbe", "readinessProbe", "livenessProbe")}


def test_probes_run_the_runtimes_probe_mode_with_the_model_interpreter(ci_renders):
    runtime = container(pod_spec(documents(ci_renders["conda-values"])), "asya-runtime")
    for kind, command in probe_commands(runtime).items():
        # The runtime's own check of its socket and ready file: it never connects,
        # so a long handler call cannot fail it; no shell in the image is needed.
        assert command == ["/opt/conda/bin/python", "-I", "-S", RUNTIME_PATH, "--probe"], kind
    assert runtime["startupProbe"]["failureThreshold"] * runtime["startupProbe"]["periodSeconds"] == 300


def test_probe_set_on_the_container_wins(chart):
    own_probe = {"httpGet": {"path": "/healthz", "port": 8080}}
    runtime = container(pod_spec(chart.template(runtime_values(livenessProbe=own_probe))),
                        "asya-runtime")
    assert runtime["livenessProbe"] == own_probe
    assert "exec" in runtime["readinessProbe"]


def test_probes_can_be_disabled(chart):
    values = runtime_values()
    values["probes"] = {"enabled": False}
    runtime = container(pod_spec(chart.template(values)), "asya-runtime")
    assert not {"startupProbe", "readinessProbe", "livenessProbe"} & set(runtime)


def test_security_context_defaults(package_pod):
    assert package_pod["securityContext"]["runAsNonRoot"] is True
    assert package_pod["securityContext"]["runAsUser"] == 65532
    assert package_pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert package_pod["automountServiceAccountToken"] is False
    every_container = package_pod["containers"] + package_pod["initContainers"]
    for each in every_container:
        context = each["securityContext"]
        assert context["allowPrivilegeEscalation"] is False, each["name"]
        assert context["capabilities"]["drop"] == ["ALL"], each["name"]
        assert context["readOnlyRootFilesystem"] is True, each["name"]


def test_read_only_root_gets_a_writable_tmp(package_pod):
    runtime = container(package_pod, "asya-runtime")
    assert mounts_by_name(runtime)["asya-tmp"]["mountPath"] == "/tmp"
    assert volumes_by_name(package_pod)["asya-tmp"] == {"name": "asya-tmp", "emptyDir": {}}


def test_own_tmp_mount_replaces_the_chart_tmp(chart):
    values = runtime_values(volumeMounts=[{"name": "scratch", "mountPath": "/tmp"}])
    values["workload"]["template"]["spec"]["volumes"] = [{"name": "scratch", "emptyDir": {}}]
    spec = pod_spec(chart.template(values))
    assert "asya-tmp" not in volumes_by_name(spec)
    assert "asya-tmp" not in mounts_by_name(container(spec, "asya-runtime"))


def test_users_security_context_keys_win(chart):
    values = runtime_values(securityContext={"readOnlyRootFilesystem": False, "runAsUser": 1000})
    values["workload"]["template"]["spec"]["securityContext"] = {
        "runAsUser": 0, "runAsNonRoot": False}
    spec = pod_spec(chart.template(values))
    context = container(spec, "asya-runtime")["securityContext"]
    assert context["readOnlyRootFilesystem"] is False
    assert context["runAsUser"] == 1000
    assert context["allowPrivilegeEscalation"] is False
    assert spec["securityContext"]["runAsUser"] == 0
    assert spec["securityContext"]["runAsNonRoot"] is False
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}


def test_helm_labels_and_selector(package_pod, ci_renders):
    deployment = documents(ci_renders["package-handler-values"])["Deployment"]
    labels = deployment["metadata"]["labels"]
    assert labels["app.kubernetes.io/name"] == "asya-actor"
    assert labels["app.kubernetes.io/instance"] == RELEASE
    assert labels["app.kubernetes.io/managed-by"] == "Helm"
    assert labels["helm.sh/chart"] == "asya-actor-0.1.0"
    selector = deployment["spec"]["selector"]["matchLabels"]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert selector.items() <= pod_labels.items()
    assert deployment["metadata"]["name"] == RELEASE + "-asya-actor"


def test_template_metadata_is_merged_into_the_pod(ci_renders):
    template = documents(ci_renders["conda-values"])["Deployment"]["spec"]["template"]
    assert template["metadata"]["labels"]["team"] == "ml-platform"
    assert template["metadata"]["labels"]["app.kubernetes.io/instance"] == RELEASE
    assert template["metadata"]["annotations"] == {"example.com/owner": "ml-platform"}


def test_gpu_resources_and_placement(ci_renders):
    spec = pod_spec(documents(ci_renders["gpu-values"]))
    runtime = container(spec, "asya-runtime")
    assert runtime["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert "nvidia.com/gpu" not in container(spec, "asya-sidecar")["resources"]["limits"]
    assert spec["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert spec["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert "nodeAffinity" in spec["affinity"]
    assert dict(env_of(runtime))["ASYA_CHUNK_SIZE"] == "1048576"


def test_placement_in_the_template_spec_is_kept(chart):
    values = runtime_values()
    values["workload"]["template"]["spec"]["nodeSelector"] = {"pool": "cpu-large"}
    assert pod_spec(chart.template(values))["nodeSelector"] == {"pool": "cpu-large"}


def test_replicas_grace_period_and_strategy(chart, ci_renders):
    deployment = documents(ci_renders["envelope-mode-values"])["Deployment"]
    assert deployment["spec"]["replicas"] == 2
    assert pod_spec({"Deployment": deployment})["terminationGracePeriodSeconds"] == 330
    values = runtime_values()
    values["strategy"] = {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0}}
    values["terminationGracePeriodSeconds"] = 600
    rendered = chart.template(values)["Deployment"]
    assert rendered["spec"]["strategy"]["rollingUpdate"] == {"maxUnavailable": 0}
    assert rendered["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 600


def test_actor_name_defaults_to_the_release_name(chart):
    spec = pod_spec(chart.template(runtime_values(), release="thumbnailer"))
    assert ("ASYA_ACTOR_NAME", "thumbnailer") in env_of(container(spec, "asya-sidecar"))


def test_helm_test_pod_checks_the_runtime_in_the_model_image(ci_renders):
    docs = documents(ci_renders["conda-values"])
    test_pod = docs["Pod"]
    assert test_pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    spec = test_pod["spec"]
    assert spec["restartPolicy"] == "Never"
    assert [each["name"] for each in spec["containers"]] == ["runtime-smoke-test"]
    smoke = spec["containers"][0]
    deployment_runtime = container(pod_spec(docs), "asya-runtime")
    assert smoke["image"] == deployment_runtime["image"]
    assert smoke["env"] == deployment_runtime["env"]
    assert smoke["command"][0] == "/opt/conda/bin/python"
    assert smoke["command"][1] == "-c"
    assert smoke["command"][2] == (CI_VALUES_DIR.parent / "files" / "smoke_test.py").read_text()
    assert smoke["command"][3:] == ["300", RUNTIME_PATH]
    assert [each["name"] for each in spec["initContainers"]] == ["asya-runtime-init"]
    assert "models" in volumes_by_name(spec)


def test_helm_test_pod_is_not_adopted_by_the_deployment(ci_renders):
    docs = documents(ci_renders["package-handler-values"])
    selector = docs["Deployment"]["spec"]["selector"]["matchLabels"]
    assert not selector.items() <= docs["Pod"]["metadata"]["labels"].items()


def test_helm_test_pod_uses_its_own_resources_when_given(ci_renders):
    smoke = documents(ci_renders["gpu-values"])["Pod"]["spec"]["containers"][0]
    assert smoke["resources"]["limits"] == {"memory": "4Gi", "nvidia.com/gpu": 1}


def test_helm_test_can_be_disabled(chart):
    values = runtime_values()
    values["test"] = {"enabled": False}
    assert "Pod" not in chart.template(values)
