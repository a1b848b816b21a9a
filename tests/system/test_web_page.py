"""The classic first demonstration of a cloud, for real: a VM's web page reached from outside.

Through the APIs only, as a user would: an external network (a documentation range, inside the
fabric's "outside" namespace), a tenant network with DHCP, a router with a gateway, the test
guest booted on the tenant network on this machine's libvirt host, a floating IP. From the
outside namespace an HTTP GET to the floating IP is refused while no rule lets TCP 80 in, and
returns the guest's page, naming it, once one does. With the cloud's PowerDNS, the story ends
with a name: the networks have zones as `dns_domain`s, and in the outside namespace (whose
resolver is the network agent's relay to PowerDNS) the floating IP's name resolves to it, the
address back to the name (PTR), and the page is fetched by name. Afterwards nothing of it is
left in the kernel, nor the outside namespace's resolv.conf. Skips (saying why) where libvirt or
network namespaces cannot be used; without PowerDNS, after the page by address.
"""

import asyncio
import time
import uuid
from pathlib import Path

import pytest

from actors.network_agent.dns_relay import resolv_conf_path
from fabric import seed
from fabric.client import Client
from fabric.compose import Cloud
from fabric.powerdns import why_no_powerdns
from tests.system.guest_network import (
    OUTSIDE,
    NetworkApi,
    diagnose,
    dig_from_outside,
    fetch_from_outside,
    kernel_objects,
    wait_for_host,
    wait_ready,
)

pytestmark = [pytest.mark.system, pytest.mark.timeout(900)]


async def test_a_vms_page_through_its_floating_ip(web_cloud: Cloud) -> None:
    cloud = web_cloud
    s = cloud.settings
    async with Client.for_admin(s) as client:
        assert client.token is not None
        net = NetworkApi(cloud, client.token.id)

        await seed.seed_flavors(client)
        image = await seed.seed_test_guest(client, Path(s.test_guest_dir))
        assert image is not None
        suffix = uuid.uuid4().hex[:6]
        # The zones `fabric up` makes for its demo, under names of this run's own.
        lan_zone, pub_zone = f"lan-{suffix}.fabric.test.", f"pub-{suffix}.fabric.test."
        has_names = cloud.powerdns is not None
        if has_names:
            for zone in (lan_zone, pub_zone):
                await client.dns.create_zone(zone, "hostmaster@fabric.test")
        domain = {"dns_domain": pub_zone} if has_names else {}
        ext = await net(
            "POST", "/networks", {"network": {"name": f"public-{suffix}", "router:external": True, **domain}}
        )
        ext_id = ext["network"]["id"]
        await net(
            "POST",
            "/subnets",
            {"subnet": {"network_id": ext_id, "cidr": "203.0.113.0/24", "enable_dhcp": False}},
        )
        domain = {"dns_domain": lan_zone} if has_names else {}
        lan = await net("POST", "/networks", {"network": {"name": f"lan-{suffix}", **domain}})
        lan_id = lan["network"]["id"]
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
        await wait_for_host(client, s)
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
        await wait_ready(client, server_id, name)
        assert await fetch_from_outside(address) is None  # no rule lets TCP 80 in yet
        rule = {"security_group_id": web_id, "direction": "ingress", "protocol": "tcp",
                "port_range_min": 80, "port_range_max": 80, "remote_ip_prefix": "0.0.0.0/0"}  # fmt: skip
        await net("POST", "/security-group-rules", {"security_group_rule": rule})
        page = None
        deadline = time.monotonic() + 60
        while page is None and time.monotonic() < deadline:
            page = await fetch_from_outside(address)
        assert page is not None and name in page, diagnose(await client.compute.console(server_id))
        print(f"\nrequest -> page through the floating IP: {time.monotonic() - began:.1f}s")
        fqdn = f"{name}.{pub_zone}"
        if has_names:
            # Names follow events: they answer soon after the floating IP's call, not within it.
            assert await dig_from_outside(fqdn, until=address) == address
            assert await dig_from_outside("-x", address, until=fqdn) == fqdn
            fixed = port["fixed_ips"][0]["ip_address"]
            assert await dig_from_outside(f"{name}.{lan_zone}", until=fixed) == fixed
            by_name = await fetch_from_outside(fqdn.rstrip("."))
            assert by_name is not None and name in by_name, "the page did not answer by its name"

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
        if has_names:  # the new agent relays names again, from a socket of its own
            assert name in (await fetch_from_outside(fqdn.rstrip(".")) or ""), "the name went away"
        await net("DELETE", f"/floatingips/{fip['floatingip']['id']}")
        await client.compute.delete_server(server_id)
        await client.compute.wait(server_id, "DELETED", timeout_s=60)
        await net("PUT", f"/routers/{router_id}/remove_router_interface", {"subnet_id": sub_id})
        await net("DELETE", f"/routers/{router_id}")
        await net("DELETE", f"/networks/{lan_id}")
        await net("DELETE", f"/networks/{ext_id}")

        def leftovers() -> set[str]:
            """What is still there; with the outside namespace gone, its resolv.conf and the
            agent's relay go too."""
            relay = getattr(agent.actor, "relay", None)
            relaying = {"dns relay"} if relay is not None and relay.is_serving else set()
            conf = {str(resolv_conf_path(OUTSIDE))} if resolv_conf_path(OUTSIDE).exists() else set()
            return kernel_objects() | relaying | conf

        left = leftovers()
        for _ in range(60):  # the agent converges on the next change event
            if not left:
                break
            await asyncio.sleep(0.5)
            left = leftovers()
        assert not left, f"left behind: {left}"
        if not has_names:
            pytest.skip(f"the page answered by address; no names: {why_no_powerdns(s) or 'no PowerDNS'}")
