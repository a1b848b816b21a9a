"""Tenant networks are isolated from each other, for real, between real guests.

Two projects, each with its own user, network, router and floating IPs on one external network.
Project A boots two guests on its network, project B one on its own. Each guest's security
groups let TCP 80 in from anywhere, so whatever stops traffic between the projects is the
network, not a firewall rule. What each guest can reach is asked of the guest itself (its
/cgi-bin/probe page, reached from the outside namespace through its floating IP): the two guests
of A reach each other on their fixed addresses; neither project reaches the other's fixed
addresses; a floating IP, being public, reaches across.
"""

import asyncio
import uuid
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest

from fabric import seed
from fabric.client import Client
from fabric.compose import Cloud
from tests.system.guest_network import (
    NetworkApi,
    diagnose,
    fetch_from_outside,
    probe,
    wait_for_host,
    wait_ready,
)

pytestmark = [pytest.mark.system, pytest.mark.timeout(900)]


@dataclass
class Guest:
    name: str
    server_id: str
    fixed_ip: str = ""
    floating_ip: str = ""


async def tenant(admin: Client, cloud: Cloud, name: str) -> Client:
    """A project of its own with a member user, and that user's client (to enter)."""
    project = await admin.identity.create_project(name)
    user = await admin.identity.create_user(name, password="secret-" + name, default_project_id=project.id)
    await admin.identity.grant((await admin.identity.role("member")).id, user.id, project_id=project.id)
    auth_url = f"{cloud.settings.gateway_url}/identity/v3"
    return Client(auth_url, username=name, password="secret-" + name, project_name=name)


async def project_network(net: NetworkApi, ext_id: str, cidr: str, suffix: str) -> tuple[str, str]:
    """A network, subnet and router (gateway on `ext_id`), and a group letting TCP 80 in from
    anywhere: (network id, security group id)."""
    net_id = (await net("POST", "/networks", {"network": {"name": f"lan-{suffix}"}}))["network"]["id"]
    subnet = {"network_id": net_id, "cidr": cidr, "dns_nameservers": []}
    sub_id = (await net("POST", "/subnets", {"subnet": subnet}))["subnet"]["id"]
    router_id = (await net("POST", "/routers", {"router": {"name": f"r-{suffix}"}}))["router"]["id"]
    await net("PUT", f"/routers/{router_id}/add_router_interface", {"subnet_id": sub_id})
    gateway = {"router": {"external_gateway_info": {"network_id": ext_id}}}
    await net("PUT", f"/routers/{router_id}", gateway)
    web_id = (await net("POST", "/security-groups", {"security_group": {"name": f"web-{suffix}"}}))[
        "security_group"
    ]["id"]
    rule = {"security_group_id": web_id, "direction": "ingress", "protocol": "tcp",
            "port_range_min": 80, "port_range_max": 80, "remote_ip_prefix": "0.0.0.0/0"}  # fmt: skip
    await net("POST", "/security-group-rules", {"security_group_rule": rule})
    return net_id, web_id


async def boot(client: Client, image: str, name: str, net_id: str, web_id: str) -> Guest:
    server = await client.compute.create_server(
        name, image=image, flavor="1", networks=[{"uuid": net_id}], security_groups=[{"name": web_id}]
    )
    return Guest(name, server.id)


async def address(net: NetworkApi, ext_id: str, guest: Guest, *, floating: bool) -> None:
    """The guest's fixed address, and a floating IP for it when asked."""
    port = (await net("GET", f"/ports?device_id={guest.server_id}"))["ports"][0]
    guest.fixed_ip = port["fixed_ips"][0]["ip_address"]
    if floating:
        body = {"floatingip": {"floating_network_id": ext_id, "port_id": port["id"]}}
        guest.floating_ip = (await net("POST", "/floatingips", body))["floatingip"]["floating_ip_address"]


async def page_through(guest: Guest, timeout_s: float = 60.0) -> str:
    """The guest's own page through its floating IP, once the plumbing answers."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while loop.time() < deadline:
        page = await fetch_from_outside(guest.floating_ip)
        if page is not None:
            return page
    return ""


async def test_tenant_networks_are_isolated_and_a_network_is_shared(web_cloud: Cloud) -> None:
    cloud = web_cloud
    s = cloud.settings
    suffix = uuid.uuid4().hex[:6]
    async with Client.for_admin(s) as admin:
        assert admin.token is not None
        admin_net = NetworkApi(cloud, admin.token.id)
        await seed.seed_flavors(admin)
        image = await seed.seed_test_guest(admin, Path(s.test_guest_dir))
        assert image is not None
        public = {"network": {"name": f"public-{suffix}", "router:external": True}}
        ext_id = (await admin_net("POST", "/networks", public))["network"]["id"]
        ext_subnet = {"network_id": ext_id, "cidr": "203.0.113.0/24", "enable_dhcp": False}
        await admin_net("POST", "/subnets", {"subnet": ext_subnet})
        async with AsyncExitStack() as stack:
            alice = await stack.enter_async_context(await tenant(admin, cloud, f"alice-{suffix}"))
            bob = await stack.enter_async_context(await tenant(admin, cloud, f"bob-{suffix}"))
            assert alice.token is not None and bob.token is not None
            net_a, net_b = NetworkApi(cloud, alice.token.id), NetworkApi(cloud, bob.token.id)
            lan_a, web_a = await project_network(net_a, ext_id, "10.101.0.0/24", f"a-{suffix}")
            lan_b, web_b = await project_network(net_b, ext_id, "10.102.0.0/24", f"b-{suffix}")
            await wait_for_host(admin, s)
            a1, a2, b1 = await asyncio.gather(
                boot(alice, image, f"a1-{suffix}", lan_a, web_a),
                boot(alice, image, f"a2-{suffix}", lan_a, web_a),
                boot(bob, image, f"b1-{suffix}", lan_b, web_b),
            )
            for guest, client in ((a1, alice), (a2, alice), (b1, bob)):
                await client.compute.wait(guest.server_id, "ACTIVE", timeout_s=180)
            await address(net_a, ext_id, a1, floating=True)
            await address(net_a, ext_id, a2, floating=False)
            await address(net_b, ext_id, b1, floating=True)
            for guest, client in ((a1, alice), (a2, alice), (b1, bob)):
                await wait_ready(client, guest.server_id, guest.name, timeout_s=180)

            for guest, client in ((a1, alice), (b1, bob)):  # both probes are up and reachable
                page = await page_through(guest)
                assert guest.name in page, diagnose(await client.compute.console(guest.server_id))

            # One network: A's guests reach each other.
            reached = await probe(a1.floating_ip, a2.fixed_ip)
            assert reached.startswith("PROBE-OK ") and f"hello from {a2.name}" in reached, reached
            # Two projects' networks: neither reaches the other's fixed addresses, either way.
            assert (await probe(a1.floating_ip, b1.fixed_ip)).startswith(f"PROBE-FAILED {b1.fixed_ip}:")
            assert (await probe(b1.floating_ip, a1.fixed_ip)).startswith(f"PROBE-FAILED {a1.fixed_ip}:")
            assert (await probe(b1.floating_ip, a2.fixed_ip)).startswith(f"PROBE-FAILED {a2.fixed_ip}:")
            # A floating IP is public: B's guest reaches A's through it, across both routers.
            reached = await probe(b1.floating_ip, a1.floating_ip)
            assert reached.startswith("PROBE-OK ") and f"hello from {a1.name}" in reached, reached
