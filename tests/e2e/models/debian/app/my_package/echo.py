"""Competing consumers and the throughput pipeline: ASYA_HANDLER=my_package.echo.echo.

Returns the payload unchanged and logs nothing, so a message costs the
runtime and the sidecar, not the handler.
"""


def echo(payload):
    return payload
