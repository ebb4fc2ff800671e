"""The chart as Kubernetes, KEDA and helm see it: lint, schema-valid manifests on the
oldest and newest Kubernetes the chart supports, install, and the generated README."""

import json
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import jsonschema
import pytest
import yaml
from chart_helpers import CHART_DIR, REPO_ROOT, ci_values_files, runtime_values
from keda_fields import SCALED_OBJECT

# Chart.yaml's kubeVersion floor, and the newest release kubernetes-validate knows.
OLDEST_KUBERNETES = "1.25.0"
NEWEST_KUBERNETES = "1.37.0"
# Values files that need a newer cluster than the chart's floor (the chart refuses
# them below it; see test_scaling_and_order.py).
MINIMUM_KUBERNETES = {
    "native-sidecar-values": "1.29.0",
    "image-volume-values": "1.33.0",
}
KUBERNETES_KINDS = {"Deployment", "Pod", "ServiceAccount", "PodDisruptionBudget", "Job"}
# Kinds of operators (KEDA, the RabbitMQ Messaging Topology Operator) that
# kubernetes-validate does not know; checked by their own tests.
OPERATOR_KINDS = {"ScaledObject", "Exchange", "Queue", "Binding"}
README_GENERATOR_DIR = REPO_ROOT / "tools" / "readme-generator"
README_GENERATOR = README_GENERATOR_DIR / "node_modules" / ".bin" / "readme-generator"


def kubernetes_validate(paths, version):
    tool = Path(sys.executable).parent / "kubernetes-validate"
    return subprocess.run(
        [str(tool), "--strict", "-k", version, *map(str, paths)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_every_documented_scenario_has_a_ci_values_file():
    names = {path.stem for path in ci_values_files()}
    assert {"package-handler-values", "standalone-script-values", "multiple-pythonpath-values",
            "conda-values", "envelope-mode-values", "gpu-values", "asya-rabbitmq-values",
            "asya-sqs-irsa-values", "keda-values", "native-sidecar-values",
            "image-volume-values", "two-actors-values", "topology-operator-values"} <= names


@pytest.fixture(scope="module")
def lint_results(charts_by_helm):
    """{(helm, values file): lint result}: helm 4, and helm 3 for users still on it."""
    jobs = [(helm, path) for helm in charts_by_helm for path in ci_values_files()]
    def lint(job):
        helm, values_file = job
        return charts_by_helm[helm].run("lint", "--strict", str(CHART_DIR), "--values", str(values_file))

    with ThreadPoolExecutor(max_workers=4) as pool:
        return dict(zip(jobs, pool.map(lint, jobs)))


@pytest.mark.parametrize("helm", ["helm4", "helm3"])
@pytest.mark.parametrize("values_file", ci_values_files(), ids=lambda path: path.stem)
def test_helm_lint_strict(lint_results, helm, values_file):
    result = lint_results[(helm, values_file)]
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout


def render_every_ci_file(chart):
    """{(values file stem, kubernetes version): documents} for every ci file at the
    oldest and newest version it supports, rendered with that version's capabilities."""
    jobs = []
    for path in ci_values_files():
        for version in (OLDEST_KUBERNETES, NEWEST_KUBERNETES):
            floor = MINIMUM_KUBERNETES.get(path.stem, OLDEST_KUBERNETES)
            if version == OLDEST_KUBERNETES and floor != OLDEST_KUBERNETES:
                version = floor
            jobs.append((path, version))
    with ThreadPoolExecutor(max_workers=4) as pool:
        docs = list(pool.map(lambda job: chart.template_all(values_files=[job[0]], kube_version=job[1]),
                             jobs))
    return {(path.stem, version): rendered for (path, version), rendered in zip(jobs, docs)}


@pytest.fixture(scope="module")
def renders_per_version(chart):
    return render_every_ci_file(chart)


def test_helm3_renders_the_objects_helm4_renders(renders_per_version, chart3):
    # Users still on helm 3 get the same Deployment, ScaledObject, ... as helm 4 users.
    helm3_renders = render_every_ci_file(chart3)
    assert sorted(helm3_renders) == sorted(renders_per_version)
    for key, docs in renders_per_version.items():
        assert helm3_renders[key] == docs, f"{key}: helm 3 renders other objects than helm 4"


@pytest.mark.parametrize("version", ["oldest", "newest"])
def test_every_rendered_manifest_passes_kubernetes_validate_strict(renders_per_version, tmp_path, version):
    by_version = {}
    for (name, kube_version), docs in renders_per_version.items():
        by_version.setdefault(kube_version, []).append((name, docs))
    versions = sorted(by_version, key=lambda text: tuple(map(int, text.split("."))))
    chosen = {versions[-1]} if version == "newest" else set(versions[:-1])
    checked = 0
    for kube_version in sorted(chosen):
        paths = []
        expected = 0
        for name, docs in by_version[kube_version]:
            kubernetes_docs = [doc for doc in docs if doc["kind"] in KUBERNETES_KINDS]
            assert len(kubernetes_docs) + sum(doc["kind"] in OPERATOR_KINDS for doc in docs) == len(docs)
            path = tmp_path / f"{name}-{kube_version}.yaml"
            path.write_text(yaml.safe_dump_all(kubernetes_docs))
            paths.append(path)
            expected += len(kubernetes_docs)
        result = kubernetes_validate(paths, kube_version)
        assert result.returncode == 0, result.stdout
        assert result.stdout.count(" passed for resource ") == expected, result.stdout
        checked += expected
    assert checked > 0


def test_scaled_objects_use_only_the_fields_keda_documents(renders_per_version):
    scaled_objects = [doc for docs in renders_per_version.values() for doc in docs
                      if doc["kind"] == "ScaledObject"]
    trigger_types = set()
    for scaled_object in scaled_objects:
        jsonschema.validate(scaled_object, SCALED_OBJECT)
        trigger_types.update(each["type"] for each in scaled_object["spec"]["triggers"])
    assert trigger_types == {"rabbitmq"}
    assert len(scaled_objects) >= 2


def test_keda_field_check_would_catch_a_misspelt_trigger_field():
    bad = {"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject", "metadata": {"name": "x"},
           "spec": {"scaleTargetRef": {"name": "x"}, "triggers": [
               {"type": "rabbitmq", "metadata": {"queueName": "x", "mode": "QueueLength",
                                                 "value": "5", "queueLenght": "5"}}]}}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, SCALED_OBJECT)


def test_kubernetes_validate_catches_a_misspelt_pod_field(chart, tmp_path):
    # The chart passes workload.template.spec through, so a typo there is only
    # caught by the manifest validation above; prove that validation would see it.
    values = runtime_values(imagePullPolicyy="Always")
    path = tmp_path / "typo.yaml"
    path.write_text(chart.template_text(values))
    result = kubernetes_validate([path], NEWEST_KUBERNETES)
    assert result.returncode != 0
    assert "imagePullPolicyy" in result.stdout


def test_helm_install_dry_run_client(chart):
    values_file = CHART_DIR / "ci" / "package-handler-values.yaml"
    result = chart.run("install", "thumbnailer", str(CHART_DIR), "--dry-run=client",
                       "--namespace", "models", "--values", str(values_file))
    assert result.returncode == 0, result.stderr
    assert "kind: Deployment" in result.stdout
    assert '"helm.sh/hook": test' in result.stdout
    # NOTES.txt tells the user how to check the rollout and where the logs are.
    assert "kubectl --namespace models rollout status deployment/thumbnailer-asya-actor" in result.stdout
    assert "logs deployment/thumbnailer-asya-actor -c asya-runtime" in result.stdout
    assert "helm test thumbnailer --namespace models --logs" in result.stdout
    # ... and how to send it one test message through the runtime in the pod.
    assert (
        "kubectl --namespace models exec deployment/thumbnailer-asya-actor -c asya-runtime -- "
        "python3 /opt/asya/asya_runtime.py --call '{\"your\": \"payload\"}'"
    ) in result.stdout


def test_notes_list_every_actor_of_a_release(chart):
    values_file = CHART_DIR / "ci" / "two-actors-values.yaml"
    result = chart.run("install", "pipeline", str(CHART_DIR), "--dry-run=client",
                       "--namespace", "ml", "--values", str(values_file))
    assert result.returncode == 0, result.stderr
    assert "rollout status deployment/pipeline-asya-actor-route" in result.stdout
    assert "rollout status deployment/pipeline-asya-actor-score" in result.stdout
    assert "scaled by KEDA on its queue (1 to 4 pods)" in result.stdout


def test_notes_say_when_container_env_overrides_a_value(chart):
    values_file = CHART_DIR / "ci" / "conda-values.yaml"
    result = chart.run("install", "conda", str(CHART_DIR), "--dry-run=client",
                       "--values", str(values_file))
    assert result.returncode == 0, result.stderr
    assert "ASYA_LOG_LEVEL comes from the asya-runtime container's env" in result.stdout


def test_helm_install_dry_run_refuses_a_typo(chart):
    values_file = CHART_DIR / "ci" / "package-handler-values.yaml"
    result = chart.run("install", "thumbnailer", str(CHART_DIR), "--dry-run=client",
                       "--values", str(values_file), "--set", "replicaCont=2")
    assert result.returncode != 0
    assert "additional properties 'replicaCont' not allowed" in result.stderr


# ---------------------------------------------------------------- values, schema, README

REFERENCE_CHART_KEYS = {"transport", "scaling", "name"}


def schema_node(schema, node):
    while "$ref" in node:
        target = schema
        for part in node["$ref"].lstrip("#/").split("/"):
            target = target[part]
        node = target
    return node


def leaf_paths(values, prefix=""):
    for key, value in values.items():
        path = prefix + key
        if isinstance(value, dict) and value:
            yield from leaf_paths(value, path + ".")
        else:
            yield path, value


def lookup(schema, path):
    node = schema
    for part in path.split("."):
        node = schema_node(schema, node)
        properties = node.get("properties", {})
        if part in properties:
            node = properties[part]
        elif isinstance(node.get("additionalProperties"), dict):
            node = node["additionalProperties"]
        else:
            return None
    return schema_node(schema, node)


def test_schema_types_every_value_in_values_yaml():
    schema = json.loads((CHART_DIR / "values.schema.json").read_text())
    values = yaml.safe_load((CHART_DIR / "values.yaml").read_text())
    untyped = []
    for path, _ in leaf_paths(values):
        node = lookup(schema, path)
        if node is None or not ({"type", "enum", "const", "oneOf"} & set(node)):
            untyped.append(path)
    assert not untyped, f"values.schema.json gives no type for: {untyped}"
    # And nothing in the schema that values.yaml does not have, apart from the
    # reference chart's keys (refused with a pointer) and helm's `global`.
    declared = set(schema["properties"]) - REFERENCE_CHART_KEYS - {"global"}
    assert declared == set(values)


def readme_generator():
    if not (README_GENERATOR.exists() and os.access(str(README_GENERATOR), os.X_OK)):
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
                       cwd=str(README_GENERATOR_DIR), check=True)
    return README_GENERATOR


def test_readme_values_table_is_generated_from_values_yaml(tmp_path):
    readme = tmp_path / "README.md"
    shutil.copy(str(CHART_DIR / "README.md"), str(readme))
    result = subprocess.run(
        [str(readme_generator()), "--values", str(CHART_DIR / "values.yaml"), "--readme", str(readme)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert result.returncode == 0, result.stdout
    assert readme.read_text() == (CHART_DIR / "README.md").read_text(), (
        "charts/asya-actor/README.md's values table is stale: run `make chart-readme`")


def test_readme_table_has_a_row_per_value():
    values = yaml.safe_load((CHART_DIR / "values.yaml").read_text())
    readme = (CHART_DIR / "README.md").read_text()
    documented_whole = ("workload.template.spec",)
    missing = [path for path, _ in leaf_paths(values)
               if f"| `{path}`" not in readme and not path.startswith(documented_whole)]
    assert not missing, missing
