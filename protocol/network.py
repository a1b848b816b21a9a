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
    #: The hostname DHCP gives the guest on this port (Neutron's dns_name).
    dns_name: Annotated[str, MaxLen(63)] = ""
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


@dataclass(frozen=True, slots=True, kw_only=True)
class DeletePort:
    """Reply: Done. Its addresses go back to the pools."""

    port_id: Id


@dataclass(frozen=True, slots=True, kw_only=True)
class DeviceAddressesChanged:
    """Event: the addresses reaching these devices (servers) changed, e.g. a floating IP was
    associated with one of their ports. Compute refreshes what it shows on the servers."""

    device_ids: tuple[str, ...]


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
    PortView,
    PortList,
    CreatePort,
    GetPort,
    ListPorts,
    UpdatePort,
    DeletePort,
    DeviceAddressesChanged,
    NetworkQuotas,
    GetNetworkQuotas,
    SetNetworkQuotas,
)
