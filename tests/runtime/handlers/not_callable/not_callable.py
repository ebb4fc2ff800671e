"""ASYA_HANDLER names something that exists but cannot be called."""

process = {"threshold": 0.5}


def predict(payload):
    return payload
