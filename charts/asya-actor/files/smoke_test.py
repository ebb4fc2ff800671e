"""`helm test` of an asya actor: start the runtime as the actor does, check it answers.

The chart runs this inside the model image, with the actor's interpreter, env and
volumes, as `<pythonExecutable> -c <this file> <ready timeout s> <runtime file>`:

1. start the runtime as a child process with the same interpreter, the same way the
   actor's container does: `<python> /opt/asya/asya_runtime.py`;
2. wait for its socket, which appears only once the handler is imported and every
   ASYA_* setting was accepted; if the child exits first, its own first log line
   (already in this pod's log) says what to fix;
3. check the socket's mode lets a sidecar running under another UID connect;
4. send a frame header that declares 2**32-1 bytes, more than any message may hold:
   the runtime must answer with a connection_error reply without reading a body
   (an object in the `status` reply format, a one-item list in `list`).
   That exercises the socket, the framing and the reply path in this image but
   never calls the handler: the chart cannot know a safe input for it, and a
   handler may have side effects;
5. stop the runtime with SIGTERM: it must exit 0 and remove its socket.

Standard library only and Python 3.7 syntax: it runs under the model's interpreter.
It keeps its own small frame client rather than the test kit's, because it runs
inside the model image, where nothing but this file and the runtime exists.
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

PREFIX = "asya helm test:"
UNREADABLE_LENGTH = 2 ** 32 - 1
STOP_TIMEOUT_SECONDS = 60


def fail(message):
    print(f"{PREFIX} FAILED: {message}", flush=True)
    sys.exit(1)


def wait_for_socket(runtime, socket_path, ready_timeout):
    deadline = time.monotonic() + ready_timeout
    while not os.path.exists(socket_path):
        status = runtime.poll()
        if status is not None:
            fail(f"the runtime exited with status {status} before creating {socket_path}; "
                 "its first log line above says what to fix")
        if time.monotonic() > deadline:
            fail(f"the runtime did not create {socket_path} within {ready_timeout} s "
                 "(is the handler's import still running?); raise test.readyTimeoutSeconds "
                 "if the import is legitimately slow")
        time.sleep(0.2)


def receive_exactly(connection, size):
    data = b""
    while len(data) < size:
        chunk = connection.recv(size - len(data))
        if not chunk:
            fail(f"the runtime closed the connection after {len(data)} of {size} reply bytes")
        data += chunk
    return data


def send_oversized_header(socket_path, deadline):
    """Send only a length prefix that no frame may have; return the decoded reply."""
    while True:
        connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        connection.settimeout(30)
        try:
            connection.connect(socket_path)
            break
        except ConnectionRefusedError:
            # The file exists between bind() and listen(): try again briefly.
            connection.close()
            if time.monotonic() > deadline:
                fail(f"{socket_path} exists but refuses connections")
            time.sleep(0.1)
    with connection:
        connection.sendall(struct.pack(">I", UNREADABLE_LENGTH))
        # Should the runtime allow such a size, the end of input still makes the
        # frame incomplete, which is also a connection_error.
        connection.shutdown(socket.SHUT_WR)
        (length,) = struct.unpack(">I", receive_exactly(connection, 4))
        return json.loads(receive_exactly(connection, length).decode("utf-8"))


def connection_error_message(reply):
    """The message of a connection_error reply in either reply format, else None."""
    if isinstance(reply, list) and len(reply) == 1 and isinstance(reply[0], dict):
        details = reply[0].get("details") or {}
        if reply[0].get("error") == "connection_error":
            return details.get("message", "")
    elif isinstance(reply, dict):
        if reply.get("status") == "error" and reply.get("error") == "connection_error":
            return reply.get("message", "")
    return None


def main():
    ready_timeout = float(sys.argv[1])
    runtime_path = sys.argv[2]  # /opt/asya/asya_runtime.py
    # A directory of its own, so that only this test's runtime can answer here,
    # whatever else shares the volume.
    socket_dir = tempfile.mkdtemp(prefix="helm-test-",
                                  dir=os.environ.get("ASYA_SOCKET_DIR", "/var/run/asya"))
    socket_path = os.path.join(socket_dir, "asya-runtime.sock")
    python = sys.executable or "python3"
    handler = os.environ.get("ASYA_HANDLER")
    print(f"{PREFIX} starting {python} {runtime_path} with ASYA_HANDLER={handler}", flush=True)
    runtime = subprocess.Popen([python, runtime_path], env=dict(os.environ, ASYA_SOCKET_DIR=socket_dir))
    try:
        wait_for_socket(runtime, socket_path, ready_timeout)
        mode = stat.S_IMODE(os.stat(socket_path).st_mode)
        if mode & 0o006 != 0o006:
            fail(f"{socket_path} has mode {mode:o}: "
                 "a sidecar running under another UID could not connect")
        reply = send_oversized_header(socket_path, time.monotonic() + 10)
        error = connection_error_message(reply)
        if error is None:
            fail(f"a frame declaring {UNREADABLE_LENGTH} bytes got {reply!r}, "
                 "expected a connection_error reply")
        print(f"{PREFIX} runtime is ready and refused an oversized frame: {error}", flush=True)
        runtime.send_signal(signal.SIGTERM)
        try:
            status = runtime.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            fail(f"the runtime did not stop within {STOP_TIMEOUT_SECONDS} s of SIGTERM")
        if status != 0:
            fail(f"the runtime exited with status {status} on SIGTERM, expected 0")
        if os.path.exists(socket_path):
            fail(f"the runtime left {socket_path} behind after stopping")
    finally:
        if runtime.poll() is None:
            runtime.kill()
            runtime.wait()
        shutil.rmtree(socket_dir, ignore_errors=True)
    print(f"{PREFIX} passed: handler imported, socket answered, clean stop", flush=True)


main()
