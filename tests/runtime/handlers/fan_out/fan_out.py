"""Payload-mode fan-out: one outgoing message per item returned."""


def split_sentences(payload):
    return [{"sentence": sentence} for sentence in payload["text"].split(". ")]


def as_tuple(payload):
    # A tuple fans out exactly like a list.
    return tuple(payload["items"])
