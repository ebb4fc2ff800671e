"""Fan-out: returning a list sends one message per item.

``ASYA_HANDLER=split_sentences.split``. For a payload with three sentences the
runtime replies with three envelopes; the sidecar keeps the input id on the
first (``msg-1``) and gives the others ``msg-1-1``, ``msg-1-2`` with
``parent_id: msg-1``. Returning an empty list (no sentences) finishes the
message with nothing forwarded.
"""

import re

# A sentence ends at . ! or ? followed by whitespace or the end of the text.
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def split(payload):
    sentences = [s.strip() for s in _SENTENCE_END.split(payload["text"]) if s.strip()]
    return [
        {"text": sentence, "sentence": index, "of": len(sentences)}
        for index, sentence in enumerate(sentences)
    ]
