"""Black-box start-up: refusing bad settings before the socket exists, and binding it right."""

import os
import socket
import stat
from pathlib import Path

import pytest

from asya_testkit.paths import SOCKET_NAME
from asya_testkit.process import clean_environment, run_to_exit
from asya_testkit.wait import wait_for
from asya_testkit.wire import call, envelope_for

HANDLERS_DIR = Path(__file__).resolve().parent / "handlers"
ERROR_PREFIX = "asya-runtime: error: "

# (variables changed from a good setting, texts the first stderr line must hold, exit code)
BAD_SETTINGS = [
    ({"ASYA_HANDLER": None}, ["ASYA_HANDLER is not set", "set it to module.function"], 2),
    ({"ASYA_HANDLER": " "}, ["ASYA_HANDLER is not set", "set it to module.function"], 2),
    ({"ASYA_HANDLER": "echo"}, ["ASYA_HANDLER='echo' is malformed", "module.function", "PYTHONPATH"], 2),
    ({"ASYA_HANDLER": "handlers/echo/echo.py"}, ["ASYA_HANDLER='handlers/echo/echo.py' is malformed"], 2),
    ({"ASYA_HANDLER_MODE": "batch"}, ["ASYA_HANDLER_MODE='batch'", "set it to 'payload' or 'envelope'"], 2),
    ({"ASYA_INCLUDE_METADATA": "maybe"}, ["ASYA_INCLUDE_METADATA='maybe'", "true/1/yes or false/0/no"], 2),
    ({"ASYA_ENABLE_VALIDATION": "2"}, ["ASYA_ENABLE_VALIDATION='2'", "true/1/yes or false/0/no"], 2),
    ({"ASYA_CHUNK_SIZE": "0"}, ["ASYA_CHUNK_SIZE='0'", "positive integer", "set it to"], 2),
    ({"ASYA_MAX_MESSAGE_SIZE": "64MB"}, ["ASYA_MAX_MESSAGE_SIZE='64MB'", "positive integer", "set it to"], 2),
    ({"ASYA_IO_TIMEOUT": "-1"}, ["ASYA_IO_TIMEOUT='-1'", "set it to"], 2),
    ({"ASYA_LOG_LEVEL": "LOUD"}, ["ASYA_LOG_LEVEL='LOUD'", "DEBUG"], 2),
    ({"ASYA_SOCKET_DIR": "/tmp/" + "d" * 100}, ["ASYA_SOCKET_DIR=", "choose a shorter directory"], 2),
]

# (ASYA_HANDLER, scenario on PYTHONPATH, texts the first stderr line must hold)
UNLOADABLE_HANDLERS = [
    (
        "nowhere.process",
        "echo",
        ["cannot import module 'nowhere'", "No module named 'nowhere'", "PYTHONPATH"],
    ),
    ("echo.ecko", "echo", ["has no attribute 'ecko'", "callables it defines: echo"]),
    (
        "missing_attribute.predcit",
        "missing_attribute",
        ["'predcit'", "callables it defines: Model, predict, train"],
    ),
    ("not_callable.process", "not_callable", ["'process'", "dict, not callable", "ASYA_HANDLER"]),
    ("missing_dependency.process", "missing_dependency", ["No module named 'asya_tests_absent_dependency'"]),
    ("syntax_error.process", "syntax_error", ["importing handler module 'syntax_error' failed: SyntaxError"]),
    (
        "import_raises.process",
        "import_raises",
        ["RuntimeError: model weights not found at /models/weights.bin"],
    ),
]


def good_environment(socket_dir, scenario="echo", handler="echo.echo"):
    return clean_environment(
        ASYA_HANDLER=handler,
        ASYA_SOCKET_DIR=str(socket_dir),
        PYTHONPATH=str(HANDLERS_DIR / scenario),
    )


def start_expecting_failure(python, env, socket_dir):
    code, _, stderr = run_to_exit(python, env)
    assert code != 0, stderr
    assert os.listdir(str(socket_dir)) == [], "the socket must never be created"
    lines = stderr.splitlines()
    assert lines, "the runtime must say why it stopped"
    assert lines[0].startswith(ERROR_PREFIX), stderr
    return code, lines


def _setting_id(case):
    ((name, value),) = case[0].items()
    return f"{name}={value!r}"[:40]


@pytest.mark.parametrize(
    "changes, first_line_texts, exit_code", BAD_SETTINGS, ids=[_setting_id(c) for c in BAD_SETTINGS]
)
def test_bad_setting_stops_the_runtime_with_a_first_line_saying_what_to_set(
    python, socket_dir, changes, first_line_texts, exit_code
):
    env = good_environment(socket_dir)
    for name, value in changes.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value

    code, lines = start_expecting_failure(python, env, socket_dir)

    assert code == exit_code
    for text in first_line_texts:
        assert text in lines[0]


@pytest.mark.parametrize(
    "handler, scenario, first_line_texts", UNLOADABLE_HANDLERS, ids=[case[0] for case in UNLOADABLE_HANDLERS]
)
def test_unloadable_handler_stops_the_runtime_with_a_first_line_saying_why(
    python, socket_dir, handler, scenario, first_line_texts
):
    env = good_environment(socket_dir, scenario, handler)

    code, lines = start_expecting_failure(python, env, socket_dir)

    assert code == 3
    for text in first_line_texts:
        assert text in lines[0]


def test_import_error_traceback_follows_the_first_line(python, socket_dir):
    env = good_environment(socket_dir, "import_raises", "import_raises.process")

    _, lines = start_expecting_failure(python, env, socket_dir)

    assert lines[1] == "Traceback (most recent call last):"
    traceback_text = "\n".join(lines[1:])
    assert 'import_raises.py", line 8, in <module>' in traceback_text
    assert 'import_raises.py", line 5, in _load_weights' in traceback_text
    assert "asya_runtime.py" not in traceback_text
    assert lines[-1] == "RuntimeError: model weights not found at /models/weights.bin"


def test_syntax_error_shows_the_file_and_line(python, socket_dir):
    env = good_environment(socket_dir, "syntax_error", "syntax_error.process")

    _, lines = start_expecting_failure(python, env, socket_dir)

    traceback_text = "\n".join(lines[1:])
    assert 'syntax_error.py", line 4' in traceback_text
    assert lines[-1].startswith("SyntaxError: ")


def test_missing_dependency_shows_the_line_that_imports_it(python, socket_dir):
    env = good_environment(socket_dir, "missing_dependency", "missing_dependency.process")

    _, lines = start_expecting_failure(python, env, socket_dir)

    assert 'missing_dependency.py", line 3, in <module>' in "\n".join(lines[1:])


def test_socket_dir_is_created_when_missing(runtime_factory, socket_dir):
    runtime = runtime_factory("echo.echo", "echo", directory=socket_dir / "not" / "yet" / "there")

    assert call(runtime.socket_path, envelope_for("hi"))["status"] == "ok"


def test_socket_file_mode_is_0666_for_a_sidecar_under_another_uid(runtime_factory):
    runtime = runtime_factory("echo.echo", "echo")

    mode = os.stat(str(runtime.socket_path)).st_mode

    assert stat.S_ISSOCK(mode)
    assert stat.S_IMODE(mode) == 0o666


def test_stale_socket_file_is_replaced(runtime_factory, socket_dir):
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(socket_dir / SOCKET_NAME))
    stale.close()  # what a killed runtime leaves behind: a socket file nobody listens on
    stale_inode = os.stat(str(socket_dir / SOCKET_NAME)).st_ino

    runtime = runtime_factory("echo.echo", "echo", wait=False)
    wait_for(
        lambda: runtime.process.poll() is not None or os.stat(str(runtime.socket_path)).st_ino != stale_inode,
        "the stale socket to be replaced",
    )

    assert call(runtime.socket_path, envelope_for("hi"))["status"] == "ok"


def test_a_socket_someone_serves_is_not_taken_over(runtime_factory, python, socket_dir):
    first = runtime_factory("echo.echo", "echo")

    code, _, stderr = run_to_exit(python, good_environment(socket_dir))

    first_line = stderr.splitlines()[0]
    assert code == 2
    assert first_line.startswith(ERROR_PREFIX)
    assert "another process already serves" in first_line and "ASYA_SOCKET_DIR" in first_line
    assert sorted(os.listdir(str(socket_dir))) == [SOCKET_NAME, "runtime-ready"], "no second socket, no temporary file"
    assert (socket_dir / "runtime-ready").read_text() == f"{first.process.pid}\n", "the first runtime is still the ready one"
    assert call(first.socket_path, envelope_for("still mine"))["result"]["payload"] == "still mine"


def test_a_file_that_is_not_a_socket_is_refused_and_left_alone(python, socket_dir):
    (socket_dir / SOCKET_NAME).write_text("not a socket")

    code, _, stderr = run_to_exit(python, good_environment(socket_dir))

    first_line = stderr.splitlines()[0]
    assert code == 2
    assert first_line.startswith(ERROR_PREFIX)
    assert "exists and is not a socket" in first_line and "ASYA_SOCKET_DIR" in first_line
    assert (socket_dir / SOCKET_NAME).read_text() == "not a socket"


def test_startup_log_line_names_python_handler_mode_and_socket(runtime_factory, python):
    runtime = runtime_factory(
        "envelope_router.drop", "envelope_router", env={"ASYA_HANDLER_MODE": "envelope"}
    )
    assert runtime.stop() == 0

    ready_lines = [line for line in runtime.log_text().splitlines() if "ready:" in line]
    assert len(ready_lines) == 1, runtime.log_text()
    line = ready_lines[0]
    assert f"python {python.version}" in line
    assert "handler envelope_router.drop" in line
    assert "mode envelope" in line
    assert f"socket {runtime.socket_path}" in line


def test_python_older_than_3_7_exits_2_before_anything_else(socket_dir):
    from asya_testkit.interpreters import find_interpreter

    old, why_missing = find_interpreter(6)
    if old is None:
        pytest.skip(f"no CPython 3.6 to run the runtime with: {why_missing}")
    env = dict(clean_environment(), ASYA_HANDLER="echo.echo", ASYA_SOCKET_DIR=str(socket_dir))

    code, stdout, stderr = run_to_exit(old, env)

    assert code == 2
    assert stderr == f"asya runtime needs Python 3.7 or newer (this is {old.version})\n"
    assert stdout == ""
    assert not socket_dir.exists() or not any(socket_dir.iterdir()), "nothing was created"
