"""Child processes of a test: any command (ChildProcess), and the runtime (RuntimeProcess).

Output goes to a log file the test can read. Socket directories live under a
short /tmp path because a Unix socket address holds at most 107 bytes.
"""

import fcntl
import os
import shutil
import signal
import stat
import struct
import subprocess
import sys
import tempfile
import termios
import threading
from pathlib import Path

from .interpreters import COVERAGE_IN_CHILDREN
from .paths import READY_FILE_NAME, RUNTIME_SCRIPT, SOCKET_NAME
from .wait import HANG_GUARD_SECONDS, wait_for

STOP_LIMIT_SECONDS = 30.0


def short_temp_dir(prefix="asya-t-"):
    """A new directory with a short path: a Unix socket path must fit in 107 bytes."""
    return Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))


def clean_environment(**overrides):
    """os.environ without ASYA_* and interpreter-steering variables, plus overrides.

    Bytecode writing is off: several interpreters import the same fixture files.
    The one coverage variable kept is how `make test-cov` measures the runtime
    processes of the venv's Python (interpreters.COVERAGE_IN_CHILDREN).
    """
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("ASYA_", "PYTHON", "COV_", "COVERAGE")) or name == COVERAGE_IN_CHILDREN
    }
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.update(overrides)
    return env


def proc_status_value(pid, field):
    """The first word after field (e.g. "VmRSS:") in /proc/<pid>/status."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(field):
                return line.split()[1]
    raise RuntimeError(f"no {field} for pid {pid}")


def proc_status_kib(pid, field):
    return int(proc_status_value(pid, field))


F_GETPIPE_SZ = 1032  # fcntl.F_GETPIPE_SZ, named by the module only from Python 3.10


class PipedOutput:
    """A process's output through a pipe that a thread of the test copies into
    the log file, as a container runtime reads a container's output.

    hold() stops the copying, as a log reader that fell behind: the pipe fills
    and the process's next write to it waits until release().
    """

    def __init__(self, log_path):
        self.log_path = log_path
        self.read_end, self.write_end = os.pipe()
        self._flowing = threading.Event()
        self._flowing.set()
        self._copier = threading.Thread(target=self._copy, name=f"output of {log_path.name}", daemon=True)

    def start(self):
        """Once the process has its copy of the write end."""
        os.close(self.write_end)
        self._copier.start()

    def _copy(self):
        with open(str(self.log_path), "ab") as log:
            while True:
                self._flowing.wait()
                chunk = os.read(self.read_end, 65536)
                if not chunk:  # every writer is gone
                    break
                log.write(chunk)
                log.flush()
        os.close(self.read_end)

    def hold(self):
        self._flowing.clear()

    def release(self):
        self._flowing.set()

    def full(self):
        queued = struct.unpack("i", fcntl.ioctl(self.read_end, termios.FIONREAD, b"\0\0\0\0"))[0]
        return queued >= fcntl.fcntl(self.read_end, F_GETPIPE_SZ)

    def finish(self, timeout=HANG_GUARD_SECONDS):
        """After the process exited: wait until all it wrote is in the log file."""
        self.release()
        self._copier.join(timeout)


class ChildProcess:
    """One command run with stdin closed and stdout+stderr in log_path.

    piped_output: the output reaches log_path through a PipedOutput (self.output).
    """

    def __init__(self, argv, env, log_path, label="process", cwd=None, piped_output=False, **popen_options):
        self.argv = [str(part) for part in argv]
        self.env = env
        self.log_path = Path(log_path)
        self.label = label
        self.cwd = cwd
        self.popen_options = popen_options
        self.output = PipedOutput(self.log_path) if piped_output else None
        self.process = None

    def start(self):
        with open(str(self.log_path), "wb") as log:
            self.process = subprocess.Popen(
                self.argv,
                env=self.env,
                cwd=None if self.cwd is None else str(self.cwd),
                stdin=subprocess.DEVNULL,
                stdout=log if self.output is None else self.output.write_end,
                stderr=subprocess.STDOUT,
                **self.popen_options,
            )
        if self.output is not None:
            self.output.start()
        return self

    def _exited(self, code):
        if self.output is not None:
            self.output.finish()
        return code

    @property
    def pid(self):
        return self.process.pid

    def alive(self):
        return self.process is not None and self.process.poll() is None

    def log_text(self):
        try:
            return self.log_path.read_text("utf-8", errors="replace")
        except OSError:
            return ""

    def log_lines(self):
        return self.log_text().splitlines()

    def send_signal(self, signum):
        if self.alive():
            self.process.send_signal(signum)

    def signal_pending(self, signum):
        """Whether signum was sent to the process and no thread has taken it yet."""
        # SigPnd: sent to one thread; ShdPnd: sent to the process (kill).
        pending = (int(proc_status_value(self.pid, field), 16) for field in ("SigPnd:", "ShdPnd:"))
        return any(mask >> (signum - 1) & 1 for mask in pending)

    def wait_exit(self, timeout=HANG_GUARD_SECONDS):
        """The exit code; AssertionError (with the log) if it is still running after timeout."""
        try:
            return self._exited(self.process.wait(timeout=timeout))
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{self.label} still running after {timeout:g}s; log:\n{self.log_text()}") from None

    def stop(self, signum=signal.SIGTERM, timeout=STOP_LIMIT_SECONDS):
        """Send signum (SIGTERM: how Kubernetes stops a container) and return the exit code.

        A process that ignores it is killed, and the test fails.
        """
        self.send_signal(signum)
        try:
            return self._exited(self.process.wait(timeout=timeout))
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"{self.label} ignored signal {signum} for {timeout:g} s") from None

    def kill(self):
        if self.alive():
            self.process.kill()
            self._exited(self.process.wait())

    def close(self):
        """Teardown: SIGTERM, then SIGKILL if it lingers; never raises for a stuck process."""
        if self.alive():
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        self.kill()


class RuntimeNotReady(RuntimeError):
    """The runtime exited, or took too long, before its socket was there."""


class RuntimeProcess(ChildProcess):
    """`python asya_runtime.py` in its own short work directory.

    handler: ASYA_HANDLER. python: a path or an Interpreter (default: this
    interpreter). pythonpath: a directory or a list of them (the handler's
    roots). env: any further variables, set last. socket_dir: absolute, or
    relative to the work directory (default "sock"). inherit_environment:
    start from clean_environment() (True) or from PATH alone (False).
    user/umask go to Popen; cwd defaults to the work directory.
    private_copy: the runtime and the pythonpath directories are copied into
    the work directory, world-readable, for a runtime run as another user.
    piped_output: see ChildProcess.
    """

    def __init__(
        self,
        handler,
        python=None,
        pythonpath=None,
        mode=None,
        env=None,
        socket_dir=None,
        log_path=None,
        cwd=None,
        user=None,
        umask=-1,
        inherit_environment=True,
        private_copy=False,
        script=RUNTIME_SCRIPT,
        piped_output=False,
    ):
        self.workdir = short_temp_dir()
        self.socket_dir = self.workdir / (socket_dir or "sock")
        python = getattr(python, "path", python) or sys.executable
        roots = [] if pythonpath is None else [pythonpath] if isinstance(pythonpath, (str, Path)) else pythonpath
        script = Path(script)
        if private_copy:
            os.chmod(str(self.workdir), 0o755)
            code_dir = self.workdir / "code"
            code_dir.mkdir()
            for root in roots:
                shutil.copytree(str(root), str(code_dir), dirs_exist_ok=True,
                                ignore=shutil.ignore_patterns("__pycache__"))
            shutil.copy(str(script), str(code_dir / script.name))
            for path in [code_dir, *code_dir.rglob("*")]:
                os.chmod(str(path), 0o755 if path.is_dir() else 0o644)
            script = code_dir / script.name
            roots = [code_dir] if roots else []
        base = clean_environment() if inherit_environment else {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "PYTHONDONTWRITEBYTECODE": "1",
        }
        base.update(ASYA_HANDLER=handler, ASYA_SOCKET_DIR=str(self.socket_dir))
        if roots:
            base["PYTHONPATH"] = os.pathsep.join(str(root) for root in roots)
        if mode is not None:
            base["ASYA_HANDLER_MODE"] = mode
        base.update(env or {})
        popen_options = {}
        if user is not None:
            popen_options["user"] = user
        if umask != -1:
            popen_options["umask"] = umask
        super().__init__(
            [python, script],
            base,
            log_path or self.workdir / "runtime.log",
            label="runtime",
            cwd=cwd or self.workdir,
            piped_output=piped_output,
            **popen_options,
        )
        self.python = python
        self.script = script

    @property
    def socket_path(self):
        return self.socket_dir / SOCKET_NAME

    @property
    def ready_file(self):
        return self.socket_dir / READY_FILE_NAME

    def is_ready(self, ready_file=False):
        """The socket exists (lstat: a symlink planted at the path is not readiness), and the ready file if asked."""
        try:
            if not stat.S_ISSOCK(os.lstat(str(self.socket_path)).st_mode):
                return False
        except FileNotFoundError:
            return False
        return not ready_file or self.ready_file.exists()

    def wait_until_ready(self, timeout=HANG_GUARD_SECONDS, ready_file=False):
        """Wait until the runtime listens (and, with ready_file, has written it); returns self."""
        try:
            wait_for(lambda: self.is_ready(ready_file) or not self.alive(), "the runtime socket", timeout)
        except AssertionError:
            self.kill()
            raise RuntimeNotReady(f"runtime not ready after {timeout:g} s:\n{self.log_text()}") from None
        if not self.is_ready(ready_file):
            raise RuntimeNotReady(
                f"runtime exited with {self.process.returncode} before it was ready:\n{self.log_text()}"
            )
        return self

    def rss_kib(self):
        return proc_status_kib(self.pid, "VmRSS:")

    def fd_count(self):
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def close(self):
        """Teardown: stop the runtime, remove its work directory."""
        try:
            super().close()
        finally:
            shutil.rmtree(str(self.workdir), ignore_errors=True)

    def __enter__(self):
        return self.start().wait_until_ready()

    def __exit__(self, *exc_info):
        try:
            if self.alive():
                self.stop()
        finally:
            self.close()


def run_to_exit(python, env, cwd=None, script=RUNTIME_SCRIPT, timeout=HANG_GUARD_SECONDS, args=(), stdin=None):
    """Run the runtime expecting it to exit on its own; return (returncode, stdout, stderr).

    args: its command-line options (--call JSON, --version, ...); stdin: text
    for its standard input, which is otherwise closed.
    """
    completed = subprocess.run(
        [getattr(python, "path", python), str(script), *args],
        stdin=subprocess.DEVNULL if stdin is None else None,
        input=None if stdin is None else stdin.encode("utf-8"),
        capture_output=True,
        env=env,
        cwd=cwd,
        timeout=timeout,
    )
    return (
        completed.returncode,
        completed.stdout.decode(errors="replace"),
        completed.stderr.decode(errors="replace"),
    )
