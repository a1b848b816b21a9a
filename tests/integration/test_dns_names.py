"""Names for servers and floating IPs, end to end on the fake driver: a server booted on a
network with a `dns_domain` resolves on the cloud's PowerDNS to its fixed address; its floating
IP's name (in the external network's domain) resolves to the floating address, and that address
back to the name; after the server is deleted both are gone. Reconciling puts back a record
lost behind the service's back.
"""

import asyncio
import time
import uuid

import asyncpg
import pytest

from fabric.client import Client
from fabric.compose import Cloud
from fabric.powerdns import resolve, why_no_powerdns
from fabric.service import service_context
from protocol.dns import QUEUE, CreateZone, DeleteZone, ReconcileNames, ZoneView
from protocol.envelope import Context
from tests.integration.test_network import Neutron, external_network
from tests.integration.test_servers import Api, api  # noqa: F401 - the fixture
from tests.support import api_call

pytestmark = [pytest.mark.postgres, pytest.mark.amqp]


async def answer(cloud: Cloud, name: str, kind: str) -> tuple[str, list[str]]:
    return await resolve(cloud.settings.dns_address, cloud.settings.dns_port, name, kind)


async def until_answer(cloud: Cloud, name: str, kind: str, expected: tuple[str, list[str]]) -> None:
    """Names follow events: they answer soon after the change, not within its request."""
    deadline = time.monotonic() + 10
    while (got := await answer(cloud, name, kind)) != expected:
        assert time.monotonic() < deadline, f"{kind} {name}: {got}, not {expected}"
        await asyncio.sleep(0.05)


async def zone(cloud: Cloud, project_id: str, name: str) -> ZoneView:
    ctx = Context(request_id=f"req-{uuid.uuid4()}", project_id=project_id, roles=("member",),
                  deadline=time.time() + 30)  # fmt: skip
    assert cloud.bus is not None
    made: ZoneView = await cloud.bus.call(
        QUEUE, CreateZone(zone_id=str(uuid.uuid4()), name=name, email="dns@example.org"), ctx
    )
    return made


async def test_a_server_and_its_floating_ip_get_names_that_go_with_them(
    cloud: Cloud,
    admin: Client,
    api: Api,  # noqa: F811
) -> None:
    if why := why_no_powerdns(cloud.settings):
        pytest.skip(why)
    assert admin.token is not None and admin.token.project_id is not None
    project = admin.token.project_id
    neutron = Neutron(cloud.url, admin.token.id)
    domain = f"n{uuid.uuid4().hex[:8]}.example."
    public = f"pub.{domain}"
    zones = [await zone(cloud, project, domain), await zone(cloud, project, public)]
    ext, _ = await external_network(neutron, "198.51.103.0/24")
    await neutron.call("PUT", f"/networks/{ext['id']}", {"network": {"dns_domain": public}})
    net = await neutron.make("network", name=f"named-{uuid.uuid4().hex[:6]}", dns_domain=domain)
    sub = await neutron.make("subnet", network_id=net["id"], cidr="10.157.0.0/24")
    router = await neutron.make("router", name="r-names", external_gateway_info={"network_id": ext["id"]})
    await neutron.call("PUT", f"/routers/{router['id']}/add_router_interface", {"subnet_id": sub["id"]})
    assert (await answer(cloud, f"web-1.{domain}", "A"))[0] == "NXDOMAIN"  # asked before it exists

    image, flavor = await api.image(), await api.flavor()
    server = await api.boot(image["id"], flavor["id"], name="Web_1", networks=[{"uuid": net["id"]}])
    await api.wait(server["id"], "ACTIVE")
    _, ports = await neutron.call("GET", f"/ports?device_id={server['id']}")
    (port,) = ports["ports"]
    fixed = port["fixed_ips"][0]["ip_address"]
    await until_answer(cloud, f"web-1.{domain}", "A", ("NOERROR", [fixed]))

    fip = await neutron.make("floatingip", floating_network_id=ext["id"], port_id=port["id"])
    address = fip["floating_ip_address"]
    reverse = ".".join(reversed(address.split("."))) + ".in-addr.arpa."
    await until_answer(cloud, f"web-1.{public}", "A", ("NOERROR", [address]))
    await until_answer(cloud, reverse, "PTR", ("NOERROR", [f"web-1.{public}"]))
    assert await answer(cloud, f"web-1.{domain}", "A") == ("NOERROR", [fixed])  # the fixed name stays
    # Designate's view of it (`openstack ptr record list`).
    status, listed, _ = await api_call("GET", f"{cloud.url}/dns/v2/reverse/floatingips", admin.token.id)
    key = f"{cloud.settings.region}:{fip['id']}"
    assert status == 200 and {
        "id": key, "address": address, "ptrdname": f"web-1.{public}"
    }.items() <= next(f for f in listed["floatingips"] if f["id"] == key).items(), listed  # fmt: skip
    status, shown, _ = await api_call("GET", f"{cloud.url}/dns/v2/reverse/floatingips/{key}", admin.token.id)
    assert status == 200 and shown["ptrdname"] == f"web-1.{public}"
    missing = f"{cloud.settings.region}:{uuid.uuid4()}"
    status, _, _ = await api_call("GET", f"{cloud.url}/dns/v2/reverse/floatingips/{missing}", admin.token.id)
    assert status == 404

    # A record lost behind the service's back comes back when it reconciles.
    db = await asyncpg.connect(cloud.settings.database_url)
    try:
        await db.execute("DELETE FROM dns.recordsets WHERE managed_by = $1", f"floatingip:{fip['id']}")
    finally:
        await db.close()
    assert (await answer(cloud, f"web-1.{public}", "A"))[0] == "NXDOMAIN"
    assert cloud.bus is not None
    await cloud.bus.call(QUEUE, ReconcileNames(floatingip_ids=(fip["id"],)), service_context())
    assert await answer(cloud, f"web-1.{public}", "A") == ("NOERROR", [address])

    await api.nova("DELETE", f"/servers/{server['id']}")
    await api.wait(server["id"], "DELETED")
    await until_answer(cloud, f"web-1.{domain}", "A", ("NXDOMAIN", []))
    await until_answer(cloud, f"web-1.{public}", "A", ("NXDOMAIN", []))
    await until_answer(cloud, reverse, "PTR", ("NXDOMAIN", []))

    await neutron.call("DELETE", f"/floatingips/{fip['id']}")
    owner = Context(request_id=f"req-{uuid.uuid4()}", project_id=project, roles=("member",),
                    deadline=time.time() + 30)  # fmt: skip
    for made in reversed(zones):
        await cloud.bus.call(QUEUE, DeleteZone(zone_id=made.id), owner)
