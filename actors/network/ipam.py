"""Address arithmetic for subnets, pure: the checks Neutron makes on a subnet and its pools.

The allocation itself happens in PostgreSQL (`sql.first_free` under the subnet's row lock, and
the primary key of `ip_allocations`); this module only decides what is valid.
"""

import ipaddress
import itertools
from ipaddress import IPv4Address, IPv4Network

from protocol.errors import Invalid


def network_of(cidr: str, field: str = "subnet.cidr") -> IPv4Network:
    try:
        net = ipaddress.ip_network(cidr, strict=True)
    except ValueError as exc:
        raise Invalid(field, f"{cidr[:40]!r} is not an IPv4 network in CIDR form ({exc})") from None
    if not isinstance(net, IPv4Network):
        raise Invalid(field, "only IPv4 subnets are supported")
    if net.prefixlen > 30:
        raise Invalid(field, "a subnet needs at least a /30 to hold addresses")
    return net


def address(value: str, field: str) -> IPv4Address:
    try:
        ip = ipaddress.ip_address(value)
    except ValueError:
        raise Invalid(field, f"{value[:40]!r} is not an IPv4 address") from None
    if not isinstance(ip, IPv4Address):
        raise Invalid(field, "only IPv4 addresses are supported")
    return ip


def usable(net: IPv4Network, ip: IPv4Address) -> bool:
    """Inside the network and neither its network nor its broadcast address."""
    return ip in net and ip != net.network_address and ip != net.broadcast_address


def gateway(net: IPv4Network, asked: str | None, *, none: bool) -> IPv4Address | None:
    if none:
        return None
    if asked is None:
        return net.network_address + 1
    ip = address(asked, "subnet.gateway_ip")
    if not usable(net, ip):
        raise Invalid("subnet.gateway_ip", f"{ip} is not a usable address of {net}")
    return ip


def pools(
    net: IPv4Network, asked: list[tuple[str, str]] | None, gw: IPv4Address | None
) -> list[tuple[IPv4Address, IPv4Address]]:
    """Asked pools checked (inside the subnet, ordered, not overlapping, not holding the
    gateway), or by default every usable address but the gateway, as one or two ranges."""
    first, last = net.network_address + 1, net.broadcast_address - 1
    if asked is None:
        if gw is None or gw < first or gw > last:
            return [(first, last)]
        ranges = [(first, gw - 1), (gw + 1, last)]
        return [(a, b) for a, b in ranges if a <= b]
    checked: list[tuple[IPv4Address, IPv4Address]] = []
    for i, (raw_start, raw_end) in enumerate(asked):
        field = f"subnet.allocation_pools[{i}]"
        start, end = address(raw_start, f"{field}.start"), address(raw_end, f"{field}.end")
        if start > end:
            raise Invalid(field, f"start {start} is after end {end}")
        if not (usable(net, start) and usable(net, end)):
            raise Invalid(field, f"{start}-{end} is not inside {net}'s usable addresses")
        if gw is not None and start <= gw <= end:
            raise Invalid(field, f"{start}-{end} holds the gateway {gw}")
        checked.append((start, end))
    checked.sort()
    for (_, end), (start, _) in itertools.pairwise(checked):
        if start <= end:
            raise Invalid("subnet.allocation_pools", "pools overlap")
    return checked


def in_pools(ip: IPv4Address, ranges: list[tuple[str, str]]) -> bool:
    return any(IPv4Address(a) <= ip <= IPv4Address(b) for a, b in ranges)


def overlapping(net: IPv4Network, others: list[str]) -> str | None:
    """The first of `others` (CIDRs) that overlaps `net`, if any."""
    for other in others:
        if net.overlaps(ipaddress.ip_network(other)):
            return other
    return None
