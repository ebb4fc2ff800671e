"""Handlers written for the asya reference runtime, unchanged: they advance route.current themselves."""


def process(payload):
    return {"value": payload["value"] + 1}


def fan_out(payload):
    return [{"part": 0}, {"part": 1}]


def add_step_and_advance(envelope):
    route = envelope["route"]
    current = route["current"]
    route["actors"] = route["actors"][: current + 1] + ["review"] + route["actors"][current + 1 :]
    route["current"] = current + 1
    return {"payload": {"checked": True}, "route": route}


def stay_in_place(envelope):
    return {"payload": envelope["payload"], "route": envelope["route"]}


def jump_ahead(envelope):
    envelope["route"]["current"] += 2
    return envelope


class Scorer:
    def __init__(self):
        self.threshold = 0.5

    def score(self, payload):
        return {"high": payload["score"] > self.threshold}

    def score_envelope(self, envelope):
        envelope["route"]["current"] += 1
        envelope["payload"] = {"high": envelope["payload"]["score"] > self.threshold}
        return envelope
