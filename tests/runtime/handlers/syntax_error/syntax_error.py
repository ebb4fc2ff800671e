"""A handler file with a syntax error (the colon after the signature is missing)."""


def process(payload)
    return payload
