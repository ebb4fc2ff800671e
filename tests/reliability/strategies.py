"""Hypothesis strategies for the wire and the envelope contract, and an
independent statement of that contract (written from docs/protocol.md, not from the
runtime's code) to check the runtime against."""

from hypothesis import strategies as st

from asya_testkit.wire import HEADER

# ------------------------------------------------------------------- JSON

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)

json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=25,
)

# Keys the envelope contract cares about show up often, with values of every type.
envelope_keys = st.sampled_from(["id", "route", "headers", "payload", "actors", "current"]) | st.text(
    max_size=8
)

route_like = st.fixed_dictionaries(
    {},
    optional={
        "actors": st.lists(st.text(max_size=5), max_size=4) | json_values,
        "current": st.integers(min_value=-2, max_value=5) | json_values,
    },
)

envelope_like = st.one_of(
    json_values,
    st.dictionaries(envelope_keys, json_values | route_like, max_size=6),
    st.fixed_dictionaries(
        {"route": route_like | json_values, "payload": json_values},
        optional={"id": st.text(max_size=5) | json_values, "headers": json_values},
    ),
)


def is_valid_envelope(value):
    """The input contract of docs/protocol.md, as a predicate."""
    if not isinstance(value, dict) or "payload" not in value or "route" not in value:
        return False
    route = value["route"]
    if not isinstance(route, dict):
        return False
    actors = route.get("actors")
    if not isinstance(actors, list) or not actors or not all(isinstance(a, str) for a in actors):
        return False
    current = route.get("current")
    if type(current) is not int or not 0 <= current < len(actors):
        return False
    if "headers" in value and not isinstance(value["headers"], dict):
        return False
    if "id" in value and not isinstance(value["id"], str):
        return False
    return True


# -------------------------------------------------------------- envelopes

actor_names = st.text(max_size=12)


@st.composite
def routes(draw, extra_keys=True):
    actors = draw(st.lists(actor_names, min_size=1, max_size=8))
    route = {"actors": actors, "current": draw(st.integers(min_value=0, max_value=len(actors) - 1))}
    if extra_keys:
        for key, value in draw(st.dictionaries(st.text(max_size=6), json_values, max_size=2)).items():
            route.setdefault(key, value)
    return route


# What payload mode hands back as one envelope: None means "nothing" and a
# list means fan-out, so those two are not echoed as themselves.
single_payloads = json_values.filter(lambda value: value is not None and not isinstance(value, list))


@st.composite
def valid_envelopes(draw, payloads=json_values):
    envelope = {"route": draw(routes()), "payload": draw(payloads)}
    if draw(st.booleans()):
        envelope["id"] = draw(st.text(max_size=20))
    if draw(st.booleans()):
        envelope["headers"] = draw(st.dictionaries(st.text(max_size=10), json_values, max_size=4))
    return envelope


# ------------------------------------------------------------------ bytes


@st.composite
def split_points(draw, data):
    """Arbitrary ways to cut data into consecutive non-empty pieces."""
    if len(data) < 2:
        return [data] if data else []
    cuts = sorted(draw(st.sets(st.integers(min_value=1, max_value=len(data) - 1), max_size=12)))
    pieces = []
    start = 0
    for cut in cuts + [len(data)]:
        pieces.append(data[start:cut])
        start = cut
    return pieces


def frame_stream_outcome(stream, max_size):
    """What a runtime must do with a byte stream whose sender then half-closes.

    Returns ("nothing", None), ("connection_error", None) or ("frame", body).
    """
    if not stream:
        return "nothing", None
    if len(stream) < HEADER.size:
        return "connection_error", None
    (length,) = HEADER.unpack_from(stream)
    if length > max_size or len(stream) - HEADER.size < length:
        return "connection_error", None
    return "frame", stream[HEADER.size : HEADER.size + length]


@st.composite
def framed_streams(draw, max_body=2048, oversize_floor=None):
    """Byte streams shaped like frames: whole, cut short, with trailing bytes,
    with a lying length prefix, or plain noise."""
    body = draw(st.binary(max_size=max_body))
    whole = HEADER.pack(len(body)) + body
    shape = draw(st.sampled_from(["whole", "truncated", "trailing", "lying_length", "noise"]))
    if shape == "whole":
        return whole
    if shape == "truncated":
        return whole[: draw(st.integers(min_value=0, max_value=len(whole) - 1))]
    if shape == "trailing":
        return whole + draw(st.binary(min_size=1, max_size=64))
    if shape == "lying_length":
        floor = oversize_floor if oversize_floor is not None else 0
        return HEADER.pack(draw(st.integers(min_value=floor, max_value=2**32 - 1))) + body
    return draw(st.binary(max_size=max_body))
