"""validate_envelope (the input contract) and check_route_rules (envelope-mode outputs)."""

import copy
import json

import pytest

from asya_runtime import ProcessingError, check_route_rules, validate_envelope


def valid_envelope():
    return {
        "id": "msg-1",
        "route": {"actors": ["clean", "score", "store"], "current": 1},
        "headers": {"trace": "t-1"},
        "payload": {"text": "hello"},
    }


@pytest.mark.parametrize(
    "envelope",
    [
        valid_envelope(),
        {"route": {"actors": ["only"], "current": 0}, "payload": None},
        {"route": {"actors": ["a", "b"], "current": 1}, "payload": [1, 2]},
        {"route": {"actors": ["a"], "current": 0, "extra": "kept"}, "payload": 0, "trace_id": "x"},
        {"route": {"actors": ["a"], "current": 0}, "headers": {}, "payload": ""},
    ],
    ids=["full", "null-payload", "last-actor", "extra-keys", "empty-headers"],
)
def test_valid_envelopes_pass(envelope):
    validate_envelope(envelope)


def with_change(path, value):
    envelope = valid_envelope()
    target = envelope
    for key in path[:-1]:
        target = target[key]
    if value is DELETE:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return envelope


DELETE = object()

# (envelope, text the error must contain: the field it names)
INVALID_ENVELOPES = [
    ([1, 2], "envelope must be a JSON object, got array"),
    ("text", "envelope must be a JSON object, got string"),
    (None, "envelope must be a JSON object, got null"),
    (7, "envelope must be a JSON object"),
    (with_change(["payload"], DELETE), "'payload'"),
    (with_change(["route"], DELETE), "'route'"),
    (with_change(["route"], ["clean"]), "route must be an object, got array"),
    (with_change(["route"], None), "route must be an object, got null"),
    (with_change(["route", "actors"], DELETE), "route.actors must be a non-empty array of strings"),
    (with_change(["route", "actors"], []), "route.actors must be a non-empty array of strings"),
    (with_change(["route", "actors"], "clean,score"), "route.actors must be a non-empty array of strings"),
    (with_change(["route", "actors"], ["clean", 5]), "route.actors[1] must be a string"),
    (with_change(["route", "actors"], ["clean", None]), "route.actors[1] must be a string, got null"),
    (with_change(["route", "current"], DELETE), "route.current must be an integer"),
    (with_change(["route", "current"], "1"), "route.current must be an integer, got string"),
    (with_change(["route", "current"], 1.0), "route.current must be an integer"),
    (with_change(["route", "current"], True), "route.current must be an integer, got boolean"),
    (with_change(["route", "current"], False), "route.current must be an integer, got boolean"),
    (with_change(["route", "current"], -1), "route.current=-1 is out of range for 3 actors"),
    (with_change(["route", "current"], 3), "route.current=3 is out of range for 3 actors"),
    (with_change(["headers"], ["trace"]), "headers must be an object, got array"),
    (with_change(["headers"], "trace=t-1"), "headers must be an object, got string"),
    (with_change(["headers"], None), "headers must be an object, got null"),
    (with_change(["id"], 17), "id must be a string"),
]


@pytest.mark.parametrize("envelope, expected", INVALID_ENVELOPES, ids=[e for _, e in INVALID_ENVELOPES])
def test_invalid_envelope_names_the_field(envelope, expected):
    with pytest.raises(ProcessingError) as raised:
        validate_envelope(envelope)
    assert expected in str(raised.value)


BEFORE = {"actors": ["a", "b", "c"], "current": 1}


@pytest.mark.parametrize(
    "after",
    [
        {"actors": ["a", "b", "c"], "current": 1},
        {"actors": ["a", "b", "c", "d"], "current": 1},
        {"actors": ["a", "b", "x", "c"], "current": 1},
        {"actors": ["a", "b", "z"], "current": 1},
        {"actors": ["a", "b", "y", "z"], "current": 1},
        {"actors": ["a", "b"], "current": 1},
        {"actors": ["a", "b", "c"], "current": 1, "note": "extra keys are kept"},
    ],
    ids=[
        "unchanged",
        "step-appended",
        "step-inserted-after-current",
        "next-step-replaced",
        "later-steps-replaced-by-two",
        "all-later-steps-removed",
        "extra-key",
    ],
)
def test_allowed_route_changes(after):
    check_route_rules(copy.deepcopy(BEFORE), after)


# (before, after, the rule the message must name)
CURRENT_RULE = "route.current must stay"
HISTORY_RULE = "route.actors[0..{}]"
ROUTE_VIOLATIONS = [
    (BEFORE, {"actors": ["a", "b", "c"], "current": 2}, CURRENT_RULE, "current-advanced"),
    (BEFORE, {"actors": ["a", "b", "c"], "current": 0}, CURRENT_RULE, "current-moved-back"),
    (BEFORE, {"actors": ["x", "b", "c"], "current": 1}, HISTORY_RULE.format(1), "processed-step-renamed"),
    (BEFORE, {"actors": ["b", "c"], "current": 1}, HISTORY_RULE.format(1), "processed-step-erased"),
    (BEFORE, {"actors": ["a", "x", "c"], "current": 1}, HISTORY_RULE.format(1), "current-actor-renamed"),
    (BEFORE, {"actors": ["a", "c"], "current": 1}, HISTORY_RULE.format(1), "current-actor-removed"),
    (
        BEFORE,
        {"actors": ["a", "new", "b", "c"], "current": 1},
        HISTORY_RULE.format(1),
        "step-inserted-before",
    ),
    (BEFORE, {"actors": ["b", "a", "c"], "current": 1}, HISTORY_RULE.format(1), "history-reordered"),
    (
        {"actors": ["a", "b", "c"], "current": 2},
        {"actors": ["a", "b"], "current": 2},
        HISTORY_RULE.format(2),
        "last-actor-erased",
    ),
    (
        {"actors": ["a", "b", "c"], "current": 2},
        {"actors": ["x"], "current": 0},
        CURRENT_RULE,
        "route-replaced-by-a-fresh-one",
    ),
]


@pytest.mark.parametrize(
    "before, after, rule", [case[:3] for case in ROUTE_VIOLATIONS], ids=[case[3] for case in ROUTE_VIOLATIONS]
)
def test_route_violation_names_the_rule_and_shows_both_routes(before, after, rule):
    with pytest.raises(ProcessingError) as raised:
        check_route_rules(copy.deepcopy(before), after)

    message = str(raised.value)
    assert message.startswith("route rule violated: ")
    assert rule in message
    assert "input route " + json.dumps(before) in message
    assert "output route " + json.dumps(after) in message


@pytest.mark.parametrize(
    "after, expected",
    [
        (None, "output route must be an object"),
        ({"actors": [], "current": 0}, "output route.actors must be a non-empty array"),
        ({"actors": ["a", "b"], "current": True}, "output route.current must be an integer"),
    ],
)
def test_malformed_output_route_is_reported_as_the_output_route(after, expected):
    with pytest.raises(ProcessingError) as raised:
        check_route_rules(copy.deepcopy(BEFORE), after)
    assert expected in str(raised.value)


@pytest.mark.parametrize(
    "after",
    [
        None,
        {"actors": [], "current": 1},
        {"actors": ["a", 1, "c"], "current": 1},
        {"actors": ["a", "b", "c"], "current": "1"},
        {"actors": ["a", "b", "c"], "current": 2},
        {"actors": ["x", "b", "c"], "current": 1},
    ],
    ids=["not-an-object", "no-actors", "actor-not-a-string", "current-a-string", "current-moved", "history"],
)
def test_shape_and_rule_errors_share_one_message_form(after):
    with pytest.raises(ProcessingError) as raised:
        check_route_rules(copy.deepcopy(BEFORE), after)

    message = str(raised.value)
    assert message.startswith("route rule violated: ")
    assert message.endswith(f"; input route {json.dumps(BEFORE)}, output route {json.dumps(after)}")


def test_the_list_dialect_also_accepts_a_route_the_handler_advanced():
    advanced = {"actors": ["a", "b", "c"], "current": 2}
    check_route_rules(copy.deepcopy(BEFORE), advanced, may_advance=True)
    check_route_rules(copy.deepcopy(BEFORE), dict(BEFORE), may_advance=True)

    with pytest.raises(ProcessingError) as raised:
        check_route_rules(copy.deepcopy(BEFORE), {"actors": ["a", "b", "c", "d"], "current": 3}, may_advance=True)
    assert "route.current must stay 1 or be advanced to 2, got 3" in str(raised.value)
