"""Network agents: one per host, making the kernel match the network service's desired state.

The network service owns networks, subnets, ports, routers, floating IPs and security groups;
an agent owns nothing durable. It receives the whole desired state of its host's plumbing
(`HostNetworking`) and converges the kernel to it: it creates what is missing, fixes what
differs, and removes every fabric-made object that is not in the state (so a restart, or a
state sent twice, is harmless). Names are derived from ids, Neutron style, so that what an
object is can be read from `ip link` and `ip netns`:

    bridge      brq<network id[:11]>          one per network, in the root namespace, no address
    tap         tap<port id[:11]>             a VM's port, made by libvirt, enslaved to the bridge
    dhcp        qdhcp-<network id>            namespace; dnsmasq inside, leg `ns-<port id[:11]>`
    router      qrouter-<router id>           namespace; legs `qr-<port id[:11]>` (tenant
                                              subnets) and `qg-<port id[:11]>` (external)
    outside     fabric-outside (configurable) namespace: "the internet", bridged to the external
                                              network, from which floating IPs are reached

Veth pairs join namespaces to bridges: the namespace end carries the name above; the bridge end
is `t` + the same suffix (e.g. `tns-…`, `tqr-…`; at most 15 characters). The root namespace
holds no tenant or external address and routes nothing.
"""

from dataclasses import dataclass
from typing import Annotated, Literal

from protocol.codec import MaxLen, MinLen

Id = Annotated[str, MinLen(1), MaxLen(64)]
Cidr = Annotated[str, MinLen(9), MaxLen(18)]  # 10.0.0.0/8 ... 255.255.255.255/32
Ip = Annotated[str, MinLen(7), MaxLen(15)]
Mac = Annotated[str, MinLen(17), MaxLen(17)]


def network_agent_queue(host: str) -> str:
    return f"network.{host}"


def bridge_name(network_id: str) -> str:
    """The network's bridge on a host: what a guest's tap joins."""
    return f"brq{network_id[:11]}"


def tap_name(port_id: str) -> str:
    """The tap of a guest's port, made by the hypervisor."""
    return f"tap{port_id[:11]}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Lease:
    """A static DHCP lease: the port's MAC gets this address and hostname, always."""

    mac: Mac
    ip: Ip
    hostname: Annotated[str, MaxLen(63)]


@dataclass(frozen=True, slots=True, kw_only=True)
class SubnetPlumbing:
    subnet_id: Id
    cidr: Cidr
    gateway_ip: Ip | None
    enable_dhcp: bool
    dns_nameservers: tuple[Ip, ...] = ()
    #: (destination CIDR, next hop) pairs handed out by DHCP (option 121).
    host_routes: tuple[tuple[Cidr, Ip], ...] = ()
    #: The DHCP server's own port in this subnet (its address inside `qdhcp-<network>`).
    dhcp_port_id: Id | None = None
    dhcp_ip: Ip | None = None
    dhcp_mac: Mac | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class NetworkPlumbing:
    network_id: Id
    mtu: int
    #: The external network (floating IPs come from it): its bridge joins the outside namespace,
    #: which holds each of its subnets' gateway_ip (it plays the upstream router).
    external: bool
    subnets: tuple[SubnetPlumbing, ...]
    leases: tuple[Lease, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class RouterLeg:
    port_id: Id
    network_id: Id
    mac: Mac
    #: The leg's address with its prefix, e.g. "10.0.0.1/24".
    address: Annotated[str, MinLen(9), MaxLen(18)]


@dataclass(frozen=True, slots=True, kw_only=True)
class FloatingIp:
    floating_ip: Ip
    fixed_ip: Ip


@dataclass(frozen=True, slots=True, kw_only=True)
class RouterPlumbing:
    router_id: Id
    #: Legs in tenant subnets (`qr-`).
    interfaces: tuple[RouterLeg, ...]
    #: The leg on the external network (`qg-`), and the next hop there (the external subnet's
    #: gateway, which lives in the outside namespace); None: no gateway, no SNAT.
    gateway: RouterLeg | None
    gateway_next_hop: Ip | None
    #: Masquerade tenant traffic leaving through the gateway leg.
    snat: bool
    #: DNAT to the fixed IP and SNAT back from it, in the router's nftables table.
    floating_ips: tuple[FloatingIp, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Rule:
    direction: Literal["ingress", "egress"]
    protocol: Literal["tcp", "udp", "icmp"] | None  # None: any
    port_min: int | None
    port_max: int | None
    #: Where from (ingress) or to (egress): a CIDR, or the addresses of a security group's ports
    #: (already expanded by the service); both None: anywhere.
    remote_cidr: Cidr | None
    remote_ips: tuple[Ip, ...] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class PortPlumbing:
    """A VM's port on this host: its tap (made by libvirt) and its security-group rules, applied
    in nftables on the bridge: traffic to and from the tap is dropped unless a rule allows it
    (replies to allowed traffic are allowed: connection tracking). DHCP and ARP always pass, and
    a port may only send from its own MAC and IP (anti-spoofing)."""

    port_id: Id
    network_id: Id
    mac: Mac
    ips: tuple[Ip, ...]
    port_security: bool
    rules: tuple[Rule, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class HostNetworking:
    """Everything the host should have. Sent whole: the agent converges to it."""

    host: Annotated[str, MinLen(1), MaxLen(255)]
    #: Bumped by the service on every change; an agent ignores a state older than the one it applied.
    generation: int
    outside_namespace: Annotated[str, MinLen(1), MaxLen(64)]
    networks: tuple[NetworkPlumbing, ...]
    routers: tuple[RouterPlumbing, ...]
    ports: tuple[PortPlumbing, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class GetHostNetworking:
    """Call to the network service from a host's agent. Reply: HostNetworking."""

    host: Annotated[str, MinLen(1), MaxLen(255)]


@dataclass(frozen=True, slots=True, kw_only=True)
class NetworkingChanged:
    """Event from the network service after any change: agents fetch their state again."""

    generation: int


@dataclass(frozen=True, slots=True, kw_only=True)
class NetworkAgentReport:
    """Event from a network agent, periodically: the host's networking is served. The scheduler
    places servers with NICs only on hosts whose report is fresh."""

    host: Annotated[str, MinLen(1), MaxLen(255)]
    generation: int
    sent_at: float


@dataclass(frozen=True, slots=True, kw_only=True)
class PlugPorts:
    """Call to a host's network agent from its compute agent, before a guest with these ports
    starts (what Nova's wait for Neutron's `network-vif-plugged` is for). The agent answers
    after a convergence to a state it fetched after the call arrived: the ports were bound
    before, so that state has their networks, and no convergence to an older state (one that
    would remove a bridge that looked unused) can run after the answer. Reply: PortsPlugged."""

    port_ids: Annotated[tuple[Id, ...], MaxLen(64)]


@dataclass(frozen=True, slots=True, kw_only=True)
class PortsPlugged:
    """`missing`: the asked ports that the host's state does not have (not bound to the host)."""

    missing: tuple[Id, ...]


MESSAGES = (
    GetHostNetworking,
    PlugPorts,
    PortsPlugged,
    NetworkingChanged,
    NetworkAgentReport,
    Lease,
    SubnetPlumbing,
    NetworkPlumbing,
    RouterLeg,
    FloatingIp,
    RouterPlumbing,
    Rule,
    PortPlumbing,
    HostNetworking,
)
