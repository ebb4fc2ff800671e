"""Runs the real runtime and the fake sidecar as local processes for the tests.

Everything lives in one short temporary directory (Unix socket paths are
limited to about 100 bytes, too short for pytest's tmp_path names).
Waits poll with a generous deadline that only guards against a hang; no test
asserts how long anything took.
"""

import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(TESTS_DIR))
SIDECAR_DIR = os.path.join(REPO, "fake-sidecar")
RUNTIME = os.path.join(REPO, "runtime", "asya_runtime.py")
HANDLERS_DIR = os.path.join(TESTS_DIR, "handlers")

if SIDECAR_DIR not in sys.path:
    sys.path.insert(0, SIDECAR_DIR)

from asya_sidecar.queues import QueueStore  # noqa: E402

HANG_GUARD = 60.0  # seconds before a wait gives up and fails the test


def wait_for(predicate, what, timeout=HANG_GUARD):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {timeout:g}s waiting for {what}")
        time.sleep(0.01)


def find_python37():
    """A working CPython 3.7: a pyenv install, else python3.7 on PATH.

    Each candidate is run once, because a pyenv shim named python3.7 can
    exist on PATH without a 3.7 behind it.
    """
    candidates = sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.7.*/bin/python3")),
                        reverse=True)
    on_path = shutil.which("python3.7")
    if on_path:
        candidates.append(on_path)
    for candidate in candidates:
        try:
            version = subprocess.run(
                [candidate, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, timeout=30,
            ).stdout.decode().strip()
        except (OSError, subprocess.SubprocessError):
            continue
        if version == "3.7":
            return candidate
    return None


class Process:
    """A child process whose combined output goes to a log file."""

    def __init__(self, label, argv, env, log_path):
        self.label = label
        self.log_path = log_path
        with open(log_path, "wb") as log_file:
            self.popen = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL,
                                          stdout=log_file, stderr=subprocess.STDOUT)

    @property
    def pid(self):
        return self.popen.pid

    def log(self):
        with open(self.log_path, encoding="utf-8", errors="replace") as handle:
            return handle.read()

    def log_lines(self):
        return self.log().splitlines()

    def signal(self, signum):
        if self.popen.poll() is None:
            self.popen.send_signal(signum)

    def wait(self, timeout=HANG_GUARD):
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"{self.label} still running after {timeout:g}s; log:\n{self.log()}") from None

    def running(self):
        return self.popen.poll() is None

    def stop(self):
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()


class Harness:
    """Queues, sockets and processes of one test; ``close`` removes them all."""

    def __init__(self):
        self.root = tempfile.mkdtemp(prefix="asya-sc-")
        self.store = QueueStore(os.path.join(self.root, "q"))
        self.processes = []
        self._count = 0

    # -- paths

    def socket_dir(self, actor):
        return os.path.join(self.root, "s", actor)

    def socket_path(self, actor):
        return os.path.join(self.socket_dir(actor), "asya-runtime.sock")

    def path(self, name):
        return os.path.join(self.root, name)

    # -- processes

    def _env(self, extra):
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("ASYA_") and k != "PYTHONPATH"}
        env.update(extra)
        return env

    def _start(self, label, argv, env):
        self._count += 1
        log_path = os.path.join(self.root, f"{self._count:02d}-{label}.log")
        process = Process(label, argv, env, log_path)
        self.processes.append(process)
        return process

    def start_runtime(self, actor, handler, mode="payload", python=None, wait=True,
                      socket_dir=None):
        socket_dir = socket_dir or self.socket_dir(actor)
        socket_path = os.path.join(socket_dir, "asya-runtime.sock")
        env = self._env({
            "PYTHONPATH": HANDLERS_DIR,
            "ASYA_SOCKET_DIR": socket_dir,
            "ASYA_HANDLER": handler,
            "ASYA_HANDLER_MODE": mode,
        })
        process = self._start("runtime-" + actor, [python or sys.executable, RUNTIME], env)
        if wait:
            wait_for(lambda: os.path.exists(socket_path) or not process.running(),
                     f"the {actor} runtime's socket")
            assert process.running(), "runtime exited:\n" + process.log()
        return process

    def start_sidecar(self, actor, *args, **kwargs):
        python = kwargs.pop("python", None) or sys.executable
        env = {
            "PYTHONPATH": SIDECAR_DIR,
            "ASYA_ACTOR_NAME": actor,
            "ASYA_SOCKET_DIR": kwargs.pop("socket_dir", None) or self.socket_dir(actor),
            "ASYA_QUEUE_DIR": self.store.root,
            "ASYA_READY_TIMEOUT": "30",
            "ASYA_CALL_TIMEOUT": "30",
            "ASYA_POLL_INTERVAL": "0.02",
        }
        env.update(kwargs.pop("env", {}))
        assert not kwargs, f"unknown options {sorted(kwargs)}"
        return self._start("sidecar-" + actor,
                           [python, "-m", "asya_sidecar"] + list(args), self._env(env))

    def run_sidecar(self, actor, *args, **kwargs):
        """Run a sidecar to its end; return (exit code, Process)."""
        process = self.start_sidecar(actor, *args, **kwargs)
        return process.wait(), process

    # -- messages

    def push(self, queue, message_id, actors, payload, current=0, headers=None):
        envelope = {"route": {"actors": list(actors), "current": current}, "payload": payload}
        if message_id is not None:
            envelope["id"] = message_id
        if headers is not None:
            envelope["headers"] = headers
        self.store.enqueue(queue, envelope)
        return envelope

    def messages(self, queue):
        return self.store.read_all(queue)

    def leftovers(self, *queues):
        """Messages still waiting or claimed in the given queues."""
        return {q: self.store.pending(q) + self.store.in_flight(q)
                for q in queues if self.store.pending(q) or self.store.in_flight(q)}

    def close(self):
        for process in reversed(self.processes):
            process.stop()
        shutil.rmtree(self.root, ignore_errors=True)


def log_fields(line):
    """The key=value pairs of one sidecar log line (values JSON-quoted if needed)."""
    fields = {}
    for token in _split_log(line):
        if "=" in token:
            key, value = token.split("=", 1)
            fields[key] = json.loads(value) if value.startswith('"') else value
    return fields


def _split_log(line):
    tokens, current, quoted, escaped = [], "", False, False
    for char in line:
        if quoted:
            current += char
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                quoted = False
        elif char == '"':
            current += char
            quoted = True
        elif char == " ":
            if current:
                tokens.append(current)
            current = ""
        else:
            current += char
    if current:
        tokens.append(current)
    return tokens


def message_lines(process):
    """Parsed per-message log lines of a sidecar (those with an outcome)."""
    return [f for f in (log_fields(line) for line in process.log_lines()) if "outcome" in f]
