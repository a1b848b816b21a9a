"""qemu-img as an asyncio subprocess: bounded in time, killed when cancelled, its stderr the
reason of the failure a user reads."""

import asyncio
import ctypes
import signal
from pathlib import Path
from typing import Any

import orjson

from actors.volume_agent.backend import BackendError

#: Header-only operations (create, info, resize) finish in milliseconds.
QUICK_TIMEOUT_S = 60.0
#: A copy (snapshot, clone) writes at most the volume's own data.
COPY_TIMEOUT_S = 3600.0

PR_SET_PDEATHSIG = 1
_LIBC = ctypes.CDLL(None, use_errno=True)


def _die_with_the_agent() -> None:
    """In the child before exec: an agent killed outright (SIGKILL runs no cleanup) takes its
    qemu-img with it, so none writes a file after the next agent's start-up cleanup."""
    _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


async def qemu_img(*args: str, timeout_s: float = QUICK_TIMEOUT_S) -> bytes:
    """Run `qemu-img ARGS`; its stdout. Raises `BackendError` naming the subcommand and carrying
    qemu-img's own message when it fails or outlives `timeout_s`."""
    try:
        proc = await asyncio.create_subprocess_exec(
            "qemu-img",
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            preexec_fn=_die_with_the_agent,
        )
    except FileNotFoundError as exc:
        raise BackendError("qemu-img is not installed on the storage host") from exc
    try:
        async with asyncio.timeout(timeout_s):
            out, err = await proc.communicate()
    except TimeoutError as exc:
        raise BackendError(f"qemu-img {args[0]} took longer than {timeout_s:.0f}s") from exc
    finally:
        # Cancelled or timed out: this qemu-img (by its PID) must not write on after we return,
        # or the caller's cleanup would remove a file it then recreates.
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    if proc.returncode != 0:
        raise BackendError(f"qemu-img {args[0]}: {err.decode(errors='replace').strip()[-400:]}")
    return out


async def info(path: Path, fmt: str, *, force_share: bool = False) -> dict[str, Any]:
    """`qemu-img info` of one file in a format given, never probed. `force_share`: read a file
    a running qemu holds locked."""
    args = ["info", "-f", fmt, "--output=json", *(["-U"] if force_share else []), str(path)]
    found: dict[str, Any] = orjson.loads(await qemu_img(*args))
    return found
