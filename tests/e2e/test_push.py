"""`make push` against a real registry: the runtime image arrives whole, under
the chart's appVersion, and what a node pulls back copies this repository's
runtime, as the chart's init container does."""

import hashlib
import os

import e2e_session
import pytest
import yaml
from backends.base import CHART_DIR, run_command
from backends.podman import podman_env

from asya_testkit.paths import REPO_ROOT
from asya_testkit.registry import Registry, registry_unavailable_reason

REPOSITORY = "ml/asya-runtime"


@pytest.fixture
def registry(tmp_path):
    reason = e2e_session.unavailable_reason() or registry_unavailable_reason()
    if reason:
        if e2e_session.failing_instead_of_skipping():
            pytest.fail(f"{reason} (CI is set, so this is a failure, not a skip)", pytrace=False)
        pytest.skip(reason)
    with Registry(tmp_path / "registry") as running:
        yield running


def sha256_of(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_make_push_delivers_the_runtime_image_a_node_pulls(registry, tmp_path):
    app_version = yaml.safe_load((CHART_DIR / "Chart.yaml").read_text())["appVersion"]
    env = podman_env()
    env["CONTAINERS_REGISTRIES_CONF"] = str(registry.registries_conf())
    pushed = f"{registry.host}/{REPOSITORY}:{app_version}"
    try:
        # run_command raises, with the command's output, when a step fails.
        result = run_command(["make", "--no-print-directory", "-C", str(REPO_ROOT), "push",
                              f"REGISTRY={registry.host}/ml"], env=env, timeout=600)
        assert f"pushed {pushed}" in result.stdout

        assert registry.tags(REPOSITORY) == [app_version]
        assert registry.missing_blobs(REPOSITORY, app_version) == []

        # As a node would: no local copy under that name, pull it, run it as the init container.
        run_command(["podman", "rmi", pushed], env=env)
        run_command(["podman", "pull", pushed], env=env, timeout=600)
        target = tmp_path / "opt-asya"
        target.mkdir()
        os.chmod(str(target), 0o777)  # the image runs as UID 65532
        run_command(["podman", "run", "--rm", "--network", "none", "-v", f"{target}:/opt/asya", pushed], env=env)
        assert sha256_of(target / "asya_runtime.py") == sha256_of(REPO_ROOT / "runtime" / "asya_runtime.py")
    finally:
        run_command(["podman", "rmi", "--ignore", pushed], env=env, check=False)
