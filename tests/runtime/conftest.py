"""Fixtures for the runtime tests.

Unit tests import asya_runtime in-process (runtime/ is put on sys.path here).
Black-box tests take the `python` fixture, which parametrises them over every
CPython from 3.7 to 3.13 found on the machine, and start the runtime with
`runtime_factory`.
"""

import json
import shutil
import socket
import sys

import pytest

from asya_test_support import (
    HANDLERS_DIR,
    HANG_GUARD_SECONDS,
    RUNTIME_DIR,
    SUPPORTED_MINORS,
    RuntimeProcess,
    encode_envelope,
    find_interpreter,
    frame,
    read_reply,
    short_temp_dir,
)

if str(RUNTIME_DIR) not in sys.path:
    sys.path.insert(0, str(RUNTIME_DIR))

# A hung test fails on its own instead of stalling the run; tests that need
# more say so with their own @pytest.mark.timeout.
DEFAULT_TEST_TIMEOUT_SECONDS = 60


def pytest_collection_modifyitems(items):
    for item in items:
        if item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(DEFAULT_TEST_TIMEOUT_SECONDS))


@pytest.fixture(scope="session", params=SUPPORTED_MINORS, ids=[f"py3.{minor}" for minor in SUPPORTED_MINORS])
def python(request):
    """A CPython 3.<minor> interpreter; a missing one skips, saying where it was looked for.

    In CI a missing 3.7 or 3.13 is also a failure, reported once by
    test_interpreters.py::test_interpreter_required_in_ci_is_present.
    """
    interpreter, why_missing = find_interpreter(request.param)
    if interpreter is None:
        pytest.skip(why_missing)
    return interpreter


@pytest.fixture
def socket_dir():
    """An empty directory with a short path, removed afterwards."""
    directory = short_temp_dir()
    yield directory
    shutil.rmtree(str(directory), ignore_errors=True)


@pytest.fixture
def runtime_factory(python, socket_dir, tmp_path):
    """start(handler, scenario, **env) -> a ready RuntimeProcess; all are killed at teardown."""
    started = []

    def start(handler, scenario, env=None, wait=True, directory=None):
        runtime = RuntimeProcess(
            python,
            handler,
            scenario,
            socket_dir=directory or socket_dir,
            log_path=tmp_path / f"runtime-{len(started)}.log",
            env=env,
        )
        started.append(runtime)
        runtime.start()
        return runtime.wait_ready() if wait else runtime

    yield start
    for runtime in started:
        runtime.kill()


@pytest.fixture(scope="module")
def shared_runtime(python, tmp_path_factory):
    """get(handler, scenario, env) -> one runtime per setting, shared by the tests of a module.

    Sharing is itself a check: each test finds the runtime still serving after
    everything the earlier tests sent it.
    """
    running = {}

    def get(handler, scenario, env=None):
        key = (handler, scenario, tuple(sorted((env or {}).items())))
        runtime = running.get(key)
        if runtime is None:
            runtime = RuntimeProcess(
                python,
                handler,
                scenario,
                socket_dir=short_temp_dir(),
                log_path=tmp_path_factory.mktemp("shared-runtime") / "runtime.log",
                env=env,
            )
            running[key] = runtime
            runtime.start().wait_ready()
        assert runtime.process.poll() is None, f"the shared runtime has died:\n{runtime.log()}"
        return runtime

    yield get
    for runtime in running.values():
        runtime.kill()
        shutil.rmtree(str(runtime.socket_dir), ignore_errors=True)


@pytest.fixture
def handler_scenario(monkeypatch):
    """use(scenario) puts handlers/<scenario> on sys.path; its modules are forgotten afterwards."""

    def use(scenario):
        monkeypatch.syspath_prepend(str(HANDLERS_DIR / scenario))

    yield use
    for name, module in list(sys.modules.items()):
        origin = getattr(module, "__file__", None) or ""
        if origin.startswith(str(HANDLERS_DIR)):
            del sys.modules[name]


@pytest.fixture
def load_fixture_handler(handler_scenario):
    """load(scenario, "module.function") -> the handler, loaded the way the runtime loads it."""
    import asya_runtime

    def load(scenario, spec):
        handler_scenario(scenario)
        return asya_runtime.load_handler(spec)

    return load


@pytest.fixture
def serve_one(load_fixture_handler):
    """serve(scenario, spec, body, **variables) -> the reply dict, via ActorServer.handle_connection in-process.

    body is an envelope dict, or bytes sent as the frame's body.
    """
    import asya_runtime

    def serve(scenario, spec, body, **variables):
        environ = {"ASYA_HANDLER": spec}
        environ.update(variables)
        config = asya_runtime.load_config(environ)
        server = asya_runtime.ActorServer(config, load_fixture_handler(scenario, spec))
        server_side, client = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        with server_side, client:
            client.settimeout(HANG_GUARD_SECONDS)
            client.sendall(frame(body if isinstance(body, bytes) else encode_envelope(body)))
            server.handle_connection(server_side)
            server_side.close()  # as serve_forever does after each connection
            return json.loads(read_reply(client).decode("utf-8"))

    return serve
