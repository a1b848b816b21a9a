"""Blocking calls run in a thread whose work a cancellation cannot cut in half.

`asyncio.to_thread` cancelled returns at once while its thread runs on: a file may be created, a
libvirt domain defined, after the caller's cleanup has already looked for it and found nothing,
and so it leaks. `finish_in_thread` waits for the thread before the cancellation goes on, so
cleanup in `finally` or `except BaseException` always sees everything the call did.
"""

import asyncio
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


async def finish_in_thread(fn: Callable[..., T], *args: object) -> T:
    """`fn(*args)` in a thread. Cancelled, this still waits for the thread to finish (a thread
    cannot be stopped) before passing the cancellation on, so that the caller's cleanup finds
    everything the call did: the file it created, the domain it defined."""
    running = asyncio.ensure_future(asyncio.to_thread(fn, *args))
    try:
        return await asyncio.shield(running)
    except asyncio.CancelledError:
        await asyncio.gather(running, return_exceptions=True)
        raise
