"""The floor: the least work any Python server must do to speak the asya protocol.

`make bench` measures the runtime against this file. It does exactly what the
protocol cannot avoid, written the way a person would first write it, with
nothing the runtime adds (validation, error replies, timeouts, signals, logs):

    accept a connection
    read the 4-byte big-endian length, then the body (recv until complete:
        each recv asks for everything still missing, chunks joined at the end)
    json.loads(body)
    call the handler on the payload
    json.dumps({"status": "ok", "result": <envelope with payload, route, headers, id>})
    send length + body with one sendall, close

It is started like the runtime: same interpreter, same environment
(ASYA_SOCKET_DIR, ASYA_HANDLER, PYTHONPATH), socket at
$ASYA_SOCKET_DIR/asya-runtime.sock, the handler imported before the socket is
bound. It answers only well-formed requests; a connection closed before a
full frame arrived is dropped. It must run on Python 3.7, like the runtime.

It does not use the test kit's frame code: it must stay the naive baseline.
"""

import importlib
import json
import os
import socket
import struct


def recv_exactly(conn, count):
    chunks = []
    remaining = count
    while remaining:
        chunk = conn.recv(remaining)
        if not chunk:
            raise ConnectionError("peer closed mid-frame")
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def answer(conn, handler):
    (length,) = struct.unpack(">I", recv_exactly(conn, 4))
    body = recv_exactly(conn, length)
    envelope = json.loads(body)
    result = {
        "payload": handler(envelope["payload"]),
        "route": envelope["route"],
        "headers": envelope.get("headers", {}),
    }
    if "id" in envelope:
        result["id"] = envelope["id"]
    data = json.dumps({"status": "ok", "result": result}).encode("utf-8")
    conn.sendall(struct.pack(">I", len(data)) + data)


def main():
    module_name, _, function_name = os.environ["ASYA_HANDLER"].rpartition(".")
    handler = getattr(importlib.import_module(module_name), function_name)

    socket_dir = os.environ.get("ASYA_SOCKET_DIR", "/var/run/asya")
    os.makedirs(socket_dir, exist_ok=True)
    path = os.path.join(socket_dir, "asya-runtime.sock")
    if os.path.exists(path):
        os.unlink(path)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(128)
    while True:
        conn, _ = listener.accept()
        try:
            answer(conn, handler)
        except ConnectionError:
            pass  # e.g. a readiness probe that connects and closes
        finally:
            conn.close()


if __name__ == "__main__":
    main()
