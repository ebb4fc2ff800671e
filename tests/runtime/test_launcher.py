"""The launcher: `python3 DIR` runs the runtime from the bytecode shipped next to it.

A pod runs [<python>, /opt/asya], where the init container has put
asya_runtime.py, __main__.py and __pycache__/*.pyc, all written by
tools/compile_runtime.py (what the runtime image carries). Here the same tool
builds such a directory, and each test runs it on the oldest and the newest
supported interpreter. `python3 runtime/asya_runtime.py` itself is what every
other black-box test runs.
"""

import os
import shutil
import signal
import subprocess
import sys

import pytest

from asya_test_support import (
    HANDLERS_DIR,
    HANG_GUARD_SECONDS,
    REQUIRED_IN_CI,
    RUNTIME_DIR,
    SOCKET_NAME,
    call,
    ci_requested,
    clean_environment,
    envelope_for,
    find_interpreter,
    wait_for,
)

COMPILE_RUNTIME = RUNTIME_DIR.parent / "tools" / "compile_runtime.py"
ERROR_PREFIX = "asya-runtime: error: "
EDIT_MARK = "asya-test: the edited source ran"


@pytest.fixture(scope="module", params=REQUIRED_IN_CI, ids=[f"py3.{minor}" for minor in REQUIRED_IN_CI])
def python(request):
    """CPython 3.7 and 3.13: missing, a skip saying where it was looked for; in CI, a failure."""
    interpreter, why_missing = find_interpreter(request.param)
    if interpreter is None:
        if ci_requested():
            pytest.fail(
                f"{why_missing}; CI must test the launcher on Python 3.{request.param}", pytrace=False
            )
        pytest.skip(why_missing)
    return interpreter


@pytest.fixture(scope="module")
def built_dir(python, tmp_path_factory):
    """The runtime directory with bytecode for `python`, built once per interpreter."""
    out_dir = tmp_path_factory.mktemp(f"built-py3.{python.minor}") / "asya"
    result = subprocess.run(
        [sys.executable, str(COMPILE_RUNTIME), str(out_dir), "--python", python.path],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=HANG_GUARD_SECONDS * 4,
    )
    assert result.returncode == 0, result.stdout
    assert f"with bytecode for Python 3.{python.minor}\n" in result.stdout
    return out_dir


@pytest.fixture
def runtime_dir(built_dir, tmp_path):
    """A fresh copy of the built directory (some tests edit it), like the init container's copy."""
    copy = tmp_path / "opt-asya"
    shutil.copytree(str(built_dir), str(copy))
    return copy


def pyc_path(directory, python, module="asya_runtime"):
    return directory / "__pycache__" / f"{module}.cpython-3{python.minor}.pyc"


def run_launcher(python, runtime_dir, env, *options, cwd=None):
    """Run `python [options] DIR` to its exit; return (code, stderr)."""
    completed = subprocess.run(
        [python.path, *options, str(runtime_dir)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        env=env,
        cwd=cwd,
        timeout=HANG_GUARD_SECONDS,
    )
    return completed.returncode, completed.stderr.decode(errors="replace")


def code_sources(verbose_stderr):
    """The `python -v` lines saying where each module's code object came from."""
    return [line for line in verbose_stderr.splitlines() if line.startswith("# code object from ")]


def test_the_tool_writes_checked_hash_bytecode_for_the_interpreter(python, built_dir):
    for module in ("asya_runtime", "__main__"):
        header = pyc_path(built_dir, python, module).read_bytes()[:16]
        # PEP 552: flags 0b11 = hash-based and checked against the source at each import.
        assert int.from_bytes(header[4:8], "little") == 0b11, module
    magic = subprocess.run(
        [
            python.path,
            "-I",
            "-c",
            "import importlib.util, sys; sys.stdout.write(importlib.util.MAGIC_NUMBER.hex())",
        ],
        stdout=subprocess.PIPE,
        check=True,
        timeout=HANG_GUARD_SECONDS,
    ).stdout.decode()
    assert pyc_path(built_dir, python).read_bytes()[:4].hex() == magic


def test_the_launcher_serves_a_message_and_stops_cleanly(python, runtime_dir, socket_dir, tmp_path):
    env = clean_environment(
        ASYA_HANDLER="echo.echo", ASYA_SOCKET_DIR=str(socket_dir), PYTHONPATH=str(HANDLERS_DIR / "echo")
    )
    log_path = tmp_path / "runtime.log"
    with open(str(log_path), "wb") as log:
        runtime = subprocess.Popen(
            [python.path, str(runtime_dir)], stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env
        )
    socket_path = socket_dir / SOCKET_NAME
    try:
        wait_for(lambda: socket_path.exists() or runtime.poll() is not None, f"the socket {socket_path}")
        assert socket_path.exists(), log_path.read_text()

        reply = call(socket_path, envelope_for({"text": "héllo"}, id="launch-1"))

        assert reply["status"] == "ok", reply
        assert reply["result"]["payload"] == {"text": "héllo"}
        assert reply["result"]["id"] == "launch-1"
        runtime.send_signal(signal.SIGTERM)
        assert runtime.wait(timeout=HANG_GUARD_SECONDS) == 0, log_path.read_text()
        assert not socket_path.exists()
        assert f"ready: python {python.version}" in log_path.read_text()
    finally:
        if runtime.poll() is None:
            runtime.kill()
            runtime.wait()


def test_the_shipped_bytecode_is_what_runs_even_after_the_copy_changed_the_mtime(python, runtime_dir):
    # The init container's copy gives the files a new mtime; a timestamp-based
    # .pyc would then be ignored. A checked-hash one is not.
    source = runtime_dir / "asya_runtime.py"
    stat = source.stat()
    os.utime(str(source), ns=(stat.st_atime_ns, stat.st_mtime_ns + 3600 * 10**9))

    code, stderr = run_launcher(python, runtime_dir, clean_environment(), "-v")

    assert code == 2, stderr  # no ASYA_HANDLER: the runtime ran and refused to start
    sources = code_sources(stderr)
    for module in ("asya_runtime", "__main__"):
        assert f"# code object from '{pyc_path(runtime_dir, python, module)}'" in sources, (
            f"{module} was not loaded from its shipped bytecode: {sources}"
        )
    assert not [line for line in sources if str(runtime_dir) in line and line.endswith(".py")], sources


def test_an_edited_runtime_is_compiled_from_source_not_shadowed_by_its_stale_bytecode(python, runtime_dir):
    source = runtime_dir / "asya_runtime.py"
    stat = source.stat()
    with open(str(source), "a") as edited:
        edited.write(f"\nsys.stderr.write({EDIT_MARK!r} + '\\n')\n")
    # Even with the old mtime back, the source's hash no longer matches the .pyc's.
    os.utime(str(source), ns=(stat.st_atime_ns, stat.st_mtime_ns))
    stale = pyc_path(runtime_dir, python).read_bytes()

    code, stderr = run_launcher(python, runtime_dir, clean_environment(), "-v")

    assert code == 2, stderr
    assert EDIT_MARK in stderr.splitlines()
    assert f"# code object from {source}" in code_sources(stderr)
    # The environment asks Python not to write bytecode: the shipped file is left as it was.
    assert pyc_path(runtime_dir, python).read_bytes() == stale


def test_the_launcher_gives_the_handler_the_sys_path_of_the_script_form(
    python, runtime_dir, socket_dir, tmp_path
):
    handler_dir = tmp_path / "handler"
    handler_dir.mkdir()
    (handler_dir / "where.py").write_text(
        "import os, sys\n\n\ndef where(payload):\n"
        "    return {'first': sys.path[0], 'cwd_searched': '' in sys.path or os.getcwd() in sys.path}\n"
    )
    working_dir = tmp_path / "cwd"
    working_dir.mkdir()
    env = clean_environment(
        ASYA_HANDLER="where.where", ASYA_SOCKET_DIR=str(socket_dir), PYTHONPATH=str(handler_dir)
    )
    socket_path = socket_dir / SOCKET_NAME
    results = {}
    for form, target in (("launcher", runtime_dir), ("script", runtime_dir / "asya_runtime.py")):
        runtime = subprocess.Popen(
            [python.path, str(target)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=env,
            cwd=str(working_dir),
        )
        try:
            wait_for(
                lambda process=runtime: socket_path.exists() or process.poll() is not None,
                f"the {form}'s socket",
            )
            assert socket_path.exists(), runtime.stderr.read().decode(errors="replace")
            results[form] = call(socket_path, envelope_for({}))["result"]["payload"]
            runtime.send_signal(signal.SIGTERM)
            assert runtime.wait(timeout=HANG_GUARD_SECONDS) == 0
        finally:
            if runtime.poll() is None:
                runtime.kill()
                runtime.wait()
            runtime.stderr.close()

    assert results["launcher"] == {"first": str(runtime_dir), "cwd_searched": False}
    assert results["launcher"] == results["script"]


# (variables, what the first stderr line holds, exit code): one per failure path of main().
STARTUP_FAILURES = [
    ({}, "ASYA_HANDLER is not set", 2),
    ({"ASYA_HANDLER": "echo.echo", "ASYA_CHUNK_SIZE": "0"}, "ASYA_CHUNK_SIZE='0'", 2),
    ({"ASYA_HANDLER": "nowhere.process"}, "cannot import module 'nowhere'", 3),
    ({"ASYA_HANDLER": "import_raises.process"}, "RuntimeError: model weights not found", 3),
]


@pytest.mark.parametrize(
    "variables, first_line_text, exit_code", STARTUP_FAILURES, ids=[case[1][:30] for case in STARTUP_FAILURES]
)
def test_startup_failures_through_the_launcher_match_the_script_form(
    python, runtime_dir, socket_dir, variables, first_line_text, exit_code
):
    pythonpath = os.pathsep.join(str(HANDLERS_DIR / scenario) for scenario in ("echo", "import_raises"))
    env = clean_environment(ASYA_SOCKET_DIR=str(socket_dir), PYTHONPATH=pythonpath, **variables)

    code, stderr = run_launcher(python, runtime_dir, env)
    script_code, script_stderr = run_launcher(python, runtime_dir / "asya_runtime.py", env)

    assert code == exit_code, stderr
    first_line = stderr.splitlines()[0]
    assert first_line.startswith(ERROR_PREFIX) and first_line_text in first_line, stderr
    if exit_code == 2:
        assert stderr == first_line + "\n"  # one line, no traceback of the launcher's
    assert "__main__.py" not in stderr
    assert (code, stderr) == (script_code, script_stderr)
    assert os.listdir(str(socket_dir)) == []
