"""Child processes of a benchmark: started, awaited until ready, and stopped by their PID.

The side under test runs in its own process so that the figure includes what a real deployment
pays (the broker or the HTTP hop between two interpreters) and so that the two sides do not
share one event loop and one GIL. A child is stopped with SIGTERM, then SIGKILL, by the PID we
started; its output goes to a log file whose tail is shown if it fails to come up.
"""

import asyncio
import logging
import os
import signal
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import BinaryIO

log = logging.getLogger("bench")

STOP_TIMEOUT_S = 15.0


class ChildFailed(RuntimeError):
    """The child exited, or never said it was ready."""


@asynccontextmanager
async def child(
    name: str,
    args: list[str],
    *,
    ready: str,
    log_path: Path,
    env: Mapping[str, str] | None = None,
    timeout_s: float = 60.0,
) -> AsyncIterator[asyncio.subprocess.Process]:
    """Run `args` until the block ends; enter once a line of its stdout contains `ready`."""
    with open_log(log_path) as log_file:
        proc = await asyncio.create_subprocess_exec(
            *args,
            stdout=asyncio.subprocess.PIPE,
            stderr=log_file,
            env=dict(env) if env is not None else None,
            start_new_session=True,  # a ^C to the harness must not reach it before we stop it
        )
        log.info("started %s (pid %d)", name, proc.pid)
        assert proc.stdout is not None
        drain: asyncio.Task[None] | None = None
        try:
            await _wait_ready(proc, proc.stdout, log_file, ready, timeout_s)
            # Keep reading its stdout, or a chatty child would block on a full pipe.
            drain = asyncio.create_task(_drain(proc.stdout, log_file))
            yield proc
        finally:
            await stop(proc)
            if drain is not None:
                drain.cancel()
                await asyncio.gather(drain, return_exceptions=True)


def open_log(path: Path) -> BinaryIO:
    # A small local file, opened once before the child starts: not worth a thread hop.
    return open(path, "ab")


async def _wait_ready(
    proc: asyncio.subprocess.Process,
    stdout: asyncio.StreamReader,
    sink: BinaryIO,
    ready: str,
    timeout_s: float,
) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                line = await stdout.readline()
        except TimeoutError:
            raise ChildFailed(f"pid {proc.pid} did not print {ready!r} within {timeout_s:.0f} s") from None
        if not line:
            code = await proc.wait()
            raise ChildFailed(f"pid {proc.pid} exited with status {code} before it was ready")
        sink.write(line)
        sink.flush()  # the child writes its stderr to the same file
        if ready in line.decode(errors="replace"):
            return


async def _drain(stream: asyncio.StreamReader, sink: BinaryIO) -> None:
    while chunk := await stream.read(65536):
        sink.write(chunk)


async def stop(proc: asyncio.subprocess.Process) -> None:
    """SIGTERM, then SIGKILL after STOP_TIMEOUT_S; only ever this PID."""
    if proc.returncode is not None:
        return
    try:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            async with asyncio.timeout(STOP_TIMEOUT_S):
                await proc.wait()
        except TimeoutError:
            log.warning("pid %d ignored SIGTERM for %.0f s; killing it", proc.pid, STOP_TIMEOUT_S)
            os.kill(proc.pid, signal.SIGKILL)
            await proc.wait()
    except ProcessLookupError:
        pass
    log.info("stopped pid %d (status %s)", proc.pid, proc.returncode)


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""
