"""Pure parts of the sidecar: where results go, ids, error records, config."""

import pytest
from asya_sidecar.runtime_client import strict_json_loads
from asya_sidecar.sidecar import (
    Config,
    ConfigError,
    LostCalls,
    Outcome,
    RoutingError,
    error_record,
    next_hops,
)
from sidecar_testkit import log_fields


def envelope(message_id="m", actors=("a", "b"), current=0, **extra):
    value = {"id": message_id, "route": {"actors": list(actors), "current": current},
             "headers": {}, "payload": {}}
    value.update(extra)
    return value


def output(actors=("a", "b"), current=0, payload=None):
    return {"route": {"actors": list(actors), "current": current}, "headers": {},
            "payload": payload}


def test_single_result_goes_to_the_next_actor_with_current_advanced():
    [(queue, sent)] = next_hops(envelope(), output(payload=1))

    assert queue == "b"
    assert sent["route"] == {"actors": ["a", "b"], "current": 1}
    assert sent["id"] == "m" and sent["payload"] == 1


def test_result_at_the_last_step_goes_to_happy_end():
    [(queue, sent)] = next_hops(envelope(current=1), output(current=1))

    assert queue == "happy-end"
    assert sent["route"]["current"] == 2


def test_fan_out_ids_and_parent_ids():
    hops = next_hops(envelope("m"), [output(payload=i) for i in range(3)])

    assert [e["id"] for _, e in hops] == ["m", "m-1", "m-2"]
    assert [e.get("parent_id") for _, e in hops] == [None, "m", "m"]
    assert [e["payload"] for _, e in hops] == [0, 1, 2]


def test_item_0_carries_the_inputs_own_parent_on():
    hops = next_hops(envelope("m-2", parent_id="m"), [output(), output()])

    assert [(e["id"], e["parent_id"]) for _, e in hops] == [("m-2", "m"), ("m-2-1", "m-2")]


def test_a_parent_id_made_up_by_a_handler_does_not_survive_on_item_0():
    result = dict(output(), parent_id="forged")

    [(_, sent)] = next_hops(envelope("m"), result)

    assert "parent_id" not in sent


def test_empty_result_means_nothing_to_send():
    assert next_hops(envelope(), []) == []


def test_each_output_follows_its_own_route():
    hops = next_hops(envelope(actors=("a",)),
                     [output(actors=("a", "x")), output(actors=("a", "y")), output(actors=("a",))])

    assert [q for q, _ in hops] == ["x", "y", "happy-end"]


@pytest.mark.parametrize("bad_result, code", [
    ("text", "invalid_reply"),
    ([output(), 5], "invalid_reply"),
    ({"payload": 1}, "invalid_reply"),
    (output(actors=()), "invalid_reply"),
    (output(current=2), "invalid_reply"),
    ({"route": {"actors": ["a", "b"], "current": True}, "payload": 1}, "invalid_reply"),
    (output(actors=("a", "../etc")), "invalid_route"),
])
def test_unroutable_results_are_refused_whole(bad_result, code):
    with pytest.raises(RoutingError) as caught:
        next_hops(envelope(), bad_result)

    assert caught.value.code == code


def test_error_record_shape():
    original = envelope()
    reply = {"status": "error", "error": "processing_error", "message": "boom",
             "type": "KeyError", "traceback": "Traceback ..."}

    record = error_record("a", "m", "processing_error", "boom", original, reply=reply)

    assert record == {"id": "m", "actor": "a", "error": "processing_error", "message": "boom",
                      "envelope": original, "type": "KeyError", "traceback": "Traceback ..."}


def test_log_line_is_key_value_and_quotes_free_text():
    outcome = Outcome("m 1", "error", ["error-end"], "processing_error", 'bad "x"\nline', step=0)

    fields = log_fields(outcome.log_line("a"))

    assert fields == {"actor": "a", "id": "m 1", "step": "0", "outcome": "error", "results": "1",
                      "destination": "error-end", "error": "processing_error",
                      "message": 'bad "x" line'}


def test_fan_out_log_line_names_each_destination_once():
    line = Outcome("m", "ok", ["x", "x", "happy-end"]).log_line("a")

    assert "results=3 destination=x,happy-end" in line


def test_config_defaults():
    config = Config.from_environ({"ASYA_ACTOR_NAME": "a"})

    assert config.socket_path == "/var/run/asya/asya-runtime.sock"
    assert config.queue_dir == "/var/asya/queues"
    assert (config.ready_timeout, config.call_timeout) == (60.0, 300.0)
    assert config.exit_when_idle is None and config.max_messages is None
    assert config.max_lost_calls == 3


@pytest.mark.parametrize("environ, complaint", [
    ({}, "ASYA_ACTOR_NAME is not set"),
    ({"ASYA_ACTOR_NAME": "a/b"}, "invalid queue name"),
    ({"ASYA_ACTOR_NAME": "happy-end"}, "reserved"),
    ({"ASYA_ACTOR_NAME": "a", "ASYA_READY_TIMEOUT": "soon"}, "ASYA_READY_TIMEOUT='soon' is not a number"),
    ({"ASYA_ACTOR_NAME": "a", "ASYA_CALL_TIMEOUT": "0"}, "ASYA_CALL_TIMEOUT='0' must be greater than 0"),
    ({"ASYA_ACTOR_NAME": "a", "ASYA_MAX_MESSAGES": "1.5"}, "ASYA_MAX_MESSAGES='1.5' is not an integer"),
    ({"ASYA_ACTOR_NAME": "a", "ASYA_MAX_LOST_CALLS": "0"}, "ASYA_MAX_LOST_CALLS='0' must be greater than 0"),
])
def test_config_errors_name_the_variable(environ, complaint):
    with pytest.raises(ConfigError) as caught:
        Config.from_environ(environ)

    assert complaint in str(caught.value)


def test_lost_calls_are_counted_per_message_and_forgotten_when_it_finishes():
    lost = LostCalls()

    assert [lost.add("m"), lost.add("m"), lost.add("other")] == [1, 2, 1]
    lost.forget("m")
    assert lost.add("m") == 1


def test_lost_calls_remember_only_the_most_recent_messages():
    lost = LostCalls()
    lost.add("oldest")
    lost.add("recent")
    for number in range(LostCalls.REMEMBERED - 1):
        lost.add(f"m{number}")

    assert lost.add("recent") == 2, "a message counted again moves to the recent end"
    assert lost.add("oldest") == 1, "the least recent message was forgotten"


@pytest.mark.parametrize("text", [b"NaN", b'{"x": Infinity}', b"\xff"])
def test_json_that_cannot_be_written_back_is_refused_on_read(text):
    with pytest.raises(ValueError):
        strict_json_loads(text)
