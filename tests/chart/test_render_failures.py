"""Mistakes a user can make in values: each must stop `helm template` / `helm install`
with a message that names the problem and the fix."""

import re

import pytest
from chart_helpers import render_many, runtime_values


def with_template_spec(**spec_fields):
    values = runtime_values()
    values["workload"]["template"]["spec"].update(spec_fields)
    return values


def with_values(base, **top_level):
    base.update(top_level)
    return base


MODEL = {"name": "asya-runtime", "image": "registry.example.com/ml/model:1.0"}

RENDER_FAILURES = {
    "no-runtime-container": (
        {"handler": "a.b", "workload": {"template": {"spec": {"containers": [
            {"name": "model", "image": "registry.example.com/ml/model:1.0"}]}}}},
        'has no container named asya-runtime (found: ["model"])'),
    "empty-containers": (
        {"handler": "a.b"},
        "has no container named asya-runtime (found: [])"),
    "command-already-set": (
        runtime_values(command=["python", "serve.py"]),
        'container asya-runtime sets command ["python","serve.py"]: the chart runs '
        "[python3, /opt/asya/asya_runtime.py]; remove command"),
    "args-set": (
        runtime_values(args=["--port", "8080"]),
        "container asya-runtime sets args"),
    "container-named-like-the-sidecar": (
        with_template_spec(containers=[dict(MODEL), {"name": "asya-sidecar", "image": "x:1"}]),
        "has a container named asya-sidecar: the chart adds the sidecar itself"),
    "two-runtime-containers": (
        with_template_spec(containers=[dict(MODEL), dict(MODEL)]),
        "more than one container named asya-runtime"),
    "runtime-container-without-image": (
        with_template_spec(containers=[{"name": "asya-runtime"}]),
        "container asya-runtime has no image"),
    "no-handler-anywhere": (
        with_values(runtime_values(), handler=""),
        "no handler: set the value handler (module.path.function"),
    "malformed-handler-in-env": (
        with_values(runtime_values(env=[{"name": "ASYA_HANDLER", "value": "my_package.handler:process"}]), handler=""),
        'ASYA_HANDLER="my_package.handler:process" in its env: expected module.path.function'),
    "socket-dir-in-env": (
        runtime_values(env=[{"name": "ASYA_SOCKET_DIR", "value": "/sockets"}]),
        "sets ASYA_SOCKET_DIR in its env: the chart sets it to /var/run/asya"),
    "mount-over-the-runtime-dir": (
        with_template_spec(
            containers=[dict(MODEL, volumeMounts=[{"name": "code", "mountPath": "/opt/asya"}])],
            volumes=[{"name": "code", "emptyDir": {}}]),
        'mounts volume "code" at /opt/asya: the chart owns /opt/asya, /var/run/asya'),
    "volume-named-like-the-socket-volume": (
        with_template_spec(volumes=[{"name": "asya-socket", "emptyDir": {}}]),
        'has a volume named "asya-socket": the chart owns the volumes'),
    "init-container-named-like-the-copier": (
        with_template_spec(initContainers=[{"name": "asya-runtime-init", "image": "x:1"}]),
        "has a container named asya-runtime-init: the chart adds it"),
    "restart-policy-never": (
        with_template_spec(restartPolicy="Never"),
        'restartPolicy is "Never": a Deployment\'s pods restart Always'),
    "node-selector-twice": (
        with_values(with_template_spec(nodeSelector={"pool": "a"}), nodeSelector={"pool": "b"}),
        "nodeSelector is set both as a top-level value and in workload.template.spec"),
    "sidecar-env-sets-actor-name": (
        with_values(runtime_values(), sidecar={
            "image": {"repository": "s", "tag": "1"},
            "env": [{"name": "ASYA_ACTOR_NAME", "value": "other"}]}),
        "sidecar.env sets ASYA_ACTOR_NAME, which the chart sets"),
    "sidecar-mount-over-the-socket": (
        with_values(runtime_values(), sidecar={
            "image": {"repository": "s", "tag": "1"},
            "extraVolumeMounts": [{"name": "x", "mountPath": "/var/run/asya"}]}),
        "sidecar.extraVolumeMounts mounts \"x\" at /var/run/asya"),
    "actor-named-like-an-end-queue": (
        with_values(runtime_values(), actorName="error-end"),
        'actorName "error-end" is reserved for the pipeline\'s end queue'),
    "sidecar-env-sets-socket-dir": (
        with_values(runtime_values(), sidecar={"env": [{"name": "ASYA_SOCKET_DIR", "value": "/x"}]}),
        "sidecar.env sets ASYA_SOCKET_DIR, which the chart sets"),
    "handler-timeout-not-below-the-sidecars": (
        with_values(runtime_values(), handlerTimeout=300),
        "handlerTimeout (300 s) plus the runtime's 2 s grace period must be below sidecar.runtimeTimeout (300 s)"),
    "handler-timeout-leaves-no-room-for-the-grace-period": (
        with_values(runtime_values(), handlerTimeout=298.5),
        "handlerTimeout (298.5 s) plus the runtime's 2 s grace period must be below sidecar.runtimeTimeout"),
    "grace-period-not-above-the-sidecar-timeout": (
        with_values(runtime_values(), terminationGracePeriodSeconds=300),
        "terminationGracePeriodSeconds (300) must be above sidecar.runtimeTimeout (300 s)"),
    "grace-period-in-the-template-spec": (
        with_template_spec(terminationGracePeriodSeconds=30),
        "terminationGracePeriodSeconds (30) must be above sidecar.runtimeTimeout (300 s)"),
    "fake-sidecar-timeout-from-its-env": (
        with_values(runtime_values(), sidecar={"flavor": "fake", "env": [
            {"name": "ASYA_CALL_TIMEOUT", "value": "400"}]}),
        "terminationGracePeriodSeconds (330) must be above sidecar.runtimeTimeout (400 s)"),
    "sqs-visibility-below-the-sidecar-timeout": (
        with_values(runtime_values(), sidecar={"transport": "sqs", "sqs": {"visibilityTimeout": 60}}),
        "sidecar.sqs.visibilityTimeout (60 s) is below sidecar.runtimeTimeout (300 s)"),
    "keda-with-the-fake-sidecar": (
        with_values(runtime_values(), sidecar={"flavor": "fake"}, autoscaling={"keda": {"enabled": True}}),
        "autoscaling.keda needs sidecar.flavor asya"),
    "keda-rabbitmq-without-authentication": (
        with_values(runtime_values(), autoscaling={"keda": {"enabled": True}}),
        "autoscaling.keda with RabbitMQ needs autoscaling.keda.triggerAuthentication.name"),
    "keda-min-above-max": (
        with_values(runtime_values(), autoscaling={"keda": {
            "enabled": True, "minReplicaCount": 5, "maxReplicaCount": 2,
            "triggerAuthentication": {"name": "t"}}}),
        "autoscaling.keda.minReplicaCount (5) is above maxReplicaCount (2)"),
    "keda-sqs-without-a-queue-url": (
        with_values(runtime_values(), sidecar={"transport": "sqs"}, autoscaling={"keda": {"enabled": True}}),
        "autoscaling.keda with SQS needs the queue's URL: set autoscaling.keda.sqsAccountId (the URL becomes <endpoint>/<account>/asya-demo) or autoscaling.keda.sqsQueueURL"),
    "reference-chart-key-transport": (
        with_values(runtime_values(), transport="sqs"),
        "transport is a key of the asya project's actor chart, not of this one: use sidecar.transport"),
    "reference-chart-key-scaling": (
        with_values(runtime_values(), scaling={"enabled": True}),
        "scaling is a key of the asya project's actor chart, not of this one: use autoscaling.keda"),
    "reference-chart-key-name": (
        with_values(runtime_values(), name="resize"),
        "name is a key of the asya project's actor chart, not of this one: use actorName"),
    "reference-chart-key-in-an-actor": (
        with_values(runtime_values(), actors=[{"name": "a", "transport": "sqs"}]),
        "actors[0].transport is a key of the asya project's actor chart"),
    "two-actors-with-one-name": (
        with_values(runtime_values(), actors=[{"name": "a"}, {"name": "a"}]),
        'actors has two items named "a"'),
    "actor-item-named-like-an-end-queue": (
        with_values(runtime_values(), actors=[{"name": "happy-end"}]),
        'actor "happy-end": actorName "happy-end" is reserved'),
    "actor-item-without-its-model-container": (
        with_values(runtime_values(), actors=[{"name": "a", "workload": {"template": {"spec": {
            "containers": [{"name": "model", "image": "x:1"}]}}}}]),
        'workload.template.spec.containers of actor "a" has no container named asya-runtime'),
    "sidecar-image-without-a-tag": (
        with_values(runtime_values(), sidecar={"image": {"repository": "registry.example.com/sidecar"}}),
        "sidecar.image has no tag or digest: pin one"),
}

# Below the version a feature needs, the chart says so instead of rendering
# something the cluster would reject.
VERSION_FAILURES = {
    "native-sidecar-on-1.28": (
        with_values(runtime_values(), nativeSidecar=True), "1.28.0",
        "nativeSidecar is true but this cluster is Kubernetes v1.28.0: restartable init containers need 1.29"),
    "image-volume-on-1.32": (
        with_values(runtime_values(), runtimeDelivery="imageVolume"), "1.32.0",
        "runtimeDelivery imageVolume needs Kubernetes 1.33 or newer"),
}


# Every refusal is checked with helm 4 and again with helm 3, for users still on it.
@pytest.fixture(scope="module", params=["helm4", "helm3"])
def helm_major(request):
    return request.param


@pytest.fixture(scope="module")
def outcomes(charts_by_helm, helm_major):
    chart = charts_by_helm[helm_major]
    cases = {("render", name): (values, None) for name, (values, _) in RENDER_FAILURES.items()}
    cases.update({("version", name): (values, kube_version)
                  for name, (values, kube_version, _) in VERSION_FAILURES.items()})
    cases.update({("schema", name): (schema_case_values(name), None) for name in SCHEMA_FAILURES})
    return render_many(chart, cases)


def refusal(outcomes, key):
    rendered, error = outcomes[key]
    assert rendered is None, f"helm rendered values that should have been refused: {key}"
    return error


@pytest.mark.parametrize("case", sorted(VERSION_FAILURES))
def test_feature_refused_on_a_cluster_too_old_for_it(outcomes, case):
    expected_message = VERSION_FAILURES[case][2]
    assert expected_message in refusal(outcomes, ("version", case))


@pytest.mark.parametrize("case", sorted(RENDER_FAILURES))
def test_mistake_fails_at_render_time_with_a_clear_message(outcomes, case):
    expected_message = RENDER_FAILURES[case][1]
    assert expected_message in refusal(outcomes, ("render", case))


def test_release_named_like_an_end_queue_fails(chart):
    assert "reserved for the pipeline's end queue" in chart.failure(runtime_values(),
                                                                    release="happy-end")


SCHEMA_FAILURES = {
    "typo-at-top-level": ({"handlerMod": "envelope"}, "additional properties 'handlerMod' not allowed"),
    "typo-in-sidecar": ({"sidecar": {"imag": {}}}, "additional properties 'imag' not allowed"),
    "typo-in-workload": ({"workload": {"pythonExecutible": "python"}},
                         "additional properties 'pythonExecutible' not allowed"),
    "unknown-mode": ({"handlerMode": "batch"}, "/handlerMode"),
    "zero-chunk-size": ({"chunkSize": 0}, "/chunkSize"),
    "chunk-size-as-text": ({"chunkSize": "64k"}, "/chunkSize"),
    "handler-as-a-path": ({"handler": "/foo/bar/script.py"}, "/handler"),
    "validation-as-text": ({"enableValidation": "yes"}, "/enableValidation"),
    "unknown-log-level": ({"logLevel": "VERBOSE"}, "/logLevel"),
    "unknown-log-format": ({"logFormat": "xml"}, "/logFormat"),
    "access-log-as-text": ({"accessLog": "off"}, "/accessLog"),
    "actor-name-with-capitals": ({"actorName": "Resize"}, "/actorName"),
    "unknown-reply-format": ({"replyFormat": "json"}, "/replyFormat"),
    "negative-handler-timeout": ({"handlerTimeout": -1}, "/handlerTimeout"),
    "native-sidecar-as-text": ({"nativeSidecar": "yes"}, "/nativeSidecar"),
    "unknown-runtime-delivery": ({"runtimeDelivery": "configMap"}, "/runtimeDelivery"),
    "unknown-flavor": ({"sidecar": {"flavor": "go"}}, "/sidecar/flavor"),
    "unknown-transport": ({"sidecar": {"transport": "kafka"}}, "/sidecar/transport"),
    "password-in-plain-values": ({"sidecar": {"rabbitmq": {"password": "s3cret"}}},
                                 "additional properties 'password' not allowed"),
    "sidecar-env-value-as-a-number": ({"sidecar": {"env": [{"name": "ASYA_RABBITMQ_PREFETCH", "value": 4}]}},
                                      "/sidecar/env/0/value"),
    "runtime-env-value-as-a-boolean": (
        {"workload": {"template": {"spec": {"containers": [
            {"name": "asya-runtime", "image": "m:1", "env": [{"name": "DEBUG", "value": True}]}]}}}},
        "/workload/template/spec/containers/0/env/0/value"),
    "digest-that-is-not-sha256": ({"runtimeImage": {"digest": "latest"}}, "/runtimeImage/digest"),
    "actor-without-a-name": ({"actors": [{"handler": "a.b"}]}, "/actors/0"),
    "keda-typo": ({"autoscaling": {"keda": {"maxReplicas": 3}}},
                  "additional properties 'maxReplicas' not allowed"),
}


def schema_case_values(case):
    overrides = SCHEMA_FAILURES[case][0]
    values = runtime_values()
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(values.get(key), dict) and key != "workload":
            values[key] = dict(values[key], **value)
        else:
            values[key] = value
    return values


def in_helm3_words(message):
    """helm 3 words a schema error differently (gojsonschema): dotted paths, another phrase."""
    if message.startswith("/"):
        return "- " + message[1:].replace("/", ".") + ":"
    match = re.fullmatch(r"additional properties '(.+)' not allowed", message)
    return f"Additional property {match.group(1)} is not allowed"


@pytest.mark.parametrize("case", sorted(SCHEMA_FAILURES))
def test_schema_rejects_bad_values(outcomes, helm_major, case):
    expected_message = SCHEMA_FAILURES[case][1]
    error = refusal(outcomes, ("schema", case))
    assert "values don't meet the specifications of the schema" in error
    assert (expected_message if helm_major == "helm4" else in_helm3_words(expected_message)) in error


def test_unknown_log_format_is_refused_with_the_formats_to_choose_from(outcomes, helm_major):
    error = refusal(outcomes, ("schema", "unknown-log-format"))
    choices = {"helm4": "/logFormat': value must be one of 'text', 'json'",
               "helm3": 'logFormat must be one of the following: "text", "json"'}
    assert choices[helm_major] in error
