"""ASYA_HANDLER names a function this module does not have (a typo such as predcit)."""

from json import dumps  # imported, not defined here: must not be offered as a choice

THRESHOLD = 0.5


class Model:
    pass


def _normalise(text):
    return text.strip()


def predict(payload):
    return dumps(payload)


def train(payload):
    return None
