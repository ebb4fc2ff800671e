"""Rendering the chart with the pinned helm, and reading the rendered pod.

Shared by the chart tests (conftest.py holds only the fixtures).
"""

import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
CHART_DIR = REPO_ROOT / "charts" / "asya-actor"
CI_VALUES_DIR = CHART_DIR / "ci"
HELM = REPO_ROOT / ".tools" / "bin" / "helm"
HELM3 = REPO_ROOT / ".tools" / "bin" / "helm3"
RELEASE = "demo"


class RenderError(Exception):
    """helm refused to render; the message is helm's stderr."""


class Chart:
    """Runs the pinned helm against charts/asya-actor."""

    def __init__(self, helm_path):
        self.helm_path = str(helm_path)

    def run(self, *args, stdin_text=None):
        return subprocess.run(
            [self.helm_path, *args], input=stdin_text, capture_output=True, text=True)

    def values_args(self, values_files, values):
        """helm arguments for values files, then `values` (a dict) given on stdin."""
        args = []
        for values_file in values_files:
            args += ["--values", str(values_file)]
        # A values file rather than --set, so that lists and nested maps reach
        # helm exactly as a user's values file would carry them.
        stdin_text = None
        if values is not None:
            args += ["--values", "-"]
            stdin_text = yaml.safe_dump(values)
        return args, stdin_text

    def template_text(self, values=None, values_files=(), release=RELEASE, kube_version=None):
        args, stdin_text = self.values_args(values_files, values)
        if kube_version:
            args += ["--kube-version", kube_version]
        result = self.run("template", release, str(CHART_DIR), *args, stdin_text=stdin_text)
        if result.returncode != 0:
            raise RenderError(result.stderr)
        return result.stdout

    def template(self, values=None, values_files=(), release=RELEASE, kube_version=None):
        """Render and return the parsed documents, keyed by kind (see documents())."""
        return documents(self.template_text(values, values_files, release, kube_version))

    def template_all(self, values=None, values_files=(), release=RELEASE, kube_version=None):
        """Render and return every document, in order."""
        text = self.template_text(values, values_files, release, kube_version)
        return [doc for doc in yaml.safe_load_all(text) if doc]

    def failure(self, values=None, values_files=(), release=RELEASE, kube_version=None):
        """Render values that must be refused; return helm's error output."""
        try:
            self.template_text(values, values_files, release, kube_version)
        except RenderError as error:
            return str(error)
        raise AssertionError(f"helm rendered values that should have been refused: {values}")


def ci_values_files():
    return sorted(CI_VALUES_DIR.glob("*.yaml"))


def documents(text):
    """{kind: document} of a single-actor render (one document of each kind)."""
    docs = [doc for doc in yaml.safe_load_all(text) if doc]
    by_kind = {doc["kind"]: doc for doc in docs}
    assert len(by_kind) == len(docs), "several documents of one kind: use template_all"
    return by_kind


def pod_spec(docs):
    return docs["Deployment"]["spec"]["template"]["spec"]


def container(spec, name, key=None):
    """The container called name; without key, looked up in containers and initContainers
    (as a native sidecar the runtime is an init container)."""
    keys = [key] if key else ["containers", "initContainers"]
    candidates = [each for k in keys for each in spec.get(k, [])]
    matches = [each for each in candidates if each["name"] == name]
    assert len(matches) == 1, "expected one {} named {}, found {}".format(
        "/".join(keys), name, [each["name"] for each in candidates])
    return matches[0]


def env_of(container_spec):
    """The env as a list of (name, value) pairs, in order."""
    return [(entry["name"], entry.get("value")) for entry in container_spec.get("env", [])]


def runtime_values(**container_fields):
    """Values with one asya-runtime container; container_fields are added to it."""
    runtime = {"name": "asya-runtime", "image": "registry.example.com/ml/model:1.0"}
    runtime.update(container_fields)
    return {"handler": "my_package.handler.process",
            "workload": {"template": {"spec": {"containers": [runtime]}}}}


def render_many(chart, cases):
    """{case: (rendered text or None, helm's error or None)} for {case: (values, kube_version)},
    rendered in parallel: each helm run is short, and there are many."""
    def render(item):
        values, kube_version = item
        try:
            return chart.template_text(values, kube_version=kube_version), None
        except RenderError as error:
            return None, str(error)
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(render, cases.values()))
    return dict(zip(cases, results))
