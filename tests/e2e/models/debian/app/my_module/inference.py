"""Scenario 3: a handler whose imports need both PYTHONPATH entries.

ASYA_HANDLER=my_module.inference.run with PYTHONPATH=/app:/opt/models: this
module is found through /app, and model_weights (below) through /opt/models.
"""

import model_weights

_WEIGHTS = model_weights.load()


def run(payload):
    score = sum(_WEIGHTS.get(word, 0.0) for word in payload["text"].lower().split())
    return {
        "score": score,
        "weights_file": model_weights.__file__,
        "handler_file": __file__,
    }
