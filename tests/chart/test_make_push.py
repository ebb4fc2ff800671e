"""`make push`: the runtime image goes to the registry the user names, under the
tag the chart uses by default (its appVersion)."""

import subprocess

import yaml
from chart_helpers import CHART_DIR, REPO_ROOT


def make(*args):
    return subprocess.run(["make", "--no-print-directory", *args], cwd=str(REPO_ROOT),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_push_without_a_registry_says_how_to_name_one():
    result = make("push")
    assert result.returncode != 0
    assert "make push: name the registry, e.g. make push REGISTRY=registry.example.com/ml" in result.stdout


def test_push_tags_with_the_charts_app_version():
    app_version = yaml.safe_load((CHART_DIR / "Chart.yaml").read_text())["appVersion"]
    plan = make("-n", "push", "REGISTRY=registry.example.com/ml").stdout
    assert f"podman push registry.example.com/ml/asya-runtime:{app_version}" in plan
    assert f"localhost/asya-runtime:{app_version} registry.example.com/ml/asya-runtime:{app_version}" in plan
