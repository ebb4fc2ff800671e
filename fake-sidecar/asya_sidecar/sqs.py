"""The SQS transport (boto3), with the asya Go sidecar's SQS rules.

Facts from deliveryhero/asya ``src/asya-sidecar`` (internal/transport/sqs.go,
internal/config/config.go, cmd/sidecar/main.go, internal/router/router.go):

* an actor consumes the queue ``asya-<actor>``; every queue URL is found by
  name (GetQueueUrl), then cached; with ``ASYA_SQS_ENDPOINT`` set, the URL's
  scheme and host are replaced by the endpoint's;
* GetQueueUrl is tried ``ASYA_QUEUE_RETRY_MAX_ATTEMPTS`` times (10), waiting
  ``ASYA_QUEUE_RETRY_BACKOFF`` (1s) doubling between tries: about 8.5 min
  for a queue that does not exist. The sidecar never creates a queue;
* ReceiveMessage takes one message at a time, with the visibility timeout
  ``ASYA_SQS_VISIBILITY_TIMEOUT`` (0 or unset: twice ASYA_RUNTIME_TIMEOUT)
  and the long poll ``ASYA_SQS_WAIT_TIME_SECONDS`` (0 or unset: 20);
* results are sent with SendMessage (the body alone, no attributes), then
  the input is deleted (DeleteMessage). A message whose processing failed is
  made visible again at once (ChangeMessageVisibility 0); one whose sidecar
  died is not deleted and comes back when its visibility timeout ends;
* region ``ASYA_AWS_REGION`` (us-east-1); credentials from AWS's default
  chain (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, IRSA's web identity, ...).

Where this transport differs, on purpose: it long-polls at most one second
at a time, so that SIGTERM is seen within a second (the Go sidecar cancels
its 20 s poll); and when a queue still cannot be resolved after the retries,
or SQS fails mid-run, it raises SqsError and the sidecar exits 4 with the
queue's name in its log, where the Go sidecar logs and keeps retrying.
"""

import logging
import time
from urllib.parse import urlsplit, urlunsplit

from . import go, topology
from .queues import encode_message
from .transports import Delivery

DEFAULT_REGION = "us-east-1"
DEFAULT_WAIT_TIME_SECONDS = 20
DEFAULT_RETRY_ATTEMPTS = 10
DEFAULT_RETRY_BACKOFF = 1.0
LONGEST_POLL_SECONDS = 1

logging.getLogger("botocore").setLevel(logging.WARNING)


class SqsError(Exception):
    """SQS could not be reached, or a queue could not be resolved or used."""


def _seconds(environ, name, default):
    """A whole number of seconds >= 0 from `name`; 0 or unset: `default`."""
    raw = environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a whole number of seconds") from None
    if value < 0:
        raise ValueError(f"{name}={raw!r} must not be negative")
    return value or default


class SqsSettings:
    def __init__(self, endpoint, region, visibility_timeout, wait_time_seconds,
                 retry_attempts=DEFAULT_RETRY_ATTEMPTS, retry_backoff=DEFAULT_RETRY_BACKOFF):
        self.endpoint = endpoint
        self.region = region
        self.visibility_timeout = visibility_timeout
        self.wait_time_seconds = wait_time_seconds
        self.retry_attempts = retry_attempts
        self.retry_backoff = retry_backoff

    @classmethod
    def from_environ(cls, environ, call_timeout):
        """Settings from the Go sidecar's variables; ValueError names a bad one."""
        wait_time = _seconds(environ, "ASYA_SQS_WAIT_TIME_SECONDS", DEFAULT_WAIT_TIME_SECONDS)
        if wait_time > 20:
            raise ValueError(f"ASYA_SQS_WAIT_TIME_SECONDS={wait_time} is above SQS's longest poll, 20")
        attempts = _seconds(environ, "ASYA_QUEUE_RETRY_MAX_ATTEMPTS", DEFAULT_RETRY_ATTEMPTS)
        backoff = DEFAULT_RETRY_BACKOFF
        if environ.get("ASYA_QUEUE_RETRY_BACKOFF"):
            backoff = go.parse_duration(environ["ASYA_QUEUE_RETRY_BACKOFF"])
        return cls(
            endpoint=environ.get("ASYA_SQS_ENDPOINT") or "",
            region=environ.get("ASYA_AWS_REGION") or DEFAULT_REGION,
            visibility_timeout=_seconds(environ, "ASYA_SQS_VISIBILITY_TIMEOUT", int(call_timeout * 2)),
            wait_time_seconds=wait_time,
            retry_attempts=attempts,
            retry_backoff=backoff,
        )


class SqsTransport:
    # Fake mode: a message whose runtime died mid-call is made visible again
    # (ChangeMessageVisibility 0, the Go sidecar's Nack), as on RabbitMQ.
    requeues_lost_calls = True

    def __init__(self, settings, actor, stop_event, log):
        self.settings = settings
        self.actor = actor
        self.stop = stop_event
        self.log = log
        self.client = None
        self._errors = ()
        self._urls = {}

    def describe(self):
        return (f"sqs={self.settings.endpoint or 'aws'} region={self.settings.region} "
                f"queue={self.queue_name(self.actor)} visibility_timeout={self.settings.visibility_timeout}s "
                f"wait_time={self.settings.wait_time_seconds}s")

    @staticmethod
    def queue_name(actor):
        return topology.queue_name(actor)

    # -- queue URLs

    def _call(self, what, method, **parameters):
        try:
            return method(**parameters)
        except self._errors as exc:
            raise SqsError(f"{what}: {exc}") from None

    def _queue_url(self, name):
        url = self._urls.get(name)
        if url is not None:
            return url
        backoff = self.settings.retry_backoff
        for attempt in range(1, self.settings.retry_attempts + 1):
            try:
                url = self.client.get_queue_url(QueueName=name)["QueueUrl"]
                break
            except self._errors as exc:
                last = exc
            if attempt == self.settings.retry_attempts or self.stop.is_set():
                where = self.settings.endpoint or f"AWS region {self.settings.region}"
                raise SqsError(f"SQS queue {name} cannot be resolved at {where} after {attempt} attempt(s) "
                               f"({last}); the sidecar does not create queues: create {name} "
                               "(docs/protocol.md, SQS)")
            self.log.warning("queue %s: cannot resolve its URL (%s); attempt %d of %d, retrying in %gs",
                             name, last, attempt, self.settings.retry_attempts, backoff)
            self.stop.wait(backoff)
            backoff *= 2
        self._urls[name] = url = self._on_endpoint(url)
        return url

    def _on_endpoint(self, url):
        """The queue's URL on the configured endpoint's scheme and host (the
        server may name itself differently, e.g. LocalStack's own hostname)."""
        if not self.settings.endpoint:
            return url
        endpoint, queue = urlsplit(self.settings.endpoint), urlsplit(url)
        if (queue.scheme, queue.netloc) == (endpoint.scheme, endpoint.netloc):
            return url
        return urlunsplit(queue._replace(scheme=endpoint.scheme, netloc=endpoint.netloc))

    # -- the interface of transports.py

    def open(self):
        import boto3  # only SQS sidecars need it
        import botocore.config
        import botocore.exceptions
        self._errors = (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError)
        # Timeouts above the longest poll; botocore's own retries handle throttling.
        config = botocore.config.Config(connect_timeout=10, read_timeout=LONGEST_POLL_SECONDS + 30,
                                        retries={"mode": "standard"})
        self.client = boto3.session.Session().client(
            "sqs", region_name=self.settings.region, endpoint_url=self.settings.endpoint or None, config=config)
        self._queue_url(self.queue_name(self.actor))

    def receive(self, wait):
        own_url = self._queue_url(self.queue_name(self.actor))
        poll = min(self.settings.wait_time_seconds, LONGEST_POLL_SECONDS)
        deadline = time.monotonic() + wait
        while not self.stop.is_set():
            reply = self._call(f"receiving from {self.queue_name(self.actor)}", self.client.receive_message,
                               QueueUrl=own_url, MaxNumberOfMessages=1, WaitTimeSeconds=poll,
                               VisibilityTimeout=self.settings.visibility_timeout,
                               AttributeNames=["ApproximateReceiveCount"])
            messages = reply.get("Messages") or []
            if messages:
                message = messages[0]
                receives = int((message.get("Attributes") or {}).get("ApproximateReceiveCount", "1"))
                return Delivery(message["Body"].encode("utf-8"), message["MessageId"],
                                message["ReceiptHandle"], redelivered=receives > 1)
            if time.monotonic() >= deadline:
                return None
        return None

    def publish_then_ack(self, delivery, hops):
        self.publish(hops)
        self._call(f"deleting {delivery.name}", self.client.delete_message,
                   QueueUrl=self._queue_url(self.queue_name(self.actor)), ReceiptHandle=delivery.handle)

    def publish(self, hops):
        # SendMessage returns once SQS has stored the message.
        for actor, envelope in hops:
            queue = self.queue_name(actor)
            self._call(f"sending to {queue}", self.client.send_message,
                       QueueUrl=self._queue_url(queue), MessageBody=encode_message(envelope).decode("utf-8"))

    def requeue(self, delivery):
        self._call(f"returning {delivery.name}", self.client.change_message_visibility,
                   QueueUrl=self._queue_url(self.queue_name(self.actor)), ReceiptHandle=delivery.handle,
                   VisibilityTimeout=0)

    def while_busy(self, call):
        # Nothing to keep alive: the visibility timeout covers the call.
        return call()

    def close(self):
        if self.client is not None and hasattr(self.client, "close"):
            self.client.close()
