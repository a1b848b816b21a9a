"""Security groups and their rules, served by the network service on the `network` queue.

A port's traffic is dropped unless a rule of one of its groups allows it (replies to allowed
traffic pass). Every project has a group named `default`, made the first time the project needs
one: all egress, and ingress from ports of the same group. Ports get it unless they name others.
"""

from dataclasses import dataclass
from typing import Annotated, Literal

from protocol.codec import MaxLen, Range
from protocol.network import Description, Id, Name

Direction = Literal["ingress", "egress"]
Port = Annotated[int, Range(0, 65535)]


@dataclass(frozen=True, slots=True, kw_only=True)
class RuleView:
    id: str
    security_group_id: str
    direction: Direction
    ethertype: str
    #: tcp, udp, icmp, or None for any.
    protocol: str | None
    port_range_min: int | None
    port_range_max: int | None
    remote_ip_prefix: str | None
    remote_group_id: str | None
    description: str
    project_id: str
    created_at: float
    updated_at: float
    revision_number: int


@dataclass(frozen=True, slots=True, kw_only=True)
class SecurityGroupView:
    id: str
    name: str
    description: str
    project_id: str
    rules: tuple[RuleView, ...]
    created_at: float
    updated_at: float
    revision_number: int


@dataclass(frozen=True, slots=True, kw_only=True)
class SecurityGroupList:
    items: tuple[SecurityGroupView, ...]
    more: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class CreateSecurityGroup:
    """Reply: SecurityGroupView, with the egress-anywhere rule Neutron gives a new group."""

    group_id: Id
    name: Name
    description: Description = ""
    project_id: Id | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class GetSecurityGroup:
    group_id: Id


@dataclass(frozen=True, slots=True, kw_only=True)
class ListSecurityGroups:
    """The caller's project's groups (its `default` made if missing); admins all, or one
    project's."""

    name: Name | None = None
    project_id: Id | None = None
    ids: Annotated[tuple[Id, ...], MaxLen(1000)] | None = None
    limit: Annotated[int, Range(1, 1000)] = 1000
    marker: Id | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class UpdateSecurityGroup:
    group_id: Id
    name: Name | None = None
    description: Description | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class DeleteSecurityGroup:
    """Reply: Done; Conflict while ports use it, or for a project's `default` group."""

    group_id: Id


@dataclass(frozen=True, slots=True, kw_only=True)
class CreateSecurityGroupRule:
    """Reply: RuleView. Invalid for ports without tcp/udp, a range upside down, an ICMP type or
    code over 255, a bad prefix, or both a prefix and a remote group; Conflict for a rule the
    group has already."""

    rule_id: Id
    security_group_id: Id
    direction: Direction
    ethertype: Literal["IPv4"] = "IPv4"
    protocol: Literal["tcp", "udp", "icmp"] | None = None
    port_range_min: Port | None = None
    port_range_max: Port | None = None
    remote_ip_prefix: Annotated[str, MaxLen(18)] | None = None
    remote_group_id: Id | None = None
    description: Description = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class GetSecurityGroupRule:
    rule_id: Id


@dataclass(frozen=True, slots=True, kw_only=True)
class ListSecurityGroupRules:
    security_group_id: Id | None = None
    direction: Direction | None = None
    protocol: Annotated[str, MaxLen(16)] | None = None
    project_id: Id | None = None
    ids: Annotated[tuple[Id, ...], MaxLen(1000)] | None = None
    limit: Annotated[int, Range(1, 1000)] = 1000
    marker: Id | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RuleList:
    items: tuple[RuleView, ...]
    more: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class DeleteSecurityGroupRule:
    rule_id: Id


MESSAGES = (
    RuleView,
    SecurityGroupView,
    SecurityGroupList,
    CreateSecurityGroup,
    GetSecurityGroup,
    ListSecurityGroups,
    UpdateSecurityGroup,
    DeleteSecurityGroup,
    CreateSecurityGroupRule,
    GetSecurityGroupRule,
    ListSecurityGroupRules,
    RuleList,
    DeleteSecurityGroupRule,
)
