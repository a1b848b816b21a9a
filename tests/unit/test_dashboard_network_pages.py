"""The network, image and DNS pages' pure parts: how a refusal finds its field, recordset names,
which recordsets are managed, and the topology picture (escaped, every node on its networks)."""

from xml.etree import ElementTree

import pytest

from fabric.dashboard.api import ApiError
from fabric.dashboard.pages.dns import full_name, is_managed
from fabric.dashboard.pages.refusals import field_of, refused
from fabric.dashboard.pages.topology import draw, nodes_of

SVG = "{http://www.w3.org/2000/svg}"


def test_a_refusal_finds_its_field_by_full_name_last_part_or_list_item() -> None:
    fields = {"subnet.cidr": "cidr", "port_range_min": "from_port", "records": "records"}
    assert field_of(ApiError(400, "Invalid input for field 'subnet.cidr': bad", "r"), fields) == "cidr"
    rule = ApiError(400, "Invalid input for field 'security_group_rule.port_range_min': no", "r")
    assert field_of(rule, fields) == "from_port"
    assert (
        field_of(ApiError(400, "Invalid input for field 'records[2]': not an address", "r"), fields)
        == "records"
    )
    assert field_of(ApiError(409, "Quota exceeded", "r"), fields) is None


def test_refused_keeps_what_was_typed_and_raises_what_a_form_cannot_show() -> None:
    state = refused(
        ApiError(400, "Invalid input for field 'email': required", "r"), {"email": "email"}, {"email": ""}
    )
    assert (state.errors, state.message, state.values) == (
        {"email": "Invalid input for field 'email': required"},
        None,
        {"email": ""},
    )
    assert refused(ApiError(409, "Conflict", "r"), {}, {}).message == "Conflict"
    for status in (401, 500, 503):
        with pytest.raises(ApiError):
            refused(ApiError(status, "no", "r"), {}, {})


def test_recordset_names_are_made_whole_and_the_zones_own_are_managed() -> None:
    zone = {"name": "example.org."}
    assert full_name("www", "example.org.") == "www.example.org."
    assert full_name("@", "example.org.") == full_name("", "example.org.") == "example.org."
    assert full_name("mail.other.org.", "example.org.") == "mail.other.org."
    assert is_managed({"type": "SOA", "name": "example.org."}, zone)
    assert is_managed({"type": "NS", "name": "example.org."}, zone)
    assert not is_managed({"type": "NS", "name": "sub.example.org."}, zone)
    assert not is_managed({"type": "A", "name": "www.example.org."}, zone)


def test_the_topology_puts_each_node_on_its_networks_and_escapes_every_name() -> None:
    networks = [
        {"id": "ext", "name": "public", "router:external": True},
        {"id": "n1", "name": "<b>inside</b>"},
    ]
    subnets = [{"network_id": "n1", "cidr": "10.0.0.0/24"}]
    gateway = {"network_id": "ext", "external_fixed_ips": [{"ip_address": "203.0.113.5"}]}
    routers = [{"id": "r1", "name": "edge", "status": "ACTIVE", "external_gateway_info": gateway}]
    ports = [
        {"device_id": "r1", "device_owner": "network:router_interface", "network_id": "n1",
         "fixed_ips": [{"ip_address": "10.0.0.1"}]},
        {"device_id": "s1", "device_owner": "compute:nova", "network_id": "n1",
         "fixed_ips": [{"ip_address": "10.0.0.7"}]},
        {"device_id": "r1", "device_owner": "network:router_gateway", "network_id": "ext", "fixed_ips": []},
    ]  # fmt: skip
    servers = [
        {
            "id": "s1",
            "name": "<script>alert(1)</script>",
            "status": "ACTIVE",
            "addresses": {
                "inside": [{"addr": "10.0.0.7"}, {"addr": "203.0.113.9", "OS-EXT-IPS:type": "floating"}]
            },
        },
        {"id": "s2", "name": "alone"},
    ]
    nodes = nodes_of(routers, ports, servers)
    assert [(n.id, sorted(n.legs)) for n in nodes] == [("r1", ["ext", "n1"]), ("s1", ["n1"]), ("s2", [])]
    picture = draw(networks, subnets, nodes)
    assert "<script>" not in picture and "&lt;script&gt;" in picture and "&lt;b&gt;inside" in picture
    root = ElementTree.fromstring(picture)  # well-formed XML
    drawn = {
        g.get("data-router") or g.get("data-server")
        for g in root.iter(f"{SVG}g")
        if g.get("class", "").startswith("node")
    }
    assert drawn == {"r1", "s1"}  # a server on no network is listed by the page, not drawn
    texts = [t.text for t in root.iter(f"{SVG}text")]
    assert "gateway 203.0.113.5" in texts and "10.0.0.7" in texts and "10.0.0.0/24" in texts
    assert "floating 203.0.113.9" in texts
