"""A module whose import fails: the user must see this file's traceback at startup."""


def _load_weights(path):
    raise RuntimeError("model weights not found at " + path)


WEIGHTS = _load_weights("/models/weights.bin")


def process(payload):
    return payload
