"""Async, generator and async-generator handlers."""

import asyncio

_loops_seen = []


async def process(payload):
    await asyncio.sleep(0)
    loop = asyncio.get_event_loop()
    if loop not in _loops_seen:
        _loops_seen.append(loop)
    return {"doubled": payload["n"] * 2, "loops_seen": len(_loops_seen)}


async def fails(payload):
    await asyncio.sleep(0)
    raise ValueError("async handler failed: " + str(payload["n"]))


def split(payload):
    for word in payload["text"].split():
        yield {"word": word}


def split_then_fail(payload):
    yield {"word": "first"}
    raise RuntimeError("failed after the first item")


async def stream(payload):
    for index in range(payload["n"]):
        await asyncio.sleep(0)
        yield {"index": index}


async def stream_then_fail(payload):
    yield {"index": 0}
    raise RuntimeError("async stream failed after the first item")


def returns_coroutine(payload):
    # A plain function handing back a coroutine, e.g. a decorated async function.
    return process(payload)


def envelope_stream(envelope):
    for index in range(2):
        yield {"payload": {"part": index}}
