"""Stand-in for a model's weights loader, kept outside /app on purpose."""

_WORD_WEIGHTS = {"good": 1.0, "great": 2.0, "bad": -1.0}


def load():
    return dict(_WORD_WEIGHTS)
