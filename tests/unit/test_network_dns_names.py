"""The checks on names of ports, networks and floating IPs (Neutron's dns-integration), and the
`dns_assignment` a port shows: pure, no service."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from actors.network import dns_names
from protocol.compute import hostname_of
from protocol.errors import Invalid
from protocol.network import DnsAssignment


@pytest.mark.parametrize(
    ("value", "expected"), [("", ""), ("web-1", "web-1"), ("WEB", "web"), ("0", "0"), ("a" * 63, "a" * 63)]
)
def test_a_port_name_is_one_label_lowercased(value: str, expected: str) -> None:
    assert dns_names.port_name(value, "port.dns_name") == expected


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("web.example.org", "one label"),
        ("web.", "one label"),
        ("-web", "hyphen"),
        ("web-", "hyphen"),
        ("web_1", "hyphen"),
        ("a" * 64, "1-63"),
        ("wéb", "letters"),
    ],
)
def test_a_bad_port_name_is_refused_naming_the_field(value: str, why: str) -> None:
    with pytest.raises(Invalid) as caught:
        dns_names.port_name(value, "port.dns_name")
    assert caught.value.field == "port.dns_name" and why in caught.value.reason


@pytest.mark.parametrize(
    ("value", "expected"),
    [("", ""), ("example.org.", "example.org."), ("Corp.Example.ORG.", "corp.example.org."), ("a1.", "a1.")],
)
def test_a_domain_is_an_fqdn_with_its_trailing_dot(value: str, expected: str) -> None:
    assert dns_names.domain(value, "network.dns_domain") == expected


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("example.org", "end it with '.'"),
        (".", "empty label"),
        ("example..org.", "empty label"),
        ("example.123.", "all digits"),
        ("ex ample.org.", "letters"),
        ("-example.org.", "hyphen"),
        (("a" * 63 + ".") * 4, "at most 253"),
    ],
)
def test_a_bad_domain_is_refused_naming_the_field(value: str, why: str) -> None:
    with pytest.raises(Invalid) as caught:
        dns_names.domain(value, "network.dns_domain")
    assert caught.value.field == "network.dns_domain" and why in caught.value.reason


def test_a_floating_ip_name_is_relative() -> None:
    assert dns_names.floating_ip_name("WWW.Shop", "floatingip.dns_name") == "www.shop"
    with pytest.raises(Invalid, match="fully qualified"):
        dns_names.floating_ip_name("www.shop.", "floatingip.dns_name")
    with pytest.raises(Invalid, match="at most 252"):
        dns_names.floating_ip_name(("a" * 50 + ".") * 5 + "abc", "floatingip.dns_name")


def test_a_name_and_its_domain_fit_an_fqdn() -> None:
    dns_names.fits("a" * 63, "b" * 60 + "." + "c" * 60 + "." + "d" * 60 + ".", "port.dns_name")
    with pytest.raises(Invalid) as caught:
        dns_names.fits("a" * 63, ("b" * 62 + ".") * 3 + "c" * 5 + ".", "port.dns_name")
    assert caught.value.field == "port.dns_name"
    dns_names.fits("", "x" * 253, "port.dns_name")  # no name: nothing to fit


def test_dns_assignment_names_each_address() -> None:
    named = dns_names.assignment("web", "example.org.", ("10.0.0.5", "10.0.1.5"))
    assert named == (
        DnsAssignment(hostname="web", ip_address="10.0.0.5", fqdn="web.example.org."),
        DnsAssignment(hostname="web", ip_address="10.0.1.5", fqdn="web.example.org."),
    )
    # Neutron's defaults: the address as hostname, `openstacklocal.` as domain.
    (unnamed,) = dns_names.assignment("", "", ("10.0.0.7",))
    assert unnamed == DnsAssignment(
        hostname="host-10-0-0-7", ip_address="10.0.0.7", fqdn="host-10-0-0-7.openstacklocal."
    )
    assert dns_names.assignment("web", "", ()) == ()


@given(st.text(min_size=1, max_size=300))
def test_every_server_name_makes_a_port_name_the_network_takes(name: str) -> None:
    """Compute names a server's ports after the server (`hostname_of`): whatever the server is
    called, the network service must take that name, or booting would fail on a name."""
    hostname = hostname_of(name)
    assert dns_names.port_name(hostname, "port.dns_name") == hostname
