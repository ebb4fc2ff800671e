"""The plainest payload-mode handler: forwards the payload unchanged."""


def echo(payload):
    return payload
