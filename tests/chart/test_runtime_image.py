"""The runtime image as the chart's init container uses it: non-root, read-only root
filesystem, no capabilities, copying the one runtime file into an emptyDir-like
directory; and the e2e model images running that file as the chart's command does
(`<python> /opt/asya/asya_runtime.py`).

Needs podman and the images from `make images`; skips, saying which is missing, otherwise.
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


def image_file(podman_env, path):
    return subprocess.run(
        ["podman", "run", "--rm", "--network", "none", "--entrypoint", "/bin/busybox", IMAGE,
         "cat", path],
        env=podman_env, capture_output=True, check=True, timeout=120).stdout


def test_copies_a_world_readable_runtime_into_the_target(podman_env, empty_dir):
    result = run_init_container(podman_env, empty_dir, "/mnt/target")
    assert result.returncode == 0, result.stdout + result.stderr
    assert sorted(path.name for path in empty_dir.iterdir()) == ["asya_runtime.py"]
    copied = empty_dir / "asya_runtime.py"
    assert stat.S_IMODE(copied.stat().st_mode) == 0o644
    # Compared with the image's own copy: whether the image is as new as
    # runtime/ is `make images`' business, not the copier's.
    packaged = copied.read_bytes()
    assert packaged == image_file(podman_env, "/asya/asya_runtime.py")
    assert b"def main(" in packaged
    assert f"sha256 {hashlib.sha256(packaged).hexdigest()}" in result.stdout


# (model image, its interpreter, handler, PYTHONPATH): the e2e model images.
MODEL_IMAGES = [
    ("localhost/asya-e2e-model-debian:dev", "python3", "my_package.handler.process", "/app"),
    ("localhost/asya-e2e-model-conda37:dev", "/opt/conda/bin/python", "script.predict", "/foo/bar"),
]


@pytest.mark.parametrize("image, python, handler, pythonpath", MODEL_IMAGES,
                         ids=[row[0].split("/")[1].split(":")[0] for row in MODEL_IMAGES])
def test_model_image_runs_the_copied_runtime(podman_env, empty_dir, tmp_path, image, python, handler, pythonpath):
    """`<python> /opt/asya/asya_runtime.py` as the chart runs it, under the pod's constraints, via helm test's script."""
    if subprocess.run(["podman", "image", "exists", image], env=podman_env).returncode != 0:
        missing(f"{image} is not built (make images)")
    copied = run_init_container(podman_env, empty_dir, "/mnt/target")
    assert copied.returncode == 0, copied.stdout + copied.stderr
    socket_dir = tmp_path / "socket"
    socket_dir.mkdir()
    socket_dir.chmod(0o777)
    smoke_test = (REPO_ROOT / "charts" / "asya-actor" / "files" / "smoke_test.py").read_text()
    result = subprocess.run(
        ["podman", "run", "--rm", "--network", "none", "--read-only", "--user", "65532:65532",
         "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
         "--volume", f"{empty_dir}:/opt/asya:ro", "--volume", f"{socket_dir}:/var/run/asya",
         "--env", f"ASYA_HANDLER={handler}", "--env", f"PYTHONPATH={pythonpath}",
         "--env", "ASYA_SOCKET_DIR=/var/run/asya",
         "--entrypoint", python, image, "-c", smoke_test, "60", "/opt/asya/asya_runtime.py"],
        env=podman_env, capture_output=True, text=True, timeout=180)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert "asya helm test: passed" in result.stdout


def test_default_target_is_opt_asya(podman_env):
    inspect = subprocess.run(
        ["podman", "image", "inspect", IMAGE, "--format", "{{.Config.User}} {{json .Config.Cmd}}"],
        env=podman_env, capture_output=True, text=True, check=True)
    assert inspect.stdout.split() == ["65532:65532", '["/opt/asya"]']
