"""The runtime image as the chart's init container uses it: non-root, read-only root
filesystem, no capabilities, copying the runtime into an emptyDir-like directory.

Needs podman and the image from `make images`; skips, saying which is missing, otherwise.
"""

import hashlib
import os
import shutil
import stat
import subprocess

import pytest
from chart_helpers import REPO_ROOT

IMAGE = "localhost/asya-runtime:dev"


def missing(reason):
    # `make test` builds the images before the chart tests: in CI a missing
    # piece is a broken pipeline, not a reason to test less.
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; CI is set, so this is a failure")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def podman_env():
    if shutil.which("podman") is None:
        missing("podman is not installed (make podman)")
    env = dict(os.environ)
    env.setdefault("CONTAINERS_CONF", str(REPO_ROOT / ".tools" / "containers.conf"))
    if not os.path.exists(env["CONTAINERS_CONF"]):
        missing(f"{env['CONTAINERS_CONF']} is missing (make podman)")
    if subprocess.run(["podman", "image", "exists", IMAGE], env=env).returncode != 0:
        missing(f"{IMAGE} is not built (make images)")
    return env


def run_init_container(podman_env, target_dir, *args):
    # The init container's constraints in the chart: non-root, read-only root, no capabilities.
    return subprocess.run(
        ["podman", "run", "--rm", "--network", "none", "--read-only", "--user", "65532:65532",
         "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
         "--volume", f"{target_dir}:/mnt/target", IMAGE, *args],
        env=podman_env, capture_output=True, text=True, timeout=120)


@pytest.fixture
def empty_dir(tmp_path):
    target = tmp_path / "emptydir"
    target.mkdir()
    target.chmod(0o777)  # what Kubernetes gives an emptyDir
    return target


def test_copies_a_world_readable_runtime_into_the_target(podman_env, empty_dir):
    result = run_init_container(podman_env, empty_dir, "/mnt/target")
    assert result.returncode == 0, result.stdout + result.stderr
    copied = empty_dir / "asya_runtime.py"
    assert stat.S_IMODE(copied.stat().st_mode) == 0o644
    # Compared with the image's own copy: whether the image is as new as
    # runtime/asya_runtime.py is `make images`' business, not the copier's.
    packaged = subprocess.run(
        ["podman", "run", "--rm", "--network", "none", "--entrypoint", "/bin/busybox", IMAGE,
         "cat", "/asya/asya_runtime.py"],
        env=podman_env, capture_output=True, check=True, timeout=120).stdout
    assert copied.read_bytes() == packaged
    assert b"def main(" in packaged
    assert f"sha256 {hashlib.sha256(packaged).hexdigest()}" in result.stdout
    assert [path.name for path in empty_dir.iterdir()] == ["asya_runtime.py"]


def test_default_target_is_opt_asya(podman_env):
    inspect = subprocess.run(
        ["podman", "image", "inspect", IMAGE, "--format", "{{.Config.User}} {{json .Config.Cmd}}"],
        env=podman_env, capture_output=True, text=True, check=True)
    assert inspect.stdout.split() == ["65532:65532", '["/opt/asya"]']
