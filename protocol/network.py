"""Networks, subnets and ports (Neutron's core). The queue is `network`.

A network is an L2 segment; a subnet an IPv4 range on it, from whose allocation pools ports get
their addresses; a port a place on the network (a VM's NIC, a DHCP server, a router's leg) with
a MAC and fixed IPs. Addresses are allocated in PostgreSQL under a lock on the subnet's row, so
replicas never hand out one address twice.
"""

from dataclasses import dataclass
from typing import Annotated

from protocol.codec import MaxLen, MinLen, Range

QUEUE = "network"

Id = Annotated[str, MinLen(1), MaxLen(64)]
Name = Annotated[str, MaxLen(255)]
Description = Annotated[str, MaxLen(1024)]
Ip = Annotated[str, MinLen(7), MaxLen(15)]
#: A `dns_name` or `dns_domain` (Neutron's dns-integration); the service checks what it holds.
DnsText = Annotated[str, MaxLen(255)]


@dataclass(frozen=True, slots=True, kw_only=True)
class NetworkView:
    id: str
    name: str
    description: str
    project_id: str
    admin_state_up: bool
    shared: bool
    external: bool
    mtu: int
    port_security_enabled: bool
    subnets: tuple[str, ...]
    #: The domain its ports' names are published in (an FQDN with trailing dot), or ''.
    dns_domain: str
    created_at: float
    updated_at: float
    revision_number: int


@dataclass(frozen=True, slots=True, kw_only=True)
class NetworkList:
    items: tuple[NetworkView, ...]
    more: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class CreateNetwork:
    """Reply: NetworkView. `external` and `shared` are for admins."""

    network_id: Id
    name: Name = ""
    description: Description = ""
    admin_state_up: bool = True
    shared: bool = False
    external: bool = False
    mtu: Annotated[int, Range(68, 9000)] = 1500
    port_security_enabled: bool = True
    #: An FQDN with its trailing dot, or ''; Invalid (network.dns_domain) otherwise.
    dns_domain: DnsText = ""
    #: Admins may create on behalf of a project.
    project_id: Id | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class GetNetwork:
    """Reply: NetworkView; NotFound unless the caller's project owns it, it is shared or
    external, or the caller is an admin."""

    network_id: Id


@dataclass(frozen=True, slots=True, kw_only=True)
class ListNetworks:
    """Reply: NetworkList, by id. Equality filters; None: not filtered."""

    name: Name | None = None
    project_id: Id | None = None
    shared: bool | None = None
    external: bool | None = None
    ids: Annotated[tuple[Id, ...], MaxLen(1000)] | None = None
    limit: Annotated[int, Range(1, 1000)] = 1000
    marker: Id | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class UpdateNetwork:
    """Reply: NetworkView. Fields left None keep their value."""

    network_id: Id
    name: Name | None = None
    description: Description | None = None
    admin_state_up: bool | None = None
    shared: bool | None = None
    external: bool | None = None
    mtu: Annotated[int, Range(68, 9000)] | None = None
    port_security_enabled: bool | None = None
    dns_domain: DnsText | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class DeleteNetwork:
    """Reply: Done; Conflict while ports other than the network's own (DHCP) are on it."""

    network_id: Id


# --- subnets -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Pool:
    start: Ip
    end: Ip


@dataclass(frozen=True, slots=True, kw_only=True)
class HostRoute:
    destination: Annotated[str, MinLen(9), MaxLen(18)]
    nexthop: Ip


@dataclass(frozen=True, slots=True, kw_only=True)
class SubnetView:
    id: str
    name: str
    description: str
    network_id: str
    project_id: str
    cidr: str
    gateway_ip: str | None
    allocation_pools: tuple[Pool, ...]
    enable_dhcp: bool
    dns_nameservers: tuple[str, ...]
    host_routes: tuple[HostRoute, ...]
    created_at: float
    updated_at: float
    revision_number: int


@dataclass(frozen=True, slots=True, kw_only=True)
class SubnetList:
    items: tuple[SubnetView, ...]
    more: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class CreateSubnet:
    """IPv4 only. `gateway_ip` absent: the first address; `no_gateway`: none. Pools absent: every
    address but the network, broadcast and gateway ones. Reply: SubnetView; Invalid for a gateway
    or pool outside the CIDR, overlapping pools, or a CIDR that overlaps another subnet of the
    network."""

    subnet_id: Id
    network_id: Id
    cidr: Annotated[str, MinLen(9), MaxLen(18)]
    name: Name = ""
    description: Description = ""
    gateway_ip: Ip | None = None
    no_gateway: bool = False
    allocation_pools: Annotated[tuple[Pool, ...], MaxLen(64)] | None = None
    enable_dhcp: bool = True
    dns_nameservers: Annotated[tuple[Ip, ...], MaxLen(8)] = ()
    host_routes: Annotated[tuple[HostRoute, ...], MaxLen(32)] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class GetSubnet:
    subnet_id: Id


@dataclass(frozen=True, slots=True, kw_only=True)
class ListSubnets:
    name: Name | None = None
    network_id: Id | None = None
    project_id: Id | None = None
    cidr: Annotated[str, MaxLen(18)] | None = None
    ids: Annotated[tuple[Id, ...], MaxLen(1000)] | None = None
    limit: Annotated[int, Range(1, 1000)] = 1000
    marker: Id | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class UpdateSubnet:
    subnet_id: Id
    name: Name | None = None
    description: Description | None = None
    enable_dhcp: bool | None = None
    dns_nameservers: Annotated[tuple[Ip, ...], MaxLen(8)] | None = None
    host_routes: Annotated[tuple[HostRoute, ...], MaxLen(32)] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class DeleteSubnet:
    """Reply: Done; Conflict while ports other than its DHCP port hold addresses in it."""

    subnet_id: Id


# --- ports -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class FixedIp:
    subnet_id: str
    ip_address: str


@dataclass(frozen=True, slots=True, kw_only=True)
class FixedIpRequest:
    """An address asked for: a subnet (any free address in it), an address, or both."""

    subnet_id: Id | None = None
    ip_address: Ip | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class DnsAssignment:
    """A name a port's fixed address has (Neutron's `dns_assignment`): `dns_name` or
    `host-<a-b-c-d>`, in the port's domain or `openstacklocal.`."""

    hostname: str
    ip_address: str
    fqdn: str


@dataclass(frozen=True, slots=True, kw_only=True)
class PortView:
    id: str
    name: str
    description: str
    network_id: str
    project_id: str
    mac_address: str
    fixed_ips: tuple[FixedIp, ...]
    device_id: str
    device_owner: str
    binding_host_id: str
    status: str
    admin_state_up: bool
    port_security_enabled: bool
    security_groups: tuple[str, ...]
    dns_name: str
    #: The port's own domain (dns-domain-ports), '' when its network's applies.
    dns_domain: str
    dns_assignment: tuple[DnsAssignment, ...]
    created_at: float
    updated_at: float
    revision_number: int


@dataclass(frozen=True, slots=True, kw_only=True)
class PortList:
    items: tuple[PortView, ...]
    more: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class CreatePort:
    """Reply: PortView. `fixed_ips` None: one address from each subnet of the network (from the
    first subnet only, as Neutron does for IPv4). Conflict when a subnet has no free address or
    an asked address is taken; Invalid for an address outside the subnet."""

    port_id: Id
    network_id: Id
    name: Name = ""
    description: Description = ""
    fixed_ips: Annotated[tuple[FixedIpRequest, ...], MaxLen(16)] | None = None
    mac_address: Annotated[str, MinLen(17), MaxLen(17)] | None = None
    device_id: Annotated[str, MaxLen(255)] = ""
    device_owner: Annotated[str, MaxLen(255)] = ""
    binding_host_id: Annotated[str, MaxLen(255)] = ""
    #: The hostname DHCP gives the guest on this port and, in the port's domain, its name in
    #: DNS (Neutron's dns_name): one DNS label, lowercased; Invalid (port.dns_name) otherwise.
    dns_name: DnsText = ""
    #: A domain of its own, over its network's (dns-domain-ports).
    dns_domain: DnsText = ""
    admin_state_up: bool = True
    port_security_enabled: bool | None = None
    #: The port's security groups (of its project); None: the project's `default` group.
    security_groups: Annotated[tuple[Id, ...], MaxLen(32)] | None = None
    #: Admins may create on behalf of a project.
    project_id: Id | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class GetPort:
    port_id: Id


@dataclass(frozen=True, slots=True, kw_only=True)
class ListPorts:
    name: Name | None = None
    network_id: Id | None = None
    project_id: Id | None = None
    device_id: Annotated[str, MaxLen(255)] | None = None
    device_owner: Annotated[str, MaxLen(255)] | None = None
    mac_address: Annotated[str, MaxLen(17)] | None = None
    ids: Annotated[tuple[Id, ...], MaxLen(1000)] | None = None
    limit: Annotated[int, Range(1, 1000)] = 1000
    marker: Id | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class UpdatePort:
    port_id: Id
    name: Name | None = None
    description: Description | None = None
    device_id: Annotated[str, MaxLen(255)] | None = None
    device_owner: Annotated[str, MaxLen(255)] | None = None
    binding_host_id: Annotated[str, MaxLen(255)] | None = None
    admin_state_up: bool | None = None
    port_security_enabled: bool | None = None
    security_groups: Annotated[tuple[Id, ...], MaxLen(32)] | None = None
    dns_name: DnsText | None = None
    dns_domain: DnsText | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class DeletePort:
    """Reply: Done. Its addresses go back to the pools."""

    port_id: Id


@dataclass(frozen=True, slots=True, kw_only=True)
class DeviceAddressesChanged:
    """Event: the addresses reaching these devices (servers) changed, e.g. a floating IP was
    associated with one of their ports. Compute refreshes what it shows on the servers."""

    device_ids: tuple[str, ...]


# --- names in DNS (for the DNS service) --------------------------------------------------------

#: The most ids one ListDnsBindings takes of each kind, and one DnsNamesChanged carries.
DNS_IDS_MAX = 10_000


@dataclass(frozen=True, slots=True, kw_only=True)
class DnsNamesChanged:
    """Event: the names, or the addresses behind them, of these ports and floating IPs may have
    changed (a named port made, renamed, moved to another domain or deleted; a network's domain
    changed; a floating IP made, associated, disassociated or deleted). Ids only: the DNS
    service asks ListDnsBindings what they are now. Published after the change committed."""

    port_ids: tuple[str, ...]
    floatingip_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class ListDnsBindings:
    """Admins only (the DNS service, with a service context). None: every one there is.
    Reply: DnsBindings, holding only those asked for that have a name (or, for floating IPs, an
    address to point back at): an id asked for and absent from the reply has no record."""

    port_ids: Annotated[tuple[Id, ...], MaxLen(DNS_IDS_MAX)] | None = None
    floatingip_ids: Annotated[tuple[Id, ...], MaxLen(DNS_IDS_MAX)] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class PortDnsBinding:
    """A port with a `dns_name`, a domain (its own, else its network's) and at least one fixed
    address: `fqdn` (`<dns_name>.<domain>`, trailing dot) has an A record per address."""

    port_id: str
    project_id: str
    fqdn: str
    addresses: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class FloatingIpDnsBinding:
    """A floating IP that is associated with a port or has its own name. `fqdn`: its own
    `dns_name.dns_domain`; else, associated with a port that has a name, that name in the
    floating IP's external network's domain (the "external zone": the port's own name stays
    in its own network's domain, for its fixed address; Neutron would put both in the port's
    domain); else None: no records."""

    floatingip_id: str
    project_id: str
    address: str
    fqdn: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class DnsBindings:
    ports: tuple[PortDnsBinding, ...]
    floatingips: tuple[FloatingIpDnsBinding, ...]


# --- quotas ------------------------------------------------------------------------------------

#: Every network quota and its default (Neutron's); -1 means unlimited.
NETWORK_QUOTA_DEFAULTS: dict[str, int] = {
    "network": 100,
    "subnet": 100,
    "port": 500,
    "router": 10,
    "floatingip": 50,
    "security_group": 10,
    "security_group_rule": 100,
}


@dataclass(frozen=True, slots=True, kw_only=True)
class NetworkQuotas:
    project_id: str
    limits: dict[str, int]
    used: dict[str, int]


@dataclass(frozen=True, slots=True, kw_only=True)
class GetNetworkQuotas:
    """A project's own, or any project's for admins. Reply: NetworkQuotas."""

    project_id: Id


@dataclass(frozen=True, slots=True, kw_only=True)
class SetNetworkQuotas:
    """Admins only; `reset`: back to the defaults. Reply: NetworkQuotas."""

    project_id: Id
    limits: Annotated[dict[str, Annotated[int, Range(-1, 2**31 - 1)]], MaxLen(16)]
    reset: bool = False


MESSAGES = (
    NetworkView,
    NetworkList,
    CreateNetwork,
    GetNetwork,
    ListNetworks,
    UpdateNetwork,
    DeleteNetwork,
    Pool,
    HostRoute,
    SubnetView,
    SubnetList,
    CreateSubnet,
    GetSubnet,
    ListSubnets,
    UpdateSubnet,
    DeleteSubnet,
    FixedIp,
    FixedIpRequest,
    DnsAssignment,
    PortView,
    PortList,
    CreatePort,
    GetPort,
    ListPorts,
    UpdatePort,
    DeletePort,
    DeviceAddressesChanged,
    DnsNamesChanged,
    ListDnsBindings,
    PortDnsBinding,
    FloatingIpDnsBinding,
    DnsBindings,
    NetworkQuotas,
    GetNetworkQuotas,
    SetNetworkQuotas,
)
