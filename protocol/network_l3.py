"""Routers and floating IPs (Neutron's L3), served by the network service on the `network`
queue.

A router joins tenant subnets (an interface is a port on the subnet holding its gateway address)
and, through its gateway (a port on an external network), the outside, masquerading tenant
traffic (SNAT). A floating IP is an address of an external network, held by a port of its own,
that the router of the fixed IP's subnet forwards to a tenant port (DNAT) and from it (SNAT).
"""

from dataclasses import dataclass
from typing import Annotated

from protocol.codec import MaxLen, Range
from protocol.network import Description, DnsText, FixedIp, Id, Ip, Name


@dataclass(frozen=True, slots=True, kw_only=True)
class ExternalGateway:
    network_id: str
    enable_snat: bool
    external_fixed_ips: tuple[FixedIp, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class RouterView:
    id: str
    name: str
    description: str
    project_id: str
    admin_state_up: bool
    external_gateway: ExternalGateway | None
    created_at: float
    updated_at: float
    revision_number: int


@dataclass(frozen=True, slots=True, kw_only=True)
class RouterList:
    items: tuple[RouterView, ...]
    more: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class GatewayRequest:
    network_id: Id
    enable_snat: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class CreateRouter:
    """Reply: RouterView."""

    router_id: Id
    name: Name = ""
    description: Description = ""
    admin_state_up: bool = True
    gateway: GatewayRequest | None = None
    project_id: Id | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class GetRouter:
    router_id: Id


@dataclass(frozen=True, slots=True, kw_only=True)
class ListRouters:
    name: Name | None = None
    project_id: Id | None = None
    ids: Annotated[tuple[Id, ...], MaxLen(1000)] | None = None
    limit: Annotated[int, Range(1, 1000)] = 1000
    marker: Id | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class UpdateRouter:
    """Fields left None keep their value. `clear_gateway` removes the gateway (and with it
    every floating IP's route through this router stops working until another is set)."""

    router_id: Id
    name: Name | None = None
    description: Description | None = None
    admin_state_up: bool | None = None
    gateway: GatewayRequest | None = None
    clear_gateway: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class DeleteRouter:
    """Reply: Done; Conflict while it has interfaces or floating IPs go through it."""

    router_id: Id


@dataclass(frozen=True, slots=True, kw_only=True)
class RouterInterface:
    router_id: str
    subnet_id: str
    port_id: str
    network_id: str
    project_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class AddRouterInterface:
    """By subnet (a port with the subnet's gateway address is made) or by an existing port.
    Reply: RouterInterface; Invalid when the subnet overlaps one the router has already or has
    no gateway address; Conflict when that address is taken."""

    router_id: Id
    subnet_id: Id | None = None
    port_id: Id | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RemoveRouterInterface:
    """Reply: RouterInterface; Conflict while a floating IP goes through it."""

    router_id: Id
    subnet_id: Id | None = None
    port_id: Id | None = None


# --- floating IPs ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class FloatingIpView:
    id: str
    floating_ip_address: str
    floating_network_id: str
    fixed_ip_address: str | None
    port_id: str | None
    router_id: str | None
    description: str
    project_id: str
    status: str
    #: Its own name in DNS, set at create only ('' both, or neither).
    dns_name: str
    dns_domain: str
    created_at: float
    updated_at: float
    revision_number: int


@dataclass(frozen=True, slots=True, kw_only=True)
class FloatingIpList:
    items: tuple[FloatingIpView, ...]
    more: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class CreateFloatingIp:
    """Reply: FloatingIpView; Invalid when the network is not external; Conflict when it has no
    free address; NotFound (as Neutron) when `port_id`'s subnet has no router to that network."""

    floatingip_id: Id
    floating_network_id: Id
    floating_ip_address: Ip | None = None
    port_id: Id | None = None
    fixed_ip_address: Ip | None = None
    description: Description = ""
    #: Its own name (relative, no trailing dot) in `dns_domain` (an FQDN): both or neither, and
    #: never changed afterwards (Neutron's dns-integration). Invalid (floatingip.dns_*) otherwise.
    dns_name: DnsText = ""
    dns_domain: DnsText = ""
    project_id: Id | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class GetFloatingIp:
    floatingip_id: Id


@dataclass(frozen=True, slots=True, kw_only=True)
class ListFloatingIps:
    floating_network_id: Id | None = None
    port_id: Id | None = None
    router_id: Id | None = None
    floating_ip_address: Ip | None = None
    project_id: Id | None = None
    ids: Annotated[tuple[Id, ...], MaxLen(1000)] | None = None
    limit: Annotated[int, Range(1, 1000)] = 1000
    marker: Id | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class AssociateFloatingIp:
    """`port_id` None: disassociate. Reply: FloatingIpView."""

    floatingip_id: Id
    port_id: Id | None
    fixed_ip_address: Ip | None = None
    description: Description | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class DeleteFloatingIp:
    floatingip_id: Id


MESSAGES = (
    ExternalGateway,
    RouterView,
    RouterList,
    GatewayRequest,
    CreateRouter,
    GetRouter,
    ListRouters,
    UpdateRouter,
    DeleteRouter,
    RouterInterface,
    AddRouterInterface,
    RemoveRouterInterface,
    FloatingIpView,
    FloatingIpList,
    CreateFloatingIp,
    GetFloatingIp,
    ListFloatingIps,
    AssociateFloatingIp,
    DeleteFloatingIp,
)
