"""The commands the chart writes into the pod, run for real against the runtime.

The probes and the helm test pod carry commands that will run inside the model
image under its own interpreter. Here the rendered commands run as local
processes against a copy of runtime/asya_runtime.py standing where the init
container puts it, with only the pod's paths (/opt/asya, /var/run/asya) pointed
at local directories.
"""

import os
import shutil
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from chart_helpers import container, pod_spec

from asya_testkit.interpreters import OLDEST_MINOR, find_interpreter
from asya_testkit.paths import RUNTIME_SCRIPT
from asya_testkit.process import short_temp_dir
from asya_testkit.wait import wait_for
from asya_testkit.wire import encode_envelope, envelope_for, frame, read_until_eof

HANDLERS = Path(__file__).resolve().parent / "handlers"
POD_SOCKET_DIR = "/var/run/asya"
POD_RUNTIME_DIR = "/opt/asya"


def interpreters():
    """The interpreter running the tests, and the oldest a model image may have."""
    return [pytest.param(sys.executable, id="current"),
            pytest.param(OLDEST_MINOR, id=f"python3.{OLDEST_MINOR}")]


def resolve(interpreter):
    if not isinstance(interpreter, int):
        return interpreter
    found, why_missing = find_interpreter(interpreter)
    if found is None:
        pytest.skip(why_missing)
    return found.path


@pytest.fixture
def socket_dir():
    path = short_temp_dir("asya-chart-")
    yield str(path)
    shutil.rmtree(str(path), ignore_errors=True)


@pytest.fixture(scope="module")
def runtime_dir():
    """What /opt/asya holds in a pod: the one runtime file."""
    path = short_temp_dir("asya-opt-")
    shutil.copy(str(RUNTIME_SCRIPT), str(path / "asya_runtime.py"))
    yield str(path)
    shutil.rmtree(str(path), ignore_errors=True)


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


def localise(command, runtime_dir):
    return [word.replace(POD_RUNTIME_DIR, runtime_dir, 1) if word.startswith(POD_RUNTIME_DIR + "/")
            else word for word in command]


def run_smoke_test(smoke, socket_dir, runtime_dir):
    return subprocess.run(localise(smoke["command"], runtime_dir), env=pod_env(smoke, socket_dir),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, timeout=120)


@pytest.mark.parametrize("interpreter", interpreters())
@pytest.mark.parametrize("flavor", ["asya", "fake"])
def test_helm_test_passes_for_an_importable_handler(chart, runtime_dir, socket_dir, interpreter, flavor):
    python = resolve(interpreter)
    _, smoke = render_pod_commands(chart, python, "echo_handler.process", handlerMode="envelope",
                                   chunkSize=65536, sidecar={"flavor": flavor})
    result = run_smoke_test(smoke, socket_dir, runtime_dir)
    assert result.returncode == 0, result.stdout
    assert "refused an oversized frame" in result.stdout
    assert "asya helm test: passed" in result.stdout
    assert not os.path.exists(os.path.join(socket_dir, "asya-runtime.sock"))


@pytest.mark.parametrize("interpreter", interpreters())
def test_helm_test_fails_with_the_runtimes_reason_for_a_misspelt_handler(
        chart, runtime_dir, socket_dir, interpreter):
    python = resolve(interpreter)
    _, smoke = render_pod_commands(chart, python, "echo_handler.proces")
    result = run_smoke_test(smoke, socket_dir, runtime_dir)
    assert result.returncode == 1, result.stdout
    assert "FAILED: the runtime exited with status" in result.stdout
    # The runtime's own diagnosis reaches the test pod's log.
    assert "'proces'" in result.stdout or '"proces"' in result.stdout, result.stdout


def send_one(socket_path, envelope, replies):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
        connection.connect(socket_path)
        connection.sendall(frame(encode_envelope(envelope)))
        connection.shutdown(socket.SHUT_WR)
        replies.append(read_until_eof(connection))


@pytest.mark.parametrize("interpreter", interpreters())
def test_probe_passes_through_a_long_call_and_fails_once_the_runtime_is_gone(
        chart, runtime_dir, socket_dir, interpreter):
    python = resolve(interpreter)
    runtime_container, _ = render_pod_commands(chart, python, "slow_handler.sleep")
    commands = {kind: localise(runtime_container[kind]["exec"]["command"], runtime_dir)
                for kind in ("startupProbe", "readinessProbe", "livenessProbe")}
    assert len({tuple(command) for command in commands.values()}) == 1
    probe = commands["livenessProbe"]
    env = pod_env(runtime_container, socket_dir)
    socket_path = os.path.join(socket_dir, "asya-runtime.sock")

    def probe_status():
        return subprocess.run(probe, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, timeout=60)

    before = probe_status()
    assert before.returncode == 1, before.stdout
    assert len(before.stdout.strip().splitlines()) == 1, before.stdout

    runtime = subprocess.Popen(localise(runtime_container["command"], runtime_dir), env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               universal_newlines=True)
    try:
        wait_for(lambda: probe_status().returncode == 0 or runtime.poll() is not None,
                 "the probe to pass once the runtime listens", interval=0.05)
        assert runtime.poll() is None, runtime.stdout.read()
        # A call that outlasts many probe runs: the probe never connects, so the
        # busy runtime stays live and ready.
        replies = []
        caller = threading.Thread(target=send_one, args=(
            socket_path, envelope_for({"seconds": 1.5}, actors=("slow",)), replies))
        caller.start()
        probe_runs = 0
        while caller.is_alive():
            status = probe_status()
            assert status.returncode == 0, status.stdout
            probe_runs += 1
        caller.join()
        assert probe_runs >= 3
        assert replies and replies[0], "the slow call got no reply"
    finally:
        runtime.terminate()
        output = runtime.communicate(timeout=60)[0]
    assert runtime.returncode == 0, output
    after = probe_status()
    assert after.returncode == 1, after.stdout
