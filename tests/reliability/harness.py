"""Shared by the reliability tests and the soak: the wire format seen from the
sidecar's side, and the runtime started as a real process.

Nothing here imports the runtime: the frame format is written again from
docs/protocol.md so that a runtime bug cannot hide behind shared code.
"""

import json
import os
import shutil
import signal
import socket
import stat
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
# Another copy of the runtime (say, the file shipped in the image) can be put
# under test by pointing this variable at its directory.
RUNTIME_DIR = Path(os.environ.get("ASYA_RELIABILITY_RUNTIME_DIR") or REPO_ROOT / "runtime").resolve()
RUNTIME_SCRIPT = RUNTIME_DIR / "asya_runtime.py"
HANDLERS_DIR = Path(__file__).resolve().parent / "handlers"
SOCKET_NAME = "asya-runtime.sock"
HEADER = struct.Struct(">I")

# Every wait below is bounded so that a hung runtime fails a run instead of
# stalling it; these are limits, not expectations.
READY_LIMIT_SECONDS = 30.0
REPLY_LIMIT_SECONDS = 60.0
STOP_LIMIT_SECONDS = 30.0


# ------------------------------------------------------------------ frames


def frame(body):
    """One frame: 4-byte big-endian length, then the body."""
    return HEADER.pack(len(body)) + body


def encode_envelope(value):
    """Encode like the runtime encodes replies: compact, raw UTF-8."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8")


def canonical(value):
    """Text that differs whenever two JSON values differ, types included (1, 1.0, true)."""
    return json.dumps(value, ensure_ascii=True, separators=(",", ":"), allow_nan=False)


def split_frames(stream):
    """Split a byte stream into whole frames; return (frames, trailing bytes)."""
    frames = []
    offset = 0
    while len(stream) - offset >= HEADER.size:
        (length,) = HEADER.unpack_from(stream, offset)
        end = offset + HEADER.size + length
        if end > len(stream):
            break
        frames.append(bytes(stream[offset + HEADER.size : end]))
        offset = end
    return frames, bytes(stream[offset:])


class ReplyStream:
    """Everything the runtime sent on one connection, and how it ended."""

    def __init__(self, data, reset):
        self.data = data
        self.reset = reset  # the connection ended with ECONNRESET, not a clean EOF
        self.frames, self.trailing = split_frames(data)

    @property
    def is_empty(self):
        return not self.data

    @property
    def is_one_whole_reply(self):
        return len(self.frames) == 1 and not self.trailing

    def reply(self):
        """The single reply, decoded; raises AssertionError when there is not exactly one."""
        assert self.is_one_whole_reply, f"expected exactly one whole reply frame, got {self.describe()}"
        return json.loads(self.frames[0].decode("utf-8"))

    def describe(self):
        return "{} bytes: {} whole frame(s), {} trailing byte(s){}".format(
            len(self.data), len(self.frames), len(self.trailing), ", ended by reset" if self.reset else ""
        )


def receive_until_closed(sock):
    """Read until the peer closes; a reset after data counts as the end of the stream."""
    chunks = []
    reset = False
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            reset = True
            break
        if not chunk:
            break
        chunks.append(chunk)
    return ReplyStream(b"".join(chunks), reset)


def connect(socket_path, timeout=REPLY_LIMIT_SECONDS):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(str(socket_path))
    except BaseException:
        sock.close()
        raise
    return sock


def send_ignoring_early_close(sock, data):
    """Send data; the runtime may answer and close before taking it all (oversized frames)."""
    try:
        sock.sendall(data)
    except (BrokenPipeError, ConnectionResetError):
        pass


def exchange(socket_path, data, half_close=True, timeout=REPLY_LIMIT_SECONDS):
    """Act as a sidecar: connect, send raw bytes, optionally half-close, read to the end."""
    with connect(socket_path, timeout) as sock:
        send_ignoring_early_close(sock, data)
        if half_close:
            try:
                sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass
        return receive_until_closed(sock)


def call(socket_path, envelope, timeout=REPLY_LIMIT_SECONDS):
    """Send one envelope as a frame; return the decoded reply."""
    return exchange(socket_path, frame(encode_envelope(envelope)), half_close=False, timeout=timeout).reply()


def simple_route(actors=("soak",), current=0):
    return {"actors": list(actors), "current": current}


# --------------------------------------------------------- a real runtime


def proc_rss_kib(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def proc_fd_count(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


class RuntimeProcess:
    """`python runtime/asya_runtime.py` in a private socket directory.

    The socket directory lives under a short /tmp path because a Unix socket
    address holds at most 107 bytes. stdout and stderr go to a log file so
    tests can read every line the runtime wrote.
    """

    def __init__(
        self,
        handler,
        mode="payload",
        extra_env=None,
        python=None,
        socket_dir=None,
        cwd=None,
        user=None,
        umask=-1,
        private_copy=False,
    ):
        self.workdir = Path(tempfile.mkdtemp(prefix="asya-rel-"))
        # A relative socket_dir is taken inside the private work directory.
        self.socket_dir = self.workdir / (socket_dir or "sock")
        self.log_path = self.workdir / "runtime.log"
        self.python = python or sys.executable
        self.runtime_script = RUNTIME_SCRIPT
        handlers_dir = HANDLERS_DIR
        if private_copy:
            # Another user may not be able to read the checkout (a clone under /root):
            # give it a world-readable copy of the runtime and the handlers.
            os.chmod(self.workdir, 0o755)
            code_dir = self.workdir / "code"
            shutil.copytree(HANDLERS_DIR, code_dir, ignore=shutil.ignore_patterns("__pycache__"))
            shutil.copy(RUNTIME_SCRIPT, code_dir / RUNTIME_SCRIPT.name)
            for path in [code_dir, *code_dir.iterdir()]:
                os.chmod(path, 0o755 if path.is_dir() else 0o644)
            self.runtime_script = code_dir / RUNTIME_SCRIPT.name
            handlers_dir = code_dir
        self.cwd = cwd
        self.user = user
        self.umask = umask
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "PYTHONPATH": str(handlers_dir),
            # No __pycache__ next to the handlers: the security tests look for new files.
            "PYTHONDONTWRITEBYTECODE": "1",
            "ASYA_HANDLER": handler,
            "ASYA_HANDLER_MODE": mode,
            "ASYA_SOCKET_DIR": str(self.socket_dir),
        }
        self.env.update(extra_env or {})
        self.process = None

    @property
    def socket_path(self):
        return self.socket_dir / SOCKET_NAME

    @property
    def pid(self):
        return self.process.pid

    def start(self):
        with open(self.log_path, "wb") as log:
            kwargs = {}
            if self.user is not None:
                kwargs["user"] = self.user
            if self.umask != -1:
                kwargs["umask"] = self.umask
            self.process = subprocess.Popen(
                [self.python, str(self.runtime_script)],
                env=self.env,
                cwd=self.cwd or str(self.workdir),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                **kwargs,
            )
        deadline = time.monotonic() + READY_LIMIT_SECONDS
        while not self.is_ready():
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"runtime exited with {self.process.returncode} before it was ready:\n{self.log_text()}"
                )
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"runtime not ready after {READY_LIMIT_SECONDS:g} s:\n{self.log_text()}")
            time.sleep(0.02)
        return self

    def is_ready(self):
        """The socket file exists (lstat: a symlink planted at the path is not readiness)."""
        try:
            return stat.S_ISSOCK(os.lstat(self.socket_path).st_mode)
        except FileNotFoundError:
            return False

    def alive(self):
        return self.process is not None and self.process.poll() is None

    def rss_kib(self):
        return proc_rss_kib(self.pid)

    def fd_count(self):
        return proc_fd_count(self.pid)

    def log_text(self):
        try:
            return self.log_path.read_text("utf-8", errors="replace")
        except OSError:
            return ""

    def log_lines(self):
        return self.log_text().splitlines()

    def terminate(self):
        """SIGTERM, the way Kubernetes stops a container; returns the exit code."""
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(STOP_LIMIT_SECONDS)
        except subprocess.TimeoutExpired as exc:
            self.kill()
            raise RuntimeError(f"runtime ignored SIGTERM for {STOP_LIMIT_SECONDS:g} s") from exc

    def kill(self):
        if self.alive():
            self.process.kill()
            self.process.wait()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        try:
            if self.alive():
                self.terminate()
        finally:
            self.kill()
            shutil.rmtree(self.workdir, ignore_errors=True)
