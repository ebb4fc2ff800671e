"""The `helm install` examples in the README must work as written."""

import re

import pytest
import yaml
from chart_helpers import REPO_ROOT, container, pod_spec

README = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
EXAMPLES = re.findall(r"helm install (\S+) charts/asya-actor -f - <<'EOF'\n(.*?)\nEOF", README, re.S)


def test_readme_has_both_install_examples():
    assert [release for release, _ in EXAMPLES] == ["thumbnailer", "scorer"]


@pytest.mark.parametrize("release, values_text", EXAMPLES, ids=[release for release, _ in EXAMPLES])
def test_readme_example_renders_the_handler_it_promises(chart, release, values_text):
    values = yaml.safe_load(values_text)
    docs = chart.template(values=values, release=release)
    spec = pod_spec(docs)
    runtime = container(spec, "asya-runtime")
    env = {item["name"]: item.get("value") for item in runtime["env"]}
    python = values["workload"].get("pythonExecutable", "python3")
    assert runtime["command"] == [python, "/opt/asya/asya_runtime.py"]
    handler = values.get("handler") or next(
        e["value"] for e in values["workload"]["template"]["spec"]["containers"][0]["env"]
        if e["name"] == "ASYA_HANDLER"
    )
    assert env["ASYA_HANDLER"] == handler
    assert env["PYTHONPATH"] in ("/app", "/foo/bar")
    # The image `make push REGISTRY=registry.example.com/asya` pushed, at the chart's tag.
    assert container(spec, "asya-runtime-init")["image"] == "registry.example.com/asya/asya-runtime:0.1.0"
    # An actor on a broker, scaled on its queue by KEDA.
    assert docs["ScaledObject"]["spec"]["scaleTargetRef"]["name"] == docs["Deployment"]["metadata"]["name"]
    assert "replicas" not in docs["Deployment"]["spec"]


def test_readme_walks_through_build_push_install_and_test():
    section = README[README.index("## Kubernetes"):README.index("## Documentation")]
    steps = ["make images", "make push REGISTRY=registry.example.com/asya",
             "helm install thumbnailer charts/asya-actor", "rollout status deployment/thumbnailer-asya-actor",
             "helm test thumbnailer --logs"]
    positions = [section.index(step) for step in steps]
    assert positions == sorted(positions)


CHART_README = (REPO_ROOT / "charts" / "asya-actor" / "README.md").read_text(encoding="utf-8")
CHART_EXAMPLES = re.findall(r"```yaml\n(.*?)```", CHART_README, re.S)


def test_chart_readme_has_its_examples():
    assert len(CHART_EXAMPLES) >= 3


@pytest.mark.parametrize("index", range(len(CHART_EXAMPLES)))
def test_every_chart_readme_example_renders(chart, index):
    docs = chart.template_all(values=yaml.safe_load(CHART_EXAMPLES[index]))
    assert any(doc["kind"] == "Deployment" for doc in docs)
