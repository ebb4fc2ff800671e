"""The commands the chart writes into the pod, run for real against the runtime.

The probes and the helm test pod carry Python programs that will run inside the
model image under its own interpreter. Here the rendered commands run as local
processes against the runtime directory the init container would fill
(asya_runtime.py, its launcher and their bytecode, built by
tools/compile_runtime.py as `make images` builds it), with only the paths that
belong to the pod (/opt/asya, /var/run/asya) pointed at local directories.
"""

import glob
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from chart_helpers import REPO_ROOT, container, pod_spec

RUNTIME = REPO_ROOT / "runtime" / "asya_runtime.py"
HANDLERS = Path(__file__).resolve().parent / "handlers"
POD_SOCKET_PATH = "/var/run/asya/asya-runtime.sock"
POD_RUNTIME_DIR = "/opt/asya"
COMPILE_RUNTIME = REPO_ROOT / "tools" / "compile_runtime.py"


def oldest_supported_python():
    found = sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.7.*/bin/python3")))
    return found[0] if found else shutil.which("python3.7")


def interpreters():
    """The interpreter running the tests, and Python 3.7 (the oldest a model image may have)."""
    return [pytest.param(sys.executable, id="current"),
            pytest.param("3.7", id="python3.7")]


def resolve(interpreter):
    if interpreter != "3.7":
        return interpreter
    python37 = oldest_supported_python()
    if python37 is None:
        pytest.skip("no Python 3.7 found (~/.pyenv/versions/3.7.*/bin/python3 or python3.7 on PATH)")
    return python37


@pytest.fixture
def socket_dir():
    # Short, because a Unix socket path is limited to about 100 bytes.
    path = tempfile.mkdtemp(prefix="asya-chart-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def runtime_dir(tmp_path_factory):
    """What /opt/asya holds in a pod, with bytecode for the interpreters used here."""
    if not RUNTIME.exists():
        pytest.skip("runtime/asya_runtime.py is not in this checkout yet")
    out_dir = tmp_path_factory.mktemp("runtime") / "asya"
    pythons = [sys.executable] + [python for python in [oldest_supported_python()] if python]
    subprocess.run([sys.executable, str(COMPILE_RUNTIME), str(out_dir),
                    *[arg for python in pythons for arg in ("--python", python)]],
                   check=True, stdout=subprocess.DEVNULL, timeout=120)
    return str(out_dir)


def render_pod_commands(chart, python, handler, **extra_values):
    values = {"handler": handler, "workload": {"pythonExecutable": python, "template": {"spec": {
        "containers": [{"name": "asya-runtime", "image": "model:1",
                        "env": [{"name": "PYTHONPATH", "value": str(HANDLERS)}]}]}}}}
    values.update(extra_values)
    docs = chart.template(values)
    return container(pod_spec(docs), "asya-runtime"), docs["Pod"]["spec"]["containers"][0]


def pod_env(container_spec, socket_dir):
    """The container's env as a local process gets it, the socket dir made local."""
    env = {"PATH": os.environ["PATH"]}
    for entry in container_spec["env"]:
        env[entry["name"]] = entry["value"]
    env["ASYA_SOCKET_DIR"] = socket_dir
    return env


def localise(command, socket_dir, runtime_dir):
    return [runtime_dir if word == POD_RUNTIME_DIR
            else word.replace(POD_SOCKET_PATH, os.path.join(socket_dir, "asya-runtime.sock"))
            for word in command]


@pytest.mark.parametrize("interpreter", interpreters())
def test_helm_test_passes_for_an_importable_handler(chart, runtime_dir, socket_dir, interpreter):
    python = resolve(interpreter)
    _, smoke = render_pod_commands(chart, python, "echo_handler.process",
                                   handlerMode="envelope", chunkSize=65536)
    result = subprocess.run(localise(smoke["command"], socket_dir, runtime_dir),
                            env=pod_env(smoke, socket_dir), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, timeout=120)
    assert result.returncode == 0, result.stdout
    assert "refused an oversized frame" in result.stdout
    assert "asya helm test: passed" in result.stdout
    assert not os.path.exists(os.path.join(socket_dir, "asya-runtime.sock"))


@pytest.mark.parametrize("interpreter", interpreters())
def test_helm_test_fails_with_the_runtimes_reason_for_a_misspelt_handler(
        chart, runtime_dir, socket_dir, interpreter):
    python = resolve(interpreter)
    _, smoke = render_pod_commands(chart, python, "echo_handler.proces")
    result = subprocess.run(localise(smoke["command"], socket_dir, runtime_dir),
                            env=pod_env(smoke, socket_dir), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, timeout=120)
    assert result.returncode == 1, result.stdout
    assert "FAILED: the runtime exited with status" in result.stdout
    # The runtime's own diagnosis reaches the test pod's log.
    assert "'proces'" in result.stdout or '"proces"' in result.stdout, result.stdout


@pytest.mark.parametrize("interpreter", interpreters())
def test_probe_succeeds_only_while_the_runtime_serves(chart, runtime_dir, socket_dir, interpreter):
    python = resolve(interpreter)
    runtime_container, _ = render_pod_commands(chart, python, "echo_handler.process")
    probe = localise(runtime_container["readinessProbe"]["exec"]["command"], socket_dir, runtime_dir)
    socket_path = os.path.join(socket_dir, "asya-runtime.sock")

    env = pod_env(runtime_container, socket_dir)
    assert subprocess.run(probe, env=env, stderr=subprocess.DEVNULL).returncode != 0

    runtime = subprocess.Popen(localise(runtime_container["command"], socket_dir, runtime_dir),
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               universal_newlines=True)
    try:
        give_up_at = time.monotonic() + 60  # a bound on waiting, not a performance check
        while not os.path.exists(socket_path):
            assert runtime.poll() is None, runtime.stdout.read()
            assert time.monotonic() < give_up_at, "the runtime never created its socket"
            time.sleep(0.05)
        assert subprocess.run(probe, env=env).returncode == 0
    finally:
        runtime.terminate()
        output = runtime.communicate(timeout=60)[0]
    assert runtime.returncode == 0, output
    assert subprocess.run(probe, env=env, stderr=subprocess.DEVNULL).returncode != 0
