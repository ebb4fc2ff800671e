"""Dispatch in payload mode and envelope mode, with the fixture handlers as real files."""

import copy

import pytest

from asya_runtime import ProcessingError, call_envelope_mode, call_payload_mode

ROUTE = {"actors": ["clean", "score", "store"], "current": 1}


def make_envelope(payload, with_id=True, headers=None):
    envelope = {"route": copy.deepcopy(ROUTE), "payload": payload}
    if with_id:
        envelope["id"] = "msg-7"
    if headers is not None:
        envelope["headers"] = headers
    return envelope


# --------------------------------------------------------------------------
# Payload mode
# --------------------------------------------------------------------------


def test_single_result_becomes_one_envelope_with_route_headers_and_id(load_fixture_handler):
    process = load_fixture_handler("lowercase", "lowercase.process")

    result = call_payload_mode(process, make_envelope({"text": "HeLLo"}, headers={"trace": "t-1"}), False)

    assert result == {
        "payload": {"text": "hello"},
        "route": ROUTE,
        "headers": {"trace": "t-1"},
        "id": "msg-7",
    }


def test_route_is_not_advanced_by_the_runtime(load_fixture_handler):
    echo = load_fixture_handler("echo", "echo.echo")

    result = call_payload_mode(echo, make_envelope("x"), False)

    assert result["route"] == {"actors": ["clean", "score", "store"], "current": 1}


def test_headers_default_to_an_empty_object(load_fixture_handler):
    echo = load_fixture_handler("echo", "echo.echo")

    assert call_payload_mode(echo, make_envelope("x"), False)["headers"] == {}


def test_no_id_in_the_output_when_the_input_has_none(load_fixture_handler):
    echo = load_fixture_handler("echo", "echo.echo")

    assert "id" not in call_payload_mode(echo, make_envelope("x", with_id=False), False)


def test_none_means_nothing_to_forward(load_fixture_handler):
    discard = load_fixture_handler("returns_none", "returns_none.discard")

    assert call_payload_mode(discard, make_envelope({"any": 1}), False) == []


@pytest.mark.parametrize("value", [0, False, "", {}, 3.5, "text"], ids=repr)
def test_falsy_and_scalar_results_are_real_payloads(load_fixture_handler, value):
    echo = load_fixture_handler("echo", "echo.echo")

    result = call_payload_mode(echo, make_envelope(value), False)

    assert isinstance(result, dict) and result["payload"] == value and type(result["payload"]) is type(value)


def test_list_result_fans_out_one_envelope_per_item_in_order(load_fixture_handler):
    split = load_fixture_handler("fan_out", "fan_out.split_sentences")

    result = call_payload_mode(split, make_envelope({"text": "One. Two. Three"}, headers={"h": 1}), False)

    assert [item["payload"] for item in result] == [
        {"sentence": "One"},
        {"sentence": "Two"},
        {"sentence": "Three"},
    ]
    for item in result:
        assert item["route"] == ROUTE and item["headers"] == {"h": 1} and item["id"] == "msg-7"


def test_tuple_result_fans_out_like_a_list(load_fixture_handler):
    as_tuple = load_fixture_handler("fan_out", "fan_out.as_tuple")

    result = call_payload_mode(as_tuple, make_envelope({"items": ["a", "b"]}), False)

    assert isinstance(result, list)
    assert [item["payload"] for item in result] == ["a", "b"]


def test_empty_list_forwards_nothing(load_fixture_handler):
    as_tuple = load_fixture_handler("fan_out", "fan_out.as_tuple")

    assert call_payload_mode(as_tuple, make_envelope({"items": []}), False) == []


def test_metadata_is_given_to_the_handler_on_a_shallow_copy(load_fixture_handler):
    report = load_fixture_handler("metadata_echo", "metadata_echo.report_metadata")
    envelope = make_envelope({"text": "hi"}, headers={"trace": "t-1"})

    result = call_payload_mode(report, envelope, True)

    assert result["payload"] == {
        "seen_metadata": {"id": "msg-7", "route": ROUTE, "headers": {"trace": "t-1"}},
        "seen_keys": ["_asya", "text"],
    }
    assert envelope["payload"] == {"text": "hi"}, "the message's own payload is not modified"


def test_metadata_without_an_id_carries_id_none(load_fixture_handler):
    report = load_fixture_handler("metadata_echo", "metadata_echo.report_metadata")

    result = call_payload_mode(report, make_envelope({}, with_id=False), True)

    assert result["payload"]["seen_metadata"] == {"id": None, "route": ROUTE, "headers": {}}


def test_metadata_is_stripped_from_the_result(load_fixture_handler):
    echo = load_fixture_handler("metadata_echo", "metadata_echo.echo_with_metadata")

    result = call_payload_mode(echo, make_envelope({"text": "hi"}), True)

    assert result["payload"] == {"text": "hi"}


def test_metadata_is_stripped_from_every_fan_out_item(load_fixture_handler):
    fan_out = load_fixture_handler("metadata_echo", "metadata_echo.fan_out_with_metadata")

    result = call_payload_mode(fan_out, make_envelope({"text": "hi"}), True)

    assert [item["payload"] for item in result] == [{"text": "hi"}, {"text": "hi", "copy": 2}]


def test_changing_the_metadata_copy_changes_nothing_downstream(load_fixture_handler):
    tamper = load_fixture_handler("metadata_echo", "metadata_echo.tamper_with_metadata")
    envelope = make_envelope({"text": "hi"}, headers={"trace": "t-1"})

    result = call_payload_mode(tamper, envelope, True)

    assert result["route"] == ROUTE
    assert result["headers"] == {"trace": "t-1"}
    assert envelope["payload"] == {"text": "hi"}


def test_non_dict_payload_is_passed_unchanged_with_metadata_on(load_fixture_handler):
    echo = load_fixture_handler("metadata_echo", "metadata_echo.echo_with_metadata")

    assert call_payload_mode(echo, make_envelope("plain text"), True)["payload"] == "plain text"


def test_without_metadata_the_handler_sees_the_payload_only(load_fixture_handler):
    report = load_fixture_handler("metadata_echo", "metadata_echo.report_metadata")

    result = call_payload_mode(report, make_envelope({"text": "hi"}), False)

    assert result["payload"] == {"seen_metadata": None, "seen_keys": ["text"]}


def test_handler_exception_propagates_unchanged(load_fixture_handler):
    score = load_fixture_handler("raises", "raises.score")

    with pytest.raises(ValueError):
        call_payload_mode(score, make_envelope({"score": "high"}), False)


# --------------------------------------------------------------------------
# Envelope mode
# --------------------------------------------------------------------------


def test_envelope_mode_handler_receives_the_envelope_with_default_headers(load_fixture_handler):
    describe = load_fixture_handler("envelope_router", "envelope_router.describe_input")

    result = call_envelope_mode(describe, make_envelope("x"), True)

    assert result["payload"] == {"keys": ["headers", "id", "payload", "route"], "route": ROUTE}


def test_envelope_mode_adding_a_step_is_forwarded(load_fixture_handler):
    add_step = load_fixture_handler("envelope_router", "envelope_router.add_translation_step")

    result = call_envelope_mode(add_step, make_envelope({"text": "hola"}), True)

    assert result["route"] == {"actors": ["clean", "score", "translate", "store"], "current": 1}
    assert result["payload"] == {"text": "hola"}
    assert result["id"] == "msg-7"


def test_envelope_mode_ending_the_route_is_allowed(load_fixture_handler):
    end_here = load_fixture_handler("envelope_router", "envelope_router.end_route_here")

    assert call_envelope_mode(end_here, make_envelope(1), True)["route"] == {
        "actors": ["clean", "score"],
        "current": 1,
    }


def test_envelope_mode_fan_out_with_routes_of_their_own(load_fixture_handler):
    split = load_fixture_handler("envelope_router", "envelope_router.split_by_language")

    result = call_envelope_mode(split, make_envelope({"languages": ["de", "fr"]}, headers={"h": 1}), True)

    assert [item["route"]["actors"] for item in result] == [
        ["clean", "score", "translate-de"],
        ["clean", "score", "translate-fr"],
    ]
    assert [item["headers"] for item in result] == [{"h": 1}, {"h": 1}]
    assert [item["id"] for item in result] == ["msg-7", "msg-7"]


def test_envelope_mode_missing_route_headers_and_id_come_from_the_input(load_fixture_handler):
    payload_only = load_fixture_handler("envelope_router", "envelope_router.payload_only")

    result = call_envelope_mode(payload_only, make_envelope(1, headers={"trace": "t-1"}), True)

    assert result == {
        "payload": {"seen_headers": {"trace": "t-1"}},
        "route": ROUTE,
        "headers": {"trace": "t-1"},
        "id": "msg-7",
    }


def test_envelope_mode_defaults_are_the_input_as_it_arrived(load_fixture_handler):
    rewrite = load_fixture_handler(
        "envelope_router", "envelope_router.rewrite_input_then_return_payload_only"
    )

    result = call_envelope_mode(rewrite, make_envelope(1, headers={"trace": "t-1"}), True)

    assert result["route"] == ROUTE
    assert result["headers"] == {"trace": "t-1"}


def test_envelope_mode_none_means_nothing_to_forward(load_fixture_handler):
    drop = load_fixture_handler("envelope_router", "envelope_router.drop")

    assert call_envelope_mode(drop, make_envelope(1), True) == []


@pytest.mark.parametrize(
    "function, expected",
    [
        ("envelope_without_payload", "result is an object without 'payload'"),
        ("string_instead_of_envelope", "result is string"),
        ("list_with_a_number", "result[1] is int"),
        ("headers_as_list", "result.headers must be an object, got array"),
    ],
)
def test_envelope_mode_malformed_output_is_a_processing_error(load_fixture_handler, function, expected):
    handler = load_fixture_handler("bad_results", f"bad_results.{function}")

    with pytest.raises(ProcessingError) as raised:
        call_envelope_mode(handler, make_envelope(1), True)

    assert expected in str(raised.value)


@pytest.mark.parametrize(
    "function, rule",
    [
        ("advance_current", "route.current must stay 1"),
        ("rename_current_actor", "route.actors[0..1]"),
    ],
)
def test_envelope_mode_route_violation_is_a_processing_error(load_fixture_handler, function, rule):
    handler = load_fixture_handler("envelope_router", f"envelope_router.{function}")

    with pytest.raises(ProcessingError) as raised:
        call_envelope_mode(handler, make_envelope(1), True)

    assert "route rule violated" in str(raised.value) and rule in str(raised.value)


def test_envelope_mode_route_rules_are_not_enforced_with_validation_off(load_fixture_handler):
    advance = load_fixture_handler("envelope_router", "envelope_router.advance_current")

    assert call_envelope_mode(advance, make_envelope(1), False)["route"]["current"] == 2
