"""The test SQS server and the tests' side of SQS, shared by every suite.

``SqsServer`` runs moto's server (an SQS-compatible server, `moto[server]` in
requirements-dev.txt) on a free 127.0.0.1 port, as a context manager. Each
instance is a process of its own with its state in memory: two sessions, or
two tests, never see each other's queues, and nothing is left after stop.

``SqsQueues`` is what a test does with SQS (endqueues.EndQueues): create the
queues the way docs/protocol.md tells a user to (CreateQueue of
``asya-<name>`` for every actor and end queue: the sidecar creates none),
send an envelope to an actor as an upstream sidecar does (SendMessage, the
JSON body alone), and wait for messages in happy-end or error-end.
"""

import json
import shutil
import sys
import time
import urllib.request

from . import wait
from .endqueues import EndQueues
from .paths import FAKE_SIDECAR_DIR
from .ports import free_loopback_ports
from .process import ChildProcess, short_temp_dir

if str(FAKE_SIDECAR_DIR) not in sys.path:
    sys.path.append(str(FAKE_SIDECAR_DIR))
from asya_sidecar import topology as naming  # noqa: E402  (the one naming rule)

REGION = "us-east-1"
# moto accepts any keys; the sidecar's AWS SDK needs some to sign its requests.
DUMMY_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "asya-test", "AWS_SECRET_ACCESS_KEY": "asya-test"}


def sqs_unavailable_reason():
    """One line saying why no SQS server can run here, or None."""
    try:
        import boto3  # noqa: F401
        import moto.server  # noqa: F401
    except ImportError as exc:
        return f"{exc.name} is missing (make venv installs boto3 and moto[server] from requirements-dev.txt)"
    return None


def queue_name(name):
    return naming.queue_name(name)


class SqsServer:
    """moto's server on 127.0.0.1 inside the `with`; ``endpoint`` is its URL."""

    def __init__(self, name="sqs"):
        self.name = name
        self.port = free_loopback_ports()
        self.process = None
        self.start_seconds = None

    @property
    def endpoint(self):
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self):
        self.work_dir = short_temp_dir(f"asya-{self.name}-")
        started = time.monotonic()
        self.process = ChildProcess([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                                    env={"PATH": "/usr/bin:/bin"}, log_path=self.work_dir / "moto.log",
                                    label="the SQS server (moto)").start()
        try:
            wait.wait_for(self._answers, f"the SQS server to answer on {self.endpoint}")
        except AssertionError:
            self.process.close()
            raise AssertionError(f"the SQS server did not start; its log:\n{self.process.log_text()}") from None
        self.start_seconds = time.monotonic() - started
        return self

    def __exit__(self, *exc_info):
        self.process.close()
        shutil.rmtree(str(self.work_dir), ignore_errors=True)

    def _answers(self):
        if not self.process.alive():
            raise AssertionError(f"the SQS server exited; its log:\n{self.process.log_text()}")
        try:
            with urllib.request.urlopen(f"{self.endpoint}/moto-api/", timeout=5) as response:
                return response.status == 200
        except OSError:  # not listening yet
            return False

    def sidecar_env(self):
        """What a sidecar process needs to reach this server (besides ASYA_TRANSPORT=sqs)."""
        return dict(DUMMY_CREDENTIALS, ASYA_SQS_ENDPOINT=self.endpoint, ASYA_AWS_REGION=REGION)


class SqsQueues(EndQueues):
    def __init__(self, endpoint, region=REGION):
        super().__init__()
        import boto3
        self.client = boto3.session.Session(
            aws_access_key_id=DUMMY_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=DUMMY_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        ).client("sqs", region_name=region, endpoint_url=endpoint)
        self._urls = {}

    def close(self):
        self.client.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def create(self, *names):
        """CreateQueue asya-<name> for each actor or end queue (idempotent, as on SQS)."""
        for name in names:
            self._urls[name] = self.client.create_queue(QueueName=queue_name(name))["QueueUrl"]

    def url(self, name):
        if name not in self._urls:
            self._urls[name] = self.client.get_queue_url(QueueName=queue_name(name))["QueueUrl"]
        return self._urls[name]

    def exists(self, name):
        try:
            self.url(name)
            return True
        except self.client.exceptions.QueueDoesNotExist:
            return False

    def publish_raw(self, actor, body):
        self.client.send_message(QueueUrl=self.url(actor), MessageBody=body.decode("utf-8"))

    def counts(self, name):
        """(visible, in flight) messages of an actor's queue: in flight = received, not yet deleted."""
        attributes = self.client.get_queue_attributes(
            QueueUrl=self.url(name),
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return (int(attributes["ApproximateNumberOfMessages"]),
                int(attributes["ApproximateNumberOfMessagesNotVisible"]))

    def take_all(self, name):
        """Take every visible message of the queue into `collected` (deleted); return the list so far."""
        kept = self.collected.setdefault(name, [])
        while True:
            messages = self.client.receive_message(QueueUrl=self.url(name), MaxNumberOfMessages=10,
                                                   WaitTimeSeconds=0).get("Messages") or []
            if not messages:
                return kept
            for message in messages:
                kept.append(json.loads(message["Body"]))
                self.client.delete_message(QueueUrl=self.url(name), ReceiptHandle=message["ReceiptHandle"])

    def sleep(self, seconds):
        time.sleep(seconds)
