"""A filter that keeps nothing: returning None means there is nothing to forward."""


def discard(payload):
    return None
