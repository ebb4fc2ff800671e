"""Waiting for an event. Every bound here stops a hung test; none is an expectation of speed."""

import socket
import time

HANG_GUARD_SECONDS = 60.0
POLL_INTERVAL_SECONDS = 0.002


def wait_for(condition, what, timeout=HANG_GUARD_SECONDS, interval=POLL_INTERVAL_SECONDS, sleep=time.sleep):
    """Poll condition() until it is truthy and return its value; fail naming `what`.

    sleep(interval) runs between looks; a client that must keep serving its
    connection while it waits (pika's connection.sleep) passes its own.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {timeout:g}s waiting for {what}")
        sleep(interval)


def wait_until_accepting(socket_path, process, timeout=HANG_GUARD_SECONDS, interval=0.0002):
    """Poll until a connection to socket_path succeeds; return the time.perf_counter() it did.

    Connecting, not seeing the file, is the test: a plain bind() makes the path
    appear before listen() lets anyone in. The short interval keeps the moment
    precise enough for a start-up figure.
    """
    deadline = time.perf_counter() + timeout
    while True:
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(str(socket_path))
            return time.perf_counter()
        except OSError:
            pass
        finally:
            probe.close()
        if process.poll() is not None:
            raise AssertionError(f"server exited with code {process.returncode} before accepting")
        if time.perf_counter() > deadline:
            raise AssertionError(f"server did not accept on {socket_path} within {timeout:g} s")
        time.sleep(interval)
