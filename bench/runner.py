"""Running a scenario's iterations: a closed loop or an open loop, bounded in time, with live
progress, every step timed exactly.

- Closed loop (`concurrency`): C workers, each starting its next iteration when the last ends.
  What a fixed number of clients get; how Rally and the figures we compare against measure.
- Open loop (`rate`): iterations start on a fixed schedule, i / rate seconds after the start,
  whether or not earlier ones have finished, as independent users arrive. Each iteration's
  latency (and its first step's) counts from when it was *meant* to start, not from when the
  generator got round to it, so a stalled cloud cannot hide its stall by slowing the load
  down (coordinated omission). In-flight iterations are capped (`max_in_flight`); one that has
  to wait for a slot waits on the clock.

A run ends after `iterations` iterations or `duration_s` seconds of starts, whichever is given,
and never later than `max_seconds`: iterations still running then are cancelled and counted as
errors ("cut off at the time bound"), so a hung cloud gives a report, not a hung harness.
"""

import asyncio
import logging
import sys
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

from bench.stats import Record
from bench.steps import STEPS, Context, Step, StepFailed

log = logging.getLogger("bench")

CUT_OFF = "cut off at the time bound"


@dataclass(frozen=True, slots=True)
class Plan:
    concurrency: int = 0  # > 0: closed loop
    rate: float = 0.0  # > 0: open loop, iterations started per second
    iterations: int = 0  # > 0: stop after this many; else after duration_s
    duration_s: float = 0.0
    max_seconds: float = 600.0
    max_in_flight: int = 1000

    @property
    def mode(self) -> str:
        return "open" if self.rate > 0 else "closed"


@dataclass
class Outcome:
    """Everything measured: whole iterations, each step, and completions per second."""

    iterations: Record = field(default_factory=Record)
    steps: dict[str, Record] = field(default_factory=dict)
    done_per_s: Counter[int] = field(default_factory=Counter)
    errors_per_s: Counter[int] = field(default_factory=Counter)
    seconds: float = 0.0
    started: int = 0
    cut_off: bool = False

    @property
    def finished(self) -> int:
        return self.iterations.ops + sum(self.iterations.errors.values())

    def timeline(self) -> list[dict[str, int]]:
        last = max([*self.done_per_s, *self.errors_per_s], default=-1)
        return [{"t": t, "done": self.done_per_s[t], "errors": self.errors_per_s[t]} for t in range(last + 1)]


class Progress:
    """One line of progress on stderr: rewritten in place on a terminal, else every 5 s."""

    def __init__(self, name: str, plan: Plan, outcome: Outcome, out: TextIO = sys.stderr) -> None:
        self.name, self.plan, self.outcome, self.out = name, plan, outcome, out
        self.tty = out.isatty()

    def line(self, elapsed: float) -> str:
        o, plan = self.outcome, self.plan
        rate = o.finished / elapsed if elapsed > 0 else 0.0
        errors = sum(o.iterations.errors.values())
        if plan.iterations:
            left = plan.iterations - o.finished
            eta = f"ETA {left / rate:.0f} s" if rate > 0 else "ETA ?"
            done = f"{o.finished}/{plan.iterations}"
        else:
            eta = f"ETA {max(0.0, plan.duration_s - elapsed):.0f} s"
            done = str(o.finished)
        return f"{self.name}: {done} done, {rate:.1f}/s, {errors} errors, {elapsed:.0f} s elapsed, {eta}"

    async def run(self, began: float) -> None:
        every = 1.0 if self.tty else 5.0
        while True:
            await asyncio.sleep(every)
            self.show(time.perf_counter() - began)

    def show(self, elapsed: float, final: bool = False) -> None:
        if self.tty:
            self.out.write("\r" + self.line(elapsed).ljust(100) + ("\n" if final else ""))
        else:
            self.out.write(self.line(elapsed) + "\n")
        self.out.flush()


async def run(
    plan: Plan,
    pick: Callable[[], Sequence[str]],
    ctx: Context,
    *,
    name: str,
    progress: bool = True,
    steps: Mapping[str, Step] = STEPS,
) -> Outcome:
    """Run iterations (each the steps `pick()` returns, looked up in `steps`) per `plan`; see
    the module's docstring."""
    outcome = Outcome()
    clock = time.perf_counter
    began = clock()
    in_flight: set[asyncio.Task[None]] = set()

    def record(step: str) -> Record:
        if step not in outcome.steps:
            outcome.steps[step] = Record()
        return outcome.steps[step]

    async def iteration(names: Sequence[str], meant_at: float) -> None:
        it: dict[str, Any] = {}
        started = meant_at
        for step in names:
            try:
                await steps[step](ctx, it)
            except StepFailed as exc:
                kind = exc.kind
            except asyncio.CancelledError:
                kind = CUT_OFF
                _failed(step, kind, clock())
                raise
            except Exception as exc:  # a bug or a broken connection: counted, the run goes on
                kind = type(exc).__name__
            else:
                record(step).add(clock() - started)
                started = clock()
                continue
            _failed(step, kind, clock())
            return
        ended = clock()
        outcome.iterations.add(ended - meant_at)
        outcome.done_per_s[int(ended - began)] += 1

    def _failed(step: str, kind: str, at: float) -> None:
        record(step).fail(kind)
        outcome.iterations.fail(kind)
        outcome.errors_per_s[int(at - began)] += 1

    def more(index: int, now: float) -> bool:
        if plan.iterations:
            return index < plan.iterations
        return now - began < plan.duration_s

    async def closed_worker() -> None:
        while more(outcome.started, clock()):
            outcome.started += 1
            await iteration(pick(), clock())

    async def open_dispatch() -> None:
        index = 0
        slots = asyncio.Semaphore(plan.max_in_flight)
        while True:
            meant_at = began + index / plan.rate
            if not more(index, meant_at):
                return
            await asyncio.sleep(max(0.0, meant_at - clock()))
            await slots.acquire()
            outcome.started += 1
            task = asyncio.create_task(iteration(pick(), meant_at))
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)
            task.add_done_callback(lambda _: slots.release())
            index += 1

    shown = Progress(name, plan, outcome)
    reporter = asyncio.create_task(shown.run(began)) if progress else None
    if plan.mode == "open":
        drivers = [asyncio.create_task(open_dispatch())]
    else:
        drivers = [asyncio.create_task(closed_worker()) for _ in range(plan.concurrency)]
    try:
        async with asyncio.timeout(plan.max_seconds):
            await asyncio.gather(*drivers)
            while in_flight:
                await asyncio.gather(*in_flight, return_exceptions=True)
    except TimeoutError:
        outcome.cut_off = True
        log.warning(
            "the run reached its time bound (%.0f s): cancelling what is still running", plan.max_seconds
        )
        for task in [*drivers, *in_flight]:
            task.cancel()
        await asyncio.gather(*drivers, *in_flight, return_exceptions=True)
    finally:
        if reporter is not None:
            reporter.cancel()
    outcome.seconds = clock() - began
    if progress:
        shown.show(outcome.seconds, final=True)
    return outcome
