"""The benchmark's client: the test kit's RoundTripClient (one connection per
message, as the sidecar does), plus the bench's envelope and reply check.

The same code drives the runtime and the floor, so whatever it costs is paid
equally by both.
"""

import os
import sys
import time

# The bench runs outside pytest: it puts the test kit on the path itself.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests", "kit"))

from asya_testkit.wire import RoundTripClient, encode_envelope, frame  # noqa: E402


class ServerFailed(Exception):
    """The server did not start, closed early, or answered something other than an ok reply."""


def make_envelope(payload):
    return {
        "id": "bench-0001",
        "route": {"actors": ["bench", "next"], "current": 0},
        "headers": {"trace_id": "bench-trace"},
        "payload": payload,
    }


def encode_frame(message):
    """Header and body in one bytes object, built once before timing starts."""
    return frame(encode_envelope(message))


class Client(RoundTripClient):
    """Sends one prepared request frame per connection to one socket path."""

    def check(self, expected_payload):
        """One round trip whose reply must carry the payload back unchanged."""
        reply = self.reply(self.round_trip())
        if isinstance(reply, list):  # the list dialect: [output envelope, ...]
            reply = {"status": "ok", "result": reply[0]} if len(reply) == 1 and "error" not in reply[0] else {}
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
