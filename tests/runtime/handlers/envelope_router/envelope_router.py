"""Envelope-mode handlers that edit the route, within and against the rules."""


def add_translation_step(envelope):
    # The README example: insert a step right after the current one.
    route = envelope["route"]
    current = route["current"]
    route["actors"] = route["actors"][: current + 1] + ["translate"] + route["actors"][current + 1 :]
    return envelope


def advance_current(envelope):
    # Against the rules: only the sidecar moves "current".
    envelope["route"]["current"] += 1
    return envelope


def rename_current_actor(envelope):
    # Against the rules: the current actor is part of the route's history.
    route = envelope["route"]
    route["actors"][route["current"]] = "impostor"
    return envelope


def end_route_here(envelope):
    # Allowed: removing every step after the current one ends the route.
    route = envelope["route"]
    route["actors"] = route["actors"][: route["current"] + 1]
    return envelope


def split_by_language(envelope):
    # Fan-out: one envelope per language, each routed to its own next step.
    route = envelope["route"]
    done = route["actors"][: route["current"] + 1]
    outputs = []
    for language in envelope["payload"]["languages"]:
        outputs.append(
            {
                "payload": {"language": language},
                "route": {"actors": done + ["translate-" + language], "current": route["current"]},
            }
        )
    return outputs


def payload_only(envelope):
    # Route, headers and id are omitted: the runtime fills them from the input.
    return {"payload": {"seen_headers": envelope["headers"]}}


def rewrite_input_then_return_payload_only(envelope):
    # The input is edited in place, then left out of the output: the defaults
    # must come from the message as it arrived, not from the edited object.
    envelope["route"]["actors"].append("sneaked-in")
    envelope["headers"]["sneaked"] = True
    return {"payload": "replaced"}


def describe_input(envelope):
    return {"payload": {"keys": sorted(envelope), "route": envelope.get("route")}}


def drop(envelope):
    return None
