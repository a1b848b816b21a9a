"""The scheduler: hosts, their capacity, and the allocations that claim it. The queue is
`scheduler`.

Compute agents announce each host's capacity with `CapacityReport` events (periodically and at
once on any change); every scheduler replica builds its view of the fleet from them. A placement
sticks only through an atomic claim in PostgreSQL: a conditional update of the host's usage that
fails when the host would overflow, so replicas racing for the last room never over-commit.
An allocation is keyed by server id, which makes placing and releasing idempotent.
"""

from dataclasses import dataclass
from typing import Annotated, Literal

from protocol.codec import MaxLen, MinLen, Range

QUEUE = "scheduler"

HostName = Annotated[str, MinLen(1), MaxLen(255)]
ServerId = Annotated[str, MinLen(1), MaxLen(64)]
Amount = Annotated[int, Range(0, 2**40)]
Policy = Literal["affinity", "anti-affinity"]


@dataclass(frozen=True, slots=True, kw_only=True)
class CapacityReport:
    """Event from a compute agent: what one host offers and what runs on it."""

    host: HostName
    #: Where the host's agent takes commands (`compute.<host>`, or a fleet's shared queue).
    queue: Annotated[str, MinLen(1), MaxLen(255)]
    hypervisor_type: Annotated[str, MaxLen(64)]
    availability_zone: Annotated[str, MinLen(1), MaxLen(255)]
    vcpus: Amount
    ram_mb: Amount
    disk_gb: Amount
    #: What the guests on the host use now, as the agent sees it.
    used_vcpus: Amount
    used_ram_mb: Amount
    used_disk_gb: Amount
    running: Amount
    #: The agent's clock when it sent this; the scheduler drops hosts silent for a TTL.
    sent_at: float


@dataclass(frozen=True, slots=True, kw_only=True)
class Resources:
    vcpus: Annotated[int, Range(0, 2**31)]
    ram_mb: Annotated[int, Range(0, 2**40)]
    disk_gb: Annotated[int, Range(0, 2**31)]


@dataclass(frozen=True, slots=True, kw_only=True)
class PlaceServer:
    """Pick a host with room and claim it. Reply: Placed; NoValidHost (saying how many hosts each
    filter rejected) when none fits. Asking again for a server that has an allocation answers
    that allocation, so a retried step never claims twice."""

    server_id: ServerId
    project_id: Annotated[str, MaxLen(64)]
    resources: Resources
    availability_zone: Annotated[str, MaxLen(255)] | None = None
    #: Hosts tried already for this server (a spawn failed there).
    exclude_hosts: Annotated[tuple[HostName, ...], MaxLen(64)] = ()
    #: Only this host (an admin's `zone:host`), still within its capacity.
    force_host: HostName | None = None
    #: The server has NICs: only hosts whose network agent reports are candidates.
    needs_network: bool = False
    #: A server group's rule and the hosts its other members are on.
    group_policy: Policy | None = None
    group_hosts: Annotated[tuple[HostName, ...], MaxLen(10000)] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Placed:
    server_id: str
    host: str
    #: The queue of the host's agent.
    queue: str
    availability_zone: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ReleaseAllocation:
    """Give back what a server holds on `host` (None: on whatever host it holds). Idempotent.
    Reply: Done."""

    server_id: ServerId
    host: HostName | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ExplainPlacement:
    """Admins only: run the filters and weighers for these resources without claiming. Reply:
    PlacementExplanation."""

    resources: Resources
    availability_zone: Annotated[str, MaxLen(255)] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class PlacementExplanation:
    hosts: int
    #: Filter name → how many hosts it rejected (each host counted by the first filter that
    #: rejected it, in filter order).
    rejected: dict[str, int]
    #: Hosts that pass every filter, best first (at most ten).
    candidates: tuple[str, ...]
    #: A sentence for people, the same one a NoValidHost fault carries.
    summary: str


@dataclass(frozen=True, slots=True, kw_only=True)
class HypervisorView:
    id: int
    host: str
    hypervisor_type: str
    availability_zone: str
    #: "up" while the host's reports arrive within the TTL, else "down".
    state: Literal["up", "down"]
    enabled: bool
    vcpus: int
    ram_mb: int
    disk_gb: int
    #: What allocations hold on the host (the scheduler's accounting).
    used_vcpus: int
    used_ram_mb: int
    used_disk_gb: int
    running: int
    last_report_at: float


@dataclass(frozen=True, slots=True, kw_only=True)
class ListHypervisors:
    """Admins only. Reply: HypervisorList, by id."""

    host: HostName | None = None
    limit: Annotated[int, Range(1, 100000)] = 1000
    marker: Annotated[int, Range(0, 2**62)] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class GetHypervisorStatistics:
    """Admins only. Reply: HypervisorStatistics, summed by the database (Nova's
    `os-hypervisors/statistics`): a fleet's totals without listing it."""


@dataclass(frozen=True, slots=True, kw_only=True)
class HypervisorStatistics:
    count: int
    vcpus: int
    ram_mb: int
    disk_gb: int
    used_vcpus: int
    used_ram_mb: int
    used_disk_gb: int
    running: int


@dataclass(frozen=True, slots=True, kw_only=True)
class HypervisorList:
    items: tuple[HypervisorView, ...]
    more: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class GetHypervisor:
    """Admins only. Reply: HypervisorView; NotFound."""

    hypervisor_id: Annotated[int, Range(0, 2**62)]


@dataclass(frozen=True, slots=True, kw_only=True)
class ListAvailabilityZones:
    """Zones with at least one known host. Reply: AvailabilityZones."""


@dataclass(frozen=True, slots=True, kw_only=True)
class AvailabilityZones:
    #: Zone → its hosts' names.
    zones: dict[str, tuple[str, ...]]
    #: Zones with at least one host up.
    available: tuple[str, ...]


MESSAGES = (
    CapacityReport,
    GetHypervisorStatistics,
    HypervisorStatistics,
    Resources,
    PlaceServer,
    Placed,
    ReleaseAllocation,
    ExplainPlacement,
    PlacementExplanation,
    HypervisorView,
    ListHypervisors,
    HypervisorList,
    GetHypervisor,
    ListAvailabilityZones,
    AvailabilityZones,
)
