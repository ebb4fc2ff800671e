"""Mistakes a user can make in values: each must stop `helm template` / `helm install`
with a message that names the problem and the fix."""

import pytest
from chart_helpers import runtime_values


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
}


@pytest.mark.parametrize("case", sorted(RENDER_FAILURES))
def test_mistake_fails_at_render_time_with_a_clear_message(chart, case):
    values, expected_message = RENDER_FAILURES[case]
    error = chart.failure(values)
    assert expected_message in error


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
    "actor-name-with-capitals": ({"actorName": "Resize"}, "/actorName"),
}


@pytest.mark.parametrize("case", sorted(SCHEMA_FAILURES))
def test_schema_rejects_bad_values(chart, case):
    overrides, expected_message = SCHEMA_FAILURES[case]
    values = runtime_values()
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(values.get(key), dict):
            values[key] = dict(values[key], **value)
        else:
            values[key] = value
    error = chart.failure(values)
    assert "values don't meet the specifications of the schema" in error
    assert expected_message in error
