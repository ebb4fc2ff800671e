"""A message to the gated handler (tests/runtime/handlers/slow: slow.wait_for_gate).

That handler creates the file payload["started"] on entry and returns only
once the file payload["gate"] exists, so a test decides when a call is in
flight and when it ends, and never depends on how long anything takes.
"""

import json

from .wait import wait_for
from .wire import connect, encode_envelope, envelope_for, frame, read_reply


class GatedMessage:
    """One message to the gated handler, sent on its own connection.

    gate: share another message's gate file to release both at once.
    message_id: the envelope's id (none by default).
    """

    def __init__(self, directory, tag, gate=None, message_id=None):
        self.started = directory / f"started-{tag}"
        self.gate = gate or directory / f"gate-{tag}"
        self.tag = tag
        self.message_id = message_id
        self.client = None

    @property
    def payload(self):
        return {"started": str(self.started), "gate": str(self.gate), "tag": self.tag}

    def envelope(self):
        extra = {} if self.message_id is None else {"id": self.message_id}
        return envelope_for(self.payload, **extra)

    def send(self, socket_path):
        self.client = connect(socket_path)
        self.client.sendall(frame(encode_envelope(self.envelope())))
        return self

    def wait_started(self):
        wait_for(self.started.exists, f"the handler to start message {self.tag}")

    def release(self):
        self.gate.touch()

    def reply(self):
        with self.client:
            return json.loads(read_reply(self.client).decode("utf-8"))
