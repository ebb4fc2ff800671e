"""A handler that writes to the log every way user code does, as the payload asks.

speak(payload): for each way named in payload["say"], writes payload["text"]
that way; then returns payload["outputs"] outputs (default 1: the payload
itself; 0: None; n: a fan-out of n), or raises ValueError from a helper when
payload["outputs"] is "raise". The module also logs once when it is
imported, outside any call.
"""

import logging
import sys

log = logging.getLogger("logs_a_lot")
log.info("logs_a_lot imported")


def named_logger(text):
    log.info("named logger says %s", text)


def root_logger(text):
    logging.info("root logger says %s", text)


def root_logger_warning(text):
    logging.warning("root logger warns %s", text)


def prints(text):
    print("print says", text)


def writes_to_stderr(text):
    sys.stderr.write(f"stderr says {text}\n")


def writes_bytes_to_stdout(text):
    # What code that writes bytes does, e.g. to pass on a subprocess's output.
    sys.stdout.buffer.write(f"bytes say {text}\n".encode())
    sys.stdout.flush()


WAYS = {
    "named_logger": named_logger,
    "root_logger": root_logger,
    "root_logger_warning": root_logger_warning,
    "print": prints,
    "stderr": writes_to_stderr,
    "stdout_bytes": writes_bytes_to_stdout,
}


def speak(payload):
    for way in payload.get("say", []):
        WAYS[way](payload["text"])
    outputs = payload.get("outputs", 1)
    if outputs == "raise":
        _refuse(payload["text"])
    if outputs == 0:
        return None
    if outputs == 1:
        return payload
    return [{"n": number} for number in range(outputs)]


def _refuse(text):
    raise ValueError(f"refusing {text}")
