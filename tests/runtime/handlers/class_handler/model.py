"""Class handlers: ASYA_HANDLER=model.Model.predict and the ways a class can be wrong."""

import os


class Model:
    instances = 0

    def __init__(self):
        Model.instances += 1
        # What a real model does once: load weights. Here: a label read from the environment.
        self.label = os.environ.get("MODEL_LABEL", "cat")
        self.calls = 0

    def predict(self, payload):
        self.calls += 1
        return {"label": self.label, "calls": self.calls, "instances": Model.instances, "input": payload}

    def route(self, envelope):
        envelope["payload"] = {"routed_by": type(self).__name__, "input": envelope["payload"]}
        return envelope

    async def predict_async(self, payload):
        return {"label": self.label, "async": True}

    def close(self):
        marker = os.environ.get("MODEL_CLOSE_MARKER")
        if marker:
            with open(marker, "a") as closed:
                closed.write("closed\n")


class FailsToClose(Model):
    def close(self):
        raise RuntimeError("cannot release the GPU")


class NeedsArguments:
    def __init__(self, weights_path, device="cpu"):
        self.weights_path = weights_path

    def predict(self, payload):
        return payload


class BrokenInit:
    def __init__(self):
        raise FileNotFoundError("weights.bin not found")

    def predict(self, payload):
        return payload


class NotCallableAttribute:
    threshold = 0.5


class LeavesInitMarker:
    """__init__ leaves a file behind: a test sees whether it ran."""

    def __init__(self):
        with open(os.environ["MODEL_INIT_MARKER"], "a") as marker:
            marker.write("init\n")

    def predict(self, payload):
        return payload
