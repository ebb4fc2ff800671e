"""Returns its payload: the reply carries exactly what was sent."""


def echo(payload):
    return payload
