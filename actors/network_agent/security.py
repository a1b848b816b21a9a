"""Security groups: per-port nftables chains on the bridges, in the root namespace.

A port with port_security gets three chains in `table bridge fabric_sg`, keyed by its tap:

    from-<tap>   (prerouting, before anything else sees the frame) anti-spoofing: only the port's
                 MAC, ARP only for its addresses, IPv4 only from its addresses (or the DHCP
                 discover from 0.0.0.0); nothing else (no IPv6: the fabric is IPv4 only)
    out-<tap>    (forward) what the VM may send: ARP, DHCP as a client, the egress rules
    in-<tap>     (forward) what the VM may receive: ARP, DHCP replies, the ingress rules

Replies to allowed traffic pass through connection tracking. This kernel, like many, has no
conntrack for the bridge family (nf_conntrack_bridge; `ct` in a bridge table fails with EPROTO),
so the state comes from the ip family instead: brq bridges are made with nf_call_iptables, which
sends bridged IPv4 through the ip family's hooks (br_netfilter), and `table ip fabric_sg_ct`
there (1) puts each network's traffic in its own conntrack zone, since tenant networks may
overlap, and (2) marks packets of established or related connections. The bridge forward chain
runs at priority 10, after br_netfilter's ip forward hook (-1), and accepts marked packets before
any port's chains. The ip table only filters and marks: the root namespace still holds no address
and routes nothing.
"""

import hashlib
import re

from actors.network_agent.names import CONNTRACK_TABLE, SECURITY_TABLE, bridge_name, tap_name
from actors.network_agent.nftables import Chain, Table
from protocol.network_agent import HostNetworking, PortPlumbing, Rule

#: The packet mark bit that says "established or related" between the two tables.
ESTABLISHED_MARK = 0x10000000


def conntrack_zone(network_id: str) -> int:
    """A stable zone per network, 1..65535, from its id (a collision only matters if the two
    networks also overlap in addresses, and are on the same host)."""
    return 1 + int.from_bytes(hashlib.sha256(network_id.encode()).digest()[:4], "big") % 65535


def _chain_suffix(tap: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", tap)


def rule_match(rule: Rule) -> str | None:
    """The nft rule that lets a security-group rule's traffic through; None if it lets nothing
    (a remote group with no ports)."""
    direction = "saddr" if rule.direction == "ingress" else "daddr"
    parts = []
    if rule.remote_ips is not None:
        if not rule.remote_ips:
            return None
        parts.append(f"ip {direction} {{ {', '.join(sorted(rule.remote_ips))} }}")
    elif rule.remote_cidr is not None:
        parts.append(f"ip {direction} {rule.remote_cidr}")
    if rule.protocol is None:
        parts.append("ether type ip")
    elif rule.protocol in ("tcp", "udp"):
        parts.append(f"meta l4proto {rule.protocol}")
        low, high = rule.port_min, rule.port_max
        if low is not None or high is not None:
            low, high = low if low is not None else high, high if high is not None else low
            parts.append(f"{rule.protocol} dport {low}" + (f"-{high}" if high != low else ""))
    else:  # icmp: Neutron's port_min and port_max are the ICMP type and code
        parts.append("meta l4proto icmp")
        if rule.port_min is not None:
            parts.append(f"icmp type {rule.port_min}")
            if rule.port_max is not None:
                parts.append(f"icmp code {rule.port_max}")
    return " ".join(parts) + " return"


def port_chains(port: PortPlumbing) -> tuple[Chain, Chain, Chain]:
    suffix = _chain_suffix(tap_name(port.port_id))
    mac = port.mac.lower()
    ips = ", ".join(sorted(port.ips))
    spoofing = [
        f"ether saddr != {mac} drop",
        f"arp saddr ether != {mac} drop",
        f"arp saddr ip != {{ {', '.join(['0.0.0.0', *sorted(port.ips)])} }} drop",
        "ether type arp return",
        "ip saddr 0.0.0.0 ip daddr 255.255.255.255 udp sport 68 udp dport 67 return",
    ]
    if port.ips:
        spoofing += [f"ip saddr != {{ {ips} }} drop", "ether type ip return"]
    spoofing.append("drop")
    rules: dict[str, list[str]] = {"ingress": [], "egress": []}
    for rule in port.rules:
        match = rule_match(rule)
        if match is not None:
            rules[rule.direction].append(match)
    egress = [
        "ether type arp return",
        "udp sport 67 udp dport 68 drop",  # a VM is no DHCP server
        "udp sport 68 udp dport 67 return",
        *rules["egress"],
        "drop",
    ]
    ingress = ["ether type arp return", "udp sport 67 udp dport 68 return", *rules["ingress"], "drop"]
    return (
        Chain(f"from-{suffix}", tuple(spoofing)),
        Chain(f"out-{suffix}", tuple(egress)),
        Chain(f"in-{suffix}", tuple(ingress)),
    )


def _vmap(key: str, chains: dict[str, str]) -> str:
    entries = ", ".join(f'"{tap}" : jump {chain}' for tap, chain in sorted(chains.items()))
    return f"{key} vmap {{ {entries} }}"


def tables(state: HostNetworking) -> tuple[Table | None, Table | None]:
    """(the bridge table, the conntrack table) for the state's ports; (None, None) when no port
    has port security. Pure."""
    guarded = sorted((p for p in state.ports if p.port_security), key=lambda p: p.port_id)
    if not guarded:
        return None, None
    chains: list[Chain] = []
    spoofing: dict[str, str] = {}
    egress: dict[str, str] = {}
    ingress: dict[str, str] = {}
    for port in guarded:
        tap = tap_name(port.port_id)
        from_chain, out_chain, in_chain = port_chains(port)
        chains += [from_chain, out_chain, in_chain]
        spoofing[tap], egress[tap], ingress[tap] = from_chain.name, out_chain.name, in_chain.name
    bridge_table = Table(
        *SECURITY_TABLE,
        (
            Chain(
                "spoofing",
                (_vmap("iifname", spoofing),),
                "type filter hook prerouting priority -300; policy accept;",
            ),
            Chain(
                "ports",
                (
                    f"meta mark & {ESTABLISHED_MARK:#x} == {ESTABLISHED_MARK:#x} accept",
                    _vmap("iifname", egress),
                    _vmap("oifname", ingress),
                ),
                "type filter hook forward priority 10; policy accept;",
            ),
            *chains,
        ),
    )
    zones = ", ".join(
        f'"{bridge_name(n.network_id)}" : {conntrack_zone(n.network_id)}'
        for n in sorted(state.networks, key=lambda n: n.network_id)
    )
    conntrack_table = Table(
        *CONNTRACK_TABLE,
        (
            Chain(
                "zones",
                (f"ct zone set iifname map {{ {zones} }}",) if zones else (),
                "type filter hook prerouting priority raw; policy accept;",
            ),
            Chain(
                "state",
                (f"ct state established,related meta mark set meta mark | {ESTABLISHED_MARK:#x}",),
                "type filter hook forward priority filter; policy accept;",
            ),
        ),
    )
    return bridge_table, conntrack_table
