"""The asya Go sidecar's ways, for the ``go`` mode (ASYA_SIDECAR_MODE=go).

Facts taken from deliveryhero/asya ``src/asya-sidecar`` (cmd/sidecar/main.go,
internal/router/router.go, internal/runtime/client.go, internal/config):

* before consuming, wait for the file ``runtime-ready`` next to the socket,
  polled every 500 ms; once it exists the socket must be a socket and accept
  a connection within 2 s; give up (exit 1) after ASYA_RUNTIME_READY_TIMEOUT
  (a Go duration, default 5m);
* the runtime replies in the ``list`` dialect: a JSON array of
  ``{payload, route, headers?, id?}`` whose ``route.current`` the runtime has
  already advanced, or ``[{"error": code, "details": {...}}]``;
* each output goes to the queue of ``route.actors[route.current]``, or to
  happy-end when the route is finished; output 0 keeps the input's id, output
  i >= 1 is ``<id>-<i>`` with ``parent_id``; an empty array sends the input
  envelope itself to happy-end;
* headers are dropped on every hop: no envelope it sends carries ``headers``,
  whatever the input or the runtime's reply had;
* a message whose current actor is not this one, or without an id, goes to
  error-end; so do runtime errors, in the record built by ``error_record``;
* a runtime it cannot reach or that dies in the call (connection refused,
  missing socket, EOF) sends the message to error-end, acknowledged: no retry;
* ASYA_RUNTIME_TIMEOUT (default 5m) bounds one call; past it the message goes
  to error-end and the sidecar exits 1 before acknowledging it, so that the
  pod restarts and the broker delivers the message again (a second error-end
  record follows if it times out again).
"""

import json
import os
import re
import socket
import stat
import time

READY_FILE = "runtime-ready"
READY_POLL = 0.5
SOCKET_CHECK_TIMEOUT = 2.0
EXIT_GO_FAILURE = 1

_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text):
    """Seconds in a Go duration string ("5m", "1m30s", "250ms", "0"); ValueError otherwise."""
    text = text.strip()
    if text in ("0", "+0", "-0"):
        return 0.0
    sign = -1.0 if text.startswith("-") else 1.0
    body = text.lstrip("+-")
    position, total = 0, 0.0
    while position < len(body):
        match = _DURATION_PART.match(body, position)
        if not match:
            raise ValueError(f"{text!r} is not a Go duration (e.g. 30s, 5m, 1m30s, 500ms)")
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        position = match.end()
    if not body:
        raise ValueError(f"{text!r} is not a Go duration (e.g. 30s, 5m, 1m30s, 500ms)")
    return sign * total


def socket_accepts(path):
    """Is `path` a socket that accepts a connection within 2 s? (main.go's check)"""
    try:
        if not stat.S_ISSOCK(os.stat(path).st_mode):
            return False
    except OSError:
        return False
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(SOCKET_CHECK_TIMEOUT)
    try:
        probe.connect(path)
        return True
    except OSError:
        return False
    finally:
        probe.close()


def wait_for_runtime_ready(socket_path, timeout, stop_event):
    """True once runtime-ready exists and the socket accepts; False after `timeout` s.

    Polls every 500 ms, first poll after 500 ms, like the Go sidecar's ticker.
    Returns None when `stop_event` is set first.
    """
    ready_file = os.path.join(os.path.dirname(socket_path), READY_FILE)
    started = time.monotonic()
    while not stop_event.wait(READY_POLL):
        if os.path.exists(ready_file) and socket_accepts(socket_path):
            return True
        if time.monotonic() - started >= timeout:
            return False
    return None


def _details(item):
    details = item.get("details")
    return details if isinstance(details, dict) else {}


def reply_error(reply):
    """The first error item of a list reply as (code, details), or None."""
    for item in reply:
        if isinstance(item, dict) and item.get("error"):
            return str(item["error"]), _details(item)
    return None


class ReplyError(Exception):
    pass


def next_hops(input_envelope, reply, happy_end):
    """``[(queue, envelope), ...]`` for a successful list reply (see the module docstring)."""
    message_id = input_envelope["id"]
    if not reply:
        return [(happy_end, {key: value for key, value in input_envelope.items() if key != "headers"})]
    hops = []
    for index, item in enumerate(reply):
        if not isinstance(item, dict):
            raise ReplyError(f"reply[{index}] is not an object")
        route = item.get("route")
        if not isinstance(route, dict) or not isinstance(route.get("actors"), list) \
                or isinstance(route.get("current"), bool) or not isinstance(route.get("current"), int):
            raise ReplyError(f"reply[{index}] has no route {{actors, current}}")
        envelope = {"id": message_id if index == 0 else f"{message_id}-{index}"}
        if index > 0:
            envelope["parent_id"] = message_id
        elif "parent_id" in input_envelope:
            envelope["parent_id"] = input_envelope["parent_id"]
        envelope["route"] = route
        envelope["payload"] = item.get("payload")
        actors, current = route["actors"], route["current"]
        if 0 <= current < len(actors):
            destination = actors[current]
            if not isinstance(destination, str) or not destination:
                raise ReplyError(f"reply[{index}]: route.actors[{current}] is not an actor name")
        else:
            destination = happy_end
        hops.append((destination, envelope))
    return hops


def error_record(original_body, error, details=None):
    """The Go sidecar's error-end envelope (router.go sendToErrorQueue).

    ``{"id", "parent_id"?, "route": the input's route (or error-end's),
    "payload": {"error", "details"?, "original_payload"?}}``.
    """
    try:
        original = json.loads(original_body.decode("utf-8"))
    except ValueError:
        original = None
    if not isinstance(original, dict):
        original = {}
    route = {"actors": ["error-end"], "current": 0}
    original_route = original.get("route")
    if isinstance(original_route, dict) and original_route.get("actors") is not None:
        route = {"actors": original_route.get("actors"), "current": original_route.get("current", 0)}
    payload = {"error": error}
    if details:
        payload["details"] = {key: details[key] for key in ("message", "type", "traceback") if details.get(key)}
    if original.get("payload") is not None:
        payload["original_payload"] = original["payload"]
    record = {"id": original.get("id") if isinstance(original.get("id"), str) else "", "route": route,
              "payload": payload}
    if isinstance(original.get("parent_id"), str):
        record["parent_id"] = original["parent_id"]
    return record
