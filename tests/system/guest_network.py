"""What the system tests of guests on real networks share: a cloud with a libvirt host and the
network agent, the Network API as a user calls it, and looks into the kernel and the outside
namespace. Skips (saying why) where libvirt or network namespaces cannot be used.
"""

import asyncio
import shutil
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from actors.network_agent.converge import teardown_all
from fabric.client import Client
from fabric.compose import Cloud, why_no_libvirt, why_no_network_agent
from fabric.config import Settings
from tests.support import api_call, can_manage_rabbitmq, free_port, isolated
from tests.system.test_libvirt_driver import URI, remove_domain
from tests.system.test_test_guest import build, why_not_buildable

HOST = "web-system-host"
OUTSIDE = "fabric-outside-t"


@asynccontextmanager
async def networked_cloud(settings: Settings, compute_dir: Path, state: Path) -> AsyncIterator[Cloud]:
    """An all-in-one cloud whose one host boots the test guest through libvirt, with the network
    agent and the outside namespace OUTSIDE. Afterwards nothing of it stays in the kernel or in
    libvirt, whatever the test did: plumbing goes by the agent's own names, and domains by
    their disks, which live under this test's own `compute_dir`."""
    why = (
        why_not_buildable()
        or can_manage_rabbitmq()
        or why_no_network_agent()
        or why_no_libvirt(replace(settings, compute_driver="libvirt", libvirt_uri=URI))
    )
    if why:
        pytest.skip(why)
    done, _ = build()
    guest_dir = Path(done.stdout.decode().split()[0]).parent
    async with isolated(settings, "web-page", state / "state") as own:
        own = replace(
            own,
            gateway_port=free_port(),
            compute_driver="libvirt",
            compute_host=HOST,
            compute_dir=str(compute_dir),
            libvirt_uri=URI,
            fake_hosts=0,
            test_guest_dir=str(guest_dir),
            image_quota_bytes=2**30,
            outside_namespace=OUTSIDE,
            network_agent=True,
            network_dir=str(state / "network"),
            capacity_report_interval_s=1.0,
        )
        try:
            async with Cloud(own) as running:
                yield running
        finally:
            remove_domains_under(compute_dir)
            await teardown_all(own.network_path / HOST, OUTSIDE)


def remove_domains_under(compute_dir: Path) -> None:
    import libvirt

    conn: Any = libvirt.open(URI)
    try:
        for dom in conn.listAllDomains():
            if str(compute_dir) in dom.XMLDesc(0):
                remove_domain(conn, dom.name())
    finally:
        conn.close()


class NetworkApi:
    """The Network v2.0 API with one user's token; any answer but a success fails the test."""

    def __init__(self, cloud: Cloud, token: str) -> None:
        self.url = f"{cloud.url}/network/v2.0"
        self.token = token

    async def __call__(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        status, answer, _ = await api_call(method, f"{self.url}{path}", self.token, json=body)
        assert status in (200, 201, 204), (method, path, answer)
        return dict(answer) if isinstance(answer, dict) else {}


async def wait_for_host(client: Client, settings: Settings) -> None:
    """Until the host has reported (once its driver has probed KVM) and its agent with it."""
    for _ in range(300):
        if any(h["hypervisor_hostname"] == HOST for h in await client.compute.hypervisors()):
            break
        await asyncio.sleep(0.1)
    await asyncio.sleep(2 * settings.capacity_report_interval_s)


async def wait_ready(client: Client, server_id: str, name: str, timeout_s: float = 120.0) -> None:
    """Until the guest says READY on its console: DHCP gave it its address."""
    deadline = time.monotonic() + timeout_s
    while f"FABRIC-GUEST-READY hostname={name}" not in await client.compute.console(server_id):
        assert time.monotonic() < deadline, await client.compute.console(server_id)
        await asyncio.sleep(0.5)


def kernel_objects() -> set[str]:
    """Namespaces and links the fabric makes, by their prefixes."""
    spaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split()
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    names = {line.split(":")[1].strip().split("@")[0] for line in links.splitlines() if ":" in line}
    return {s for s in spaces if s.startswith(("qdhcp-", "qrouter-", OUTSIDE))} | {
        n for n in names if n.startswith(("brq", "tap", "tns-", "tqr-", "tqg-", "tog-"))
    }


def diagnose(console: str) -> str:
    """What the kernel holds, for a failure's message."""

    def run(*args: str) -> str:
        done = subprocess.run(args, capture_output=True, text=True, timeout=20)
        return f"$ {' '.join(args)}\n{done.stdout}{done.stderr}"

    spaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split()
    parts = [run("ip", "netns", "list"), run("ip", "-br", "link"), run("nft", "list", "ruleset")]
    for space in spaces:
        if space.startswith(("qrouter-", "qdhcp-", OUTSIDE)):
            parts += [run("ip", "-n", space, "-br", "addr"), run("ip", "-n", space, "route")]
            parts.append(run("ip", "netns", "exec", space, "nft", "list", "ruleset"))

    return "\n".join(parts) + "\nconsole:\n" + console[-2000:]


async def fetch_from_outside(address: str, path: str = "/", timeout_s: float = 3.0) -> str | None:
    """http://address/path as seen from the outside namespace; None when refused or silent."""
    url = f"http://{address}{path}"
    fetch = (
        f"import urllib.request; print(urllib.request.urlopen({url!r}, timeout={timeout_s}).read().decode())"
    )
    proc = await asyncio.create_subprocess_exec(
        "ip", "netns", "exec", OUTSIDE, sys.executable, "-c", fetch,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    out, _ = await proc.communicate()
    return out.decode(errors="replace") if proc.returncode == 0 else None


async def dig_from_outside(*question: str, until: str, timeout_s: float = 10.0) -> str:
    """What `dig +short QUESTION` answers in the outside namespace, whose resolver is the network
    agent's relay to the cloud's PowerDNS; asked again until it is `until` or `timeout_s` passed
    (names follow events)."""
    assert shutil.which("dig"), "dig is not installed (scripts/setup.sh installs bind9-dnsutils)"
    deadline = time.monotonic() + timeout_s
    while True:
        proc = await asyncio.create_subprocess_exec(
            "ip", "netns", "exec", OUTSIDE, "dig", "+short", "+tries=1", "+time=1", *question,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        out, _ = await proc.communicate()
        got = out.decode(errors="replace").strip()
        if got == until or time.monotonic() > deadline:
            return got
        await asyncio.sleep(0.2)


async def probe(via: str, target: str) -> str:
    """What the guest behind the floating IP `via` gets from http://target/ itself (its
    /cgi-bin/probe page): `PROBE-OK <page>` or `PROBE-FAILED <target>: <why>`."""
    answer = await fetch_from_outside(via, f"/cgi-bin/probe?{target}", timeout_s=10.0)
    assert answer is not None, f"the guest behind {via} did not answer its probe page"
    return answer
