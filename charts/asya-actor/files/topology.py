"""The broker topology an asya release needs, applied (or checked) on RabbitMQ.

The chart runs this file in a pre-install/pre-upgrade hook Job, inside the
model image, as

    <pythonExecutable> -c <this file> apply|check '<plan JSON>'

The plan, built by the chart from its actors (template "asya-actor.topologyPlan"),
is a list of bindings, each {"exchange", "queue", "routingKey"}. The asya Go
sidecar publishes to the exchange with the bare actor name as the routing key
and only declares its own queue passively, so every queue must exist, durable,
and be bound with that key before a sidecar starts:

* apply: declare each exchange (topic, durable), each queue (durable) and
  each binding, through RabbitMQ's management HTTP API. Every call is
  idempotent, so an upgrade (or a second release sharing the end queues)
  re-applies the same plan harmlessly; nothing is ever deleted;
* check: change nothing; fail with one line naming the first missing queue or
  binding and the value to set (topology.provision), for brokers whose
  topology is managed elsewhere.

The broker comes from the same variables the sidecar reads: ASYA_RABBITMQ_URL
(amqp[s]://user:password@host:port/vhost), or ASYA_RABBITMQ_HOST,
ASYA_RABBITMQ_USERNAME, ASYA_RABBITMQ_PASSWORD. The management API is
ASYA_RABBITMQ_MANAGEMENT_URL when set, else http(s)://<host>:<port> with
ASYA_RABBITMQ_MANAGEMENT_PORT (15672). Until ASYA_TOPOLOGY_WAIT_SECONDS (120)
have passed, an API that does not answer yet is tried again (the broker may be
starting in the same rollout).

The test kit imports this file to build the sidecar tests' topology, so the
chart and the tests share one definition. Standard library only, Python 3.7
syntax: it runs under the model's interpreter.
"""

import base64
import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

PREFIX = "asya topology:"
PROVISION_VALUE = "topology.provision"
DEFAULT_MANAGEMENT_PORT = 15672
DEFAULT_WAIT_SECONDS = 120.0
REQUEST_TIMEOUT = 30.0
RETRY_INTERVAL = 1.0


class TopologyError(Exception):
    """The plan cannot be applied or the broker lacks part of it; str() is the one line to print."""


class BrokerNotAnswering(TopologyError):
    pass


def broker_from_environ(environ):
    """(management base URL, vhost, username, password) from the sidecar's variables."""
    url = environ.get("ASYA_RABBITMQ_URL") or ""
    if url:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("amqp", "amqps"):
            raise TopologyError(f"ASYA_RABBITMQ_URL has the scheme {parts.scheme!r}; expected amqp or amqps")
        host = parts.hostname or "localhost"
        username = urllib.parse.unquote(parts.username or "guest")
        password = urllib.parse.unquote(parts.password or "guest")
        path = parts.path
        # As the Go AMQP client reads it: no path or "/" is the default vhost "/".
        vhost = "/" if path in ("", "/") else urllib.parse.unquote(path[1:])
        secure = parts.scheme == "amqps"
    else:
        host = environ.get("ASYA_RABBITMQ_HOST") or "localhost"
        username = environ.get("ASYA_RABBITMQ_USERNAME") or "guest"
        password = environ.get("ASYA_RABBITMQ_PASSWORD") or "guest"
        vhost = "/"
        secure = False
    management = environ.get("ASYA_RABBITMQ_MANAGEMENT_URL") or ""
    if not management:
        port = environ.get("ASYA_RABBITMQ_MANAGEMENT_PORT") or str(DEFAULT_MANAGEMENT_PORT)
        bracketed = f"[{host}]" if ":" in host else host
        management = f"{'https' if secure else 'http'}://{bracketed}:{port}"
    return management.rstrip("/"), vhost, username, password


class ManagementAPI:
    """The few calls of RabbitMQ's management HTTP API the topology needs."""

    def __init__(self, base_url, vhost, username, password, wait_seconds=DEFAULT_WAIT_SECONDS):
        self.base_url = base_url
        self.vhost = vhost
        self.wait_seconds = wait_seconds
        token = base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
        self._headers = {"Authorization": "Basic " + token, "Content-Type": "application/json"}

    @classmethod
    def from_environ(cls, environ):
        wait = float(environ.get("ASYA_TOPOLOGY_WAIT_SECONDS") or DEFAULT_WAIT_SECONDS)
        return cls(*broker_from_environ(environ), wait_seconds=wait)

    def _path(self, *parts):
        return "/api/" + "/".join(urllib.parse.quote(part, safe="") for part in parts)

    def request(self, method, path, body=None):
        """(status, decoded JSON or None); 404 is returned, other errors raise TopologyError."""
        data = None if body is None else json.dumps(body).encode("utf-8")
        deadline = time.monotonic() + self.wait_seconds
        while True:
            request = urllib.request.Request(self.base_url + path, data=data, method=method,
                                             headers=self._headers)
            try:
                with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT) as response:
                    text = response.read().decode("utf-8")
                    return response.status, (json.loads(text) if text else None)
            except urllib.error.HTTPError as exc:
                reason = exc.read().decode("utf-8", "replace").strip()
                if exc.code == 404:
                    return 404, None
                if exc.code == 401:
                    raise TopologyError(f"the management API at {self.base_url} refused the sidecar's "
                                        "credentials (401): a wrong user or password, or a user without "
                                        "the management tag") from None
                if exc.code < 500 or time.monotonic() >= deadline:
                    raise TopologyError(f"{method} {path} answered {exc.code}: {reason}") from None
            except (urllib.error.URLError, OSError) as exc:
                if time.monotonic() >= deadline:
                    raise BrokerNotAnswering(
                        f"no answer from RabbitMQ's management API at {self.base_url} within "
                        f"{self.wait_seconds:g} s ({getattr(exc, 'reason', exc)}): is the management "
                        "plugin enabled, and topology.rabbitmq.managementUrl (or managementPort) "
                        "right?") from None
            time.sleep(RETRY_INTERVAL)

    # -- reads

    def queue(self, name):
        status, body = self.request("GET", self._path("queues", self.vhost, name))
        return None if status == 404 else body

    def exchange(self, name):
        status, body = self.request("GET", self._path("exchanges", self.vhost, name))
        return None if status == 404 else body

    def routing_keys(self, exchange, queue):
        status, body = self.request("GET", self._path("bindings", self.vhost, "e", exchange, "q", queue))
        return set() if status == 404 else {binding.get("routing_key") for binding in body or []}

    # -- idempotent writes

    def declare_exchange(self, name):
        self._must("PUT", self._path("exchanges", self.vhost, name),
                   {"type": "topic", "durable": True, "auto_delete": False, "internal": False, "arguments": {}})

    def declare_queue(self, name):
        self._must("PUT", self._path("queues", self.vhost, name),
                   {"durable": True, "auto_delete": False, "arguments": {}})

    def bind(self, exchange, queue, routing_key):
        if routing_key not in self.routing_keys(exchange, queue):
            self._must("POST", self._path("bindings", self.vhost, "e", exchange, "q", queue),
                       {"routing_key": routing_key, "arguments": {}})

    def _must(self, method, path, body):
        status, _ = self.request(method, path, body)
        if status == 404:
            raise TopologyError(f"{method} {path} answered 404: does the vhost {self.vhost!r} exist?")


def parse_plan(text):
    """The plan's bindings as (exchange, queue, routing key) tuples, in order, without repeats."""
    try:
        plan = json.loads(text)
        entries = [(b["exchange"], b["queue"], b["routingKey"]) for b in plan["bindings"]]
    except (ValueError, KeyError, TypeError) as exc:
        raise TopologyError(f"the plan is not {{\"bindings\": [{{exchange, queue, routingKey}}]}}: {exc!r}") \
            from None
    unique = []
    for entry in entries:
        if not all(isinstance(part, str) and part for part in entry):
            raise TopologyError(f"the plan has an empty or non-text name in {entry!r}")
        if entry not in unique:
            unique.append(entry)
    return unique


def make_plan(bindings, exchange="asya"):
    """A plan from (queue, routing key) pairs (asya_sidecar.topology.bindings), as the chart builds it."""
    return {"bindings": [{"exchange": exchange, "queue": queue, "routingKey": key} for queue, key in bindings]}


def apply(api, bindings, say=print):
    for exchange in dict.fromkeys(exchange for exchange, _, _ in bindings):
        api.declare_exchange(exchange)
        say(f"{PREFIX} exchange {exchange}: topic, durable")
    for exchange, queue, key in bindings:
        api.declare_queue(queue)
        api.bind(exchange, queue, key)
        say(f"{PREFIX} queue {queue}: durable, bound to {exchange} with routing key {key}")


def missing(api, bindings):
    """The first part of the plan the broker lacks, as one sentence; None when all is there."""
    for exchange in dict.fromkeys(exchange for exchange, _, _ in bindings):
        if api.exchange(exchange) is None:
            return f"the exchange {exchange} does not exist on vhost {api.vhost}"
    for exchange, queue, key in bindings:
        if api.queue(queue) is None:
            return (f"the queue {queue} does not exist on vhost {api.vhost} (a sidecar would wait on it "
                    f"and never consume; messages for it would be dropped)")
        if key not in api.routing_keys(exchange, queue):
            return (f"the queue {queue} is not bound to {exchange} with routing key {key} (messages the "
                    "sidecar publishes for it would be dropped)")
    return None


def check(api, bindings, say=print):
    gap = missing(api, bindings)
    if gap is not None:
        raise TopologyError(f"{gap}. {PROVISION_VALUE} is none, so the release creates nothing: create "
                            f"the durable queues bound with the bare actor names, or set "
                            f"{PROVISION_VALUE}=job")
    say(f"{PREFIX} all {len(bindings)} queue(s) exist and are bound")


def main(argv, environ):
    if len(argv) != 2 or argv[0] not in ("apply", "check"):
        print(f"{PREFIX} FAILED: usage: topology.py apply|check '<plan JSON>'", flush=True)
        return 2
    try:
        bindings = parse_plan(argv[1])
        api = ManagementAPI.from_environ(environ)
        print(f"{PREFIX} {argv[0]} {len(bindings)} queue(s) on {api.base_url} vhost {api.vhost}", flush=True)
        (apply if argv[0] == "apply" else check)(api, bindings, say=lambda line: print(line, flush=True))
    except TopologyError as exc:
        print(f"{PREFIX} FAILED: {exc}", flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], os.environ))
