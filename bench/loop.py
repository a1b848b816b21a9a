"""The closed loop: N workers, each starting its next operation as soon as the last one ended.

A closed loop measures what a fixed number of clients get (throughput at that concurrency, and
the latency each of them sees), which is how the figures we compare against were taken. The
workers run through a warm-up first (connections opened, caches filled, first-call costs paid);
only operations that *end* inside the measured window count, and the window's length divides
them.
"""

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from bench.stats import Record

log = logging.getLogger("bench")

Operation = Callable[[], Awaitable[None]]
#: Counters read when the measured window opens and when it closes (frames sent, CPU seconds).
Probe = Callable[[], dict[str, float]]
#: How long workers may take to finish the operation in hand once the window has closed.
STOP_GRACE_S = 15.0


@dataclass(frozen=True, slots=True)
class Measured:
    record: Record
    window_s: float
    concurrency: int
    #: How much each of the probe's counters grew over the measured window.
    counted: dict[str, float]


def kind_of(exc: BaseException) -> str:
    """How a failure is counted: its type name, unless it names its own `kind`."""
    kind = getattr(exc, "kind", None)
    return kind if isinstance(kind, str) else type(exc).__name__


async def closed_loop(
    make_operation: Callable[[int], Operation],
    *,
    concurrency: int,
    seconds: float,
    warmup_s: float,
    probe: Probe | None = None,
) -> Measured:
    """Run `concurrency` workers (worker i repeats `make_operation(i)`) for `warmup_s`, then
    measure for `seconds`. Failures are counted by kind and the loop goes on. `probe` reads
    counters (e.g. frames sent) when the window opens and when it closes."""
    records = [Record() for _ in range(concurrency)]
    began = time.perf_counter()
    opens, closes = began + warmup_s, began + warmup_s + seconds
    stop = False

    async def worker(op: Operation, record: Record) -> None:
        clock = time.perf_counter
        while not stop:
            started = clock()
            try:
                await op()
            except Exception as exc:
                ended = clock()
                if opens <= ended <= closes:
                    record.fail(kind_of(exc))
                # A failure can come without the operation ever suspending (a refused
                # connection); yield, or one failing worker would starve all the others.
                await asyncio.sleep(0)
                continue
            ended = clock()
            if opens <= ended <= closes:
                record.add(ended - started)

    tasks = [
        asyncio.create_task(worker(make_operation(i), records[i]), name=f"bench-worker-{i}")
        for i in range(concurrency)
    ]
    try:
        await asyncio.sleep(max(0.0, opens - time.perf_counter()))
        at_open = probe() if probe else {}
        log.info("warm-up done; measuring for %.1f s", seconds)
        await asyncio.sleep(max(0.0, closes - time.perf_counter()))
        at_close = probe() if probe else {}
        stop = True
        _, late = await asyncio.wait(tasks, timeout=STOP_GRACE_S)
        if late:
            log.warning("%d worker(s) still busy %.0f s after the window closed", len(late), STOP_GRACE_S)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    total = Record()
    for record in records:
        total.merge(record)
    counted = {key: value - at_open.get(key, 0.0) for key, value in at_close.items()}
    return Measured(record=total, window_s=closes - opens, concurrency=concurrency, counted=counted)
