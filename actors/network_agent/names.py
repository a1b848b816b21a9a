"""The names of the kernel objects the agent makes, derived from ids as protocol/network_agent.py
lays down, and how the agent recognises its own among everything else on the host.

Interface names are at most 15 characters (IFNAMSIZ - 1): a three-letter prefix and the first
eleven characters of an id, or `t` + a two-letter prefix + `-` + eleven for a veth's bridge end.
"""

import re

# The protocol's, since the compute agent names the taps and bridges its guests' NICs use.
from protocol.network_agent import bridge_name as bridge_name
from protocol.network_agent import tap_name as tap_name

BRIDGE_PREFIX = "brq"
TAP_PREFIX = "tap"
DHCP_NAMESPACE_PREFIX = "qdhcp-"
ROUTER_NAMESPACE_PREFIX = "qrouter-"

#: The bridge ends of the veths the agent makes (`tns-…`, `tqr-…`, `tqg-…`, `tog-…`). Taps (`tap…`)
#: also start with a t, and are libvirt's: this pattern never matches them.
VETH_BRIDGE_END = re.compile(r"^t(ns|qr|qg|og)-")

#: The agent's nftables tables: security groups in the root namespace (a bridge table for the
#: per-port chains, an ip table for connection tracking), NAT in each router's namespace.
SECURITY_TABLE = ("bridge", "fabric_sg")
CONNTRACK_TABLE = ("ip", "fabric_sg_ct")
ROUTER_TABLE = ("ip", "fabric_router")


def short(some_id: str) -> str:
    return some_id[:11]


def dhcp_namespace(network_id: str) -> str:
    return f"{DHCP_NAMESPACE_PREFIX}{network_id}"


def router_namespace(router_id: str) -> str:
    return f"{ROUTER_NAMESPACE_PREFIX}{router_id}"


def dhcp_leg(port_id: str) -> str:
    return f"ns-{short(port_id)}"


def router_interface_leg(port_id: str) -> str:
    return f"qr-{short(port_id)}"


def router_gateway_leg(port_id: str) -> str:
    return f"qg-{short(port_id)}"


def outside_leg(network_id: str) -> str:
    """The outside namespace's leg on an external network (the protocol leaves it unnamed)."""
    return f"og-{short(network_id)}"


def bridge_end(leg: str) -> str:
    """The root-namespace end of a namespace leg's veth pair: `t` + the leg's name."""
    return f"t{leg}"


def is_fabric_namespace(name: str, outside_namespace: str) -> bool:
    return name.startswith((DHCP_NAMESPACE_PREFIX, ROUTER_NAMESPACE_PREFIX)) or name == outside_namespace
