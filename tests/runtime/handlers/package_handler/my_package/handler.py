"""ASYA_HANDLER=my_package.handler.process with PYTHONPATH pointing at the package's parent."""


def _label_for(text):
    return "question" if text.rstrip().endswith("?") else "statement"


def process(payload):
    return {"label": _label_for(payload["text"])}
