"""The directory queue: atomic enqueue, exclusive claims, ack, release, recovery."""

import json
import os
import stat
import subprocess
import sys
import textwrap

import pytest
from asya_sidecar import queues
from asya_sidecar.queues import QueueError, QueueStore
from sidecar_testkit import SIDECAR_DIR


@pytest.fixture
def store(tmp_path):
    return QueueStore(str(tmp_path / "queues"))


def test_enqueued_message_is_a_complete_json_file_and_no_temp_file_remains(store):
    name = store.enqueue("orders", {"id": "m-1", "payload": "é"})

    assert store.pending("orders") == [name]
    assert store.read("orders", name) == {"id": "m-1", "payload": "é"}
    assert os.listdir(os.path.join(store.queue_path("orders"), "tmp")) == []


def test_claims_come_oldest_first(store):
    for n in range(40):
        store.enqueue("orders", {"n": n})
    consumer = store.consumer("orders")

    order = []
    while True:
        claim = consumer.claim()
        if claim is None:
            break
        order.append(json.loads(claim.body)["n"])
        consumer.ack(claim)

    assert order == list(range(40))


def test_claimed_message_is_hidden_from_others_until_acked_then_gone(store):
    store.enqueue("orders", {"n": 1})
    first, second = store.consumer("orders"), store.consumer("orders")

    claim = first.claim()
    assert second.claim() is None
    assert store.pending("orders") == [] and store.in_flight("orders") == [claim.name]

    first.ack(claim)
    assert store.pending("orders") == [] and store.in_flight("orders") == []


def test_released_message_returns_to_its_place_in_line(store):
    store.enqueue("orders", {"n": 1})
    store.enqueue("orders", {"n": 2})
    consumer = store.consumer("orders")

    consumer.release(consumer.claim())

    assert json.loads(consumer.claim().body) == {"n": 1}


def test_enqueue_many_publishes_nothing_when_one_message_cannot_be_written(store):
    with pytest.raises(ValueError):
        store.enqueue_many([("a", {"ok": 1}), ("b", {"bad": float("nan")})])

    assert store.pending("a") == [] and store.pending("b") == []
    assert os.listdir(os.path.join(store.queue_path("a"), "tmp")) == []


def test_names_sort_in_creation_order_even_when_created_back_to_back(store):
    names = [store.enqueue("fast", {"n": n}) for n in range(300)]

    assert names == sorted(names)
    assert len(set(names)) == 300


@pytest.mark.parametrize("bad", ["", ".", "..", "a/b", "-x", ".hidden", "a b", "x" * 300, None])
def test_queue_names_that_are_not_plain_directory_names_are_refused(store, bad):
    with pytest.raises(QueueError):
        store.enqueue(bad, {"n": 1})


def test_directories_are_shared_with_other_uids_and_files_readable(store):
    name = store.enqueue("orders", {"n": 1})
    queue_path = store.queue_path("orders")

    for directory in (queue_path, os.path.join(queue_path, "tmp"),
                      os.path.join(queue_path, "processing")):
        assert stat.S_IMODE(os.stat(directory).st_mode) == 0o777
    assert stat.S_IMODE(os.stat(os.path.join(queue_path, name)).st_mode) & 0o444 == 0o444


def test_close_returns_unacked_messages_to_the_queue(store):
    store.enqueue("orders", {"n": 1})
    consumer = store.consumer("orders")
    consumer.claim()

    consumer.close()

    assert len(store.pending("orders")) == 1 and store.in_flight("orders") == []


def _consumer_argv(store, body):
    """A child Python running ``body`` with ``store`` open: a separate process
    can race for real and die like a real consumer."""
    prelude = textwrap.dedent("""
        import json, os, sys
        sys.path.insert(0, %r)
        from asya_sidecar.queues import QueueStore
        store = QueueStore(%r)
    """) % (SIDECAR_DIR, store.root)
    return [sys.executable, "-c", prelude + textwrap.dedent(body)]


def test_messages_of_a_consumer_that_died_are_recovered_in_order(store):
    for n in range(3):
        store.enqueue("orders", {"n": n})
    died = subprocess.run(_consumer_argv(store, """
        consumer = store.consumer("orders")
        consumer.claim(); consumer.claim()
        os._exit(9)  # no close(), no ack: like SIGKILL
    """), stderr=subprocess.PIPE, timeout=120)
    assert died.returncode == 9, died.stderr
    assert len(store.in_flight("orders")) == 2

    survivor = store.consumer("orders")
    assert survivor.recover_orphans() == 2

    assert store.in_flight("orders") == []
    assert [json.loads(survivor.claim().body)["n"] for _ in range(3)] == [0, 1, 2]
    assert os.listdir(os.path.join(store.queue_path("orders"), "processing")) == [survivor.consumer_id]


def test_recovery_never_takes_messages_from_a_live_consumer(store):
    store.enqueue("orders", {"n": 1})
    alive = store.consumer("orders")
    claim = alive.claim()

    assert store.consumer("orders").recover_orphans() == 0

    assert alive.held() == [claim.name]
    alive.ack(claim)


def test_racing_consumer_processes_never_claim_the_same_message(store):
    total = 400
    store.enqueue_many([("race", {"n": n}) for n in range(total)])
    script = """
        consumer = store.consumer("race")
        taken = []
        while True:
            claim = consumer.claim()
            if claim is None:
                break
            taken.append(json.loads(claim.body)["n"])
            consumer.ack(claim)
        consumer.close()
        print(json.dumps(taken))
    """
    children = [subprocess.Popen(_consumer_argv(store, script), stdout=subprocess.PIPE)
                for _ in range(4)]
    taken = [json.loads(child.communicate(timeout=120)[0]) for child in children]

    everything = [n for part in taken for n in part]
    assert sorted(everything) == list(range(total)), "each message claimed exactly once"
    assert store.pending("race") == [] and store.in_flight("race") == []


def test_read_all_skips_nothing_and_claims_nothing(store):
    for n in range(3):
        store.enqueue("done", {"n": n})

    assert [m["n"] for m in store.read_all("done")] == [0, 1, 2]
    assert len(store.pending("done")) == 3


def test_default_consumer_ids_are_unique_valid_queue_names():
    ids = {queues.default_consumer_id() for _ in range(50)}
    assert len(ids) == 50
    for consumer_id in ids:
        queues.check_queue_name(consumer_id)
