"""Fixtures for the chart tests: the pinned helms, and renders of the ci values files.

helm 4 (`chart`, what every tool uses) and helm 3 (`chart3`, for users still
on it) come from tools/fetch_helm.py (the same pinned, sha256-checked binaries
as `make helm`); a missing one is installed once per session.
"""

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest
from chart_helpers import HELM, HELM3, REPO_ROOT, Chart, ci_values_files


def pinned_chart(helm_path, major):
    if not (helm_path.exists() and os.access(str(helm_path), os.X_OK)):
        subprocess.run([sys.executable, str(REPO_ROOT / "tools" / "fetch_helm.py"),
                        "--major", major, "--dest", str(helm_path.parent)], check=True)
    return Chart(helm_path)


@pytest.fixture(scope="session")
def chart():
    return pinned_chart(HELM, "4")


@pytest.fixture(scope="session")
def chart3():
    return pinned_chart(HELM3, "3")


@pytest.fixture(scope="session")
def charts_by_helm(chart, chart3):
    """Both pinned helms, for the checks every helm user needs: {"helm4": ..., "helm3": ...}."""
    return {"helm4": chart, "helm3": chart3}


@pytest.fixture(scope="session")
def ci_renders(chart):
    """{values file stem: rendered text} for every charts/asya-actor/ci file, rendered in parallel."""
    files = ci_values_files()
    with ThreadPoolExecutor(max_workers=4) as pool:
        texts = list(pool.map(lambda path: chart.template_text(values_files=[path]), files))
    return dict(zip((path.stem for path in files), texts))
