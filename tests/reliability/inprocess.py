"""The runtime imported into the test process, for properties that need its
functions directly (read_frame, validate_envelope, check_route_rules) or its
per-connection code on a socketpair."""

import socket
import sys

from .harness import RUNTIME_DIR, receive_until_closed

if str(RUNTIME_DIR) not in sys.path:
    sys.path.insert(0, str(RUNTIME_DIR))

import asya_runtime  # noqa: E402  (found through the path added above)


def runtime_config(**overrides):
    """A Config as the environment would give it; no handler is imported."""
    environ = {
        "ASYA_HANDLER": "in_process.handler",
        "ASYA_SOCKET_DIR": "/nonexistent",
        # Only half-closed or complete frames are sent; this bounds a mistake.
        "ASYA_IO_TIMEOUT": "10",
    }
    environ.update(overrides)
    return asya_runtime.load_config(environ)


def make_server(handler, **overrides):
    return asya_runtime.ActorServer(runtime_config(**overrides), handler)


def serve_one(server, request_bytes, half_close):
    """Run the runtime's per-connection code on a socketpair; return what the client got.

    The request is written before the runtime reads, so it must fit in the
    socket buffer (the tests keep requests well under 100 KB).
    """
    client, runtime_side = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with client, runtime_side:
        client.settimeout(60)
        client.sendall(request_bytes)
        if half_close:
            client.shutdown(socket.SHUT_WR)
        server.handle_connection(runtime_side)
        runtime_side.close()
        return receive_until_closed(client)
