"""The handler of the worked example in docs/protocol.md."""


def process(payload):
    return {"text": payload["text"].lower()}
