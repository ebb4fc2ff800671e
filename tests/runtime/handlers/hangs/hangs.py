"""Handlers that overrun ASYA_HANDLER_TIMEOUT in different ways."""

import asyncio
import signal
import time


def sleeps(payload):
    if payload.get("quick"):
        return {"quick": True}
    time.sleep(3600)


def spins(payload):
    while True:
        pass


def swallows_exceptions(payload):
    # `except Exception` must not be able to keep the handler alive past its deadline.
    while True:
        try:
            time.sleep(3600)
        except Exception:
            pass


def swallows_everything(payload):
    # Not even HandlerTimeout stops this one: the watchdog answers for it and the runtime exits.
    while True:
        try:
            time.sleep(3600)
        except BaseException:
            pass


def uninterruptible(payload):
    # Stands in for C code that never returns to the interpreter: with SIGALRM
    # blocked, the deadline's signal cannot reach this thread.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
    time.sleep(3600)


async def sleeps_async(payload):
    if payload.get("quick"):
        return {"quick": True}
    await asyncio.sleep(3600)


def holds_gil(payload):
    # C code that never returns and keeps the GIL: no Python thread of the
    # runtime can run, the deadline's watchdog included. PyDLL calls keep the
    # GIL; a default pthread mutex locked twice by one thread waits forever.
    import ctypes

    libc = ctypes.PyDLL(None)
    mutex = ctypes.create_string_buffer(64)  # zeroed: PTHREAD_MUTEX_INITIALIZER on glibc
    libc.pthread_mutex_lock(mutex)
    libc.pthread_mutex_lock(mutex)
