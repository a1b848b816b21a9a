"""The classic first demonstration of a cloud, for real: a VM's web page reached from outside.

Through the APIs only, as a user would: an external network (a documentation range, inside the
fabric's "outside" namespace), a tenant network with DHCP, a router with a gateway, the test
guest booted on the tenant network on this machine's libvirt host, a floating IP. From the
outside namespace an HTTP GET to the floating IP is refused while no rule lets TCP 80 in, and
returns the guest's page, naming it, once one does. Afterwards nothing of it is left in the
kernel. Skips (saying why) where libvirt or network namespaces cannot be used.
"""

import asyncio
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from actors.network_agent.converge import teardown_all
from fabric import seed
from fabric.client import Client
from fabric.compose import Cloud, why_no_libvirt, why_no_network_agent
from fabric.config import Settings
from tests.support import api_call, can_manage_rabbitmq, free_port, isolated
from tests.system.test_libvirt_driver import URI, remove_domain
from tests.system.test_test_guest import build, why_not_buildable

pytestmark = [pytest.mark.system, pytest.mark.timeout(900)]

HOST = "web-system-host"
OUTSIDE = "fabric-outside-t"


def kernel_objects() -> set[str]:
    """Namespaces and links the fabric makes, by their prefixes."""
    spaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split()
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    names = {line.split(":")[1].strip().split("@")[0] for line in links.splitlines() if ":" in line}
    return {s for s in spaces if s.startswith(("qdhcp-", "qrouter-", OUTSIDE))} | {
        n for n in names if n.startswith(("brq", "tap", "tns-", "tqr-", "tqg-", "tog-"))
    }


@pytest.fixture
async def cloud(settings: Settings, compute_dir: Path, tmp_path: Path) -> AsyncIterator[Cloud]:
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
    async with isolated(settings, "web-page", tmp_path / "state") as own:
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
            network_dir=str(tmp_path / "network"),
            capacity_report_interval_s=1.0,
        )
        try:
            async with Cloud(own) as running:
                yield running
        finally:  # whatever the test left in the kernel, by the agent's own names
            await teardown_all(own.network_path / HOST, OUTSIDE)


def diagnose(address: str, console: str) -> str:
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


async def fetch_from_outside(address: str, timeout_s: float = 3.0) -> str | None:
    """The page at http://address/ as seen from the outside namespace; None when refused or silent."""
    url = f"http://{address}/"
    fetch = (
        f"import urllib.request; print(urllib.request.urlopen({url!r}, timeout={timeout_s}).read().decode())"
    )
    proc = await asyncio.create_subprocess_exec(
        "ip", "netns", "exec", OUTSIDE, sys.executable, "-c", fetch,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    out, _ = await proc.communicate()
    return out.decode(errors="replace") if proc.returncode == 0 else None


async def test_a_vms_page_through_its_floating_ip(cloud: Cloud) -> None:
    s = cloud.settings
    async with Client.for_admin(s) as client:
        assert client.token is not None
        token = client.token.id

        async def net(method: str, path: str, body: Any = None) -> dict[str, Any]:
            status, answer, _ = await api_call(method, f"{cloud.url}/network/v2.0{path}", token, json=body)
            assert status in (200, 201, 204), answer
            return dict(answer) if isinstance(answer, dict) else {}

        await seed.seed_flavors(client)
        image = await seed.seed_test_guest(client, Path(s.test_guest_dir))
        assert image is not None
        suffix = uuid.uuid4().hex[:6]
        ext = await net(
            "POST", "/networks", {"network": {"name": f"public-{suffix}", "router:external": True}}
        )
        ext_id = ext["network"]["id"]
        await net(
            "POST",
            "/subnets",
            {"subnet": {"network_id": ext_id, "cidr": "203.0.113.0/24", "enable_dhcp": False}},
        )
        lan_id = (await net("POST", "/networks", {"network": {"name": f"lan-{suffix}"}}))["network"]["id"]
        lan_sub = {"network_id": lan_id, "cidr": "10.100.0.0/24", "dns_nameservers": []}
        sub_id = (await net("POST", "/subnets", {"subnet": lan_sub}))["subnet"]["id"]
        router_id = (await net("POST", "/routers", {"router": {"name": f"r-{suffix}"}}))["router"]["id"]
        await net("PUT", f"/routers/{router_id}/add_router_interface", {"subnet_id": sub_id})
        await net(
            "PUT", f"/routers/{router_id}", {"router": {"external_gateway_info": {"network_id": ext_id}}}
        )
        web = await net("POST", "/security-groups", {"security_group": {"name": f"web-{suffix}"}})
        web_id = web["security_group"]["id"]
        name = f"webvm-{suffix}"
        for _ in range(300):  # the host reports once its driver has probed KVM
            if any(h["hypervisor_hostname"] == HOST for h in await client.compute.hypervisors()):
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(2 * s.capacity_report_interval_s)  # and its network agent has reported
        server_id = ""
        try:
            began = time.monotonic()
            server = await client.compute.create_server(
                name,
                image=image,
                flavor="1",
                networks=[{"uuid": lan_id}],
                security_groups=[{"name": web_id}],
            )
            server_id = server.id
            await client.compute.wait(server_id, "ACTIVE", timeout_s=120)
            port = (await net("GET", f"/ports?device_id={server_id}"))["ports"][0]
            assert port["security_groups"] == [web_id]
            fip = await net(
                "POST", "/floatingips", {"floatingip": {"floating_network_id": ext_id, "port_id": port["id"]}}
            )
            address = fip["floatingip"]["floating_ip_address"]
            # The guest says READY once DHCP gave it its address.
            deadline = time.monotonic() + 120
            while f"FABRIC-GUEST-READY hostname={name}" not in await client.compute.console(server_id):
                assert time.monotonic() < deadline, await client.compute.console(server_id)
                await asyncio.sleep(0.5)
            assert await fetch_from_outside(address) is None  # no rule lets TCP 80 in yet
            rule = {"security_group_id": web_id, "direction": "ingress", "protocol": "tcp",
                    "port_range_min": 80, "port_range_max": 80, "remote_ip_prefix": "0.0.0.0/0"}  # fmt: skip
            await net("POST", "/security-group-rules", {"security_group_rule": rule})
            page = None
            while page is None and time.monotonic() < deadline:
                page = await fetch_from_outside(address)
            assert page is not None and name in page, diagnose(
                address, await client.compute.console(server_id)
            )
            print(f"\nrequest -> page through the floating IP: {time.monotonic() - began:.1f}s")

            # The agent restarts (as after a crash): it adopts what exists, duplicates nothing,
            # and the page stays up.
            before = kernel_objects()
            agent = next(sup for sup in cloud.supervisors if sup.name == "network-agent")
            first = agent.actor
            assert first is not None
            first.request_stop()
            for _ in range(100):
                if agent.actor is not first and getattr(agent.actor, "applied", -1) >= 0:
                    break
                await asyncio.sleep(0.1)
            assert agent.actor is not first, "the supervisor did not start the agent again"
            assert kernel_objects() == before
            assert name in (await fetch_from_outside(address) or ""), "the page went away with the agent"
            await net("DELETE", f"/floatingips/{fip['floatingip']['id']}")
            await client.compute.delete_server(server_id)
            await client.compute.wait(server_id, "DELETED", timeout_s=60)
            server_id = ""
            await net("PUT", f"/routers/{router_id}/remove_router_interface", {"subnet_id": sub_id})
            await net("DELETE", f"/routers/{router_id}")
            await net("DELETE", f"/networks/{lan_id}")
            await net("DELETE", f"/networks/{ext_id}")
            left = kernel_objects()
            for _ in range(60):  # the agent converges on the next change event
                if not left:
                    break
                await asyncio.sleep(0.5)
                left = kernel_objects()
            assert not left, f"left behind: {left}"
        finally:
            if server_id:
                import libvirt

                conn: Any = libvirt.open(URI)
                try:
                    remove_domain(conn, f"fabric-{server_id}")
                finally:
                    conn.close()
