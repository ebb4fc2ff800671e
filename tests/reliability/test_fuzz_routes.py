"""Route-rule properties, in process, through the envelope-mode dispatcher:
any edit after `current` passes; any edit touching `actors[0..current]` or
`current` fails with a message naming the broken rule and both routes."""

import copy
import json

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from asya_testkit.inprocess import runtime_module

from .strategies import actor_names, json_values, routes

asya_runtime = runtime_module()


def run_envelope_handler(envelope, new_route):
    def handler(given_envelope):
        given_envelope["route"] = new_route
        return given_envelope

    return asya_runtime.call_envelope_mode(handler, copy.deepcopy(envelope), validate=True)


@st.composite
def legal_edits(draw):
    before = draw(routes())
    current = before["current"]
    after = dict(before)
    after["actors"] = before["actors"][: current + 1] + draw(st.lists(actor_names, max_size=6))
    return before, after


@given(edit=legal_edits(), payload=json_values)
def test_steps_after_current_may_be_added_replaced_or_removed(edit, payload):
    before, after = edit
    result = run_envelope_handler({"route": before, "payload": payload}, after)

    assert result["route"]["actors"] == after["actors"]
    assert result["route"]["current"] == before["current"]


@st.composite
def history_edits(draw):
    """Change at least one of actors[0..current]: rename, drop or insert one,
    or erase the history from some step on (a handler that rebuilds the
    route from the next steps only)."""
    before = draw(routes())
    current = before["current"]
    actors = list(before["actors"])
    index = draw(st.integers(min_value=0, max_value=current))
    kind = draw(st.sampled_from(["rename", "drop", "insert", "erase"]))
    if kind == "rename":
        actors[index] = draw(actor_names.filter(lambda name: name != actors[index]))
    elif kind == "drop":
        del actors[index]
    elif kind == "insert":
        actors.insert(index, draw(actor_names))
    else:
        del actors[index:]
    actors = actors[: current + 1] + draw(st.lists(actor_names, max_size=4))
    assume(actors[: current + 1] != before["actors"][: current + 1])
    return before, {"actors": actors, "current": current}


@st.composite
def current_edits(draw):
    """Keep the actors, move `current` or give it another type."""
    before = draw(routes())
    current = before["current"]
    new_current = draw(
        st.integers(min_value=-3, max_value=len(before["actors"]) + 3).filter(lambda value: value != current)
        | st.sampled_from([str(current), float(current), None, True, False, [current]])
    )
    return before, {"actors": list(before["actors"]), "current": new_current}


@pytest.mark.parametrize(
    "edits, rule_field",
    [(history_edits(), "actors"), (current_edits(), "current")],
    ids=["history-changed", "current-changed"],
)
@given(data=st.data())
def test_edits_to_history_or_current_fail_naming_the_rule_and_both_routes(edits, rule_field, data):
    before, after = data.draw(edits)
    with pytest.raises(asya_runtime.ProcessingError) as refused:
        run_envelope_handler({"route": before, "payload": None}, after)

    # A processing_error whose message says which rule broke, with the input
    # and output routes -- also when the edit leaves a malformed route.
    message = str(refused.value)
    assert f"route.{rule_field}" in message, message
    assert shows(before, message), f"input route missing: {message}"
    assert shows(after, message), f"output route missing: {message}"


def shows(route, message):
    """The route appears in the message as JSON (spaced or compact) or as a Python repr."""
    renderings = (
        json.dumps(route, default=repr),
        json.dumps(route, default=repr, separators=(",", ":")),
        json.dumps(route, default=repr, ensure_ascii=False),
        json.dumps(route, default=repr, ensure_ascii=False, separators=(",", ":")),
        repr(route),
    )
    return any(rendering in message for rendering in renderings)
