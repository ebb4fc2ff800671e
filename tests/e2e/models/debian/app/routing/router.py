"""Envelope mode with dynamic routing: adds a step after this one.

ASYA_HANDLER=routing.router.route, ASYA_HANDLER_MODE=envelope. A message whose
text has more than one word gets the actor named by ROUTER_SPLIT_ACTOR (the
fan-out step, deployed as another release) inserted right after the current
step; a header records the decision. Steps already taken and route.current
stay as they are: the sidecar advances the route.
"""

import os


def route(envelope):
    split_actor = os.environ["ROUTER_SPLIT_ACTOR"]
    actors = list(envelope["route"]["actors"])
    current = envelope["route"]["current"]
    words = envelope["payload"]["text"].split()
    headers = dict(envelope.get("headers") or {})
    if len(words) > 1:
        actors.insert(current + 1, split_actor)
        headers["routed-by"] = f"router: {len(words)} words, added {split_actor}"
    else:
        headers["routed-by"] = "router: one word, route unchanged"
    return {
        "payload": envelope["payload"],
        "route": {"actors": actors, "current": current},
        "headers": headers,
    }
