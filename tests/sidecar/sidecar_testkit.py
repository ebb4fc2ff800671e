"""Runs the real runtime and the fake sidecar as local processes for the tests.

Everything lives in one short temporary directory (Unix socket paths are
limited to about 100 bytes, too short for pytest's tmp_path names).
Processes, waits and interpreters come from the test kit (asya_testkit).
"""

import json
import os
import shutil
import sys
import tempfile

from asya_testkit.paths import FAKE_SIDECAR_DIR, RUNTIME_SCRIPT
from asya_testkit.process import ChildProcess, RuntimeProcess

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
SIDECAR_DIR = str(FAKE_SIDECAR_DIR)
RUNTIME = str(RUNTIME_SCRIPT)
HANDLERS_DIR = os.path.join(TESTS_DIR, "handlers")
SIGTERM_IN_STOP_WAIT = os.path.join(TESTS_DIR, "sigterm_in_stop_wait.py")

if SIDECAR_DIR not in sys.path:
    sys.path.insert(0, SIDECAR_DIR)

from asya_sidecar.queues import QueueStore  # noqa: E402


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

    def _log_path(self, label):
        self._count += 1
        return os.path.join(self.root, f"{self._count:02d}-{label}.log")

    def _start(self, label, argv, env):
        process = ChildProcess(argv, env, self._log_path(label), label=label).start()
        self.processes.append(process)
        return process

    def start_runtime(self, actor, handler, mode="payload", python=None, wait=True,
                      socket_dir=None, reply_format=None):
        """The runtime as a process; reply_format "list" (a go-mode sidecar's) also waits for runtime-ready."""
        process = RuntimeProcess(
            handler,
            python=python,
            pythonpath=HANDLERS_DIR,
            mode=mode,
            env={"ASYA_REPLY_FORMAT": reply_format} if reply_format else None,
            socket_dir=socket_dir or self.socket_dir(actor),
            log_path=self._log_path("runtime-" + actor),
        )
        process.label = f"the {actor} runtime"
        self.processes.append(process)
        process.start()
        return process.wait_until_ready(ready_file=reply_format == "list") if wait else process

    def start_sidecar(self, actor, *args, **kwargs):
        python = kwargs.pop("python", None) or sys.executable
        # launcher: a script that runs the sidecar itself (instead of -m asya_sidecar).
        launcher = kwargs.pop("launcher", None)
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
        command = [python, launcher] if launcher else [python, "-m", "asya_sidecar"]
        return self._start("sidecar-" + actor, command + list(args), self._env(env))

    def run_sidecar(self, actor, *args, **kwargs):
        """Run a sidecar to its end; return (exit code, Process)."""
        process = self.start_sidecar(actor, *args, **kwargs)
        return process.wait_exit(), process

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
            process.close()
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
