"""DNS as a service (Designate's core): zones and recordsets, served by PowerDNS. The queue is
`dns`.

The DNS service is the only writer of its schema; PowerDNS reads it through views (schema
`pdns`, see `actors/dns/migrations`). So a change answers on the nameserver the moment its
transaction commits, and the API reports it `PENDING` only until the service has seen the
nameserver answer the zone's new serial, then `ACTIVE` (Designate's statuses and actions):

    zone / recordset   PENDING + CREATE | UPDATE | DELETE ──nameserver serves it──► ACTIVE + NONE

Every change to a zone's data bumps its serial by one in the same transaction, under the zone's
row lock: serials strictly increase and concurrent changes never lose one another.

Names are fully qualified, lowercase, with the trailing dot (`www.example.org.`).
"""

from dataclasses import dataclass
from typing import Annotated, Literal

from protocol.codec import MaxLen, MinLen, Range

QUEUE = "dns"

Id = Annotated[str, MinLen(1), MaxLen(64)]
NewId = Annotated[str, MinLen(36), MaxLen(36)]
DnsName = Annotated[str, MinLen(1), MaxLen(255)]
Email = Annotated[str, MinLen(1), MaxLen(255)]
Description = Annotated[str, MaxLen(160)]
Ttl = Annotated[int, Range(1, 2**31 - 1)]
RecordType = Literal["A", "AAAA", "CNAME", "MX", "TXT", "SRV", "PTR", "NS", "SOA"]
RecordData = Annotated[str, MinLen(1), MaxLen(4096)]
QuotaLimit = Annotated[int, Range(-1, 2**31)]
SortDir = Literal["asc", "desc"]

#: Designate's quota defaults for the quotas this service enforces (-1: unlimited).
DEFAULT_QUOTAS: dict[str, int] = {
    "zones": 10,
    "zone_recordsets": 500,
    "recordset_records": 20,
}

#: The types a user may create; SOA (and the apex NS) are the zone's own, made with it.
USER_TYPES = frozenset({"A", "AAAA", "CNAME", "MX", "TXT", "SRV", "PTR", "NS"})


# --- zones -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class ZoneView:
    id: str
    name: str
    email: str
    ttl: int
    serial: int
    #: PENDING until the nameserver answers this serial, then ACTIVE; ERROR when it never did.
    status: str
    #: CREATE, UPDATE, DELETE while PENDING; NONE once ACTIVE.
    action: str
    project_id: str
    description: str | None
    version: int
    #: Reverse zones the service makes for floating IPs' PTR records (owned by the service).
    managed: bool
    created_at: float
    updated_at: float


@dataclass(frozen=True, slots=True, kw_only=True)
class ZoneList:
    items: tuple[ZoneView, ...]
    #: How many match the filters, all pages together (Designate's `metadata.total_count`).
    total_count: int
    more: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class CreateZone:
    """Reply: ZoneView (PENDING, CREATE). The caller picks the id, so a retried create returns
    the same zone. Invalid for a bad name or email; Conflict when the name exists; Forbidden
    under (or above) another project's zone; QuotaExceeded for `zones`."""

    zone_id: NewId
    name: DnsName
    email: Email
    ttl: Ttl | None = None
    description: Description | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class GetZone:
    """Reply: ZoneView; NotFound for another project's zone (unless `all_projects`, admins)."""

    zone_id: Id
    all_projects: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class ListZones:
    """Reply: ZoneList, filtered by every field given (exact matches)."""

    name: DnsName | None = None
    email: Email | None = None
    ttl: Ttl | None = None
    status: Annotated[str, MaxLen(16)] | None = None
    description: Description | None = None
    all_projects: bool = False
    limit: Annotated[int, Range(1, 1000)] = 1000
    marker: Id | None = None
    sort_key: Literal["name", "created_at", "ttl", "serial", "status"] = "created_at"
    sort_dir: SortDir = "asc"


@dataclass(frozen=True, slots=True, kw_only=True)
class UpdateZone:
    """Reply: ZoneView (PENDING, UPDATE); None leaves a field as it is."""

    zone_id: Id
    email: Email | None = None
    ttl: Ttl | None = None
    description: Description | None = None
    #: Designate's `"description": null`.
    clear_description: bool = False
    all_projects: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class DeleteZone:
    """Reply: ZoneView (PENDING, DELETE). The zone and its recordsets stop being served as the
    reply is sent."""

    zone_id: Id
    all_projects: bool = False


# --- recordsets --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordsetView:
    id: str
    zone_id: str
    zone_name: str
    name: str
    type: str
    records: tuple[str, ...]
    #: None: the zone's TTL applies.
    ttl: int | None
    description: str | None
    status: str
    action: str
    version: int
    project_id: str
    #: The zone's own (SOA, apex NS) or the service's (names of ports and floating IPs): users
    #: cannot change them.
    managed: bool
    created_at: float
    updated_at: float


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordsetList:
    items: tuple[RecordsetView, ...]
    total_count: int
    more: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class CreateRecordset:
    """Reply: RecordsetView (PENDING, CREATE). Invalid for a name outside the zone, data that
    is not of its type, or a CNAME beside other data; Conflict when the name already has a
    recordset of this type; QuotaExceeded for `zone_recordsets` or `recordset_records`."""

    recordset_id: NewId
    zone_id: Id
    name: DnsName
    type: RecordType
    records: Annotated[tuple[RecordData, ...], MinLen(1), MaxLen(1000)]
    ttl: Ttl | None = None
    description: Description | None = None
    all_projects: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class GetRecordset:
    zone_id: Id
    recordset_id: Id
    all_projects: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class ListRecordsets:
    """Reply: RecordsetList. `zone_id` None: every zone the caller may see (`/v2/recordsets`).
    `data`: recordsets holding this record."""

    zone_id: Id | None = None
    name: DnsName | None = None
    type: RecordType | None = None
    ttl: Ttl | None = None
    data: RecordData | None = None
    status: Annotated[str, MaxLen(16)] | None = None
    description: Description | None = None
    all_projects: bool = False
    limit: Annotated[int, Range(1, 1000)] = 1000
    marker: Id | None = None
    sort_key: Literal["name", "type", "created_at", "ttl", "status"] = "created_at"
    sort_dir: SortDir = "asc"


@dataclass(frozen=True, slots=True, kw_only=True)
class UpdateRecordset:
    """Reply: RecordsetView (PENDING, UPDATE). None leaves a field as it is; `clear_ttl` goes
    back to the zone's TTL (Designate's `"ttl": null`), `clear_description` has none."""

    zone_id: Id
    recordset_id: Id
    records: Annotated[tuple[RecordData, ...], MinLen(1), MaxLen(1000)] | None = None
    ttl: Ttl | None = None
    clear_ttl: bool = False
    description: Description | None = None
    clear_description: bool = False
    all_projects: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class DeleteRecordset:
    """Reply: RecordsetView (PENDING, DELETE); not served any more as the reply is sent."""

    zone_id: Id
    recordset_id: Id
    all_projects: bool = False


# --- quotas ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class DnsQuotas:
    project_id: str
    limits: dict[str, int]


@dataclass(frozen=True, slots=True, kw_only=True)
class GetDnsQuotas:
    """Reply: DnsQuotas. Another project's only for admins."""

    project_id: Id


@dataclass(frozen=True, slots=True, kw_only=True)
class SetDnsQuotas:
    """Admins only. Reply: DnsQuotas. Keys of DEFAULT_QUOTAS; -1: unlimited."""

    project_id: Id
    limits: Annotated[dict[str, QuotaLimit], MaxLen(16)]


# --- names of ports and floating IPs (Neutron's DNS integration) -------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class FloatingIpPtr:
    """A floating IP of the caller's project and the PTR record its address has (Designate's
    `/v2/reverse/floatingips`); `ptrdname` None: none (its port or it has no name)."""

    floatingip_id: str
    address: str
    ptrdname: str | None
    ttl: int | None
    status: str
    action: str


@dataclass(frozen=True, slots=True, kw_only=True)
class FloatingIpPtrList:
    items: tuple[FloatingIpPtr, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class ListFloatingIpPtrs:
    """Reply: FloatingIpPtrList, of the caller's project's floating IPs (as the network service
    shows them to the caller); with `floatingip_id`, that one only, NotFound if not shown."""

    floatingip_id: Id | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ReconcileNames:
    """Cast by the DNS service to itself, or by an operator: make the records of these ports
    and floating IPs (all of them when both are None) agree with what the network service says
    of them now."""

    port_ids: tuple[Id, ...] | None = None
    floatingip_ids: tuple[Id, ...] | None = None


MESSAGES = (
    ZoneView,
    ZoneList,
    CreateZone,
    GetZone,
    ListZones,
    UpdateZone,
    DeleteZone,
    RecordsetView,
    RecordsetList,
    CreateRecordset,
    GetRecordset,
    ListRecordsets,
    UpdateRecordset,
    DeleteRecordset,
    DnsQuotas,
    GetDnsQuotas,
    SetDnsQuotas,
    FloatingIpPtr,
    FloatingIpPtrList,
    ListFloatingIpPtrs,
    ReconcileNames,
)
