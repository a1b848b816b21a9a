"""Network v2.0 through the gateway: networks, subnets, ports and their addresses."""

import asyncio
import ipaddress
import uuid
from typing import Any

import pytest

from fabric.client import Client
from fabric.compose import Cloud
from tests.integration.test_identity import Member, member  # noqa: F401 - the fixture
from tests.support import api_call

pytestmark = [pytest.mark.postgres, pytest.mark.amqp]


class Neutron:
    def __init__(self, url: str, token: str) -> None:
        self.base = f"{url}/network/v2.0"
        self.token = token

    async def call(self, method: str, path: str, json: Any = None) -> tuple[int, Any]:
        status, body, _ = await api_call(method, f"{self.base}{path}", self.token, json=json)
        return status, body

    async def make(self, kind: str, **fields: Any) -> dict[str, Any]:
        status, body = await self.call("POST", f"/{kind.replace('_', '-')}s", {kind: fields})
        assert status == 201, body
        return dict(body[kind])

    async def network_with_subnet(
        self, cidr: str = "10.20.0.0/24", **subnet: Any
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        net = await self.make("network", name=f"net-{uuid.uuid4().hex[:6]}")
        sub = await self.make("subnet", network_id=net["id"], cidr=cidr, ip_version=4, **subnet)
        return net, sub


async def login(cloud: Cloud, admin: Client, who: Member) -> Neutron:
    async with Client(
        admin.auth_url, username=who.name, password=who.password, project_name=who.project_name
    ) as client:
        assert client.token is not None
        return Neutron(cloud.url, client.token.id)


@pytest.fixture
async def neutron(cloud: Cloud, admin: Client) -> Neutron:
    assert admin.token is not None
    return Neutron(cloud.url, admin.token.id)


async def test_network_subnet_port_lifecycle(neutron: Neutron) -> None:
    status, versions, _ = await api_call("GET", neutron.base.removesuffix("/v2.0"), None)
    assert status == 200 and versions["versions"][0]["id"] == "v2.0"
    net, sub = await neutron.network_with_subnet()
    assert (net["status"], net["router:external"], net["mtu"]) == ("ACTIVE", False, 1500)
    assert sub["gateway_ip"] == "10.20.0.1" and sub["enable_dhcp"] is True
    assert sub["allocation_pools"] == [{"start": "10.20.0.2", "end": "10.20.0.254"}]
    assert (sub["dns_nameservers"], sub["host_routes"]) == ([], [])
    # The network's DHCP server took the first address.
    status, ports = await neutron.call("GET", f"/ports?network_id={net['id']}&device_owner=network:dhcp")
    assert [p["fixed_ips"][0]["ip_address"] for p in ports["ports"]] == ["10.20.0.2"]
    port = await neutron.make("port", network_id=net["id"], name="p1", device_id="vm-1")
    assert port["fixed_ips"] == [{"subnet_id": sub["id"], "ip_address": "10.20.0.3"}]
    assert port["mac_address"].startswith("fa:16:3e:")
    status, shown = await neutron.call("GET", f"/ports/{port['id']}?fields=id&fields=fixed_ips")
    assert status == 200 and set(shown["port"]) == {"id", "fixed_ips"}
    status, found = await neutron.call("GET", "/ports?device_id=vm-1&fields=id&fields=name")
    assert [p["name"] for p in found["ports"]] == ["p1"]
    status, updated = await neutron.call("PUT", f"/ports/{port['id']}", {"port": {"name": "p2"}})
    assert status == 200 and updated["port"]["name"] == "p2"
    assert (await neutron.call("GET", f"/networks/{net['id']}"))[1]["network"]["subnets"] == [sub["id"]]
    # In use: the network and subnet stay until the port goes.
    assert (await neutron.call("DELETE", f"/networks/{net['id']}"))[0] == 409
    assert (await neutron.call("DELETE", f"/subnets/{sub['id']}"))[0] == 409
    assert (await neutron.call("DELETE", f"/ports/{port['id']}"))[0] == 204
    assert (await neutron.call("DELETE", f"/networks/{net['id']}"))[0] == 204
    status, gone = await neutron.call("GET", f"/subnets/{sub['id']}")
    assert status == 404 and gone["NeutronError"]["message"]


async def test_addresses_asked_for_and_pools(neutron: Neutron) -> None:
    net, _ = await neutron.network_with_subnet(
        "10.21.0.0/24", allocation_pools=[{"start": "10.21.0.10", "end": "10.21.0.12"}], enable_dhcp=False
    )
    fixed = await neutron.make("port", network_id=net["id"], fixed_ips=[{"ip_address": "10.21.0.11"}])
    assert fixed["fixed_ips"][0]["ip_address"] == "10.21.0.11"
    status, body = await neutron.call(
        "POST", "/ports", {"port": {"network_id": net["id"], "fixed_ips": [{"ip_address": "10.21.0.11"}]}}
    )
    assert status == 409 and "already allocated" in body["NeutronError"]["message"]
    status, body = await neutron.call(
        "POST", "/ports", {"port": {"network_id": net["id"], "fixed_ips": [{"ip_address": "10.21.0.50"}]}}
    )
    assert status == 400 and "outside the allocation pools" in body["NeutronError"]["message"]
    taken = [
        (await neutron.make("port", network_id=net["id"]))["fixed_ips"][0]["ip_address"] for _ in range(2)
    ]
    assert sorted(taken) == ["10.21.0.10", "10.21.0.12"]
    status, body = await neutron.call("POST", "/ports", {"port": {"network_id": net["id"]}})
    assert status == 409 and "No more IP addresses" in body["NeutronError"]["message"]


@pytest.mark.parametrize(
    ("subnet", "field"),
    [
        ({"cidr": "10.30.0.0/33"}, "subnet.cidr"),
        ({"cidr": "10.30.0.1/24"}, "subnet.cidr"),
        ({"cidr": "10.30.0.0/24", "gateway_ip": "10.31.0.1"}, "subnet.gateway_ip"),
        (
            {"cidr": "10.30.0.0/24", "allocation_pools": [{"start": "10.30.0.9", "end": "10.30.0.3"}]},
            "allocation_pools",
        ),
        (
            {"cidr": "10.30.0.0/24", "allocation_pools": [{"start": "10.30.0.1", "end": "10.30.0.9"}]},
            "allocation_pools",
        ),
        ({"cidr": "10.30.0.0/24", "ip_version": 6}, "subnet.ip_version"),
        ({"cidr": "10.30.0.0/24", "dns_nameservers": ["nope"]}, "dns_nameservers"),
    ],
)
async def test_bad_subnets_are_refused_by_field(neutron: Neutron, subnet: dict[str, Any], field: str) -> None:
    net = await neutron.make("network", name="bad-subnets")
    status, body = await neutron.call("POST", "/subnets", {"subnet": {"network_id": net["id"], **subnet}})
    assert status == 400, body
    assert field in body["NeutronError"]["message"]
    await neutron.call("DELETE", f"/networks/{net['id']}")


async def test_overlapping_subnets_on_one_network_are_refused(neutron: Neutron) -> None:
    net, _ = await neutron.network_with_subnet("10.40.0.0/16")
    status, body = await neutron.call(
        "POST", "/subnets", {"subnet": {"network_id": net["id"], "cidr": "10.40.3.0/24"}}
    )
    assert status == 400 and "overlaps" in body["NeutronError"]["message"]
    status, _ = await neutron.call(
        "POST", "/subnets", {"subnet": {"network_id": net["id"], "cidr": "10.41.0.0/24"}}
    )
    assert status == 201


async def test_projects_do_not_see_each_others_networks(
    cloud: Cloud,
    neutron: Neutron,
    admin: Client,
    member: Member,  # noqa: F811
) -> None:
    other = await login(cloud, admin, member)
    net, _ = await neutron.network_with_subnet("10.50.0.0/24")
    port = await neutron.make("port", network_id=net["id"])
    for path in (f"/networks/{net['id']}", f"/ports/{port['id']}"):
        assert (await other.call("GET", path))[0] == 404
    assert (await other.call("POST", "/ports", {"port": {"network_id": net["id"]}}))[0] == 404
    assert (await other.call("DELETE", f"/ports/{port['id']}"))[0] == 404
    status, listed = await other.call("GET", "/networks")
    assert net["id"] not in {n["id"] for n in listed["networks"]}
    status, _ = await other.call("POST", "/networks", {"network": {"name": "x", "router:external": True}})
    assert status == 403
    # An external network is visible to every project, but only admins put ports on it.
    ext = await neutron.make("network", name="ext", **{"router:external": True})
    assert (await other.call("GET", f"/networks/{ext['id']}"))[0] == 200
    await neutron.make("subnet", network_id=ext["id"], cidr="203.0.113.0/24", enable_dhcp=False)
    status, _ = await other.call("POST", "/ports", {"port": {"network_id": ext["id"]}})
    assert status == 403


async def test_list_filters_and_pages(neutron: Neutron) -> None:
    name = f"paged-{uuid.uuid4().hex[:6]}"
    made = [await neutron.make("network", name=name) for _ in range(3)]
    status, page = await neutron.call("GET", f"/networks?name={name}&limit=2")
    assert status == 200 and len(page["networks"]) == 2
    href = page["networks_links"][0]["href"]
    status, rest = await neutron.call("GET", href.split("/v2.0", 1)[1])
    assert {n["id"] for n in page["networks"] + rest["networks"]} == {n["id"] for n in made}
    status, external = await neutron.call("GET", "/networks?router:external=True")
    assert all(n["router:external"] for n in external["networks"])
    status, both = await neutron.call("GET", f"/networks?id={made[0]['id']}&id={made[1]['id']}")
    assert status == 200 and {n["id"] for n in both["networks"]} == {made[0]["id"], made[1]["id"]}, both
    status, refused = await neutron.call("GET", f"/networks?name={name}&name=other")
    assert status == 400 and "name" in refused["NeutronError"]["message"], refused


async def test_ports_made_at_once_never_share_an_address(neutron: Neutron) -> None:
    net, sub = await neutron.network_with_subnet("10.60.0.0/26")  # 61 addresses; DHCP takes one
    results = await asyncio.gather(
        *(neutron.call("POST", "/ports", {"port": {"network_id": net["id"]}}) for _ in range(70))
    )
    made = [body["port"]["fixed_ips"][0]["ip_address"] for status, body in results if status == 201]
    refused = [body for status, body in results if status == 409]
    assert len(made) == 60 and len(refused) == 10
    assert len(set(made)) == 60
    assert all(ipaddress.ip_address(ip) in ipaddress.ip_network(sub["cidr"]) for ip in made)


async def external_network(neutron: Neutron, cidr: str) -> tuple[dict[str, Any], dict[str, Any]]:
    ext = await neutron.make("network", name=f"ext-{uuid.uuid4().hex[:6]}", **{"router:external": True})
    sub = await neutron.make("subnet", network_id=ext["id"], cidr=cidr, enable_dhcp=False)
    return ext, sub


async def test_router_interfaces_gateway_and_floating_ips(
    cloud: Cloud,
    neutron: Neutron,
    admin: Client,
    member: Member,  # noqa: F811
) -> None:
    ext, ext_sub = await external_network(neutron, "203.0.113.0/24")
    net, sub = await neutron.network_with_subnet("10.80.0.0/24")
    router = await neutron.make("router", name="r1")
    assert router["external_gateway_info"] is None and router["status"] == "ACTIVE"
    status, iface = await neutron.call(
        "PUT", f"/routers/{router['id']}/add_router_interface", {"subnet_id": sub["id"]}
    )
    assert status == 200 and iface["subnet_id"] == sub["id"] and iface["network_id"] == net["id"]
    status, leg = await neutron.call("GET", f"/ports/{iface['port_id']}")
    assert leg["port"]["fixed_ips"][0]["ip_address"] == "10.80.0.1"
    assert (leg["port"]["device_owner"], leg["port"]["device_id"]) == (
        "network:router_interface",
        router["id"],
    )
    # A second subnet that overlaps the first cannot join the same router.
    _, clash = await neutron.network_with_subnet("10.80.0.0/25")
    status, body = await neutron.call(
        "PUT", f"/routers/{router['id']}/add_router_interface", {"subnet_id": clash["id"]}
    )
    assert status == 400 and "overlaps" in body["NeutronError"]["message"]
    # The gateway goes on an external network only.
    status, body = await neutron.call(
        "PUT", f"/routers/{router['id']}", {"router": {"external_gateway_info": {"network_id": net["id"]}}}
    )
    assert status == 400 and "not external" in body["NeutronError"]["message"]
    status, body = await neutron.call(
        "PUT", f"/routers/{router['id']}", {"router": {"external_gateway_info": {"network_id": ext["id"]}}}
    )
    assert status == 200, body
    gateway = body["router"]["external_gateway_info"]
    assert gateway["network_id"] == ext["id"] and gateway["enable_snat"] is True
    assert gateway["external_fixed_ips"][0]["subnet_id"] == ext_sub["id"]

    # Floating IPs come from external networks only.
    status, body = await neutron.call(
        "POST", "/floatingips", {"floatingip": {"floating_network_id": net["id"]}}
    )
    assert status == 400 and "not external" in body["NeutronError"]["message"]
    fip = await neutron.make("floatingip", floating_network_id=ext["id"])
    assert (
        fip["floating_ip_address"].startswith("203.0.113.")
        and fip["port_id"] is None
        and fip["status"] == "DOWN"
    )
    vm_port = await neutron.make("port", network_id=net["id"], device_id="vm-fip")
    status, body = await neutron.call(
        "PUT", f"/floatingips/{fip['id']}", {"floatingip": {"port_id": vm_port["id"]}}
    )
    assert status == 200, body
    associated = body["floatingip"]
    assert (associated["port_id"], associated["router_id"]) == (vm_port["id"], router["id"])
    assert associated["fixed_ip_address"] == vm_port["fixed_ips"][0]["ip_address"]
    # A port whose subnet has no router to the external network: Neutron's 404.
    lonely_net, _ = await neutron.network_with_subnet("10.81.0.0/24")
    lonely = await neutron.make("port", network_id=lonely_net["id"])
    status, body = await neutron.call(
        "PUT", f"/floatingips/{fip['id']}", {"floatingip": {"port_id": lonely["id"]}}
    )
    assert status == 404 and "not reachable" in body["NeutronError"]["message"]
    # Another project's port is not found either.
    other = await login(cloud, admin, member)
    their_net = await other.make("network", name="theirs")
    await other.make("subnet", network_id=their_net["id"], cidr="10.82.0.0/24")
    their_port = await other.make("port", network_id=their_net["id"])
    status, _ = await neutron.call(
        "PUT", f"/floatingips/{fip['id']}", {"floatingip": {"port_id": their_port["id"]}}
    )
    assert status == 404
    status, found = await neutron.call("GET", f"/floatingips?port_id={vm_port['id']}")
    assert [f["id"] for f in found["floatingips"]] == [fip["id"]]

    # What is in use stays: the router with interfaces, the interface a floating IP goes through.
    assert (await neutron.call("DELETE", f"/routers/{router['id']}"))[0] == 409
    status, _ = await neutron.call(
        "PUT", f"/routers/{router['id']}/remove_router_interface", {"subnet_id": sub["id"]}
    )
    assert status == 409
    # Deleting the VM's port leaves the floating IP allocated but free.
    assert (await neutron.call("DELETE", f"/ports/{vm_port['id']}"))[0] == 204
    status, body = await neutron.call("GET", f"/floatingips/{fip['id']}")
    assert body["floatingip"]["port_id"] is None and body["floatingip"]["router_id"] is None
    assert (await neutron.call("DELETE", f"/floatingips/{fip['id']}"))[0] == 204
    status, _ = await neutron.call(
        "PUT", f"/routers/{router['id']}/remove_router_interface", {"subnet_id": sub["id"]}
    )
    assert status == 200
    assert (await neutron.call("DELETE", f"/routers/{router['id']}"))[0] == 204
    assert (await neutron.call("DELETE", f"/networks/{ext['id']}"))[0] == 204  # the gateway port went too


async def test_security_groups_default_rules_and_ports(neutron: Neutron) -> None:
    web = await neutron.make("security_group", name=f"web-{uuid.uuid4().hex[:6]}")
    # An admin sees every project's `default`: pick this project's by its id.
    mine = f"/security-groups?name=default&project_id={web['project_id']}"
    status, listed = await neutron.call("GET", mine)
    assert status == 200 and len(listed["security_groups"]) == 1
    default = listed["security_groups"][0]
    rules = {(r["direction"], r["remote_group_id"]) for r in default["security_group_rules"]}
    assert rules == {("egress", None), ("ingress", default["id"])}
    assert [r["direction"] for r in web["security_group_rules"]] == ["egress"]
    rule = {"security_group_id": web["id"], "direction": "ingress", "ethertype": "IPv4", "protocol": "tcp",
            "port_range_min": 80, "port_range_max": 80, "remote_ip_prefix": "0.0.0.0/0"}  # fmt: skip
    made = await neutron.make("security_group_rule", **rule)
    assert (made["protocol"], made["port_range_min"], made["remote_ip_prefix"]) == ("tcp", 80, "0.0.0.0/0")
    status, body = await neutron.call("POST", "/security-group-rules", {"security_group_rule": rule})
    assert status == 409
    for bad, field in (
        ({**rule, "port_range_min": 90}, "port_range_min"),
        ({**rule, "protocol": None}, "protocol"),
        ({**rule, "remote_ip_prefix": "10.0.0.0/33"}, "remote_ip_prefix"),
        ({**rule, "remote_group_id": default["id"]}, "remote_ip_prefix"),
        ({**rule, "protocol": "icmp", "port_range_min": 300, "port_range_max": None}, "port_range_min"),
    ):
        status, body = await neutron.call("POST", "/security-group-rules", {"security_group_rule": bad})
        assert status == 400 and field in body["NeutronError"]["message"], (bad, body)
    net, _ = await neutron.network_with_subnet("10.95.0.0/24")
    plain = await neutron.make("port", network_id=net["id"])
    assert plain["security_groups"] == [default["id"]]
    webby = await neutron.make("port", network_id=net["id"], security_groups=[web["id"]])
    assert webby["security_groups"] == [web["id"]]
    assert (await neutron.call("DELETE", f"/security-groups/{web['id']}"))[0] == 409  # in use
    assert (await neutron.call("DELETE", f"/security-groups/{default['id']}"))[0] == 409  # the default stays
    status, body = await neutron.call("PUT", f"/ports/{webby['id']}", {"port": {"security_groups": []}})
    assert status == 200 and body["port"]["security_groups"] == []
    assert (await neutron.call("DELETE", f"/security-group-rules/{made['id']}"))[0] == 204
    assert (await neutron.call("DELETE", f"/security-groups/{web['id']}"))[0] == 204


async def test_network_quotas(cloud: Cloud, neutron: Neutron, admin: Client, member: Member) -> None:  # noqa: F811
    path = f"/quotas/{member.project_id}"
    assert (await neutron.call("PUT", path, {"quota": {"network": -2}}))[0] == 400
    assert (await neutron.call("PUT", path, {"quota": {"bogus": 1}}))[0] == 400
    status, body = await neutron.call("PUT", path, {"quota": {"network": 1, "port": 1}})
    assert status == 200 and (body["quota"]["network"], body["quota"]["port"]) == (1, 1)
    user = await login(cloud, admin, member)
    assert (await user.call("PUT", path, {"quota": {"network": 5}}))[0] == 403
    net = await user.make("network", name="only")
    status, body = await user.call("POST", "/networks", {"network": {"name": "second"}})
    assert status == 413 and "network" in body["NeutronError"]["message"]
    await user.make("subnet", network_id=net["id"], cidr="10.96.0.0/24")  # its DHCP port does not count
    await user.make("port", network_id=net["id"])
    assert (await user.call("POST", "/ports", {"port": {"network_id": net["id"]}}))[0] == 413
    status, details = await user.call("GET", f"{path}/details")
    assert details["quota"]["network"] == {"limit": 1, "used": 1, "reserved": 0}
    assert details["quota"]["port"]["used"] == 1
    assert (await neutron.call("DELETE", path))[0] == 204
    status, body = await neutron.call("GET", path)
    assert body["quota"]["network"] == 100
