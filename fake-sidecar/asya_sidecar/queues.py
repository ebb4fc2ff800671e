"""A message queue made of directories, for sidecars that share a volume.

Layout under the queue root (``ASYA_QUEUE_DIR``)::

    <root>/<queue>/                       one directory per queue
        <ns:020d>-<seq:010d>-<rand>.json  a ready message (the envelope's JSON)
        tmp/                              files being written; never read
        processing/<consumer-id>/         messages claimed by one live consumer

Every state change is one ``rename`` inside one queue directory, so it is
atomic on any local filesystem, including a hostPath volume shared by several
pods (podman) or by the pods of one kind node:

* enqueue: write ``tmp/<name>.<rand>.tmp``, fsync it, rename it to
  ``<queue>/<name>.json``, fsync the queue directory. A reader never sees a
  half-written message.
* claim: rename ``<queue>/<name>.json`` into ``processing/<consumer-id>/``.
  Only one rename of a given file can succeed, so two consumers never get the
  same message; the loser sees ``FileNotFoundError`` and tries the next one.
* ack: unlink the claimed file, called only after every outgoing message has
  been enqueued (and so fsynced).
* release: rename the claimed file back into the queue under its own name,
  so it keeps its place in the order.

Names sort by time (nanoseconds, forced to increase within one process) and
then by a per-process sequence number and a random suffix, so one producer's
messages are consumed in the order it wrote them (FIFO-ish across producers).

Crash recovery. A consumer holds ``flock`` on its own processing directory
for as long as it lives; the kernel drops that lock when the process dies,
however it dies. ``Consumer.recover_orphans`` takes the lock of every other
processing directory it can (``LOCK_NB``): one it can lock belongs to a dead
consumer, so its messages go back to the queue. A consumer directory is
created and locked under ``tmp/`` and only then renamed into ``processing/``,
so no one can observe a live consumer's directory unlocked.

Delivery guarantee: at least once. In the normal path, a graceful stop
included, every message is acked exactly once after its outputs are durable,
so nothing is dropped or duplicated. The one duplicate window is a crash
(SIGKILL, OOM kill, power loss) after the outputs were written and before the
ack: the recovered message is processed again and its outputs are written a
second time. Nothing is ever lost: a message is always either in its queue,
in a processing directory, or acked after its successors exist.

Directories are created mode 0777 (files 0644) because the sidecars and a
test harness may run under different UIDs on the same volume; this transport
serves tests and demos, not hosts shared with untrusted users. ``flock`` must
work on the volume (any local filesystem; not some network filesystems).

Standard library only; Python 3.7+.
"""

import errno
import fcntl
import json
import os
import re
import secrets
import socket
import threading
import time

MESSAGE_SUFFIX = ".json"
TMP_DIR = "tmp"
PROCESSING_DIR = "processing"
DIR_MODE = 0o777
FILE_MODE = 0o644

# Queue names become directory names: no separators, no dot-only names, and
# nothing that could be confused with the layout's own entries.
_QUEUE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,200}$")


class QueueError(Exception):
    """A queue name or queue operation that cannot work."""


def check_queue_name(name):
    """Return ``name`` if it can be a queue directory, else raise QueueError."""
    if not isinstance(name, str) or not _QUEUE_NAME.match(name):
        raise QueueError(
            f"invalid queue name {name!r}: use letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return name


def _fsync_dir(path):
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _make_dir(path):
    """Create ``path`` (and parents) writable by every UID sharing the volume."""
    if os.path.isdir(path):
        return
    parent = os.path.dirname(path)
    if parent and parent != path:
        _make_dir(parent)
    try:
        os.mkdir(path)
    except FileExistsError:
        return
    # mkdir's mode is cut by the umask; chmod is not.
    os.chmod(path, DIR_MODE)


class _NameClock:
    """Message names that sort in the order one process created them."""

    def __init__(self):
        self._lock = threading.Lock()
        self._last_ns = 0
        self._seq = 0

    def next_name(self):
        with self._lock:
            now = max(time.time_ns(), self._last_ns + 1)
            self._last_ns = now
            self._seq += 1
            seq = self._seq
        return f"{now:020d}-{seq:010d}-{secrets.token_hex(6)}{MESSAGE_SUFFIX}"


_NAMES = _NameClock()


def encode_message(message):
    """Bytes stored in a message file: compact UTF-8 JSON of ``message``."""
    if isinstance(message, (bytes, bytearray)):
        return bytes(message)
    return json.dumps(message, ensure_ascii=False, allow_nan=False,
                      separators=(",", ":")).encode("utf-8")


def default_consumer_id():
    """Unique among live and past consumers: host (pod) name, pid, random."""
    host = re.sub(r"[^A-Za-z0-9._-]", "_", socket.gethostname()) or "host"
    return f"{host}-{os.getpid()}-{secrets.token_hex(4)}"


class QueueStore:
    """The directory of queues; cheap to create, safe to share between threads."""

    def __init__(self, root):
        self.root = os.path.abspath(root)

    def queue_path(self, queue):
        return os.path.join(self.root, check_queue_name(queue))

    def ensure(self, queue):
        """Create the queue's directories if missing; return the queue path."""
        path = self.queue_path(queue)
        _make_dir(os.path.join(path, TMP_DIR))
        _make_dir(os.path.join(path, PROCESSING_DIR))
        return path

    def _write_tmp(self, queue, body):
        """Write ``body`` durably under the queue's tmp/; return (tmp, final)."""
        queue_path = self.ensure(queue)
        name = _NAMES.next_name()
        tmp_path = os.path.join(queue_path, TMP_DIR,
                                f"{name}.{secrets.token_hex(4)}.tmp")
        fd = os.open(tmp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
        try:
            view = memoryview(body)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            _unlink_quietly(tmp_path)
            raise
        os.close(fd)
        return tmp_path, os.path.join(queue_path, name)

    def enqueue(self, queue, message):
        """Durably add one message (a JSON-able value or bytes); return its name."""
        return self.enqueue_many([(queue, message)])[0]

    def enqueue_many(self, items):
        """Durably add several ``(queue, message)`` pairs; return their names.

        Every file is written and fsynced before any becomes visible, so a
        failure while writing (disk full, bad JSON) publishes none of them.
        """
        staged = []
        try:
            for queue, message in items:
                staged.append(self._write_tmp(queue, encode_message(message)))
        except BaseException:
            for tmp_path, _ in staged:
                _unlink_quietly(tmp_path)
            raise
        touched_dirs = []
        for tmp_path, final_path in staged:
            os.rename(tmp_path, final_path)
            queue_dir = os.path.dirname(final_path)
            if queue_dir not in touched_dirs:
                touched_dirs.append(queue_dir)
        for queue_dir in touched_dirs:
            _fsync_dir(queue_dir)
        return [os.path.basename(final) for _, final in staged]

    def pending(self, queue):
        """Names of the ready (unclaimed) messages of ``queue``, oldest first."""
        try:
            names = os.listdir(self.queue_path(queue))
        except FileNotFoundError:
            return []
        return sorted(n for n in names if n.endswith(MESSAGE_SUFFIX))

    def in_flight(self, queue):
        """Names of the claimed, not yet acked messages of ``queue``."""
        processing = os.path.join(self.queue_path(queue), PROCESSING_DIR)
        found = []
        try:
            consumers = os.listdir(processing)
        except FileNotFoundError:
            return []
        for consumer in consumers:
            try:
                names = os.listdir(os.path.join(processing, consumer))
            except (FileNotFoundError, NotADirectoryError):
                continue
            found.extend(n for n in names if n.endswith(MESSAGE_SUFFIX))
        return sorted(found)

    def read(self, queue, name):
        """Decoded JSON of one ready message (for inspection; does not claim)."""
        with open(os.path.join(self.queue_path(queue), name), "rb") as handle:
            return json.loads(handle.read().decode("utf-8"))

    def read_all(self, queue):
        """Every ready message of ``queue`` decoded, oldest first (no claiming)."""
        messages = []
        for name in self.pending(queue):
            try:
                messages.append(self.read(queue, name))
            except FileNotFoundError:
                continue  # claimed meanwhile
        return messages

    def consumer(self, queue, consumer_id=None):
        return Consumer(self, queue, consumer_id or default_consumer_id())


def _unlink_quietly(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


class Claim:
    """A message taken out of the queue by one consumer."""

    __slots__ = ("name", "path", "body")

    def __init__(self, name, path, body):
        self.name = name
        self.path = path
        self.body = body

    @property
    def stem(self):
        return self.name[: -len(MESSAGE_SUFFIX)]


class Consumer:
    """Claims messages of one queue; holds a lock that marks it alive."""

    def __init__(self, store, queue, consumer_id):
        self.store = store
        self.queue = queue
        self.consumer_id = check_queue_name(consumer_id)
        self.queue_path = store.ensure(queue)
        self._processing_root = os.path.join(self.queue_path, PROCESSING_DIR)
        self.path = os.path.join(self._processing_root, self.consumer_id)
        self._lock_fd = self._register()

    def _register(self):
        # Born locked under tmp/, then renamed into processing/: a recoverer
        # can never see this directory without its lock.
        staging = os.path.join(self.queue_path, TMP_DIR, self.consumer_id + ".consumer")
        os.mkdir(staging)
        os.chmod(staging, DIR_MODE)
        fd = os.open(staging, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.rename(staging, self.path)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def claim(self):
        """Take the oldest ready message, or return None when there is none."""
        for name in self.store.pending(self.queue):
            source = os.path.join(self.queue_path, name)
            target = os.path.join(self.path, name)
            try:
                os.rename(source, target)
            except FileNotFoundError:
                continue  # another consumer won this one
            with open(target, "rb") as handle:
                body = handle.read()
            return Claim(name, target, body)
        return None

    def ack(self, claim):
        """Forget a claimed message for good; call after its outputs exist."""
        os.unlink(claim.path)
        _fsync_dir(self.path)

    def release(self, claim):
        """Put a claimed message back at its place in the queue."""
        os.rename(claim.path, os.path.join(self.queue_path, claim.name))
        _fsync_dir(self.queue_path)

    def held(self):
        """Names of the messages this consumer has claimed and not acked."""
        return sorted(n for n in os.listdir(self.path) if n.endswith(MESSAGE_SUFFIX))

    def recover_orphans(self):
        """Return dead consumers' messages to the queue; return how many."""
        recovered = 0
        try:
            others = os.listdir(self._processing_root)
        except FileNotFoundError:
            return 0
        for other in others:
            if other == self.consumer_id:
                continue
            recovered += _recover_dir(os.path.join(self._processing_root, other),
                                      self.queue_path)
        return recovered

    def close(self):
        """Stop being a consumer. Messages still held go back to the queue."""
        if self._lock_fd is None:
            return
        for name in self.held():
            os.rename(os.path.join(self.path, name),
                      os.path.join(self.queue_path, name))
        try:
            os.rmdir(self.path)
        except OSError:
            pass  # a recoverer would find it empty and remove it
        os.close(self._lock_fd)
        self._lock_fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()


def _recover_dir(consumer_dir, queue_path):
    try:
        fd = os.open(consumer_dir, os.O_RDONLY | os.O_DIRECTORY)
    except (FileNotFoundError, NotADirectoryError):
        return 0
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                return 0  # its owner is alive
            raise
        moved = 0
        try:
            names = os.listdir(consumer_dir)
        except FileNotFoundError:
            return 0  # another recoverer finished it
        for name in names:
            if not name.endswith(MESSAGE_SUFFIX):
                continue
            try:
                os.rename(os.path.join(consumer_dir, name),
                          os.path.join(queue_path, name))
            except FileNotFoundError:
                continue
            moved += 1
        if moved:
            _fsync_dir(queue_path)
        try:
            os.rmdir(consumer_dir)
        except OSError:
            pass
        return moved
    finally:
        os.close(fd)
