"""Black-box, every interpreter: what the runtime writes to its log.

One access line per message (ASYA_ACCESS_LOG, at INFO); the message id on
every record made during a call, whichever logger makes it; a handler's
exception logged once with the traceback of its reply; ASYA_LOG_FORMAT=json,
where everything the process writes is one JSON object per line.

The handler (handlers/logs_a_lot) writes what the payload asks for, in every
way user code does. The access lines are written by a background thread, so
the tests wait for them, or stop the runtime, which writes every pending line.
"""

import json
import signal
import time
from pathlib import Path

import pytest

from asya_testkit.gated import GatedMessage
from asya_testkit.logs import (
    JSON_RECORD_FIELDS,
    RUNTIME_LOGGERS,
    access_entries,
    is_access_record,
    json_records,
    records,
    wait_for_access_entries,
    wait_for_line,
)
from asya_testkit.process import clean_environment, run_to_exit
from asya_testkit.wait import wait_for
from asya_testkit.wire import (
    call,
    connect,
    encode_envelope,
    envelope_for,
    frame,
    read_reply,
    reply_error,
    reply_outputs,
)

HANDLERS_DIR = Path(__file__).resolve().parent / "handlers"

SPEAK = ("logs_a_lot.speak", "logs_a_lot")
FORMATS = ["text", "json"]
# How each format writes the id of a message that has none.
NO_ID = {"text": "-", "json": None}


def start_speaker(runtime_factory, log_format="text", **env):
    return runtime_factory(*SPEAK, dict(env, ASYA_LOG_FORMAT=log_format))


def speak(runtime, message_id, text, say=(), outputs=1):
    """One message to logs_a_lot.speak; returns the reply."""
    payload = {"text": text, "say": list(say), "outputs": outputs}
    return call(runtime.socket_path, envelope_for(payload, id=message_id))


def stopped_records(runtime, log_format):
    """Stop the runtime (every pending line is written at stop); its whole log as records."""
    assert runtime.stop(signal.SIGTERM) == 0, runtime.log_text()
    return records(runtime.log_lines(), log_format)


def records_of(log, message_id):
    return [record for record in log if record.get("id") == message_id]


def outside_calls(log):
    """The records made outside any call: the handler module's import, start-up, stop."""
    return [
        record
        for record in log
        if record["message"] == "logs_a_lot imported" or record["message"].startswith(("ready:", "stopped:"))
    ]


# (request: an envelope, or raw bytes; the access line's id, or None for a
# message without one; its outcome in the status and the list dialect; outputs)
REQUESTS = [
    (envelope_for({"text": "a"}, id="one"), "one", ("ok", "ok"), 1),
    (envelope_for({"text": "a", "outputs": 3}, id="fan-out"), "fan-out", ("ok", "ok"), 3),
    (envelope_for({"text": "a", "outputs": 0}, id="nothing"), "nothing", ("ok", "ok"), 0),
    (envelope_for({"text": "a", "outputs": "raise"}, id="raises"), "raises", ("processing_error",) * 2, 0),
    ({"id": "no-route", "payload": 1}, "no-route", ("processing_error", "msg_parsing_error"), 0),
    (b'{"route": ', None, ("processing_error", "msg_parsing_error"), 0),
]


@pytest.mark.parametrize("log_format", FORMATS)
@pytest.mark.parametrize("dialect", ["status", "list"])
def test_each_message_has_one_access_line_with_its_id_outcome_and_outputs(
    runtime_factory, dialect, log_format
):
    runtime = start_speaker(runtime_factory, log_format, ASYA_REPLY_FORMAT=dialect)
    replies = [call(runtime.socket_path, request) for request, *_ in REQUESTS]

    entries = wait_for_access_entries(runtime, log_format, len(REQUESTS))

    outcome_in = 0 if dialect == "status" else 1
    expected = [
        (NO_ID[log_format] if message_id is None else message_id, outcomes[outcome_in], outputs)
        for _, message_id, outcomes, outputs in REQUESTS
    ]
    assert [(entry["id"], entry["outcome"], entry["outputs"]) for entry in entries] == expected
    # The outcome is the error code the reply names, the outputs those it carries.
    assert [entry["outcome"] for entry in entries] == [
        "ok" if reply_error(reply) is None else reply_error(reply)[0] for reply in replies
    ]
    assert [entry["outputs"] for entry in entries] == [
        0 if reply_error(reply) else len(reply_outputs(reply)) for reply in replies
    ]
    for entry in entries:
        assert (entry["level"], entry["logger"]) == ("INFO", RUNTIME_LOGGERS[log_format])
        assert entry["duration_ms"] >= 0


ACCESS_OFF = [
    ({"ASYA_ACCESS_LOG": "0"}, "text"),
    ({"ASYA_ACCESS_LOG": "0"}, "json"),
    ({"ASYA_LOG_LEVEL": "WARNING"}, "text"),
]


@pytest.mark.parametrize(
    "env, log_format", ACCESS_OFF, ids=["ASYA_ACCESS_LOG=0", "ASYA_ACCESS_LOG=0-json", "WARNING"]
)
def test_the_access_line_is_off_with_asya_access_log_0_or_a_level_above_info(
    runtime_factory, env, log_format
):
    runtime = start_speaker(runtime_factory, log_format, **env)
    speak(runtime, "quiet-1", "hush", say=["root_logger_warning"])
    speak(runtime, "quiet-2", "hush", outputs="raise")

    log = stopped_records(runtime, log_format)

    assert access_entries(log) == []
    # The handler's own records and the error still come out.
    assert [record["message"] for record in records_of(log, "quiet-1")] == ["root logger warns hush"]
    assert [record["level"] for record in records_of(log, "quiet-2")] == ["ERROR"]


def test_at_warning_a_stop_writes_no_info_line(runtime_factory):
    """The stop line is queued by the signal handler, not made by logging: the level must still hold."""
    runtime = start_speaker(runtime_factory, "text", ASYA_LOG_LEVEL="WARNING")
    speak(runtime, "quiet-1", "hush", say=["root_logger_warning"])

    log = stopped_records(runtime, "text")

    assert [record["level"] for record in log] == ["WARNING"], log


@pytest.mark.parametrize("log_format", FORMATS)
def test_an_access_line_comes_before_the_records_of_the_next_message(runtime_factory, log_format):
    runtime = start_speaker(runtime_factory, log_format)
    ways = ["named_logger", "root_logger"] + (["print", "stderr"] if log_format == "json" else [])
    speak(runtime, "A", "a")
    speak(runtime, "B", "b", say=ways)

    log = stopped_records(runtime, log_format)

    access_at = {record.get("id"): index for index, record in enumerate(log) if is_access_record(record)}
    access_a, access_b = access_at["A"], access_at["B"]
    said_by_b = [
        index
        for index, record in enumerate(log)
        if record.get("id") == "B" and " says b" in record["message"]
    ]
    assert len(said_by_b) == len(ways), log
    assert access_a < min(said_by_b), "message A's access line must come before what B logs"
    assert max(said_by_b) < access_b


def test_text_records_made_during_a_call_carry_its_id_after_the_logger(runtime_factory):
    runtime = start_speaker(runtime_factory, "text")
    speak(runtime, "text-1", "x", say=["named_logger", "root_logger", "root_logger_warning"])
    call(runtime.socket_path, envelope_for({"text": "y", "say": ["named_logger"]}))  # no id

    log = stopped_records(runtime, "text")

    said = [
        (r["level"], r["logger"], r["id"], r["message"])
        for r in log
        if " says " in r["message"] or " warns " in r["message"]
    ]
    assert said == [
        ("INFO", "logs_a_lot", "text-1", "named logger says x"),
        ("INFO", "root", "text-1", "root logger says x"),
        ("WARNING", "root", "text-1", "root logger warns x"),
        ("INFO", "logs_a_lot", "-", "named logger says y"),
    ]
    outside = outside_calls(log)
    assert len(outside) == 3, log
    assert all(record["id"] is None for record in outside), "no id tag outside a call"


def test_json_every_line_is_one_object_and_records_of_a_call_carry_its_id(runtime_factory):
    runtime = start_speaker(runtime_factory, "json")
    speak(runtime, "json-1", "x", say=["named_logger", "root_logger", "print", "stderr"])
    speak(runtime, "json-2", "x", outputs="raise")
    call(runtime.socket_path, b"not json")
    assert runtime.stop(signal.SIGTERM) == 0

    log = json_records(runtime.log_lines())  # fails on the first line that is not a JSON object

    for record in log:
        assert all(isinstance(record.get(field), str) for field in JSON_RECORD_FIELDS), record
    said = [(r["logger"], r["message"]) for r in records_of(log, "json-1") if " says " in r["message"]]
    assert said == [
        ("logs_a_lot", "named logger says x"),
        ("root", "root logger says x"),
        ("stdout", "print says x"),
        ("stderr", "stderr says x"),
    ]
    assert [r["level"] for r in records_of(log, "json-1") if r["logger"] == "stdout"] == ["INFO"]
    outside = outside_calls(log)
    assert len(outside) == 3, log
    assert all("id" not in record for record in outside), "no id outside a call"


def test_json_access_lines_carry_outcome_outputs_and_duration_as_fields(runtime_factory):
    runtime = start_speaker(runtime_factory, "json")
    speak(runtime, "fan-3", "x", outputs=3)
    speak(runtime, "fails", "x", outputs="raise")
    call(runtime.socket_path, b"not json")

    log = stopped_records(runtime, "json")

    access = [record for record in log if "outcome" in record]
    assert [(r["id"], r["outcome"], r["outputs"]) for r in access] == [
        ("fan-3", "ok", 3),
        ("fails", "processing_error", 0),
        (None, "processing_error", 0),
    ]
    for record in access:
        assert (record["level"], record["logger"]) == ("INFO", "asya.runtime")
        assert isinstance(record["duration_ms"], (int, float)) and record["duration_ms"] >= 0
        assert isinstance(record["time"], str) and record["time"]


@pytest.mark.parametrize("log_format", FORMATS)
def test_a_handler_exception_is_logged_once_with_the_traceback_of_its_reply(runtime_factory, log_format):
    runtime = start_speaker(runtime_factory, log_format)
    reply = speak(runtime, "boom", "this", outputs="raise")

    log = stopped_records(runtime, log_format)

    traceback_text = reply["traceback"]
    assert traceback_text.startswith("Traceback (most recent call last):\n"), traceback_text
    assert "asya_runtime.py" not in traceback_text, "the runtime's own frames are trimmed"
    assert 'logs_a_lot.py", line' in traceback_text and "in _refuse" in traceback_text
    (logged,) = [record for record in log if "refusing this" in record["message"]]
    assert (logged["level"], logged["id"]) == ("ERROR", "boom")
    assert logged["message"] == "processing_error: ValueError: refusing this\n" + traceback_text.rstrip("\n")


@pytest.mark.parametrize("log_format", FORMATS)
def test_sigterm_during_a_call_says_what_the_runtime_waits_for(runtime_factory, tmp_path, log_format):
    runtime = runtime_factory("slow.wait_for_gate", "slow", {"ASYA_LOG_FORMAT": log_format})
    message = GatedMessage(tmp_path, "in-flight", message_id="slow-1").send(runtime.socket_path)
    message.wait_started()
    held_since = time.monotonic()

    runtime.send_signal(signal.SIGTERM)
    # Said while the call is still in flight: the gate is closed.
    wait_for_line(
        runtime,
        lambda line: "waiting" in line and "slow-1" in line,
        "the line saying what the stop waits for",
    )
    held_ms = (time.monotonic() - held_since) * 1000  # the call began before and ends after this span
    message.release()

    assert message.reply()["status"] == "ok"
    assert runtime.wait_exit() == 0
    log = records(runtime.log_lines(), log_format)
    (waiting,) = [record for record in log if "waiting" in record["message"]]
    assert waiting["id"] == "slow-1"
    (entry,) = [entry for entry in access_entries(log) if entry["id"] == "slow-1"]
    assert entry["outcome"] == "ok"
    assert entry["duration_ms"] >= held_ms - 0.01, "the access line times the whole call"


@pytest.mark.parametrize("log_format", FORMATS)
def test_sigterm_while_the_runtime_waits_on_a_full_stderr_pipe_loses_no_line(runtime_factory, log_format):
    """The stop signal lands inside the main thread's own write to stderr (in
    CI it hit the write of the ready line; here a log reader that fell behind
    holds the write): the stop line must still come, after the handler's
    record and whole, and no logging error may appear."""
    runtime = runtime_factory("slow.log_a_big_record", "slow", {"ASYA_LOG_FORMAT": log_format}, piped_output=True)
    runtime.output.hold()
    client = connect(runtime.socket_path)
    client.sendall(frame(encode_envelope(envelope_for({"tag": "big-line"}, id="big-1"))))
    wait_for(runtime.output.full, "the runtime's stderr pipe to fill")

    runtime.send_signal(signal.SIGTERM)
    # Taken means the waiting write has returned to the runtime with the rest
    # of the record still to write: the signal's handler runs right there.
    wait_for(lambda: not runtime.signal_pending(signal.SIGTERM), "the runtime to take SIGTERM")
    runtime.output.release()

    with client:
        assert json.loads(read_reply(client))["status"] == "ok"
    assert runtime.wait_exit() == 0
    assert "Logging error" not in runtime.log_text() and "reentrant" not in runtime.log_text()
    log = records(runtime.log_lines(), log_format)
    (big,) = [record for record in log if record["message"].startswith("xxx")]
    assert big["message"] == "x" * (1 << 20) and big["id"] == "big-1"
    (stopping,) = [record for record in log if "stopping after the message in flight" in record["message"]]
    assert stopping["id"] == "big-1"
    stopped = [record["message"].startswith("stopped:") for record in log].index(True)
    assert log.index(big) < log.index(stopping) < stopped


def json_startup_environment(socket_dir, handler="echo.echo", scenario="echo", **changes):
    env = clean_environment(
        ASYA_HANDLER=handler,
        ASYA_SOCKET_DIR=str(socket_dir),
        ASYA_LOG_FORMAT="json",
        PYTHONPATH=str(HANDLERS_DIR / scenario),
    )
    for name, value in changes.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


# (ASYA_HANDLER, scenario, further changes, exit code, text of the error)
STARTUP_ERRORS = [
    ("echo.echo", "echo", {"ASYA_HANDLER": None}, 2, "ASYA_HANDLER is not set"),
    ("echo.echo", "echo", {"ASYA_REPLY_FORMAT": "yaml"}, 2, "ASYA_REPLY_FORMAT='yaml' is not valid"),
    ("logs_a_lot.absent", "logs_a_lot", {}, 3, "has no attribute 'absent'"),
    ("import_raises.process", "import_raises", {}, 3, "model weights not found"),
]


@pytest.mark.parametrize(
    "handler, scenario, changes, exit_code, error",
    STARTUP_ERRORS,
    ids=["no-handler", "bad-reply-format", "no-such-function", "import-raises"],
)
def test_json_startup_error_is_one_critical_object_with_the_exit_code(
    python, socket_dir, handler, scenario, changes, exit_code, error
):
    env = json_startup_environment(socket_dir, handler, scenario, **changes)

    code, stdout, stderr = run_to_exit(python, env)

    assert code == exit_code, stderr
    log = json_records(stdout.splitlines() + stderr.splitlines())
    (critical,) = [record for record in log if record["level"] == "CRITICAL"]
    assert critical["message"].startswith("error: ") and error in critical["message"], critical
    assert critical["exit_code"] == exit_code
    assert critical["logger"] and critical["time"]


def test_json_startup_traceback_starts_at_the_users_module(python, socket_dir):
    env = json_startup_environment(socket_dir, "import_raises.process", "import_raises")

    _, _, stderr = run_to_exit(python, env)

    (critical,) = json_records(stderr.splitlines())
    frames = critical["traceback"].splitlines()
    assert frames[0] == "Traceback (most recent call last):"
    assert frames[1].startswith('  File "{}'.format(HANDLERS_DIR / "import_raises" / "import_raises.py")), (
        "the first frame is the user's module, without importlib's frames:\n" + critical["traceback"]
    )
    assert frames[-1] == "RuntimeError: model weights not found at /models/weights.bin"


def test_json_bytes_a_handler_writes_to_stdout_become_a_json_line(runtime_factory):
    runtime = start_speaker(runtime_factory, "json")

    reply = speak(runtime, "bytes-1", "x", say=["stdout_bytes"])

    assert reply_error(reply) is None, reply
    log = stopped_records(runtime, "json")
    assert [(r["logger"], r["message"]) for r in records_of(log, "bytes-1") if "say" in r["message"]] == [
        ("stdout", "bytes say x")
    ]
