"""The sidecar each flavor renders: the variables the asya Go sidecar reads
(src/asya-sidecar/internal/config/config.go in deliveryhero/asya), this
project's fake sidecar, and the reply format the runtime is given to match."""

import pytest
from chart_helpers import CI_VALUES_DIR, container, documents, env_of, pod_spec, runtime_values

SOCKET_DIR = "/var/run/asya"


def render(chart, **top_level):
    values = runtime_values()
    values.update(top_level)
    return pod_spec(chart.template(values))


def env_dict(container_spec):
    return {entry["name"]: entry for entry in container_spec["env"]}


def test_default_flavor_is_the_asya_go_sidecar_on_rabbitmq(chart):
    spec = render(chart)
    sidecar = container(spec, "asya-sidecar")
    assert sidecar["image"] == "ghcr.io/deliveryhero/asya-sidecar:0.1.0"
    assert env_of(sidecar) == [
        ("ASYA_SOCKET_DIR", SOCKET_DIR),
        ("ASYA_ACTOR_NAME", "demo"),
        ("ASYA_LOG_LEVEL", "INFO"),
        ("ASYA_TRANSPORT", "rabbitmq"),
        # A Go duration: the Go sidecar ignores a bare number and keeps 5 minutes.
        ("ASYA_RUNTIME_TIMEOUT", "300s"),
        ("ASYA_ACTOR_HAPPY_END", "happy-end"),
        ("ASYA_ACTOR_ERROR_END", "error-end"),
        ("ASYA_RABBITMQ_HOST", "rabbitmq"),
        ("ASYA_RABBITMQ_PORT", "5672"),
        ("ASYA_RABBITMQ_EXCHANGE", "asya"),
        ("ASYA_RABBITMQ_PREFETCH", "1"),
        ("ASYA_METRICS_ENABLED", "false"),
    ]
    # The Go sidecar decodes JSON arrays: the runtime is told to answer in that format.
    assert dict(env_of(container(spec, "asya-runtime")))["ASYA_REPLY_FORMAT"] == "list"


def test_fake_flavor_keeps_the_status_reply_format(chart):
    spec = render(chart, sidecar={"flavor": "fake"})
    assert dict(env_of(container(spec, "asya-runtime")))["ASYA_REPLY_FORMAT"] == "status"
    assert container(spec, "asya-sidecar")["image"] == "localhost/asya-sidecar-fake:dev"


@pytest.mark.parametrize("flavor, chosen", [("asya", "status"), ("fake", "list")])
def test_reply_format_set_by_the_user_wins_over_the_flavor(chart, flavor, chosen):
    spec = render(chart, sidecar={"flavor": flavor}, replyFormat=chosen)
    assert dict(env_of(container(spec, "asya-runtime")))["ASYA_REPLY_FORMAT"] == chosen


def test_rabbitmq_password_only_through_a_secret(ci_renders):
    spec = pod_spec(documents(ci_renders["asya-rabbitmq-values"]))
    env = env_dict(container(spec, "asya-sidecar"))
    assert env["ASYA_RABBITMQ_HOST"]["value"] == "rabbitmq.messaging.svc.cluster.local"
    assert env["ASYA_RABBITMQ_USERNAME"]["value"] == "asya"
    assert env["ASYA_RABBITMQ_PASSWORD"] == {"name": "ASYA_RABBITMQ_PASSWORD", "valueFrom": {
        "secretKeyRef": {"name": "rabbitmq-asya", "key": "password"}}}
    assert "ASYA_RABBITMQ_URL" not in env
    assert env["ASYA_RUNTIME_TIMEOUT"]["value"] == "270s"
    runtime_env = dict(env_of(container(spec, "asya-runtime")))
    assert runtime_env["ASYA_HANDLER_TIMEOUT"] == "240"
    assert runtime_env["ASYA_HANDLER"] == "summarizer.model.Summarizer.predict"


def test_whole_rabbitmq_url_from_a_secret(ci_renders):
    env = env_dict(container(pod_spec(documents(ci_renders["keda-values"])), "asya-sidecar"))
    assert env["ASYA_RABBITMQ_URL"]["valueFrom"] == {
        "secretKeyRef": {"name": "rabbitmq-asya", "key": "url"}}
    assert not {"ASYA_RABBITMQ_HOST", "ASYA_RABBITMQ_PASSWORD"} & set(env)


def test_plain_rabbitmq_url_for_a_test_broker_with_a_stand_in_image_on_the_host_network(chart):
    # How a local test runs the asya flavor: its own image reading the same
    # variables, a broker on the host's loopback, the pod on the host network.
    values = runtime_values()
    values["workload"]["template"]["spec"]["hostNetwork"] = True
    values["sidecar"] = {"flavor": "asya", "transport": "rabbitmq",
                         "image": {"repository": "localhost/asya-sidecar-stand-in", "tag": "dev"},
                         "rabbitmq": {"url": "amqp://guest:guest@127.0.0.1:35672/"}}
    spec = pod_spec(chart.template(values))
    sidecar = container(spec, "asya-sidecar")
    assert spec["hostNetwork"] is True
    assert sidecar["image"] == "localhost/asya-sidecar-stand-in:dev"
    env = dict(env_of(sidecar))
    assert env["ASYA_RABBITMQ_URL"] == "amqp://guest:guest@127.0.0.1:35672/"
    assert env["ASYA_TRANSPORT"] == "rabbitmq"
    assert "ASYA_RABBITMQ_HOST" not in env


def test_sqs_with_irsa(ci_renders):
    docs = documents(ci_renders["asya-sqs-irsa-values"])
    spec = pod_spec(docs)
    env = dict(env_of(container(spec, "asya-sidecar")))
    assert env["ASYA_TRANSPORT"] == "sqs"
    assert env["ASYA_AWS_REGION"] == "eu-west-1"
    # AWS's own endpoint for the region: the sidecar gets no endpoint at all.
    assert "ASYA_SQS_ENDPOINT" not in env
    assert env["ASYA_SQS_VISIBILITY_TIMEOUT"] == "600"
    assert env["ASYA_SQS_WAIT_TIME_SECONDS"] == "20"
    assert not any(name.startswith("ASYA_RABBITMQ_") for name in env)
    account = docs["ServiceAccount"]
    assert account["metadata"]["name"] == "demo-asya-actor"
    assert account["metadata"]["annotations"] == {
        "eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/asya-translate"}
    assert spec["serviceAccountName"] == "demo-asya-actor"
    # No AWS key anywhere in the pod: the role comes from the service account.
    assert "AWS_SECRET_ACCESS_KEY" not in str(spec)


def test_existing_service_account_is_used_without_creating_one(chart):
    values = runtime_values()
    values["serviceAccount"] = {"name": "model-runner"}
    docs = chart.template(values)
    assert "ServiceAccount" not in docs
    assert pod_spec(docs)["serviceAccountName"] == "model-runner"


def test_metrics_port_and_scrape_annotations(ci_renders):
    deployment = documents(ci_renders["asya-rabbitmq-values"])["Deployment"]
    sidecar = container(pod_spec({"Deployment": deployment}), "asya-sidecar")
    assert sidecar["ports"] == [{"name": "metrics", "containerPort": 9090, "protocol": "TCP"}]
    env = dict(env_of(sidecar))
    assert env["ASYA_METRICS_ENABLED"] == "true"
    assert env["ASYA_METRICS_ADDR"] == ":9090"
    assert deployment["spec"]["template"]["metadata"]["annotations"] == {
        "prometheus.io/scrape": "true", "prometheus.io/port": "9090", "prometheus.io/path": "/metrics"}


def test_sidecar_env_from_resources_and_an_override(chart):
    values = runtime_values()
    values["sidecar"] = {
        "envFrom": [{"secretRef": {"name": "sidecar-extra"}}],
        "resources": {"requests": {"cpu": "50m"}},
        "env": [{"name": "ASYA_RABBITMQ_PREFETCH", "value": "4"},
                {"name": "ASYA_GATEWAY_URL", "value": "http://gateway:8080"}]}
    sidecar = container(pod_spec(chart.template(values)), "asya-sidecar")
    assert sidecar["envFrom"] == [{"secretRef": {"name": "sidecar-extra"}}]
    assert sidecar["resources"] == {"requests": {"cpu": "50m"}}
    names = [name for name, _ in env_of(sidecar)]
    assert len(names) == len(set(names)), names
    env = dict(env_of(sidecar))
    assert env["ASYA_RABBITMQ_PREFETCH"] == "4"
    assert names[-1] == "ASYA_GATEWAY_URL"


def test_runtime_image_tag_and_digest(chart):
    spec = render(chart, runtimeImage={"repository": "registry.example.com/asya/asya-runtime",
                                       "digest": "sha256:" + "a" * 64})
    assert container(spec, "asya-runtime-init")["image"] == (
        "registry.example.com/asya/asya-runtime@sha256:" + "a" * 64)
    spec = render(chart, runtimeImage={"tag": "0.1.0-rc1"})
    assert container(spec, "asya-runtime-init")["image"] == "localhost/asya-runtime:0.1.0-rc1"


def test_every_ci_file_that_picks_the_asya_flavor_names_its_transport():
    for path in sorted(CI_VALUES_DIR.glob("*.yaml")):
        text = path.read_text()
        if "flavor: asya" in text:
            assert "transport:" in text, path.name
