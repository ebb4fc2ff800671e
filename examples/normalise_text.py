"""Payload mode: the handler sees only the payload and returns the new one.

``ASYA_HANDLER=normalise_text.normalise``. The runtime wraps the returned
value in an envelope with the same route and headers; the sidecar then moves
it one step along the route.
"""

import unicodedata


def normalise(payload):
    text = unicodedata.normalize("NFC", payload["text"])
    # Collapse runs of spaces, tabs and newlines; trim the ends.
    tidy = " ".join(text.split())
    return dict(payload, text=tidy)
