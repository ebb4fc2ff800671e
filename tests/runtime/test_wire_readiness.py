"""Black-box, every interpreter: the runtime-ready file and the probe that never connects.

The asya Go sidecar waits for `runtime-ready` in the socket directory before
it dials; the chart's startup, readiness and liveness probes run
`python -I -S asya_runtime.py --probe`, which reads the socket and that file
and never connects, so a handler call of any length cannot fail a probe.
"""

import os
import signal
import subprocess
import threading

import pytest

from asya_testkit.process import RUNTIME_SCRIPT
from asya_testkit.wait import wait_for
from asya_testkit.wire import call, envelope_for

# More runs than the listen backlog (128) could hold if probes connected: on
# the oldest and newest interpreters; the others check the same code briefly.
PROBE_RUNS_DURING_ONE_CALL = 200
PROBE_RUNS_ON_OTHER_INTERPRETERS = 20


def run_probe(python, socket_dir):
    """The chart's probe command, as the kubelet runs it: (exit status, stderr)."""
    completed = subprocess.run(
        [str(getattr(python, "path", python)), "-I", "-S", str(RUNTIME_SCRIPT), "--probe"],
        env={"ASYA_SOCKET_DIR": str(socket_dir), "PATH": os.environ.get("PATH", "")},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=30,
    )
    return completed.returncode, completed.stderr.decode()


def test_ready_file_holds_the_pid_once_listening_and_goes_at_shutdown(runtime_factory):
    runtime = runtime_factory("echo.echo", "echo").wait_until_ready(ready_file=True)

    assert runtime.ready_file.read_text() == f"{runtime.pid}\n"
    assert oct(runtime.ready_file.stat().st_mode & 0o777) == oct(0o644)
    assert runtime.stop() == 0
    assert not runtime.ready_file.exists() and not runtime.socket_path.exists()


def test_a_stale_ready_file_is_removed_before_the_handler_loads(runtime_factory, socket_dir, tmp_path):
    (socket_dir / "runtime-ready").write_text("1\n")
    gate = tmp_path / "gate"
    runtime = runtime_factory("slow_start.process", None, wait=False,
                              env={"PYTHONPATH": str(_slow_start_module(tmp_path)), "GATE": str(gate)})

    wait_for(lambda: (tmp_path / "loading").exists(), "the handler module to start loading")
    assert not (socket_dir / "runtime-ready").exists(), "while the handler loads, nothing says ready"
    gate.write_text("")
    runtime.wait_until_ready(ready_file=True)
    assert runtime.ready_file.read_text() == f"{runtime.pid}\n"


def _slow_start_module(tmp_path):
    directory = tmp_path / "slow_start_root"
    directory.mkdir()
    (directory / "slow_start.py").write_text(
        "import os, time\n"
        f"open({str(tmp_path / 'loading')!r}, 'w').close()\n"
        "while not os.path.exists(os.environ['GATE']):\n"
        "    time.sleep(0.005)\n"
        "def process(payload):\n"
        "    return payload\n"
    )
    return directory


def test_probe_passes_while_one_call_outlives_200_probe_runs(runtime_factory, python, tmp_path):
    runtime = runtime_factory("slow.wait_for_gate", "slow")
    started, gate = tmp_path / "started", tmp_path / "gate"
    replies = []
    sidecar = threading.Thread(
        target=lambda: replies.append(
            call(runtime.socket_path, envelope_for({"started": str(started), "gate": str(gate)}), timeout=600)
        )
    )
    sidecar.start()
    wait_for(started.exists, "the long call to start")

    runs = PROBE_RUNS_DURING_ONE_CALL if python.minor in (7, 13) else PROBE_RUNS_ON_OTHER_INTERPRETERS

    results = [run_probe(python, runtime.socket_dir) for _ in range(runs)]

    assert not (tmp_path / "gate").exists() and sidecar.is_alive(), "the call lasted through every probe"
    assert results == [(0, "")] * runs
    gate.write_text("")
    sidecar.join(60)
    assert replies and replies[0]["status"] == "ok"
    after = call(runtime.socket_path, envelope_for({"started": str(tmp_path / "started-2"), "gate": str(gate), "tag": 2}))
    assert after["result"]["payload"]["tag"] == 2, "the runtime serves on, nothing left queued by the probes"


def test_probe_fails_before_ready_when_the_socket_is_gone_and_when_the_process_is_gone(
    runtime_factory, python, socket_dir
):
    status, why = run_probe(python, socket_dir)
    assert status == 1 and "no socket" in why

    runtime = runtime_factory("echo.echo", "echo").wait_until_ready(ready_file=True)
    assert run_probe(python, socket_dir)[0] == 0

    os.rename(str(runtime.ready_file), str(socket_dir / "moved"))
    status, why = run_probe(python, socket_dir)
    assert status == 1 and "runtime-ready" in why
    os.rename(str(socket_dir / "moved"), str(runtime.ready_file))

    runtime.send_signal(signal.SIGKILL)
    runtime.wait_exit()
    assert runtime.socket_path.exists() and runtime.ready_file.exists(), "a killed runtime leaves both behind"
    status, why = run_probe(python, socket_dir)
    assert status == 1 and "is gone" in why


def test_probe_fails_when_the_socket_is_removed(runtime_factory, python, socket_dir):
    runtime = runtime_factory("echo.echo", "echo").wait_until_ready(ready_file=True)

    os.unlink(str(runtime.socket_path))

    status, why = run_probe(python, socket_dir)
    assert status == 1 and "no socket" in why


@pytest.mark.parametrize("argument", ["--prob", "serve"])
def test_an_unknown_argument_exits_2(python, argument):
    completed = subprocess.run([str(getattr(python, "path", python)), str(RUNTIME_SCRIPT), argument],
                               capture_output=True, stdin=subprocess.DEVNULL, timeout=30)
    assert completed.returncode == 2
    assert "--probe" in completed.stderr.decode()
