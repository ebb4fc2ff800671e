"""The test broker and the tests' side of RabbitMQ, shared by every suite.

``Broker`` starts the project's RabbitMQ through tools/rabbitmq.sh (127.0.0.1
only, free ports, state under .tools/rabbitmq/<name>-<port>) and stops it
again, removing its state.

``AmqpQueues`` is what a test does with queues: publish an envelope to an
actor the way an upstream sidecar does (the asya exchange, routing key = the
bare actor name, persistent JSON), and wait for messages to arrive in
happy-end or error-end. Every message it takes from an end queue is kept, so
waiting for one id never loses another test's message. It creates no queue:
publishing is ``mandatory``, so a message for an actor whose queue nobody
created fails the test at once instead of vanishing.

``Topology`` creates queues the way a release of the chart does: with the
chart's own script (charts/asya-actor/files/topology.py, the hook Job's) fed
by the fake sidecar's naming rule (asya_sidecar.topology). The sidecar tests
use it; the e2e scenarios leave it to the releases.
"""

import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from . import wait
from .paths import FAKE_SIDECAR_DIR, REPO_ROOT
from .ports import free_loopback_ports

if str(FAKE_SIDECAR_DIR) not in sys.path:
    sys.path.append(str(FAKE_SIDECAR_DIR))
from asya_sidecar import topology as naming  # noqa: E402  (the one naming rule)

RABBITMQ_SCRIPT = REPO_ROOT / "tools" / "rabbitmq.sh"
CHART_TOPOLOGY_SCRIPT = REPO_ROOT / "charts" / "asya-actor" / "files" / "topology.py"
EXCHANGE = naming.DEFAULT_EXCHANGE
HAPPY_END = "happy-end"
ERROR_END = "error-end"
# A bound on waits, not an expectation of speed.
WAIT_TIMEOUT = 120.0


def broker_unavailable_reason():
    """One line saying why no broker can run here, or None."""
    if not Path("/usr/lib/rabbitmq/bin/rabbitmq-server").exists():
        return "rabbitmq-server is not installed (make rabbitmq installs it)"
    try:
        import pika  # noqa: F401
    except ImportError:
        return "the pika package is missing (make venv installs requirements-dev.txt)"
    return None


class Broker:
    """One test broker: `start()` returns its URL; `stop()` stops it if start() started it.

    Without a port, each instance is a broker of its own on free loopback
    ports, with its state in .tools/rabbitmq/<name>-<port> (removed by stop):
    two test sessions at once (several people, or jobs, in one checkout)
    never share or stop each other's broker.
    """

    def __init__(self, name, port=None):
        self.ephemeral = port is None
        # AMQP, distribution, epmd, management API (tools/rabbitmq.sh's layout).
        self.port = free_loopback_ports(4) if port is None else port
        self.name = f"{name}-{self.port}" if self.ephemeral else name
        self.state_dir = REPO_ROOT / ".tools" / "rabbitmq" / self.name
        self.started_here = False

    @property
    def url(self):
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    @property
    def management_port(self):
        return self.port + 3

    @property
    def management_url(self):
        return f"http://127.0.0.1:{self.management_port}"

    @property
    def sidecar_environ(self):
        """The variables a sidecar (and the chart's topology Job) on this broker gets."""
        return {"ASYA_RABBITMQ_URL": self.url, "ASYA_RABBITMQ_MANAGEMENT_URL": self.management_url}

    def _script(self, command, check=True):
        env = dict(os.environ, ASYA_RABBITMQ_DIR=str(self.state_dir), ASYA_RABBITMQ_PORT=str(self.port))
        return subprocess.run(["bash", str(RABBITMQ_SCRIPT), command], env=env, check=check,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300)

    def start(self):
        """Start the broker (with empty queues) unless it runs; return its URL."""
        already = self._script("status", check=False).returncode == 0
        if not already:
            # Durable queues would keep the messages of an earlier, failed run.
            shutil.rmtree(str(self.state_dir / "mnesia"), ignore_errors=True)
            self._start_node()
        self.started_here = not already
        return self.url

    def _start_node(self):
        result = self._script("start", check=False)
        if result.returncode != 0:
            self._script("stop", check=False)
            raise RuntimeError(f"tools/rabbitmq.sh start failed:\n{result.stdout}")

    def kill(self):
        """SIGKILL the broker's Erlang VM, as when its node dies; its queues stay on disk for start_again()."""
        pid = int((self.state_dir / "rabbitmq.pid").read_text().strip())
        os.kill(pid, signal.SIGKILL)
        wait.wait_for(lambda: not _process_exists(pid), f"the killed broker (PID {pid}) to be gone", WAIT_TIMEOUT)

    def start_again(self):
        """Start a killed broker on the same ports, with the durable queues and messages it had."""
        self._start_node()

    def stop(self):
        if self.started_here:
            self._script("stop", check=False)
            self.started_here = False
            if self.ephemeral:
                shutil.rmtree(str(self.state_dir), ignore_errors=True)

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc_info):
        self.stop()


def _process_exists(pid):
    """True while pid runs (a zombie counts as gone: it holds no ports or files)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def queue_name(name):
    return naming.queue_name(name)


def chart_topology_script():
    """The chart's files/topology.py as a module (one definition of how queues are made)."""
    spec = importlib.util.spec_from_file_location("asya_chart_topology", str(CHART_TOPOLOGY_SCRIPT))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Topology:
    """Creates actors' queues on a test broker as the chart's hook Job does."""

    def __init__(self, broker, exchange=EXCHANGE):
        self.script = chart_topology_script()
        self.api = self.script.ManagementAPI.from_environ(broker.sidecar_environ)
        self.exchange = exchange
        self._done = set()

    def plan(self, actors):
        return self.script.make_plan(naming.bindings(actors), self.exchange)

    def provision(self, *actors):
        """Exchange, queue asya-<actor> bound with <actor>, for each actor (and end queue) not yet made."""
        todo = [actor for actor in dict.fromkeys(actors) if actor not in self._done]
        if todo:
            bindings = self.script.parse_plan(json.dumps(self.plan(todo)))
            self.script.apply(self.api, bindings, say=lambda line: None)
            self._done.update(todo)

    def missing(self, *actors):
        """What the broker lacks of these actors' topology (one sentence), or None."""
        bindings = self.script.parse_plan(json.dumps(self.plan(list(actors))))
        return self.script.missing(self.api, bindings)


class AmqpQueues:
    """Publish and collect. With a Topology, the queues of every actor a message
    is sent to (and the end queues) are created first, as a release would."""

    def __init__(self, url, exchange=EXCHANGE, topology=None):
        import pika
        self._pika = pika
        self.topology = topology
        # No heartbeats: a test may sit between two calls for longer than one.
        parameters = pika.URLParameters(url + ("&" if "?" in url else "?") + "heartbeat=0")
        self.connection = pika.BlockingConnection(parameters)
        self.channel = self.connection.channel()
        self.channel.confirm_delivery()
        self.exchange = exchange
        self.url = url
        self._existing = set()
        self.collected = {}  # queue -> messages taken from it so far

    def close(self):
        if self.connection.is_open:
            self.connection.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def provision(self, *names):
        if self.topology is not None:
            self.topology.provision(*names, HAPPY_END, ERROR_END)

    def publish_raw(self, actor, body, routing_key=None):
        """Publish as the Go sidecar does (exchange asya, the bare actor name), but mandatory:
        an unroutable message raises pika's UnroutableError here instead of being dropped."""
        self.provision(actor)
        self.channel.basic_publish(self.exchange, naming.routing_key(actor) if routing_key is None else routing_key,
                                   body, properties=self._pika.BasicProperties(
                                       delivery_mode=2, content_type="application/json"),
                                   mandatory=True)

    def send(self, actor, message_id, payload, actors=None, headers=None, current=0):
        """Publish a new message for `actor`, with route `actors` (default: just it)."""
        envelope = {"id": message_id, "route": {"actors": list(actors or [actor]), "current": current},
                    "payload": payload}
        self.provision(*envelope["route"]["actors"])
        if headers is not None:
            envelope["headers"] = headers
        self.publish_raw(actor, json.dumps(envelope).encode("utf-8"))
        return envelope

    def counts(self, name):
        """(ready, consumers) of an actor's queue, from a passive declare; None while it does not exist.

        On a channel of its own: a passive declare of a missing queue closes its channel.
        """
        channel = self.connection.channel()
        try:
            result = channel.queue_declare(queue_name(name), passive=True)
        except self._pika.exceptions.ChannelClosedByBroker as exc:
            if exc.reply_code == 404:
                return None
            raise
        channel.close()
        self._existing.add(name)
        return result.method.message_count, result.method.consumer_count

    def exists(self, name):
        return name in self._existing or self.counts(name) is not None

    def wait_for_consumers(self, name, count=1, timeout=WAIT_TIMEOUT):
        """Wait until `count` consumers (sidecars) consume the actor's queue.

        A runtime that listens is not a sidecar that consumes: the Go sidecar
        polls for runtime-ready every 500 ms and only then subscribes.
        """
        self.wait_until(lambda: (self.counts(name) or (0, 0))[1] >= count,
                        f"{count} consumer(s) on {queue_name(name)}", timeout)

    def take_all(self, name):
        """Take every ready message of the queue into `collected` (acked); return the list so far.

        A queue that does not exist yet holds nothing (the release creates it).
        """
        queue = queue_name(name)
        kept = self.collected.setdefault(name, [])
        if not self.exists(name):
            return kept
        while True:
            method, _properties, body = self.channel.basic_get(queue, auto_ack=True)
            if method is None:
                return kept
            kept.append(json.loads(body.decode("utf-8")))

    def finished(self, name, id_prefix):
        return [m for m in self.take_all(name)
                if m.get("id") == id_prefix or str(m.get("id", "")).startswith(id_prefix + "-")]

    def wait_for(self, name, id_prefix, count=1, timeout=WAIT_TIMEOUT, other=None):
        """Wait until `count` messages of `id_prefix` are in end queue `name`; sorted by id.

        Fails at once if one lands in `other` (the opposite end queue) instead.
        """
        def arrived():
            if other is not None:
                strays = self.finished(other, id_prefix)
                if strays:
                    raise AssertionError(f"{id_prefix} landed in {other} instead of {name}: {strays}")
            found = self.finished(name, id_prefix)
            return sorted(found, key=lambda m: str(m.get("id"))) if len(found) >= count else None

        return wait.wait_for(arrived, f"{count} message(s) {id_prefix} in {name}", timeout, interval=0.05,
                             sleep=self.connection.sleep)

    def happy_end(self, id_prefix, count=1, timeout=WAIT_TIMEOUT):
        return self.wait_for(HAPPY_END, id_prefix, count, timeout, other=ERROR_END)

    def error_end(self, id_prefix, count=1, timeout=WAIT_TIMEOUT):
        return self.wait_for(ERROR_END, id_prefix, count, timeout, other=HAPPY_END)

    def wait_until(self, condition, what, timeout=WAIT_TIMEOUT):
        """Poll `condition()` (keeping this connection served) until it is truthy."""
        return wait.wait_for(condition, what, timeout, interval=0.05, sleep=self.connection.sleep)
