"""The test broker and the tests' side of RabbitMQ, shared by every suite.

``Broker`` starts the project's RabbitMQ through tools/rabbitmq.sh (127.0.0.1
only, free ports, state under .tools/rabbitmq/<name>-<port>) and stops it
again, removing its state.

``AmqpQueues`` is what a test does with queues (endqueues.EndQueues): publish
an envelope to an actor the way an upstream sidecar does (the asya exchange,
routing key = queue name, persistent JSON), and wait for messages to arrive
in happy-end or error-end.
"""

import json
import os
import shutil
import signal
import subprocess
from pathlib import Path

from . import wait
from .endqueues import WAIT_TIMEOUT, EndQueues
from .ports import free_loopback_ports

REPO_ROOT = Path(__file__).resolve().parents[3]
RABBITMQ_SCRIPT = REPO_ROOT / "tools" / "rabbitmq.sh"
EXCHANGE = "asya"
QUEUE_PREFIX = "asya-"


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
        self.port = free_loopback_ports(3) if port is None else port  # AMQP, distribution, epmd
        self.name = f"{name}-{self.port}" if self.ephemeral else name
        self.state_dir = REPO_ROOT / ".tools" / "rabbitmq" / self.name
        self.started_here = False

    @property
    def url(self):
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

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
    return QUEUE_PREFIX + name


class AmqpQueues(EndQueues):
    def __init__(self, url, exchange=EXCHANGE):
        super().__init__()
        import pika
        self._pika = pika
        # No heartbeats: a test may sit between two calls for longer than one.
        parameters = pika.URLParameters(url + ("&" if "?" in url else "?") + "heartbeat=0")
        self.connection = pika.BlockingConnection(parameters)
        self.channel = self.connection.channel()
        self.channel.confirm_delivery()
        self.exchange = exchange
        self.channel.exchange_declare(exchange, exchange_type="topic", durable=True)
        self._declared = set()

    def close(self):
        if self.connection.is_open:
            self.connection.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def declare(self, name):
        queue = queue_name(name)
        if queue not in self._declared:
            self.channel.queue_declare(queue, durable=True)
            self.channel.queue_bind(queue, self.exchange, routing_key=queue)
            self._declared.add(queue)
        return queue

    def publish_raw(self, actor, body):
        queue = self.declare(actor)
        self.channel.basic_publish(self.exchange, queue, body,
                                   properties=self._pika.BasicProperties(
                                       delivery_mode=2, content_type="application/json"))

    def counts(self, name):
        """(ready, consumers) of an actor's queue, from a passive declare."""
        result = self.channel.queue_declare(queue_name(name), passive=True)
        return result.method.message_count, result.method.consumer_count

    def wait_for_consumers(self, name, count=1, timeout=WAIT_TIMEOUT):
        """Wait until `count` consumers (sidecars) consume the actor's queue.

        A runtime that listens is not a sidecar that consumes: the Go sidecar
        polls for runtime-ready every 500 ms and only then subscribes.
        """
        self.declare(name)
        self.wait_until(lambda: self.counts(name)[1] >= count,
                        f"{count} consumer(s) on {queue_name(name)}", timeout)

    def take_all(self, name):
        """Take every ready message of the queue into `collected` (acked); return the list so far."""
        queue = self.declare(name)
        kept = self.collected.setdefault(name, [])
        while True:
            method, _properties, body = self.channel.basic_get(queue, auto_ack=True)
            if method is None:
                return kept
            kept.append(json.loads(body.decode("utf-8")))

    def sleep(self, seconds):
        self.connection.sleep(seconds)  # serves the connection meanwhile
