"""Start and stop the servers under test, and find the interpreters to run them on.

The runtime and the floor are started the same way: the same interpreter, the
same environment (ASYA_SOCKET_DIR, ASYA_HANDLER, ASYA_CHUNK_SIZE, PYTHONPATH
for the identity handler), one socket directory each, stderr to a log file.
Both are scripts: the runtime is run as a pod runs it, `python asya_runtime.py`.
The log is a regular file, where a container's log ends up too: /dev/null
would make a log line cheaper than anywhere real, and a pipe nobody reads
would stall the server once full.
"""

import os
import subprocess
import time

from client import ServerFailed

from asya_testkit.wait import wait_until_accepting

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

RUNTIME_SCRIPT = os.path.join(REPO, "runtime", "asya_runtime.py")
FLOOR_SCRIPT = os.path.join(REPO, "bench", "floor_server.py")
HANDLER_DIR = os.path.join(REPO, "bench", "handlers")
HANDLER = "bench_identity.identity"
SOCKET_NAME = "asya-runtime.sock"
DEFAULT_CHUNK_SIZE = 4096
# The kubelet rotates a container's log at 10 MiB (containerLogMaxSize); the
# bench empties a server's log past the same size, so that a long run of
# access lines does not fill the disk.
LOG_LIMIT = 10 * 1024 * 1024


def server_environment(socket_dir, chunk_size, extra_env=None):
    env = {key: value for key, value in os.environ.items() if not key.startswith(("ASYA_", "PYTHON"))}
    env.update(
        ASYA_SOCKET_DIR=socket_dir,
        ASYA_HANDLER=HANDLER,
        ASYA_HANDLER_MODE="payload",
        ASYA_ENABLE_VALIDATION="true",
        PYTHONPATH=HANDLER_DIR,
    )
    if chunk_size is not None:
        env["ASYA_CHUNK_SIZE"] = str(chunk_size)
    env.update(extra_env or {})
    return env


class Server:
    """One server process: kind is "runtime" or "floor"."""

    def __init__(
        self, kind, interpreter, work_dir, chunk_size=None, wrapper=(), name=None, cpus=None, script=None,
        env=None,
    ):
        self.kind = kind
        self.interpreter = interpreter
        self.chunk_size = chunk_size
        self.name = name or (kind if chunk_size is None else f"{kind}-{chunk_size}")
        self.socket_dir = os.path.join(work_dir, self.name)
        self.socket_path = os.path.join(self.socket_dir, SOCKET_NAME)
        self.log_path = self.socket_dir + ".log"
        script = script or (RUNTIME_SCRIPT if kind == "runtime" else FLOOR_SCRIPT)
        self.command = [interpreter.path, *wrapper, script]
        # The floor ignores ASYA_CHUNK_SIZE; it gets the same environment anyway.
        self.env = server_environment(self.socket_dir, chunk_size, env)
        self.cpus = cpus  # CPUs the process may run on; None: any
        self.process = None

    @property
    def effective_chunk_size(self):
        return self.chunk_size if self.chunk_size is not None else DEFAULT_CHUNK_SIZE

    def start(self, timeout=30):
        """Spawn the process; return the seconds from spawn to the socket accepting."""
        os.makedirs(self.socket_dir, exist_ok=True)
        with open(self.log_path, "ab") as log:
            started = time.perf_counter()
            self.process = subprocess.Popen(
                self.command,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=log,
                preexec_fn=(lambda: os.sched_setaffinity(0, self.cpus)) if self.cpus else None,
            )
        try:
            accepting = wait_until_accepting(self.socket_path, self.process, timeout)
        except AssertionError as exc:
            self.stop()
            raise ServerFailed(f"{self.name} on {self.interpreter.label}: {exc}\n{self.log_tail()}") from None
        return accepting - started

    def peak_rss(self):
        """VmHWM: the most resident memory the process has had, in bytes."""
        return self._status_bytes("VmHWM:")

    def current_rss(self):
        """VmRSS: the memory resident now, in bytes."""
        return self._status_bytes("VmRSS:")

    def _status_bytes(self, field):
        with open(f"/proc/{self.process.pid}/status") as status:
            for line in status:
                if line.startswith(field):
                    return int(line.split()[1]) * 1024
        raise ServerFailed(f"no {field} in /proc status")

    def stop(self):
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def trim_log(self):
        """Empty the log once it is past LOG_LIMIT; call it between timed blocks.

        The server's stderr was opened for appending, so its next line goes to
        the start of the emptied file, not past a hole at the old end.
        """
        if os.path.getsize(self.log_path) > LOG_LIMIT:
            os.truncate(self.log_path, 0)

    def log_tail(self, lines=20):
        try:
            with open(self.log_path, errors="replace") as log:
                return "".join(log.readlines()[-lines:])
        except OSError:
            return ""

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.stop()
