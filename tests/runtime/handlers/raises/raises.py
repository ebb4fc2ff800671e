"""A handler that raises from a helper: the traceback must show both user frames."""

import sys


def _parse_score(text):
    return float(text)


def score(payload):
    return {"score": _parse_score(payload["score"])}


def exit_process(payload):
    sys.exit(3)


def raise_without_message(payload):
    raise LookupError()
