"""Handler for the chart's wiring tests: the helm test never calls it."""


def process(payload):
    return payload
