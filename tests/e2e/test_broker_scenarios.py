"""What a broker adds to the e2e: crashes and redelivery, slow starts, long
and hanging calls, competing consumers, throughput, and a host that has a
/var/run/asya of its own.

All on podman pods of the chart rendered by helm, RabbitMQ on 127.0.0.1, the
fake sidecar standing in for the asya Go sidecar (list dialect). The tests
wait for events (messages, log lines, container states), never for a fixed
time; their timeouts are bounds on a hang.
"""

import json
import os
import time

import e2e_session
import pytest
from backends.base import RUNTIME_CONTAINER, SIDECAR_CONTAINER, DeployError
from releases import (
    CLASS_INIT,
    COMPETE_A,
    COMPETE_B,
    COMPETE_QUEUE,
    CRASH,
    CRASH_FAKE,
    DEADLINE,
    HOST_VAR_RUN,
    LATE_RELEASES,
    LONG_CALL,
    PIPELINE,
    SIDECAR_KILL,
    UNPROVISIONED,
)

from asya_testkit.rabbitmq import queue_name
from asya_testkit.wait import wait_for

if e2e_session.unavailable_reason() and not e2e_session.failing_instead_of_skipping():
    pytest.skip(e2e_session.unavailable_reason(), allow_module_level=True)

PROBE_RUNS = 200
COMPETING_MESSAGES = 500
PIPELINE_MESSAGES = 300


def needs_podman(backend):
    """These scenarios drive containers directly (exec, kill, start): podman only."""
    if backend.name != "podman":
        pytest.skip(f"drives containers with podman exec/kill/start; the {backend.name} backend has no such calls")


def outcome_lines(log, message_id):
    return [line for line in log.splitlines() if f"id={message_id} " in line and "outcome=" in line]


def runtime_ready_count(backend, release):
    return backend.logs(release, RUNTIME_CONTAINER).count(" asya-runtime: ready:")


@pytest.mark.releases(CRASH)
def test_runtime_crash_mid_message_goes_to_error_end_with_its_reason_and_the_next_message_succeeds(
        backend, queues):
    """The asya Go sidecar's rule: a runtime that dies in the call fails the message (acked,
    never retried); once the kubelet (here: the test) restarts the runtime, messages succeed."""
    needs_podman(backend)
    backend.wait_ready(CRASH)
    queues.send(CRASH, "crash-1", {"label": "crash-1"})

    runtime = backend.wait_for_exit(CRASH, RUNTIME_CONTAINER)
    assert runtime.exit_code == 17, runtime.log
    (record,) = queues.error_end("crash-1")
    assert record["payload"]["error"].startswith("Runtime error: runtime closed the connection"), record
    assert record["payload"]["original_payload"] == {"label": "crash-1"}
    assert record["route"] == {"actors": [CRASH], "current": 0}

    backend.start_container(CRASH, RUNTIME_CONTAINER)
    # The killed runtime's socket file is still there: wait for the new runtime's own ready line.
    wait_for(lambda: runtime_ready_count(backend, CRASH) >= 2, "the restarted runtime to be ready", 120,
             interval=0.2)
    queues.send(CRASH, "crash-after-1", {"label": "crash-1"})  # its marker exists: no crash this time
    (done,) = queues.happy_end("crash-after-1")
    assert done["payload"] == {"label": "crash-1", "survived": True}
    sidecar_log = backend.logs(CRASH, SIDECAR_CONTAINER)
    assert [line.split("outcome=")[1].split()[0] for line in outcome_lines(sidecar_log, "crash-1")] == ["error"]
    queues.wait_until(lambda: queues.counts(CRASH) == (0, 1), "nothing left to deliver, the sidecar consuming")
    assert queues.finished("error-end", "crash-1") == [record] and queues.finished("happy-end", "crash-1") == []


@pytest.mark.releases(CRASH_FAKE)
def test_fake_flavour_redelivers_a_message_whose_runtime_crashed_and_it_reaches_happy_end_once(backend, queues):
    """A deliberate difference of the fake flavour: requeue instead of error-end."""
    needs_podman(backend)
    backend.wait_ready(CRASH_FAKE)
    queues.wait_for_consumers(CRASH_FAKE)  # the fake flavour declares its queue itself
    queues.send(CRASH_FAKE, "fcrash-1", {"label": "fcrash-1"})

    runtime = backend.wait_for_exit(CRASH_FAKE, RUNTIME_CONTAINER)
    assert runtime.exit_code == 17, runtime.log
    wait_for(lambda: outcome_lines(backend.logs(CRASH_FAKE, SIDECAR_CONTAINER), "fcrash-1"),
             "the sidecar to give the message back", 120, interval=0.2)
    assert "outcome=requeued" in backend.logs(CRASH_FAKE, SIDECAR_CONTAINER)
    assert queues.finished("happy-end", "fcrash-1") == [] and queues.finished("error-end", "fcrash-1") == []

    backend.start_container(CRASH_FAKE, RUNTIME_CONTAINER)
    (done,) = queues.happy_end("fcrash-1")

    assert done["payload"] == {"label": "fcrash-1", "survived": True}
    assert done["route"] == {"actors": [CRASH_FAKE], "current": 1}
    sidecar_log = backend.logs(CRASH_FAKE, SIDECAR_CONTAINER)
    outcomes = [line.split("outcome=")[1].split()[0] for line in outcome_lines(sidecar_log, "fcrash-1")]
    # A redelivery can meet the dying runtime's listener before the kernel has
    # closed it and be given back once more; what counts is that every attempt
    # before the restart was requeued and exactly one, the last, succeeded.
    assert outcomes[-1] == "ok" and set(outcomes[:-1]) == {"requeued"}, sidecar_log
    assert queues.counts(CRASH_FAKE) == (0, 1), "nothing left to deliver, the sidecar still consuming"
    assert queues.finished("happy-end", "fcrash-1") == [done], "delivered downstream exactly once"


@pytest.mark.releases(SIDECAR_KILL)
def test_sidecar_killed_mid_message_is_redelivered_and_processed(backend, queues):
    needs_podman(backend)
    backend.wait_ready(SIDECAR_KILL)
    queues.send(SIDECAR_KILL, "kill-1", {"label": "kill-1", "seconds": 2})
    wait_for(lambda: "slow handler: started kill-1" in backend.logs(SIDECAR_KILL, RUNTIME_CONTAINER),
             "the handler to start on kill-1", 120, interval=0.2)

    backend.kill_container(SIDECAR_KILL, SIDECAR_CONTAINER, "KILL")
    killed = backend.wait_for_exit(SIDECAR_KILL, SIDECAR_CONTAINER)
    assert killed.exit_code == 137
    # Unacked when its consumer died: the broker has it again.
    queues.wait_until(lambda: queues.counts(SIDECAR_KILL) == (1, 0), "kill-1 to be back in its queue")
    backend.start_container(SIDECAR_KILL, SIDECAR_CONTAINER)

    (done,) = queues.happy_end("kill-1")
    assert done["payload"] == {"label": "kill-1", "slept_seconds": 2}
    runtime_log = backend.logs(SIDECAR_KILL, RUNTIME_CONTAINER)
    assert runtime_log.count("slow handler: started kill-1") == 2, runtime_log
    wait_for(lambda: queues.counts(SIDECAR_KILL) == (0, 1), "the restarted sidecar to ack kill-1", 60, interval=0.2)
    assert queues.finished("happy-end", "kill-1") == [done], "the killed sidecar's reply went nowhere"


def test_class_handler_with_a_slow_init_processes_messages_published_while_it_loads(backend, queues):
    needs_podman(backend)
    # deploy runs the release's topology Job first: the queue exists before the pod starts.
    backend.deploy([LATE_RELEASES[CLASS_INIT]])
    ids = [f"load-{n}" for n in range(5)]
    for n, message_id in enumerate(ids):
        queues.send(CLASS_INIT, message_id, {"n": n})
    published_at_log = backend.logs(CLASS_INIT, RUNTIME_CONTAINER)
    assert "model: loaded" not in published_at_log, "published after the model had loaded"

    done = [queues.happy_end(message_id)[0] for message_id in ids]

    assert [m["payload"] for m in done] == [{"n": n, "doubled": 2 * n, "loads": 1} for n in range(5)]
    runtime_log = backend.logs(CLASS_INIT, RUNTIME_CONTAINER)
    assert runtime_log.count("model: loading") == 1, "one instance, created once"
    assert runtime_log.index("model: loaded") < runtime_log.index("ready: python"), runtime_log


@pytest.mark.releases(LONG_CALL)
def test_a_call_outliving_200_runs_of_the_charts_probes_completes(backend, queues):
    needs_podman(backend)
    backend.wait_ready(LONG_CALL)
    commands = {probe: backend.probe_command(LONG_CALL, RUNTIME_CONTAINER, probe)
                for probe in ("livenessProbe", "readinessProbe")}
    queues.send(LONG_CALL, "long-1", {"label": "long-1"})
    wait_for(lambda: "gated handler: started long-1" in backend.logs(LONG_CALL, RUNTIME_CONTAINER),
             "the handler to start on long-1", 120, interval=0.2)

    # Each run is a new process of the probe's exact command in the runtime
    # container, as the kubelet's exec probe is. One `podman exec` drives all
    # of them (a podman exec costs about 0.5 s here; 400 would take minutes).
    driver = (
        "import json, subprocess, sys\n"
        "from concurrent.futures import ThreadPoolExecutor\n"
        "commands = json.loads(sys.argv[1])\n"
        "def run(job):\n"
        "    number, probe = job\n"
        "    done = subprocess.run(commands[probe], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=5)\n"
        "    return [number, probe, done.returncode, done.stdout.decode(errors='replace')]\n"
        "jobs = [(n, probe) for n in range(int(sys.argv[2])) for probe in sorted(commands)]\n"
        "with ThreadPoolExecutor(2) as pool:\n"
        "    for outcome in pool.map(run, jobs):\n"
        "        print(json.dumps(outcome))\n"
    )
    result = backend.exec(LONG_CALL, RUNTIME_CONTAINER,
                          ["python3", "-c", driver, json.dumps(commands), str(PROBE_RUNS)], timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    runs = [json.loads(line) for line in result.stdout.splitlines()]

    assert len(runs) == 2 * PROBE_RUNS
    failures = [run for run in runs if run[2] != 0]
    assert failures == [], failures[:3]
    assert queues.finished("happy-end", "long-1") == [], "the call was still running through every probe"
    backend.exec(LONG_CALL, RUNTIME_CONTAINER, ["python3", "-c", "open('/tmp/gate-long-1', 'w').close()"])
    (done,) = queues.happy_end("long-1")
    assert done["payload"] == {"label": "long-1", "gate_opened": True}
    assert backend.container_state(LONG_CALL, RUNTIME_CONTAINER)["Status"] == "running"


@pytest.mark.releases(DEADLINE)
def test_a_handler_past_handler_timeout_goes_to_error_end_and_the_next_message_succeeds(backend, queues):
    backend.wait_ready(DEADLINE)
    queues.send(DEADLINE, "hang-1", {"label": "hang-1", "seconds": 120})
    queues.send(DEADLINE, "after-1", {"label": "after-1", "seconds": 0})

    (record,) = queues.error_end("hang-1")
    (done,) = queues.happy_end("after-1")

    assert record["payload"]["error"] == "processing_error"
    assert record["payload"]["details"]["type"] == "HandlerTimeout"
    assert record["payload"]["original_payload"] == {"label": "hang-1", "seconds": 120}
    assert done["payload"] == {"label": "after-1", "slept_seconds": 0}


@pytest.mark.releases(COMPETE_A, COMPETE_B)
def test_two_pods_on_one_queue_process_each_of_500_messages_once(backend, queues):
    backend.wait_ready(COMPETE_A)
    backend.wait_ready(COMPETE_B)
    queues.wait_for_consumers(COMPETE_QUEUE, 2)
    expected = [f"cc-{n:03d}" for n in range(COMPETING_MESSAGES)]
    for n, message_id in enumerate(expected):
        queues.send(COMPETE_QUEUE, message_id, {"n": n})

    done = queues.happy_end("cc", count=COMPETING_MESSAGES, timeout=300)

    assert [m["id"] for m in done] == expected
    handled = {}
    for release in (COMPETE_A, COMPETE_B):
        log = backend.logs(release, SIDECAR_CONTAINER)
        handled[release] = [line.split("id=")[1].split()[0] for line in log.splitlines()
                            if "outcome=ok" in line and "id=cc-" in line]
    every_handling = handled[COMPETE_A] + handled[COMPETE_B]
    assert sorted(every_handling) == expected, "each message handled by exactly one pod, once"
    assert handled[COMPETE_A] and handled[COMPETE_B], "both pods took a share"


@pytest.mark.releases(*PIPELINE)
def test_three_actor_pipeline_throughput_through_rabbitmq(backend, queues, record_figure):
    for release in PIPELINE:
        backend.wait_ready(release)
        queues.wait_for_consumers(release)
    route = list(PIPELINE)

    started = time.monotonic()
    for n in range(PIPELINE_MESSAGES):
        queues.send(PIPELINE[0], f"tp-{n:03d}", {"n": n}, actors=route)
    done = queues.happy_end("tp", count=PIPELINE_MESSAGES, timeout=300)
    elapsed = time.monotonic() - started

    assert all(m["route"] == {"actors": route, "current": 3} for m in done)
    assert sorted(m["payload"]["n"] for m in done) == list(range(PIPELINE_MESSAGES))
    record_figure(f"three-actor pipeline through RabbitMQ ({backend.name}): {PIPELINE_MESSAGES} messages "
                  f"in {elapsed:.2f} s = {PIPELINE_MESSAGES / elapsed:.0f} messages/s end to end "
                  "(publish to the last happy-end)")


def test_a_host_var_run_asya_does_not_stop_the_runtime_from_listening(backend, queues):
    needs_podman(backend)
    host_dir = "/var/run/asya"
    created = False
    if not os.path.isdir(host_dir):
        if os.geteuid() != 0:
            pytest.skip(f"{host_dir} does not exist and only root can create it to recreate the failure")
        os.mkdir(host_dir, 0o755)  # as a runtime run by root with its default socket dir leaves it
        created = True
    try:
        backend.deploy([LATE_RELEASES[HOST_VAR_RUN]])
        backend.wait_ready(HOST_VAR_RUN)
        queues.send(HOST_VAR_RUN, "varrun-1", {"x": 1})
        (done,) = queues.happy_end("varrun-1")
        assert done["payload"] == {"x": 1}
    finally:
        if created:
            try:
                os.rmdir(host_dir)
            except OSError:
                pass  # something else put files there meanwhile; leave it


def test_a_release_with_provisioning_off_and_no_queue_fails_its_install_naming_the_queue(backend, queues):
    """topology.provision none on a broker without the actor's queue: the Go sidecar
    would wait on it for minutes and messages for it would be dropped; the
    release's hook Job fails the install instead, in one line."""
    needs_podman(backend)
    with pytest.raises(DeployError) as failure:
        backend.deploy([LATE_RELEASES[UNPROVISIONED]])
    message = str(failure.value)
    assert (f"asya topology: FAILED: the queue {queue_name(UNPROVISIONED)} does not exist on vhost /"
            in message), message
    assert "topology.provision=job" in message
    assert queues.counts(UNPROVISIONED) is None, "the check created nothing"
    assert backend.container_state(UNPROVISIONED, SIDECAR_CONTAINER) is None, "no pod started"
