"""Helpers shared by the runtime tests: paths, interpreters, a wire client, a process runner.

The client speaks the protocol of docs/protocol.md from scratch (it does not
reuse the runtime's own framing code), so the black-box tests check the
runtime against the specification rather than against itself.
"""

import functools
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import time
from pathlib import Path

TESTS_DIR = Path(__file__).resolve().parent
RUNTIME_DIR = TESTS_DIR.parents[1] / "runtime"
RUNTIME_SCRIPT = RUNTIME_DIR / "asya_runtime.py"
HANDLERS_DIR = TESTS_DIR / "handlers"
SOCKET_NAME = "asya-runtime.sock"

SUPPORTED_MINORS = tuple(range(7, 14))  # CPython 3.7 .. 3.13
# The oldest and the newest supported interpreters must be tested in CI.
REQUIRED_IN_CI = (7, 13)

# Generous bounds that only stop a hung test; no test asserts on durations.
HANG_GUARD_SECONDS = 30.0
POLL_INTERVAL_SECONDS = 0.002


def wait_for(condition, what, timeout=HANG_GUARD_SECONDS):
    """Poll condition() until it is truthy and return its value; fail naming `what`."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(POLL_INTERVAL_SECONDS)


def short_temp_dir(prefix="asya-t-"):
    """A directory with a short path: a Unix socket path must fit in 107 bytes."""
    return Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))


# --------------------------------------------------------------------------
# Interpreters
# --------------------------------------------------------------------------


class Interpreter:
    def __init__(self, minor, path, version):
        self.minor = minor
        self.path = path
        self.version = version  # e.g. "3.7.16", as the interpreter reports it

    def __repr__(self):
        return f"Interpreter({self.path!r}, {self.version!r})"


def _pyenv_candidate(minor):
    versions = Path.home() / ".pyenv" / "versions"
    best = None
    for directory in versions.glob(f"3.{minor}.*"):
        match = re.fullmatch(rf"3\.{minor}\.(\d+)", directory.name)
        executable = directory / "bin" / "python3"
        if match and os.access(str(executable), os.X_OK):
            patch = int(match.group(1))
            if best is None or patch > best[0]:
                best = (patch, str(executable))
    return best[1] if best else None


@functools.lru_cache(maxsize=None)
def find_interpreter(minor):
    """Return (Interpreter, None) for CPython 3.<minor>, or (None, why it is missing)."""
    looked = f"~/.pyenv/versions/3.{minor}.*/bin/python3 and python3.{minor} on PATH"
    path = _pyenv_candidate(minor) or shutil.which(f"python3.{minor}")
    if path is None:
        return None, f"Python 3.{minor} not found (looked for {looked})"
    try:
        probe = subprocess.run(
            [path, "-c", "import platform; print(platform.python_version())"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            timeout=HANG_GUARD_SECONDS,
            env=clean_environment(),
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"Python 3.{minor} at {path} does not run: {exc}"
    version = probe.stdout.decode(errors="replace").strip()
    if probe.returncode != 0 or not version.startswith(f"3.{minor}."):
        return None, f"{path} is not a working Python 3.{minor} (it printed {version!r})"
    return Interpreter(minor, path, version), None


def ci_requested():
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


# --------------------------------------------------------------------------
# The wire client
# --------------------------------------------------------------------------


def frame(body):
    """One request frame: 4-byte big-endian length, then the body."""
    return struct.pack(">I", len(body)) + body


def encode_envelope(envelope):
    return json.dumps(envelope, ensure_ascii=False).encode("utf-8")


def connect(socket_path):
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    client.settimeout(HANG_GUARD_SECONDS)
    client.connect(str(socket_path))
    return client


def read_until_eof(client):
    chunks = []
    while True:
        chunk = client.recv(65536)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def read_reply(client):
    """Read the whole reply (the runtime closes its side after it) and check its framing."""
    data = read_until_eof(client)
    assert len(data) >= 4, f"reply shorter than its 4-byte header: {data!r}"
    (declared,) = struct.unpack(">I", data[:4])
    body = data[4:]
    assert declared == len(body), f"reply header declares {declared} bytes, {len(body)} followed"
    return body


def exchange(socket_path, raw, half_close=False):
    """Send raw bytes on a fresh connection and return the reply body."""
    with connect(socket_path) as client:
        client.sendall(raw)
        if half_close:
            client.shutdown(socket.SHUT_WR)
        return read_reply(client)


def call(socket_path, envelope):
    """Send one envelope (a dict, or bytes sent as the body) and return the decoded reply."""
    body = envelope if isinstance(envelope, bytes) else encode_envelope(envelope)
    return json.loads(exchange(socket_path, frame(body)).decode("utf-8"))


def envelope_for(payload, actors=("first", "second"), current=0, **extra):
    envelope = {"route": {"actors": list(actors), "current": current}, "payload": payload}
    envelope.update(extra)
    return envelope


# --------------------------------------------------------------------------
# The runtime as a process
# --------------------------------------------------------------------------


def clean_environment(**overrides):
    """os.environ without ASYA_* and interpreter-steering variables, plus overrides."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("ASYA_", "PYTHON", "COV_", "COVERAGE"))
    }
    # Seven interpreters import the same fixture files; keep the tree clean.
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.update(overrides)
    return env


class RuntimeProcess:
    """asya_runtime.py run by a given interpreter, logging to a file."""

    def __init__(self, interpreter, handler, scenario, socket_dir, log_path, env=None):
        self.interpreter = interpreter
        self.socket_dir = Path(socket_dir)
        self.socket_path = self.socket_dir / SOCKET_NAME
        self.log_path = Path(log_path)
        settings = {
            "ASYA_HANDLER": handler,
            "ASYA_SOCKET_DIR": str(self.socket_dir),
            "PYTHONPATH": str(HANDLERS_DIR / scenario) if scenario else "",
        }
        settings.update(env or {})
        self.env = clean_environment(**settings)
        self.process = None

    def start(self):
        with open(str(self.log_path), "wb") as log:
            self.process = subprocess.Popen(
                [self.interpreter.path, str(RUNTIME_SCRIPT)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                env=self.env,
            )
        return self

    def wait_ready(self):
        def ready_or_exited():
            return self.socket_path.exists() or self.process.poll() is not None

        wait_for(ready_or_exited, f"the runtime socket {self.socket_path}")
        if not self.socket_path.exists():
            raise AssertionError(
                f"runtime exited with {self.process.returncode} before becoming ready:\n{self.log()}"
            )
        return self

    def log(self):
        return self.log_path.read_text(errors="replace")

    def send_signal(self, signum):
        self.process.send_signal(signum)

    def wait_exit(self):
        return self.process.wait(timeout=HANG_GUARD_SECONDS)

    def stop(self, signum=signal.SIGTERM):
        if self.process.poll() is None:
            self.send_signal(signum)
        return self.wait_exit()

    def kill(self):
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def run_to_exit(interpreter, env, cwd=None):
    """Run the runtime expecting it to exit on its own; return (returncode, stdout, stderr)."""
    completed = subprocess.run(
        [interpreter.path, str(RUNTIME_SCRIPT)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        env=env,
        cwd=cwd,
        timeout=HANG_GUARD_SECONDS,
    )
    return (
        completed.returncode,
        completed.stdout.decode(errors="replace"),
        completed.stderr.decode(errors="replace"),
    )
