"""What `fabric up` puts in a new cloud so that it can boot a server at once: the usual public
flavors and, when it has been built (scripts/build-test-guest.sh), the test guest as the public
image `test-guest`. Idempotent: what exists already is left as it is.

The test guest boots the way Glance describes direct kernel boot: the image `test-guest` is a
small empty qcow2 root disk whose `kernel_id` and `ramdisk_id` properties name two more images
(`test-guest-kernel`, disk format aki; `test-guest-ramdisk`, ari) and whose `os_command_line`
is the kernel's command line; the compute service adds `fabric.hostname=<server name>`.
"""

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import dns.exception

from fabric.client import Client
from fabric.powerdns import resolve

#: Nova's classic flavors and ids: (id, name, vCPUs, RAM MiB, disk GiB).
FLAVORS = (
    ("1", "m1.tiny", 1, 512, 1),
    ("2", "m1.small", 1, 2048, 20),
    ("3", "m1.medium", 2, 4096, 40),
    ("4", "m1.large", 4, 8192, 80),
)
TEST_GUEST_FILES = ("vmlinuz", "initrd.img", "root.qcow2")
CHUNK = 1024 * 1024


def default_test_guest_dir() -> Path:
    """Where scripts/build-test-guest.sh leaves its build in this checkout."""
    return Path(__file__).resolve().parent.parent / ".cache" / "test-guest"


async def file_chunks(path: Path) -> AsyncIterator[bytes]:
    with path.open("rb") as f:
        while chunk := await asyncio.to_thread(f.read, CHUNK):
            yield chunk


async def seed_flavors(client: Client) -> list[str]:
    have = {f["name"] for f in await client.compute.list_flavors()}
    made = []
    for flavor_id, name, vcpus, ram, disk in FLAVORS:
        if name not in have:
            await client.compute.create_flavor(name, vcpus=vcpus, ram=ram, disk=disk, flavor_id=flavor_id)
            made.append(name)
    return made


async def _image(client: Client, name: str, path: Path, **fields: Any) -> str:
    """The id of the active public image `name`, uploading `path` as it when there is none."""
    for image in await client.image.find(name):
        if image["status"] == "active":
            return str(image["id"])
        await client.image.delete(image["id"])  # a half-made one from an interrupted seed
    image = await client.image.create(name, visibility="public", **fields)
    await client.image.upload(image["id"], file_chunks(path))
    return str(image["id"])


async def seed_test_guest(client: Client, directory: Path) -> str | None:
    """The test guest's image id; None when it has not been built."""
    if not all((directory / name).is_file() for name in TEST_GUEST_FILES):
        return None
    kernel = await _image(
        client, "test-guest-kernel", directory / "vmlinuz", disk_format="aki", container_format="aki"
    )
    ramdisk = await _image(
        client, "test-guest-ramdisk", directory / "initrd.img", disk_format="ari", container_format="ari"
    )
    return await _image(
        client,
        "test-guest",
        directory / "root.qcow2",
        disk_format="qcow2",
        container_format="bare",
        kernel_id=kernel,
        ramdisk_id=ramdisk,
        os_command_line="console=ttyS0",
    )


# --- the demo: a VM's web page through a floating IP -------------------------------------------

DEMO_EXTERNAL_CIDR = "203.0.113.0/24"  # a documentation range, only ever inside namespaces
DEMO_TENANT_CIDR = "10.0.0.0/24"
#: Past the host's first report, time for its network agent's (reports come every few seconds).
DEMO_SETTLE_S = 3.0
#: The demo's zones (the admin project's), as the networks' `dns_domain`s: the VM is
#: `demo-vm.demo.fabric.test.` on its network and `demo-vm.public.fabric.test.` at its floating IP.
DEMO_ZONE = "demo.fabric.test."
PUBLIC_ZONE = "public.fabric.test."
DEMO_ZONE_EMAIL = "hostmaster@fabric.test"
#: Names follow events (the DNS service hears of the floating IP after its API call returns).
DEMO_NAME_TIMEOUT_S = 30.0


async def _one(client: Client, path: str, key: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
    """The network resource named `name` (of the caller's project), made with `body` when there
    is none. `path` is the collection's URL path; its list key is `key` + "s"."""
    assert client.token is not None
    url = f"{client.endpoint('network')}/v2.0/{path}"
    _, _, found = await client.request("GET", f"{url}?name={name}&project_id={client.token.project_id}")
    if found[f"{key}s"]:
        return dict(found[f"{key}s"][0])
    _, _, made = await client.request("POST", url, {key: {"name": name, **body}}, expect=(201,))
    return dict(made[key])


async def _wait_for_host(client: Client, host: str, timeout_s: float = 120.0) -> None:
    """Until `host` reports (its driver probes KVM first) and has had time to say its network
    agent is alive too."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not any(
        h["hypervisor_hostname"] == host and h["state"] == "up" for h in await client.compute.hypervisors()
    ):
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"compute host {host} did not report within {timeout_s:.0f} s")
        await asyncio.sleep(0.5)
    await asyncio.sleep(DEMO_SETTLE_S)


async def _zone(client: Client, name: str) -> None:
    """The caller's zone `name`, made when it has none."""
    if not await client.dns.zones(name=name):
        await client.dns.create_zone(name, DEMO_ZONE_EMAIL)


async def _dns_domain(client: Client, network: dict[str, Any], domain: str) -> None:
    if network.get("dns_domain") != domain:
        url = f"{client.endpoint('network')}/v2.0/networks/{network['id']}"
        await client.request("PUT", url, {"network": {"dns_domain": domain}})


async def _answers(nameserver: tuple[str, int], name: str, address: str, timeout_s: float) -> bool:
    """Whether the nameserver answers `name` with `address` within `timeout_s`."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while asyncio.get_running_loop().time() < deadline:
        try:
            if await resolve(*nameserver, name, "A") == ("NOERROR", [address]):
                return True
        except (TimeoutError, OSError, dns.exception.DNSException):
            pass
        await asyncio.sleep(0.2)
    return False


async def seed_demo(
    client: Client,
    image_id: str,
    outside_namespace: str,
    host: str,
    nameserver: tuple[str, int] | None = None,
) -> str:
    """The public network, a tenant network and router, the test guest booted on it with a
    floating IP and TCP 80 open: returns the command that fetches its page from outside. With the
    cloud's `nameserver`, the networks get the demo's zones as `dns_domain`s and the command
    names the VM (once the name answers; the address otherwise)."""
    url = f"{client.endpoint('network')}/v2.0"
    public = await _one(client, "networks", "network", "public", {"router:external": True})
    await _one(client, "subnets", "subnet", "public-subnet",
               {"network_id": public["id"], "cidr": DEMO_EXTERNAL_CIDR, "enable_dhcp": False})  # fmt: skip
    tenant = await _one(client, "networks", "network", "demo-net", {})
    if nameserver is not None:
        await _zone(client, DEMO_ZONE)
        await _zone(client, PUBLIC_ZONE)
        # The external domain first: a tenant domain that changes moves the floating IP's name
        # too, into the external network's domain, so a demo made before it had names gets both.
        await _dns_domain(client, public, PUBLIC_ZONE)
        await _dns_domain(client, tenant, DEMO_ZONE)
    subnet = await _one(client, "subnets", "subnet", "demo-subnet",
                        {"network_id": tenant["id"], "cidr": DEMO_TENANT_CIDR})  # fmt: skip
    router = await _one(client, "routers", "router", "demo-router", {})
    if router["external_gateway_info"] is None:
        await client.request(
            "PUT", f"{url}/routers/{router['id']}/add_router_interface", {"subnet_id": subnet["id"]}
        )
        gateway = {"router": {"external_gateway_info": {"network_id": public["id"]}}}
        await client.request("PUT", f"{url}/routers/{router['id']}", gateway)
    web = await _one(client, "security-groups", "security_group", "demo-web", {})
    if not any(r["port_range_min"] == 80 for r in web["security_group_rules"]):
        rule = {"security_group_id": web["id"], "direction": "ingress", "protocol": "tcp",
                "port_range_min": 80, "port_range_max": 80, "remote_ip_prefix": "0.0.0.0/0"}  # fmt: skip
        await client.request("POST", f"{url}/security-group-rules", {"security_group_rule": rule})
    await _wait_for_host(client, host)
    servers = [s for s in await client.compute.list_servers(name="demo-vm") if s.status != "ERROR"]
    for failed in await client.compute.list_servers(name="demo-vm", status="ERROR"):
        await client.compute.delete_server(failed.id)  # a demo that failed before: again
    if servers:
        server_id = servers[0].id
    else:
        server = await client.compute.create_server(
            "demo-vm", image=image_id, flavor="1", networks=[{"uuid": tenant["id"]}],
            security_groups=[{"name": "demo-web"}],
        )  # fmt: skip
        server_id = server.id
    await client.compute.wait(server_id, "ACTIVE", timeout_s=300)
    _, _, ports = await client.request("GET", f"{url}/ports?device_id={server_id}")
    port_id, dns_name = ports["ports"][0]["id"], ports["ports"][0].get("dns_name")
    _, _, fips = await client.request("GET", f"{url}/floatingips?port_id={port_id}")
    if fips["floatingips"]:
        address = fips["floatingips"][0]["floating_ip_address"]
    else:
        body = {"floatingip": {"floating_network_id": public["id"], "port_id": port_id}}
        _, _, made = await client.request("POST", f"{url}/floatingips", body, expect=(201,))
        address = made["floatingip"]["floating_ip_address"]
    await seed_demo_volume(client, server_id)
    by_address = f"ip netns exec {outside_namespace} curl http://{address}/"
    if nameserver is None or not dns_name:
        return by_address
    name = f"{dns_name}.{PUBLIC_ZONE}"
    if not await _answers(nameserver, name, address, DEMO_NAME_TIMEOUT_S):
        return f"{by_address} ({name} does not answer yet)"
    return f"ip netns exec {outside_namespace} curl http://{name.rstrip('.')}/ (or http://{address}/)"


async def seed_demo_volume(client: Client, server_id: str) -> None:
    """`demo-data`, a 1 GiB volume attached to the demo VM, which marks it and says so on its
    console (`openstack console log show demo-vm | grep DISK`)."""
    volumes = [
        v for v in await client.volume.list_volumes(name="demo-data") if not v.status.startswith("error")
    ]
    volume = volumes[0] if volumes else await client.volume.create_volume(1, name="demo-data")
    if volume.status == "creating":
        await client.volume.wait(volume.id, "available", timeout_s=60)
    if not volume.attachments and volume.status in ("creating", "available"):
        await client.volume.attach(server_id, volume.id)
        await client.volume.wait(volume.id, "in-use", timeout_s=60)
