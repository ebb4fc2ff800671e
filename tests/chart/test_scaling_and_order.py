"""Autoscaling on queue depth, disruption budgets, start and stop order, how the
runtime file reaches the pod, and several actors in one release."""

import pytest
from chart_helpers import container, documents, env_of, pod_spec, runtime_values

RUNTIME_PATH = "/opt/asya/asya_runtime.py"


def kinds(docs):
    return [doc["kind"] for doc in docs]


# ---------------------------------------------------------------- KEDA and PDB

def test_keda_scaled_object_targets_the_deployment_on_its_queue(ci_renders):
    docs = documents(ci_renders["keda-values"])
    deployment = docs["Deployment"]
    # KEDA owns the replica count; a `replicas` field would fight it on every upgrade.
    assert "replicas" not in deployment["spec"]
    spec = docs["ScaledObject"]["spec"]
    assert spec["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                      "name": deployment["metadata"]["name"]}
    assert (spec["minReplicaCount"], spec["maxReplicaCount"]) == (0, 8)
    assert (spec["pollingInterval"], spec["cooldownPeriod"]) == (15, 600)
    assert spec["triggers"] == [{
        "type": "rabbitmq",
        "metadata": {"protocol": "amqp", "queueName": "asya-embed", "mode": "QueueLength", "value": "5"},
        "authenticationRef": {"name": "rabbitmq-asya", "kind": "TriggerAuthentication"}}]


def test_keda_sqs_trigger_uses_the_actors_queue_url(chart):
    values = runtime_values()
    values["actorName"] = "translate"
    values["sidecar"] = {"transport": "sqs", "sqs": {"region": "eu-west-1"}}
    values["autoscaling"] = {"keda": {"enabled": True, "sqsAccountId": "123456789012",
                                      "triggerAuthentication": {"name": "aws-irsa"}}}
    trigger = chart.template(values)["ScaledObject"]["spec"]["triggers"][0]
    assert trigger["type"] == "aws-sqs-queue"
    assert trigger["metadata"] == {
        "queueURL": "https://sqs.eu-west-1.amazonaws.com/123456789012/asya-translate",
        "queueLength": "5", "awsRegion": "eu-west-1"}
    assert trigger["authenticationRef"]["name"] == "aws-irsa"


def test_keda_sqs_queue_url_is_the_sidecars_endpoint_the_account_and_the_queue(chart):
    values = runtime_values()
    values["actorName"] = "translate"
    values["sidecar"] = {"transport": "sqs", "sqs": {"endpoint": "http://127.0.0.1:4566/"}}
    values["autoscaling"] = {"keda": {"enabled": True, "sqsAccountId": "000000000000"}}
    trigger = chart.template(values)["ScaledObject"]["spec"]["triggers"][0]
    assert trigger["metadata"]["queueURL"] == "http://127.0.0.1:4566/000000000000/asya-translate"
    values["autoscaling"]["keda"]["sqsQueueURL"] = "https://example.test/q/translate"
    trigger = chart.template(values)["ScaledObject"]["spec"]["triggers"][0]
    assert trigger["metadata"]["queueURL"] == "https://example.test/q/translate"


def test_without_keda_the_deployment_keeps_its_replicas(chart):
    values = runtime_values()
    values["replicaCount"] = 3
    docs = chart.template(values)
    assert docs["Deployment"]["spec"]["replicas"] == 3
    assert "ScaledObject" not in docs and "PodDisruptionBudget" not in docs


def test_pod_disruption_budget_selects_the_actors_pods(ci_renders):
    docs = documents(ci_renders["keda-values"])
    pdb = docs["PodDisruptionBudget"]
    assert pdb["spec"]["maxUnavailable"] == 1
    pod_labels = docs["Deployment"]["spec"]["template"]["metadata"]["labels"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()


# ---------------------------------------------------------------- start and stop order

def native_layout(spec):
    return ([each["name"] for each in spec["initContainers"]],
            [each["name"] for each in spec["containers"]])


@pytest.mark.parametrize("kube_version, native", [("1.28.0", False), ("1.29.0", True), ("1.35.0", True)])
def test_native_sidecar_auto_follows_the_cluster_version(chart, kube_version, native):
    spec = pod_spec(chart.template(runtime_values(), kube_version=kube_version))
    if native:
        assert native_layout(spec) == (["asya-runtime-init", "asya-runtime"], ["asya-sidecar"])
    else:
        assert native_layout(spec) == (["asya-runtime-init"], ["asya-runtime", "asya-sidecar"])


def test_native_sidecar_runtime_is_a_restartable_init_container_with_its_probes(ci_renders):
    spec = pod_spec(documents(ci_renders["native-sidecar-values"]))
    init_names, container_names = native_layout(spec)
    # After the copy (and any init container of the user's), before the sidecar:
    # the sidecar starts only once the runtime's startup probe passed, and at
    # shutdown Kubernetes stops the sidecar first and the runtime last.
    assert init_names == ["asya-runtime-init", "asya-runtime"]
    assert container_names == ["asya-sidecar"]
    runtime = spec["initContainers"][1]
    assert runtime["restartPolicy"] == "Always"
    assert runtime["command"] == ["python3", RUNTIME_PATH]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert runtime[probe]["exec"]["command"][-2:] == [RUNTIME_PATH, "--probe"], probe


def test_native_sidecar_false_keeps_the_classic_layout(chart):
    values = runtime_values()
    values["nativeSidecar"] = False
    spec = pod_spec(chart.template(values, kube_version="1.35.0"))
    assert native_layout(spec) == (["asya-runtime-init"], ["asya-runtime", "asya-sidecar"])
    assert "restartPolicy" not in container(spec, "asya-runtime")


def test_users_init_containers_run_before_the_native_runtime(chart):
    values = runtime_values()
    values["workload"]["template"]["spec"]["initContainers"] = [
        {"name": "download-weights", "image": "example/fetch:1"}]
    spec = pod_spec(chart.template(values, kube_version="1.35.0"))
    assert native_layout(spec)[0] == ["asya-runtime-init", "download-weights", "asya-runtime"]


def test_helm_test_pod_is_the_same_in_both_layouts(chart):
    for kube_version in ("1.28.0", "1.35.0"):
        test_pod = chart.template(runtime_values(), kube_version=kube_version)["Pod"]["spec"]
        assert [each["name"] for each in test_pod["initContainers"]] == ["asya-runtime-init"]
        assert [each["name"] for each in test_pod["containers"]] == ["runtime-smoke-test"]
        assert "restartPolicy" not in test_pod["containers"][0]


# ---------------------------------------------------------------- runtime delivery

def test_image_volume_mounts_the_runtime_image_without_an_init_container(ci_renders):
    docs = documents(ci_renders["image-volume-values"])
    for spec in (pod_spec(docs), docs["Pod"]["spec"]):
        assert "asya-runtime-init" not in [each["name"] for each in spec["initContainers"]]
        volume = next(each for each in spec["volumes"] if each["name"] == "asya-runtime")
        assert volume == {"name": "asya-runtime", "image": {
            "reference": "registry.example.com/asya/asya-runtime@sha256:"
                         "4f1a7c4a0d9c3b1e2f5a6b7c8d9e0f1a2b3c4d5e6f708192a3b4c5d6e7f80912",
            "pullPolicy": "IfNotPresent"}}
    runtime = container(pod_spec(docs), "asya-runtime")
    mount = next(each for each in runtime["volumeMounts"] if each["name"] == "asya-runtime")
    # The image keeps the file in /asya; that directory becomes /opt/asya.
    assert mount == {"name": "asya-runtime", "mountPath": "/opt/asya", "subPath": "asya",
                     "readOnly": True}
    assert runtime["command"] == ["python3", RUNTIME_PATH]


# ---------------------------------------------------------------- several actors

@pytest.fixture(scope="module")
def two_actors(ci_renders):
    import yaml
    return [doc for doc in yaml.safe_load_all(ci_renders["two-actors-values"]) if doc]


def by_kind(docs, kind):
    return {doc["metadata"]["name"]: doc for doc in docs if doc["kind"] == kind}


def test_one_deployment_per_actor_with_distinct_names_and_selectors(two_actors):
    deployments = by_kind(two_actors, "Deployment")
    assert sorted(deployments) == ["demo-asya-actor-route", "demo-asya-actor-score"]
    selectors = [deployment["spec"]["selector"]["matchLabels"] for deployment in deployments.values()]
    assert selectors[0] != selectors[1]
    for name, deployment in deployments.items():
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
        other = [each for each in selectors if each != deployment["spec"]["selector"]["matchLabels"]][0]
        assert not other.items() <= labels.items(), f"{name}'s pods match the other actor's selector"


def test_each_actor_gets_its_own_queue_handler_and_overrides(two_actors):
    deployments = by_kind(two_actors, "Deployment")
    route = pod_spec({"Deployment": deployments["demo-asya-actor-route"]})
    score = pod_spec({"Deployment": deployments["demo-asya-actor-score"]})
    route_env = dict(env_of(container(route, "asya-runtime")))
    score_env = dict(env_of(container(score, "asya-runtime")))
    assert route_env["ASYA_HANDLER"] == "pipeline.routing.route"
    assert route_env["ASYA_HANDLER_MODE"] == "envelope"
    assert score_env["ASYA_HANDLER"] == "pipeline.scoring.Scorer.score"
    assert score_env["ASYA_HANDLER_MODE"] == "payload"
    assert score_env["ASYA_HANDLER_TIMEOUT"] == "60"
    assert "ASYA_HANDLER_TIMEOUT" not in route_env
    assert dict(env_of(container(route, "asya-sidecar")))["ASYA_ACTOR_NAME"] == "route"
    assert dict(env_of(container(score, "asya-sidecar")))["ASYA_ACTOR_NAME"] == "score"
    # The shared defaults reach both.
    for spec in (route, score):
        assert container(spec, "asya-runtime")["image"] == "registry.example.com/ml/pipeline:1.0.0"
    # Only the scorer is autoscaled.
    assert "replicas" in deployments["demo-asya-actor-route"]["spec"]
    assert "replicas" not in deployments["demo-asya-actor-score"]["spec"]
    assert sorted(by_kind(two_actors, "ScaledObject")) == ["demo-asya-actor-score"]
    assert sorted(by_kind(two_actors, "PodDisruptionBudget")) == ["demo-asya-actor-score"]
    scaled = by_kind(two_actors, "ScaledObject")["demo-asya-actor-score"]
    assert scaled["spec"]["triggers"][0]["metadata"]["queueName"] == "asya-score"
    assert sorted(by_kind(two_actors, "Pod")) == [
        "demo-asya-actor-route-test-runtime", "demo-asya-actor-score-test-runtime"]


def test_an_actor_may_turn_off_a_default_that_is_true(chart):
    values = runtime_values()
    values["actors"] = [{"name": "lenient", "enableValidation": False, "probes": {"enabled": False}},
                        {"name": "strict"}]
    deployments = by_kind(chart.template_all(values), "Deployment")
    lenient = container(pod_spec({"Deployment": deployments["demo-asya-actor-lenient"]}), "asya-runtime")
    strict = container(pod_spec({"Deployment": deployments["demo-asya-actor-strict"]}), "asya-runtime")
    assert dict(env_of(lenient))["ASYA_ENABLE_VALIDATION"] == "false"
    assert "livenessProbe" not in lenient
    assert dict(env_of(strict))["ASYA_ENABLE_VALIDATION"] == "true"
    assert "livenessProbe" in strict


def test_each_actor_may_choose_its_own_log_settings(chart):
    values = runtime_values()
    values["actors"] = [{"name": "quiet", "accessLog": False, "logFormat": "json"},
                        {"name": "plain"}]
    deployments = by_kind(chart.template_all(values), "Deployment")

    def runtime_env(name):
        spec = pod_spec({"Deployment": deployments[f"demo-asya-actor-{name}"]})
        return dict(env_of(container(spec, "asya-runtime")))

    quiet, plain = runtime_env("quiet"), runtime_env("plain")
    assert (quiet["ASYA_ACCESS_LOG"], quiet["ASYA_LOG_FORMAT"]) == ("false", "json")
    assert (plain["ASYA_ACCESS_LOG"], plain["ASYA_LOG_FORMAT"]) == ("true", "text")
