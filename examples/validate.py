"""Payload mode, and a handler that raises.

Run by the runtime with ``ASYA_HANDLER=validate.validate`` (``PYTHONPATH`` set
to this directory). A payload without a usable ``text`` is rejected with an
exception: the runtime turns it into a ``processing_error`` reply and the
sidecar sends the message to the ``error-end`` queue, with the exception's
type, message and traceback, instead of passing it on.
"""


def validate(payload):
    if not isinstance(payload, dict):
        raise TypeError(f"payload must be an object with a 'text' string, got {type(payload).__name__}")
    text = payload.get("text")
    if not isinstance(text, str):
        raise ValueError("payload needs a 'text' string; it has keys: %s"
                         % (", ".join(sorted(payload)) or "none"))
    # Returning the payload unchanged forwards the message to the next actor.
    return payload
