"""The benchmark's client: talks to a server the way the asya sidecar does.

One connection per message: connect, send one frame (4-byte big-endian length
and the JSON body), read one whole reply frame, close. The same code drives
the runtime and the floor, so whatever it costs is paid equally by both.

Replies are read into one reusable buffer with recv_into, so the client does
not add allocation noise that scales with the payload size.
"""

import json
import socket
import struct
import time

HEADER = struct.Struct(">I")

# A kernel timeout (SO_RCVTIMEO/SO_SNDTIMEO) keeps a hung server from hanging
# the bench, without the poll() that socket.settimeout() adds to every call.
IO_TIMEOUT_SECONDS = 120
_TIMEVAL = struct.pack("ll", IO_TIMEOUT_SECONDS, 0)


class ServerFailed(Exception):
    """The server closed early or answered something other than an ok reply."""


def make_envelope(payload):
    return {
        "id": "bench-0001",
        "route": {"actors": ["bench", "next"], "current": 0},
        "headers": {"trace_id": "bench-trace"},
        "payload": payload,
    }


def encode_frame(message):
    """Header and body in one bytes object, built once before timing starts."""
    body = json.dumps(message, separators=(",", ":")).encode("utf-8")
    return HEADER.pack(len(body)) + body


class Client:
    """Sends one prepared request frame per connection to one socket path."""

    def __init__(self, socket_path, frame):
        self.socket_path = socket_path
        self.frame = frame
        self.request_bytes = len(frame)
        self._header = bytearray(HEADER.size)
        self._reply = bytearray(len(frame) + 4096)
        self.reply_bytes = 0

    def round_trip(self):
        """One message; returns the reply body length and keeps the body in self._reply."""
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, _TIMEVAL)
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, _TIMEVAL)
            conn.connect(self.socket_path)
            conn.sendall(self.frame)
            self._recv_into(conn, memoryview(self._header), HEADER.size)
            (length,) = HEADER.unpack(self._header)
            if length > len(self._reply):
                self._reply = bytearray(length)
            self._recv_into(conn, memoryview(self._reply), length)
        finally:
            conn.close()
        self.reply_bytes = HEADER.size + length
        return length

    @staticmethod
    def _recv_into(conn, view, count):
        received = 0
        while received < count:
            got = conn.recv_into(view[received:count])
            if not got:
                raise ServerFailed(f"server closed after {received} of {count} bytes")
            received += got

    def reply(self, length):
        return json.loads(bytes(self._reply[:length]))

    def check(self, expected_payload):
        """One round trip whose reply must carry the payload back unchanged."""
        reply = self.reply(self.round_trip())
        if reply.get("status") != "ok" or reply["result"].get("payload") != expected_payload:
            raise ServerFailed(f"unexpected reply from {self.socket_path}: {str(reply)[:300]}")

    def run(self, count):
        """Send count messages back to back; return (elapsed_ns, per-message latencies in ns)."""
        clock = time.perf_counter_ns
        latencies = []
        round_trip = self.round_trip
        started = clock()
        for _ in range(count):
            before = clock()
            round_trip()
            latencies.append(clock() - before)
        return clock() - started, latencies


def wait_until_accepting(socket_path, process, timeout):
    """Poll until a connection to socket_path succeeds; return the perf_counter time it did.

    Connecting (not just seeing the file) is the test, because a plain
    bind() makes the path appear before listen() lets anyone in.
    """
    deadline = time.perf_counter() + timeout
    while True:
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(socket_path)
            return time.perf_counter()
        except OSError:
            pass
        finally:
            probe.close()
        if process.poll() is not None:
            raise ServerFailed(f"server exited with code {process.returncode} before accepting")
        if time.perf_counter() > deadline:
            raise ServerFailed(f"server did not accept on {socket_path} within {timeout} s")
        time.sleep(0.0002)
