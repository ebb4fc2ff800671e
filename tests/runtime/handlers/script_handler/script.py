"""A standalone script: ASYA_HANDLER=script.predict with PYTHONPATH=<this directory>."""


def predict(payload):
    return {"prediction": len(payload["features"])}
