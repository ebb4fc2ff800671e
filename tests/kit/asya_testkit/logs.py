"""The runtime's log, read the way a log collector reads it.

ASYA_LOG_FORMAT=text: `<time> <LEVEL> <logger>: [id=<id>] <message>`, the id
tag only on records made while a message is handled, the runtime's own logger
shown as asya-runtime; a record's further lines (a traceback) follow it.
ASYA_LOG_FORMAT=json: one JSON object per line, with time, level, logger,
message, and id while a message is handled.

Either way a record reads as a dict {time, level, logger, message, id}
(text: id is None without a tag, "-" for a message without an id). The
access line, one per message, is a record of the runtime's logger whose
message is `<outcome> outputs=<n> duration_ms=<ms>`; access_entries() finds
them. They are written by a background thread, so a test waits for them
(wait_for_access_entries, wait_for_line) or stops the runtime first, which
writes every pending line.
"""

import json
import re

from .wait import HANG_GUARD_SECONDS, wait_for

TEXT_RECORD = re.compile(
    r"(?P<time>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) (?P<level>[A-Z]+) (?P<logger>[^ :]+): "
    r"(?:\[id=(?P<id>[^\]]*)\] )?(?P<message>.*)"
)
JSON_RECORD_FIELDS = ("time", "level", "logger", "message")
# How the runtime's own logger is named in each format.
RUNTIME_LOGGERS = {"text": "asya-runtime", "json": "asya.runtime"}
ACCESS_MESSAGE = re.compile(
    r"(?P<outcome>[a-z_]+) outputs=(?P<outputs>\d+) duration_ms=(?P<duration_ms>\d+(?:\.\d+)?)"
)


def text_records(lines):
    """Text log lines as records; a line that starts no record continues the previous one's message."""
    records = []
    for line in lines:
        match = TEXT_RECORD.fullmatch(line)
        if match is not None:
            records.append(match.groupdict())
        elif records:
            records[-1]["message"] += "\n" + line
        else:
            raise AssertionError(f"the log starts with a line that is no record: {line!r}")
    return records


def json_records(lines):
    """Every line as a JSON object; AssertionError naming the first one that is not."""
    records = []
    for number, line in enumerate(lines, 1):
        try:
            record = json.loads(line)
        except ValueError as exc:
            raise AssertionError(f"line {number} is not JSON ({exc}): {line!r}") from None
        if not isinstance(record, dict):
            raise AssertionError(f"line {number} is JSON but not an object: {line!r}")
        records.append(record)
    return records


def records(lines, log_format):
    """The records of a log in ASYA_LOG_FORMAT log_format ("text" or "json")."""
    return json_records(lines) if log_format == "json" else text_records(lines)


def is_access_record(record):
    """True for an access line: a record of the runtime's logger whose message is its access text."""
    return record.get("logger") in RUNTIME_LOGGERS.values() and bool(
        ACCESS_MESSAGE.fullmatch(record.get("message", ""))
    )


def access_entries(records):
    """The access-line records, as copies with outcome, outputs (int) and duration_ms (float)
    read from the message where the record does not carry them itself (the text format)."""
    entries = []
    for record in filter(is_access_record, records):
        match = ACCESS_MESSAGE.fullmatch(record["message"])
        parsed = {
            "outcome": match.group("outcome"),
            "outputs": int(match.group("outputs")),
            "duration_ms": float(match.group("duration_ms")),
        }
        entries.append(dict(parsed, **record))  # a JSON record's own fields win
    return entries


def complete_lines(process):
    """The lines of process's log written so far, without a last one still being written."""
    text = process.log_text()
    return text[: text.rfind("\n") + 1].splitlines()


def wait_for_line(process, matches, what, timeout=HANG_GUARD_SECONDS):
    """The first line of process's log for which matches(line) is truthy, once there is one."""
    return wait_for(
        lambda: next((line for line in complete_lines(process) if matches(line)), None),
        what,
        timeout,
    )


def wait_for_access_entries(process, log_format, count, timeout=HANG_GUARD_SECONDS):
    """access_entries() of process's log once it holds at least count of them."""

    def enough():
        entries = access_entries(records(complete_lines(process), log_format))
        return entries if len(entries) >= count else None

    return wait_for(enough, f"{count} access line(s)", timeout)
