"""The broker topology a release provisions, and the one naming rule behind it.

The asya Go sidecar consumes `asya-<actor>`, declares it only passively and
publishes with the bare actor name as routing key: the chart must create the
queues with those bindings (topology.provision job|operator|none), KEDA must
watch the same queue, and the chart's rule must be the fake sidecar's
(fake-sidecar/asya_sidecar/topology.py), which tests/sidecar and the e2e
check against a real broker.
"""

import ast
import json
import sys

import pytest
from chart_helpers import CHART_DIR, REPO_ROOT, container, runtime_values

sys.path.insert(0, str(REPO_ROOT / "fake-sidecar"))
from asya_sidecar import topology as naming  # noqa: E402

TOPOLOGY_SCRIPT = (CHART_DIR / "files" / "topology.py").read_text()


def rabbitmq_values(**extra):
    values = runtime_values()
    values["sidecar"] = {"flavor": "asya", "transport": "rabbitmq",
                         "rabbitmq": {"urlSecret": {"name": "rabbitmq-asya", "key": "url"}}}
    values.update(extra)
    return values


def two_actor_values(**extra):
    values = rabbitmq_values(**extra)
    values["actors"] = [{"name": "resize"}, {"name": "caption", "sidecar": {"happyEndQueue": "done"}}]
    return values


def kinds(docs, kind):
    return [doc for doc in docs if doc["kind"] == kind]


def the_job(docs):
    (job,) = kinds(docs, "Job")
    return job


def job_plan(job):
    command = job["spec"]["template"]["spec"]["containers"][0]["command"]
    return command[3], json.loads(command[4])


def test_the_plan_is_the_fake_sidecars_naming_of_every_actor_and_end_queue(chart):
    docs = chart.template_all(two_actor_values())
    mode, plan = job_plan(the_job(docs))
    assert mode == "apply"
    names = ["resize", "happy-end", "error-end", "caption", "done"]
    assert plan == {"bindings": [{"exchange": naming.DEFAULT_EXCHANGE, "queue": queue, "routingKey": key}
                                 for queue, key in naming.bindings(names)]}
    # The Go sidecar's binding: the bare name, never the queue's full name.
    assert {"queue": "asya-resize", "routingKey": "resize"}.items() <= plan["bindings"][0].items()


def test_keda_and_notes_name_the_queue_the_sidecar_consumes(chart):
    values = two_actor_values()
    values["autoscaling"] = {"keda": {"enabled": True, "triggerAuthentication": {"name": "rabbitmq-asya"}}}
    docs = chart.template_all(values)
    queues = sorted(doc["spec"]["triggers"][0]["metadata"]["queueName"] for doc in kinds(docs, "ScaledObject"))
    assert queues == sorted(naming.queue_name(actor) for actor in ("resize", "caption"))
    notes = chart.run("install", "demo", str(CHART_DIR), "--dry-run", "--values", "-",
                      stdin_text=json.dumps(values)).stdout
    assert f'consuming the queue "{naming.queue_name("resize")}"' in notes
    assert f"{naming.queue_name('done')}, bound to the exchange asya with routing key done" in notes


def test_the_sqs_queue_url_ends_in_the_queue_name(chart):
    values = runtime_values()
    values.update(actorName="translate", sidecar={"transport": "sqs", "sqs": {"endpoint": "http://127.0.0.1:4566/000000000000"}},
                  autoscaling={"keda": {"enabled": True}})
    (scaled,) = kinds(chart.template_all(values), "ScaledObject")
    assert scaled["spec"]["triggers"][0]["metadata"]["queueURL"].endswith("/" + naming.queue_name("translate"))


def test_the_job_is_a_hook_that_runs_the_charts_script_in_the_model_image_on_the_sidecars_broker(chart):
    values = rabbitmq_values()
    spec = values["workload"]["template"]["spec"]
    spec.update(hostNetwork=True, dnsPolicy="ClusterFirstWithHostNet", imagePullSecrets=[{"name": "registry"}],
                securityContext={"runAsUser": 1000})
    values.update(nodeSelector={"pool": "gpu"}, tolerations=[{"key": "gpu", "operator": "Exists"}],
                  workload=dict(values["workload"], pythonExecutable="/opt/conda/bin/python"))
    values["sidecar"]["envFrom"] = [{"secretRef": {"name": "broker-extra"}}]
    values["topology"] = {"rabbitmq": {"managementUrl": "https://rabbitmq.messaging:15671"}}
    docs = chart.template_all(values)
    job = the_job(docs)
    annotations = job["metadata"]["annotations"]
    assert annotations["helm.sh/hook"] == "pre-install,pre-upgrade"
    assert annotations["helm.sh/hook-delete-policy"] == "before-hook-creation,hook-succeeded"
    pod = job["spec"]["template"]["spec"]
    (step,) = pod["containers"]
    deployment_pod = kinds(docs, "Deployment")[0]["spec"]["template"]["spec"]
    runtime = container(deployment_pod, "asya-runtime")
    sidecar = container(deployment_pod, "asya-sidecar")
    assert step["image"] == runtime["image"]
    assert step["command"][:3] == ["/opt/conda/bin/python", "-c", TOPOLOGY_SCRIPT]
    assert step["securityContext"] == runtime["securityContext"]
    for field in ("hostNetwork", "dnsPolicy", "imagePullSecrets", "nodeSelector", "tolerations", "securityContext"):
        assert pod[field] == deployment_pod[field], field
    assert pod["restartPolicy"] == "Never"
    # The sidecar's own secret reference, not a copy of it.
    broker_env = [entry for entry in sidecar["env"] if entry["name"].startswith("ASYA_RABBITMQ_")]
    assert [entry for entry in step["env"] if entry["name"].startswith("ASYA_RABBITMQ_")
            and entry["name"] != "ASYA_RABBITMQ_MANAGEMENT_URL"] == broker_env
    assert {"name": "ASYA_RABBITMQ_MANAGEMENT_URL", "value": "https://rabbitmq.messaging:15671"} in step["env"]
    assert step["envFrom"] == sidecar["envFrom"]
    # Its pods are counted by no Deployment, PDB or ScaledObject.
    selector = kinds(docs, "Deployment")[0]["spec"]["selector"]["matchLabels"]
    labels = job["spec"]["template"]["metadata"]["labels"]
    assert not selector.items() <= labels.items()


def test_provision_none_checks_instead_of_creating_and_check_false_renders_nothing(chart):
    job = the_job(chart.template_all(rabbitmq_values(topology={"provision": "none"})))
    assert job_plan(job)[0] == "check"
    docs = chart.template_all(rabbitmq_values(topology={"provision": "none", "check": False}))
    assert kinds(docs, "Job") == []


def test_operator_objects_carry_the_same_plan_and_outlive_the_release(chart):
    reference = {"name": "rabbitmq", "namespace": "messaging"}
    docs = chart.template_all(two_actor_values(
        topology={"provision": "operator", "operator": {"rabbitmqClusterReference": reference}}))
    assert kinds(docs, "Job") == []
    (exchange,) = kinds(docs, "Exchange")
    assert exchange["spec"]["name"] == "asya" and exchange["spec"]["type"] == "topic"
    queues = kinds(docs, "Queue")
    bindings = kinds(docs, "Binding")
    expected = naming.bindings(["resize", "happy-end", "error-end", "caption", "done"])
    assert [q["spec"]["name"] for q in queues] == [queue for queue, _ in expected]
    assert [(b["spec"]["destination"], b["spec"]["routingKey"]) for b in bindings] == expected
    for doc in [exchange, *queues, *bindings]:
        assert doc["apiVersion"] == "rabbitmq.com/v1beta1"
        assert doc["spec"]["rabbitmqClusterReference"] == reference
    assert all(doc["spec"]["durable"] and doc["spec"]["deletionPolicy"] == "retain" for doc in [exchange, *queues])


def test_operator_without_a_cluster_reference_is_refused(chart):
    error = chart.failure(rabbitmq_values(topology={"provision": "operator"}))
    assert "topology.operator.rabbitmqClusterReference is empty" in error


def test_an_unknown_provision_is_refused_by_the_schema(chart):
    error = chart.failure(rabbitmq_values(topology={"provision": "helm"}))
    assert "/topology/provision" in error


def test_actors_on_two_brokers_are_refused_for_the_job(chart):
    values = two_actor_values()
    values["actors"][1]["sidecar"] = {"rabbitmq": {"urlSecret": {"name": "other-broker"}}}
    error = chart.failure(values)
    assert 'actors "resize" and "caption" use different RabbitMQ brokers' in error
    assert "topology.provision" in error


def test_no_topology_without_a_rabbitmq_sidecar(chart):
    fake = runtime_values()
    fake["sidecar"] = {"flavor": "fake"}
    sqs = runtime_values()
    sqs["sidecar"] = {"transport": "sqs"}
    for values in (fake, sqs):
        docs = chart.template_all(values)
        assert not [doc for doc in docs if doc["kind"] in ("Job", "Queue", "Binding", "Exchange")]


def runtime_grace_seconds():
    """HANDLER_TIMEOUT_GRACE as runtime/asya_runtime.py defines it."""
    tree = ast.parse((REPO_ROOT / "runtime" / "asya_runtime.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "HANDLER_TIMEOUT_GRACE" for t in node.targets):
            return ast.literal_eval(node.value)
    raise AssertionError("runtime/asya_runtime.py defines no HANDLER_TIMEOUT_GRACE")


@pytest.mark.parametrize("margin, accepted", [(0.5, True), (0.0, False)])
def test_the_charts_timeout_check_uses_the_runtimes_grace_period(chart, margin, accepted):
    grace = runtime_grace_seconds()
    values = rabbitmq_values()
    values["sidecar"]["runtimeTimeout"] = 60
    values["handlerTimeout"] = 60 - grace - margin
    if accepted:
        chart.template_all(values)
    else:
        assert f"plus the runtime's {grace:g} s grace period must be below" in chart.failure(values)


def topology_script():
    namespace = {"__name__": "asya_chart_topology"}
    exec(compile(TOPOLOGY_SCRIPT, "files/topology.py", "exec"), namespace)
    return namespace


@pytest.mark.parametrize("environ, expected", [
    ({"ASYA_RABBITMQ_URL": "amqp://asya:s%40cret@rabbitmq.messaging:5672/"},
     ("http://rabbitmq.messaging:15672", "/", "asya", "s@cret")),
    ({"ASYA_RABBITMQ_URL": "amqps://u:p@broker/%2F", "ASYA_RABBITMQ_MANAGEMENT_PORT": "15671"},
     ("https://broker:15671", "/", "u", "p")),
    ({"ASYA_RABBITMQ_URL": "amqp://u:p@broker:5672/pipelines",
      "ASYA_RABBITMQ_MANAGEMENT_URL": "https://mgmt.example.com/rabbit/"},
     ("https://mgmt.example.com/rabbit", "pipelines", "u", "p")),
    ({"ASYA_RABBITMQ_HOST": "rabbitmq", "ASYA_RABBITMQ_USERNAME": "asya", "ASYA_RABBITMQ_PASSWORD": "pw"},
     ("http://rabbitmq:15672", "/", "asya", "pw")),
])
def test_the_job_finds_the_management_api_from_the_sidecars_variables(environ, expected):
    assert topology_script()["broker_from_environ"](environ) == expected


def test_a_plan_that_is_not_a_list_of_bindings_is_refused_in_one_line():
    script = topology_script()
    with pytest.raises(script["TopologyError"], match="the plan is not"):
        script["parse_plan"]('{"queues": []}')
    plan = json.dumps(script["make_plan"](naming.bindings(["a", "a", "happy-end"])))
    assert script["parse_plan"](plan) == [("asya", "asya-a", "a"), ("asya", "asya-happy-end", "happy-end")]
