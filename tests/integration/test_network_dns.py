"""Names in DNS on the network side (Neutron's dns-integration and dns-domain-ports): the fields
through the gateway, the DnsNamesChanged events and the ListDnsBindings answers the DNS service
reconciles from, and a server's ports named after the server."""

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from fabric.bus import Bus
from fabric.compose import Cloud
from fabric.service import service_context
from protocol.envelope import Context
from protocol.errors import Forbidden
from protocol.network import QUEUE, DnsBindings, DnsNamesChanged, FloatingIpDnsBinding, ListDnsBindings
from tests.integration.test_network import Neutron, external_network, neutron  # noqa: F401 - the fixture
from tests.integration.test_servers import Api, api  # noqa: F401 - the fixture

pytestmark = [pytest.mark.postgres, pytest.mark.amqp]


def domain() -> str:
    return f"d{uuid.uuid4().hex[:8]}.example.org."


async def bindings(bus: Bus, ports: tuple[str, ...] | None, fips: tuple[str, ...] | None) -> DnsBindings:
    found: DnsBindings = await bus.call(
        QUEUE, ListDnsBindings(port_ids=ports, floatingip_ids=fips), service_context()
    )
    return found


class Heard:
    """The DnsNamesChanged events published while it listens."""

    def __init__(self) -> None:
        self.events: list[DnsNamesChanged] = []

    async def on(self, event: DnsNamesChanged, ctx: Context) -> None:
        self.events.append(event)

    def ports(self) -> set[str]:
        return {p for e in self.events for p in e.port_ids}

    def fips(self) -> set[str]:
        return {f for e in self.events for f in e.floatingip_ids}

    async def port(self, port_id: str) -> None:
        await self._until(lambda: port_id in self.ports(), f"an event naming port {port_id}")

    async def fip(self, fip_id: str) -> None:
        await self._until(lambda: fip_id in self.fips(), f"an event naming floating IP {fip_id}")

    async def _until(self, check: Any, what: str, timeout_s: float = 10.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not check():
            assert time.monotonic() < deadline, f"no {what}: heard {self.events}"
            await asyncio.sleep(0.02)

    def clear(self) -> None:
        self.events.clear()


@pytest.fixture
def bus(cloud: Cloud) -> Bus:
    assert cloud.bus is not None
    return cloud.bus


@pytest.fixture
async def heard(bus: Bus) -> AsyncIterator[Heard]:
    listener = Heard()
    consumer = await bus.subscribe(("network.DnsNamesChanged",), listener.on)
    try:
        yield listener
    finally:
        await consumer.stop()


async def refused(neutron: Neutron, method: str, path: str, body: Any, field: str) -> None:  # noqa: F811
    status, answer = await neutron.call(method, path, body)
    assert status == 400 and field in answer["NeutronError"]["message"], (status, answer)


async def test_dns_extensions_are_listed(neutron: Neutron) -> None:  # noqa: F811
    for alias in ("dns-integration", "dns-domain-ports"):
        status, body = await neutron.call("GET", f"/extensions/{alias}")
        assert status == 200 and body["extension"]["alias"] == alias


async def test_a_networks_dns_domain(neutron: Neutron) -> None:  # noqa: F811
    plain = await neutron.make("network", name="no-domain")
    assert plain["dns_domain"] == ""
    zone = domain()
    net = await neutron.make("network", name="with-domain", dns_domain=zone.upper())
    assert net["dns_domain"] == zone  # lowercased, as Neutron
    status, body = await neutron.call(
        "PUT", f"/networks/{net['id']}", {"network": {"dns_domain": "new.test."}}
    )
    assert status == 200 and body["network"]["dns_domain"] == "new.test."
    status, body = await neutron.call("GET", f"/networks/{net['id']}?fields=dns_domain")
    assert body["network"] == {"dns_domain": "new.test."}
    status, body = await neutron.call("PUT", f"/networks/{net['id']}", {"network": {"dns_domain": ""}})
    assert status == 200 and body["network"]["dns_domain"] == ""
    for bad in ("example.org", "exa_mple.org.", "example.123.", ".", "a" * 254 + "."):
        await refused(neutron, "POST", "/networks", {"network": {"dns_domain": bad}}, "network.dns_domain")
        await refused(
            neutron, "PUT", f"/networks/{net['id']}", {"network": {"dns_domain": bad}}, "network.dns_domain"
        )
    for made in (plain, net):
        assert (await neutron.call("DELETE", f"/networks/{made['id']}"))[0] == 204


async def test_a_ports_dns_name_domain_and_assignment(neutron: Neutron) -> None:  # noqa: F811
    zone = domain()
    net = await neutron.make("network", name="named-ports", dns_domain=zone)
    await neutron.make("subnet", network_id=net["id"], cidr="10.150.0.0/24")
    port = await neutron.make("port", network_id=net["id"], dns_name="Web-1")
    ip = port["fixed_ips"][0]["ip_address"]
    assert (port["dns_name"], port["dns_domain"]) == ("web-1", "")
    assert port["dns_assignment"] == [{"hostname": "web-1", "ip_address": ip, "fqdn": f"web-1.{zone}"}]
    # Without a name: Neutron's host-<address>; the port's own domain wins over its network's.
    status, body = await neutron.call(
        "PUT", f"/ports/{port['id']}", {"port": {"dns_name": "", "dns_domain": "own.test."}}
    )
    host = "host-" + ip.replace(".", "-")
    assert status == 200 and body["port"]["dns_assignment"] == [
        {"hostname": host, "ip_address": ip, "fqdn": f"{host}.own.test."}
    ]
    status, body = await neutron.call("PUT", f"/ports/{port['id']}", {"port": {"dns_name": "db"}})
    assert (
        body["port"]["dns_assignment"][0]["fqdn"] == "db.own.test."
        and body["port"]["dns_domain"] == "own.test."
    )
    # No domain anywhere: Neutron's default one.
    lone = await neutron.make("network", name="no-domain")
    await neutron.make("subnet", network_id=lone["id"], cidr="10.151.0.0/24")
    bare = await neutron.make("port", network_id=lone["id"], dns_name="bare")
    assert bare["dns_assignment"][0]["fqdn"] == "bare.openstacklocal."
    for bad in ("web_1", "web.example.org", "-web", "a" * 64):
        await refused(
            neutron, "POST", "/ports", {"port": {"network_id": net["id"], "dns_name": bad}}, "port.dns_name"
        )
        await refused(neutron, "PUT", f"/ports/{port['id']}", {"port": {"dns_name": bad}}, "port.dns_name")
    await refused(
        neutron, "PUT", f"/ports/{port['id']}", {"port": {"dns_domain": "no-dot.org"}}, "port.dns_domain"
    )
    await refused(
        neutron, "PUT", f"/ports/{port['id']}", {"port": {"dns_assignment": []}}, "port.dns_assignment"
    )
    # A name and its domain must make an FQDN of at most 255 characters.
    long_zone = ("b" * 62 + ".") * 4  # 252 characters: a domain, but no room for "bare." in front
    body = {"port": {"dns_name": "a" * 10, "dns_domain": long_zone}}
    await refused(neutron, "PUT", f"/ports/{port['id']}", body, "port.dns_name")
    await refused(
        neutron,
        "PUT",
        f"/networks/{lone['id']}",
        {"network": {"dns_domain": long_zone}},
        "network.dns_domain",
    )


async def test_a_floating_ips_own_name_is_set_at_create_only(neutron: Neutron) -> None:  # noqa: F811
    ext, _ = await external_network(neutron, "198.51.100.0/24")
    zone = domain()
    fip = await neutron.make("floatingip", floating_network_id=ext["id"], dns_name="WWW", dns_domain=zone)
    assert (fip["dns_name"], fip["dns_domain"]) == ("www", zone)
    plain = await neutron.make("floatingip", floating_network_id=ext["id"])
    assert (plain["dns_name"], plain["dns_domain"]) == ("", "")
    for field in ("dns_name", "dns_domain"):
        body = {"floatingip": {"port_id": None, field: "x."}}
        await refused(neutron, "PUT", f"/floatingips/{fip['id']}", body, f"floatingip.{field}")
    for fields, field in (
        ({"dns_name": "www"}, "floatingip.dns_name"),
        ({"dns_domain": zone}, "floatingip.dns_domain"),
        ({"dns_name": "www.", "dns_domain": zone}, "floatingip.dns_name"),
        ({"dns_name": "www", "dns_domain": "example.org"}, "floatingip.dns_domain"),
    ):
        body = {"floatingip": {"floating_network_id": ext["id"], **fields}}
        await refused(neutron, "POST", "/floatingips", body, field)
    for made in (fip, plain):
        assert (await neutron.call("DELETE", f"/floatingips/{made['id']}"))[0] == 204


async def routed_port(neutron: Neutron, cidr: str, ext_id: str, **port: Any) -> tuple[dict[str, Any], ...]:  # noqa: F811
    """A network with the given fields' port, routed to the external network: a floating IP's
    place. Returns the network, the port and the router."""
    net = await neutron.make("network", name=f"lan-{uuid.uuid4().hex[:6]}", dns_domain=port.pop("zone", ""))
    sub = await neutron.make("subnet", network_id=net["id"], cidr=cidr)
    router = await neutron.make("router", name="r-dns", external_gateway_info={"network_id": ext_id})
    status, _ = await neutron.call(
        "PUT", f"/routers/{router['id']}/add_router_interface", {"subnet_id": sub["id"]}
    )
    assert status == 200
    return net, await neutron.make("port", network_id=net["id"], **port), router


async def test_every_change_of_a_name_is_announced(neutron: Neutron, heard: Heard) -> None:  # noqa: F811
    ext, _ = await external_network(neutron, "198.51.100.0/24")
    net, port, _ = await routed_port(neutron, "10.152.0.0/24", ext["id"], zone=domain(), dns_name="app")
    await heard.port(port["id"])  # made with a name
    unnamed = await neutron.make("port", network_id=net["id"])
    fip = await neutron.make("floatingip", floating_network_id=ext["id"], port_id=port["id"])
    await heard.fip(fip["id"])  # made, associated
    assert unnamed["id"] not in heard.ports()  # a port without a name has no record

    heard.clear()
    await neutron.call("PUT", f"/ports/{port['id']}", {"port": {"dns_name": "app2"}})
    await heard.port(port["id"])
    await heard.fip(fip["id"])  # named after the port: it moves too
    heard.clear()
    await neutron.call("PUT", f"/ports/{port['id']}", {"port": {"dns_domain": "own.test."}})
    await heard.port(port["id"])
    await neutron.call("PUT", f"/ports/{port['id']}", {"port": {"dns_domain": ""}})

    heard.clear()
    other = await neutron.make("port", network_id=net["id"], dns_name="other")
    await heard.port(other["id"])
    heard.clear()
    status, _ = await neutron.call("PUT", f"/networks/{net['id']}", {"network": {"dns_domain": domain()}})
    assert status == 200
    await heard.port(port["id"])
    await heard.port(other["id"])
    await heard.fip(fip["id"])
    assert unnamed["id"] not in heard.ports()

    heard.clear()
    await neutron.call("PUT", f"/floatingips/{fip['id']}", {"floatingip": {"port_id": None}})
    await heard.fip(fip["id"])  # disassociated
    heard.clear()
    await neutron.call("PUT", f"/floatingips/{fip['id']}", {"floatingip": {"port_id": port["id"]}})
    await heard.fip(fip["id"])  # associated
    heard.clear()
    await neutron.call("PUT", f"/networks/{ext['id']}", {"network": {"dns_domain": domain()}})
    await heard.fip(fip["id"])  # its external network's domain names it
    heard.clear()
    assert (await neutron.call("DELETE", f"/ports/{port['id']}"))[0] == 204
    await heard.port(port["id"])
    await heard.fip(fip["id"])  # left associated with nothing
    heard.clear()
    assert (await neutron.call("DELETE", f"/floatingips/{fip['id']}"))[0] == 204
    await heard.fip(fip["id"])
    assert (await neutron.call("DELETE", f"/ports/{other['id']}"))[0] == 204
    await heard.port(other["id"])


async def test_list_dns_bindings_answers_what_has_a_name(neutron: Neutron, bus: Bus) -> None:  # noqa: F811
    ext, _ = await external_network(neutron, "198.51.100.0/24")
    zone = domain()
    # A floating IP without a name of its own is named in its external network's domain.
    await neutron.call("PUT", f"/networks/{ext['id']}", {"network": {"dns_domain": f"pub.{zone}"}})
    net, named, _ = await routed_port(neutron, "10.153.0.0/24", ext["id"], zone=zone, dns_name="shop")
    unnamed = await neutron.make("port", network_id=net["id"])
    own = await neutron.make("port", network_id=net["id"], dns_name="own", dns_domain="own.test.")
    _, in_no_zone, _ = await routed_port(neutron, "10.154.0.0/24", ext["id"], dns_name="nozone")
    fip_named = await neutron.make("floatingip", floating_network_id=ext["id"], port_id=named["id"])
    fip_own = await neutron.make(
        "floatingip", floating_network_id=ext["id"], dns_name="www", dns_domain="shop.test."
    )
    fip_unnamed = await neutron.make("floatingip", floating_network_id=ext["id"], port_id=unnamed["id"])
    fip_no_zone = await neutron.make("floatingip", floating_network_id=ext["id"], port_id=in_no_zone["id"])
    fip_free = await neutron.make("floatingip", floating_network_id=ext["id"])
    gone = str(uuid.uuid4())

    ports = (named["id"], unnamed["id"], own["id"], in_no_zone["id"], gone)
    fips = (fip_named["id"], fip_own["id"], fip_unnamed["id"], fip_no_zone["id"], fip_free["id"], gone)
    found = await bindings(bus, ports, fips)
    by_port = {b.port_id: b for b in found.ports}
    assert set(by_port) == {named["id"], own["id"]}  # unnamed, without a domain, or gone: absent
    assert by_port[named["id"]].fqdn == f"shop.{zone}"
    assert by_port[named["id"]].addresses == (named["fixed_ips"][0]["ip_address"],)
    assert by_port[named["id"]].project_id == named["project_id"]
    assert by_port[own["id"]].fqdn == "own.own.test."
    by_fip = {b.floatingip_id: b for b in found.floatingips}
    address = {f["id"]: f["floating_ip_address"] for f in (fip_named, fip_own, fip_unnamed, fip_no_zone)}
    assert by_fip == {
        fip_named["id"]: FloatingIpDnsBinding(
            floatingip_id=fip_named["id"], project_id=fip_named["project_id"],
            address=address[fip_named["id"]], fqdn=f"shop.pub.{zone}",
        ),
        fip_own["id"]: FloatingIpDnsBinding(
            floatingip_id=fip_own["id"], project_id=fip_own["project_id"],
            address=address[fip_own["id"]], fqdn="www.shop.test.",
        ),
        # Associated, but its port has no name: only the PTR's address.
        fip_unnamed["id"]: FloatingIpDnsBinding(
            floatingip_id=fip_unnamed["id"], project_id=fip_unnamed["project_id"],
            address=address[fip_unnamed["id"]], fqdn=None,
        ),
        # Its port's network has no domain: the external network's still names it.
        fip_no_zone["id"]: FloatingIpDnsBinding(
            floatingip_id=fip_no_zone["id"], project_id=fip_no_zone["project_id"],
            address=address[fip_no_zone["id"]], fqdn=f"nozone.pub.{zone}",
        ),
    }  # fmt: skip

    # None: every one; (): none.
    everything = await bindings(bus, None, None)
    assert {named["id"], own["id"]} <= {b.port_id for b in everything.ports}
    assert set(by_fip) <= {b.floatingip_id for b in everything.floatingips}
    assert fip_free["id"] not in {b.floatingip_id for b in everything.floatingips}
    assert await bindings(bus, (), ()) == DnsBindings(ports=(), floatingips=())
    # Thousands of ids at once, in one answer.
    many = tuple(str(uuid.uuid4()) for _ in range(5000))
    assert len((await bindings(bus, (*many, named["id"]), many)).ports) == 1

    # A rename shows at once; a deleted port's name is gone, its floating IP keeps its address.
    await neutron.call("PUT", f"/ports/{named['id']}", {"port": {"dns_name": "shop2"}})
    after = await bindings(bus, (named["id"],), (fip_named["id"],))
    assert after.ports[0].fqdn == f"shop2.{zone}" and after.floatingips[0].fqdn == f"shop2.pub.{zone}"
    await neutron.call("DELETE", f"/ports/{named['id']}")
    after = await bindings(bus, (named["id"],), (fip_named["id"],))
    assert after == DnsBindings(ports=(), floatingips=())  # not associated, no name of its own

    member = Context(
        request_id=f"req-{uuid.uuid4()}", project_id=named["project_id"], roles=("member",),
        deadline=time.time() + 30,
    )  # fmt: skip
    with pytest.raises(Forbidden):
        await bus.call(QUEUE, ListDnsBindings(), member)


async def test_a_servers_ports_are_named_after_the_server(api: Api, bus: Bus) -> None:  # noqa: F811
    network = Neutron(api.url, api.token)
    zone = domain()
    net = await network.make("network", name=f"vmnet-{uuid.uuid4().hex[:6]}", dns_domain=zone)
    await network.make("subnet", network_id=net["id"], cidr="10.155.0.0/28")
    image, flavor = await api.image(), await api.flavor()
    created = await api.boot(image["id"], flavor["id"], name="Web Server_1", networks=[{"uuid": net["id"]}])
    await api.wait(created["id"], "ACTIVE")
    _, ports = await network.call("GET", f"/ports?device_id={created['id']}")
    (port,) = ports["ports"]
    assert port["dns_name"] == "web-server-1"
    assert port["dns_assignment"][0]["fqdn"] == f"web-server-1.{zone}"
    found = await bindings(bus, (port["id"],), ())
    assert [(b.fqdn, b.addresses) for b in found.ports] == [
        (f"web-server-1.{zone}", (port["fixed_ips"][0]["ip_address"],))
    ]
    await api.nova("DELETE", f"/servers/{created['id']}")
    await api.wait(created["id"], "DELETED")
    assert await bindings(bus, (port["id"],), ()) == DnsBindings(ports=(), floatingips=())


async def test_a_subnets_nameservers_can_be_changed(neutron: Neutron) -> None:  # noqa: F811
    """Bodies once refused every `dns_*` attribute, `dns_nameservers` of a subnet update too."""
    net = await neutron.make("network", name="nameservers")
    sub = await neutron.make("subnet", network_id=net["id"], cidr="10.156.0.0/24")
    status, body = await neutron.call(
        "PUT", f"/subnets/{sub['id']}", {"subnet": {"dns_nameservers": ["9.9.9.9"]}}
    )
    assert status == 200 and body["subnet"]["dns_nameservers"] == ["9.9.9.9"], body
    await refused(
        neutron, "PUT", f"/subnets/{sub['id']}", {"subnet": {"dns_publish_fixed_ip": True}}, "subnet.dns_"
    )
