"""Fan-out: one output message per word.

ASYA_HANDLER=routing.split.split_words (payload mode). The sidecar keeps the
input id on the first output and names the others <id>-1, <id>-2, ... with
parent_id <id>.
"""


def split_words(payload):
    words = payload["text"].split()
    return [{"word": word, "position": index, "of": len(words)} for index, word in enumerate(words)]
