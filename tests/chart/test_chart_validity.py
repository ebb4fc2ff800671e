"""The chart as Kubernetes and helm see it: lint, schema-valid manifests, install."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from chart_helpers import CHART_DIR, ci_values_files, runtime_values

KUBERNETES_VERSION = "1.32.0"


def kubernetes_validate(paths):
    tool = Path(sys.executable).parent / "kubernetes-validate"
    return subprocess.run(
        [str(tool), "--strict", "-k", KUBERNETES_VERSION, *map(str, paths)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_every_ci_values_file_exists_for_the_documented_scenarios():
    names = {path.stem for path in ci_values_files()}
    assert {"package-handler-values", "standalone-script-values", "multiple-pythonpath-values",
            "conda-values", "envelope-mode-values", "gpu-values"} <= names


@pytest.mark.parametrize("values_file", ci_values_files(), ids=lambda path: path.stem)
def test_helm_lint_strict(chart, values_file):
    result = chart.run("lint", "--strict", str(CHART_DIR), "--values", str(values_file))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout


def test_every_rendered_document_passes_kubernetes_validate_strict(ci_renders, tmp_path):
    paths = []
    document_count = 0
    for name, text in ci_renders.items():
        path = tmp_path / (name + ".yaml")
        path.write_text(text)
        paths.append(path)
        document_count += sum(1 for doc in yaml.safe_load_all(text) if doc)
    result = kubernetes_validate(paths)
    assert result.returncode == 0, result.stdout
    assert result.stdout.count(" passed for resource ") == document_count, result.stdout
    # A Deployment and its helm test Pod per values file.
    assert document_count == 2 * len(paths)


def test_kubernetes_validate_catches_a_misspelt_pod_field(chart, tmp_path):
    # The chart passes workload.template.spec through, so a typo there is only
    # caught by the manifest validation above; prove that validation would see it.
    values = runtime_values(imagePullPolicyy="Always")
    path = tmp_path / "typo.yaml"
    path.write_text(chart.template_text(values))
    result = kubernetes_validate([path])
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


def value_paths(schema, prefix=""):
    """Dotted paths of the values the schema declares, down to free-form objects."""
    for key, subschema in schema.get("properties", {}).items():
        path = prefix + key
        if key == "global":
            continue
        nested = subschema.get("properties")
        if nested and subschema.get("additionalProperties") is False and key not in ("template",):
            yield from value_paths(subschema, path + ".")
        else:
            yield path


def test_chart_readme_lists_every_value():
    schema = json.loads((CHART_DIR / "values.schema.json").read_text())
    readme = (CHART_DIR / "README.md").read_text()
    missing = [path for path in value_paths(schema) if f"| `{path}" not in readme]
    assert not missing, f"charts/asya-actor/README.md has no row for: {missing}"
