"""The benchmark's handler: returns its payload unchanged and imports nothing.

Both servers load it the same way (ASYA_HANDLER=bench_identity.identity with
PYTHONPATH=bench/handlers), so neither pays for a heavier import than the other.
"""


def identity(payload):
    return payload
