"""Fixtures for the runtime tests.

Unit tests import asya_runtime in-process (runtime/ is put on sys.path here).
Black-box tests take the `python` fixture, which parametrises them over every
CPython from 3.7 to 3.13 found on the machine, and start the runtime with
`runtime_factory`.
"""

import shutil
import sys
from pathlib import Path

import pytest

from asya_testkit import inprocess
from asya_testkit.interpreters import SUPPORTED_MINORS, find_interpreter
from asya_testkit.process import RuntimeProcess, short_temp_dir
from asya_testkit.wire import encode_envelope, frame

HANDLERS_DIR = Path(__file__).resolve().parent / "handlers"
inprocess.runtime_module()  # puts the runtime directory on sys.path for `import asya_runtime`

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
    """start(handler, scenario, env, **RuntimeProcess options) -> a ready RuntimeProcess; all are killed at teardown."""
    started = []

    def start(handler, scenario, env=None, wait=True, directory=None, python=python, **options):
        runtime = RuntimeProcess(
            handler,
            python=python,
            pythonpath=HANDLERS_DIR / scenario if scenario else None,
            socket_dir=directory or socket_dir,
            log_path=tmp_path / f"runtime-{len(started)}.log",
            env=env,
            **options,
        )
        started.append(runtime)
        runtime.start()
        return runtime.wait_until_ready() if wait else runtime

    yield start
    for runtime in started:
        runtime.close()


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
                handler,
                python=python,
                pythonpath=HANDLERS_DIR / scenario if scenario else None,
                log_path=tmp_path_factory.mktemp("shared-runtime") / "runtime.log",
                env=env,
            )
            running[key] = runtime
            runtime.start().wait_until_ready()
        assert runtime.alive(), f"the shared runtime has died:\n{runtime.log_text()}"
        return runtime

    yield get
    for runtime in running.values():
        runtime.close()


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
    asya_runtime = inprocess.runtime_module()

    def load(scenario, spec):
        handler_scenario(scenario)
        return asya_runtime.load_handler(spec)

    return load


@pytest.fixture
def serve_one(load_fixture_handler):
    """serve(scenario, spec, body, **variables) -> the reply dict, via ActorServer.handle_connection in-process.

    body is an envelope dict, or bytes sent as the frame's body.
    """

    def serve(scenario, spec, body, **variables):
        server = inprocess.make_server(load_fixture_handler(scenario, spec), ASYA_HANDLER=spec, **variables)
        request = frame(body if isinstance(body, bytes) else encode_envelope(body))
        return inprocess.serve_one(server, request).reply()

    return serve
