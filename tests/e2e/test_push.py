"""`make push` against a real registry: the runtime image arrives whole, under
the chart's appVersion, and what a node pulls back copies this repository's
runtime, as the chart's init container does."""

import hashlib
import os
import subprocess

import e2e_session
import pytest
import yaml
from backends.podman import podman_env

from asya_testkit.paths import REPO_ROOT
from asya_testkit.registry import Registry, registry_unavailable_reason

REPOSITORY = "ml/asya-runtime"


@pytest.fixture
def registry(tmp_path):
    if e2e_session.backend_name() != "podman":
        pytest.skip("pushes with podman; the kind backend has no podman images to push")
    reason = e2e_session.unavailable_reason() or registry_unavailable_reason()
    if reason:
        if e2e_session.failing_instead_of_skipping():
            pytest.fail(f"{reason} (CI is set, so this is a failure, not a skip)", pytrace=False)
        pytest.skip(reason)
    with Registry(tmp_path / "registry") as running:
        yield running


def run(argv, env):
    return subprocess.run(argv, cwd=str(REPO_ROOT), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, timeout=600)


def sha256_of(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_make_push_delivers_the_runtime_image_a_node_pulls(registry, tmp_path):
    app_version = yaml.safe_load((REPO_ROOT / "charts" / "asya-actor" / "Chart.yaml").read_text())["appVersion"]
    env = podman_env()
    env["CONTAINERS_REGISTRIES_CONF"] = str(registry.registries_conf())
    pushed = f"{registry.host}/{REPOSITORY}:{app_version}"
    try:
        result = run(["make", "--no-print-directory", "push", f"REGISTRY={registry.host}/ml"], env)
        assert result.returncode == 0, result.stdout
        assert f"pushed {pushed}" in result.stdout

        assert registry.tags(REPOSITORY) == [app_version]
        assert registry.missing_blobs(REPOSITORY, app_version) == []

        # As a node would: no local copy under that name, pull it, run it as the init container.
        assert run(["podman", "rmi", pushed], env).returncode == 0
        pulled = run(["podman", "pull", pushed], env)
        assert pulled.returncode == 0, pulled.stdout
        target = tmp_path / "opt-asya"
        target.mkdir()
        os.chmod(str(target), 0o777)  # the image runs as UID 65532
        copied = run(["podman", "run", "--rm", "--network", "none", "-v", f"{target}:/opt/asya", pushed], env)
        assert copied.returncode == 0, copied.stdout
        assert sha256_of(target / "asya_runtime.py") == sha256_of(REPO_ROOT / "runtime" / "asya_runtime.py")
    finally:
        run(["podman", "rmi", "--ignore", pushed], env)
