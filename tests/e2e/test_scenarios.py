"""The end-to-end scenarios, on whichever backend the session runs.

Each one goes through the whole path a user depends on: helm renders the
chart, the init container copies the runtime into an unmodified model image,
the model's own interpreter runs it, and the sidecar feeds it messages from
its RabbitMQ queue and forwards the results. The sidecar is the fake one
standing in for the asya Go sidecar (chart flavor asya, `list` dialect); the
pipeline and error scenarios run a second time in this project's `status`
dialect (flavor fake on RabbitMQ). The tests only publish envelopes and read
happy-end / error-end, logs and exit codes.
"""

import json

import e2e_session
import pytest
from backends.base import RUNTIME_CONTAINER, SIDECAR_CONTAINER
from releases import (
    CONDA_SCRIPT,
    MISSPELT,
    PACKAGE_HANDLER,
    RAISES,
    RAISES_STATUS,
    ROUTER,
    ROUTER_STATUS,
    SLOW,
    SPLITTER,
    SPLITTER_STATUS,
    TWO_TREES,
)

from asya_testkit.logs import access_entries, json_records
from asya_testkit.wait import wait_for

# Missing tools skip the whole module with one line (the backend fixture
# turns a missing podman under CI into a failure instead).
if e2e_session.unavailable_reason() and not e2e_session.failing_instead_of_skipping():
    pytest.skip(e2e_session.unavailable_reason(), allow_module_level=True)


@pytest.mark.releases(PACKAGE_HANDLER)
def test_package_handler_in_payload_mode_runs_under_python3_from_path(backend, queues):
    backend.wait_ready(PACKAGE_HANDLER)
    queues.send(PACKAGE_HANDLER, "pkg-1", {"name": "Ada"}, headers={"trace": "t-1"})

    (done,) = queues.happy_end("pkg-1")

    payload = done["payload"]
    assert payload["greeting"] == "hello, Ada"
    assert payload["name_length"] == 3
    # `python3` looked up on the Debian image's PATH: its own interpreter.
    assert payload["python_executable"] == "/usr/bin/python3"
    assert done["route"] == {"actors": [PACKAGE_HANDLER], "current": 1}
    assert "headers" not in done, "the Go sidecar drops headers on every hop"
    runtime_log = backend.logs(PACKAGE_HANDLER, RUNTIME_CONTAINER)
    assert "handler my_package.handler.process, mode payload" in runtime_log
    # The init container copied the one runtime file the command runs
    # ([python3, /opt/asya/asya_runtime.py]).
    init_log = backend.logs(PACKAGE_HANDLER, "asya-runtime-init")
    assert "copied asya_runtime.py to /opt/asya" in init_log


@pytest.mark.releases(PACKAGE_HANDLER, CONDA_SCRIPT)
@pytest.mark.parametrize(
    "release, python, payload, check",
    [
        (PACKAGE_HANDLER, "python3", {"name": "Grace"}, lambda out: out["greeting"] == "hello, Grace"),
        (CONDA_SCRIPT, "/opt/conda/bin/python", {"values": [2, 4]}, lambda out: out["prediction"] == 3),
    ],
    ids=["debian-python3", "conda-python37"],
)
def test_call_sends_a_test_message_through_the_runtime_in_the_pod(backend, release, python, payload, check):
    # What NOTES.txt tells a user to run: kubectl exec ... -- python /opt/asya/asya_runtime.py --call JSON
    backend.wait_ready(release)

    run = backend.exec(release, RUNTIME_CONTAINER, [python, "/opt/asya/asya_runtime.py", "--call", json.dumps(payload)])

    assert run.returncode == 0, run.stdout + run.stderr
    (output,) = json.loads(run.stdout)  # the asya flavour: the list dialect
    assert check(output["payload"]), output
    assert output["route"] == {"actors": ["asya-call"], "current": 1}
    wait_for(
        lambda: f"[id={output['id']}] ok outputs=1 duration_ms=" in backend.logs(release, RUNTIME_CONTAINER),
        "the test message's access line in the runtime's log",
    )


@pytest.mark.releases(CONDA_SCRIPT)
def test_standalone_script_runs_under_the_images_only_interpreter_python37(backend, queues):
    backend.wait_ready(CONDA_SCRIPT)
    queues.send(CONDA_SCRIPT, "conda-1", {"values": [1, 2, 6]})

    (done,) = queues.happy_end("conda-1")

    assert done["payload"]["prediction"] == 3
    assert done["payload"]["python_executable"] == "/opt/conda/bin/python"
    assert done["payload"]["python_version"].startswith("3.7.")
    assert "ready: python 3.7." in backend.logs(CONDA_SCRIPT, RUNTIME_CONTAINER)


@pytest.mark.releases(TWO_TREES)
def test_handler_imports_from_both_pythonpath_entries(backend, queues):
    backend.wait_ready(TWO_TREES)
    queues.send(TWO_TREES, "paths-1", {"text": "good great bad day"})

    (done,) = queues.happy_end("paths-1")

    assert done["payload"] == {
        "score": 2.0,
        "weights_file": "/opt/models/model_weights.py",
        "handler_file": "/app/my_module/inference.py",
    }


@pytest.mark.parametrize("router, splitter", [(ROUTER, SPLITTER), (ROUTER_STATUS, SPLITTER_STATUS)],
                         ids=["list", "status"])
def test_two_releases_route_dynamically_then_fan_out_to_happy_end(backend, queues, router, splitter):
    backend.wait_ready(router)
    backend.wait_ready(splitter)
    # A fake-flavour sidecar declares its own queue once it consumes (a release of
    # the asya flavour had its queue made by its topology Job before the pod).
    queues.wait_for_consumers(router)
    queues.send(router, f"{router}-pipe-1", {"text": "alpha beta gamma"}, headers={"trace": "t-4"})
    queues.send(router, f"{router}-solo-1", {"text": "alone"})

    fanned_out = queues.happy_end(f"{router}-pipe-1", count=3)
    (unsplit,) = queues.happy_end(f"{router}-solo-1")

    # The router added the splitter step; the splitter made one message per
    # word: the first keeps the input id, the others are <id>-<i> with parent_id.
    first = f"{router}-pipe-1"
    assert [m["id"] for m in fanned_out] == [first, f"{first}-1", f"{first}-2"]
    assert [m.get("parent_id") for m in fanned_out] == [None, first, first]
    assert [m["payload"] for m in fanned_out] == [
        {"word": "alpha", "position": 0, "of": 3},
        {"word": "beta", "position": 1, "of": 3},
        {"word": "gamma", "position": 2, "of": 3},
    ]
    for message in fanned_out:
        assert message["route"] == {"actors": [router, splitter], "current": 2}
        if router == ROUTER:
            assert "headers" not in message, "the Go sidecar drops headers on every hop"
        else:
            assert message["headers"] == {"trace": "t-4", "routed-by": f"router: 3 words, added {splitter}"}
    # A one-word message keeps its one-step route: it ends after the router.
    assert unsplit["route"] == {"actors": [router], "current": 1}
    assert unsplit["payload"] == {"text": "alone"}


@pytest.mark.releases(RAISES)
def test_handler_exception_sends_the_message_to_error_end_and_the_actor_keeps_serving(backend, queues):
    backend.wait_ready(RAISES)
    sent = queues.send(RAISES, "bad-1", {"price": 3})
    queues.send(RAISES, "good-1", {"amount": 5})

    (record,) = queues.error_end("bad-1")
    (good,) = queues.happy_end("good-1")

    # The asya Go sidecar's error-end envelope: the input's id and route, the
    # runtime's code and details, the original payload.
    assert record["id"] == "bad-1"
    assert record["route"] == {"actors": [RAISES], "current": 0}
    assert record["payload"]["error"] == "processing_error"
    details = record["payload"]["details"]
    assert details["type"] == "ValueError"
    assert "payload needs a numeric 'amount'; it has keys: price" in details["message"]
    assert "require_amount" in details["traceback"]
    assert record["payload"]["original_payload"] == sent["payload"]
    assert good["payload"] == {"amount": 5, "valid": True}

    # logFormat: json. Every line of the runtime container's log is one object;
    # the exception is logged once, with the message id and the user's frames.
    def records_once_good_1_is_logged():
        records = json_records(backend.logs(RAISES, RUNTIME_CONTAINER).splitlines())
        done = any(entry["id"] == "good-1" and entry["outcome"] == "ok" for entry in access_entries(records))
        return records if done else None

    records = wait_for(records_once_good_1_is_logged, "good-1's access line in the runtime's JSON log")
    errors = [r for r in records if r["level"] == "ERROR"]
    assert len(errors) == 1 and errors[0]["id"] == "bad-1", errors
    assert "require_amount" in errors[0]["message"] and "asya_runtime.py" not in errors[0]["message"]
    outcomes = {entry["id"]: entry["outcome"] for entry in access_entries(records)}
    assert outcomes == {"bad-1": "processing_error", "good-1": "ok"}


@pytest.mark.releases(RAISES_STATUS)
def test_handler_exception_in_the_status_dialect_gets_this_projects_record(backend, queues):
    backend.wait_ready(RAISES_STATUS)
    queues.wait_for_consumers(RAISES_STATUS)  # the fake flavour declares its queue itself
    sent = queues.send(RAISES_STATUS, "sbad-1", {"price": 3})
    queues.send(RAISES_STATUS, "sgood-1", {"amount": 5})

    (record,) = queues.error_end("sbad-1")
    (good,) = queues.happy_end("sgood-1")

    assert record["error"] == "processing_error"
    assert record["type"] == "ValueError"
    assert "payload needs a numeric 'amount'; it has keys: price" in record["message"]
    assert record["actor"] == RAISES_STATUS
    assert record["envelope"]["payload"] == sent["payload"]
    assert "require_amount" in record["traceback"]
    assert good["payload"] == {"amount": 5, "valid": True}


@pytest.mark.releases(MISSPELT)
def test_misspelt_handler_stops_the_runtime_and_the_sidecar_reports_not_ready(backend, queues):
    queues.send(MISSPELT, "never-1", {"name": "Ada"})

    runtime = backend.wait_for_exit(MISSPELT, RUNTIME_CONTAINER)
    sidecar = backend.wait_for_exit(MISSPELT, SIDECAR_CONTAINER)

    assert runtime.exit_code != 0
    # The first line tells the user what to fix: the name given, and the
    # function the module does define.
    assert "proccess" in runtime.first_line, runtime.log
    assert "process" in runtime.first_line.replace("proccess", ""), runtime.log
    assert sidecar.exit_code != 0
    assert "runtime not ready after 5s" in sidecar.log, sidecar.log
    # The sidecar gave up without touching its queue: the message is still there.
    assert queues.counts(MISSPELT) == (1, 0)
    assert queues.finished("error-end", "never-1") == []


@pytest.mark.releases(SLOW)
def test_stopping_the_pod_lets_the_message_in_flight_finish(backend, queues):
    backend.wait_ready(SLOW)
    queues.send(SLOW, "slow-1", {"label": "slow-1", "seconds": 3})
    # Stop only once the message is inside the handler.
    wait_for(lambda: "slow handler: started slow-1" in backend.logs(SLOW, RUNTIME_CONTAINER),
             "the slow handler to start on slow-1", 120, interval=0.2)

    exits = backend.stop_pod(SLOW)

    (done,) = queues.happy_end("slow-1")
    assert done["payload"] == {"label": "slow-1", "slept_seconds": 3}
    # Nothing waiting, nothing held by a consumer: acked, then the pod went.
    assert queues.counts(SLOW) == (0, 0)
    # Both containers got SIGTERM while the message was in flight, finished
    # it, and exited cleanly rather than being killed.
    runtime, sidecar = exits[RUNTIME_CONTAINER], exits[SIDECAR_CONTAINER]
    assert runtime.exit_code == 0, runtime.log
    assert sidecar.exit_code == 0, sidecar.log
    assert line_number(runtime.log, "slow handler: finished slow-1") < line_number(runtime.log, "stopped:")
    assert line_number(sidecar.log, "received SIGTERM") < line_number(sidecar.log, "id=slow-1", "outcome=ok"), (
        "SIGTERM should reach the sidecar while slow-1 is still in flight")


def line_number(log, *fragments):
    """Index of the first log line holding every fragment; fails, showing the log, if none does."""
    for number, line in enumerate(log.splitlines()):
        if all(fragment in line for fragment in fragments):
            return number
    raise AssertionError(f"no line with {fragments} in the log:\n{log}")
