"""The two ways the agent reaches the kernel besides netlink: commands (nft, dnsmasq, sysctl run
through `ip netns exec`) as asyncio subprocesses, and pyroute2's synchronous calls in a thread.
"""

import asyncio
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

#: No command the agent runs should take long: nft loads a table in milliseconds, dnsmasq reports
#: that it started (or why not) before its parent exits.
COMMAND_TIMEOUT_S = 20.0


class PlumbingFailed(Exception):
    """A kernel object could not be made as the state asks; the message says which and why."""


async def run(*argv: str, stdin: str | None = None, namespace: str | None = None) -> str:
    """Run a command (inside `namespace` when given) and return its standard output.
    Raises PlumbingFailed with its standard error when it exits non-zero or overruns."""
    if namespace is not None:
        argv = ("ip", "netns", "exec", namespace, *argv)
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(COMMAND_TIMEOUT_S):
            out, err = await proc.communicate(stdin.encode() if stdin is not None else None)
    except BaseException:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        raise
    if proc.returncode != 0:
        raise PlumbingFailed(f"{' '.join(argv[:6])}: exit {proc.returncode}: {err.decode().strip()}")
    return out.decode()


#: A shell function: set /proc/sys/$1 to $2 if it exists and differs, and then print $1.
SET_SYSCTL = """set_sysctl() {
    k="/proc/sys/$1"
    if [ -e "$k" ] && [ "$(cat "$k")" != "$2" ]; then echo "$2" > "$k" && echo "$1"; fi
}
"""


async def ensure_sysctls(namespace: str, values: dict[str, str]) -> list[str]:
    """Set /proc/sys keys (e.g. "net/ipv4/ip_forward") inside `namespace`, in one `ip netns exec`:
    /proc/sys/net shows the namespace of the process that reads it. A key this kernel lacks is
    skipped. Returns what was changed."""
    script = SET_SYSCTL + "".join(f"set_sysctl {key} {value}\n" for key, value in values.items())
    changed = await run("sh", "-c", script, namespace=namespace)
    return [f"set {key} = {values[key]} in {namespace}" for key in changed.split()]


async def in_thread(fn: Callable[..., T], *args: object) -> T:
    """`fn(*args)` in a thread. Cancelled, this still waits for the thread (which cannot be
    stopped) before passing the cancellation on: a veth half-made when the caller gives up would
    otherwise appear after its cleanup looked, and the next converge would race with it."""
    running = asyncio.ensure_future(asyncio.to_thread(fn, *args))
    try:
        return await asyncio.shield(running)
    except asyncio.CancelledError:
        await asyncio.gather(running, return_exceptions=True)
        raise
