"""Fixtures for the chart tests: the pinned helm, and renders of the ci values files.

helm comes from tools/fetch_helm.py (the same pinned, sha256-checked binary as
`make helm`); a missing one is installed once per session.
"""

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest
from chart_helpers import HELM, REPO_ROOT, Chart, ci_values_files


@pytest.fixture(scope="session")
def chart():
    if not (HELM.exists() and os.access(str(HELM), os.X_OK)):
        subprocess.run([sys.executable, str(REPO_ROOT / "tools" / "fetch_helm.py"),
                        "--dest", str(HELM.parent)], check=True)
    return Chart(HELM)


@pytest.fixture(scope="session")
def ci_renders(chart):
    """{values file stem: rendered text} for every charts/asya-actor/ci file, rendered in parallel."""
    files = ci_values_files()
    with ThreadPoolExecutor(max_workers=4) as pool:
        texts = list(pool.map(lambda path: chart.template_text(values_files=[path]), files))
    return dict(zip((path.stem for path in files), texts))
