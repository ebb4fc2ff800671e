"""The runtime imported into the test process: its functions directly, and its
per-connection code serving one request on a socketpair."""

import importlib
import socket
import sys

from .paths import RUNTIME_DIR
from .wait import HANG_GUARD_SECONDS
from .wire import receive_until_closed


def runtime_module():
    """asya_runtime, imported from the runtime directory under test."""
    if str(RUNTIME_DIR) not in sys.path:
        sys.path.insert(0, str(RUNTIME_DIR))
    return importlib.import_module("asya_runtime")


def runtime_config(**variables):
    """A Config as the environment would give it; no handler is imported.

    The socket directory is never used in process, and the I/O timeout only
    bounds a mistake: requests are whole or half-closed frames.
    """
    environ = {
        "ASYA_HANDLER": "in_process.handler",
        "ASYA_SOCKET_DIR": "/nonexistent",
        "ASYA_IO_TIMEOUT": "10",
    }
    environ.update(variables)
    return runtime_module().load_config(environ)


def make_server(handler, **variables):
    return runtime_module().ActorServer(runtime_config(**variables), handler)


def serve_one(server, request_bytes, half_close=False):
    """Run the runtime's per-connection code on a socketpair; return the ReplyStream the client got.

    The request is written before the runtime reads, so it must fit in the
    socket buffer (keep requests well under 100 KB).
    """
    client, runtime_side = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with client, runtime_side:
        client.settimeout(HANG_GUARD_SECONDS)
        client.sendall(request_bytes)
        if half_close:
            client.shutdown(socket.SHUT_WR)
        server.handle_connection(runtime_side)
        runtime_side.close()  # as the server loop does after each connection
        return receive_until_closed(client)
