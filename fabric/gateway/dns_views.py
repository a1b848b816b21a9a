"""DNS v2 (Designate) bodies: zones, recordsets, their pages, quotas and the version document,
in the shapes Designate renders (`designate/objects/adapters/api_v2`), which designateclient,
the SDK and tempest's designate plugin read.

Bodies are not wrapped (`{"id": ...}`, not `{"zone": {...}}`). Times are Designate's: ISO 8601
with microseconds and no zone; `updated_at` is null until the row first changes after its
creation. Every item links to itself under its zone (`…/dns/v2/zones/{zone}/recordsets/{id}`),
also in the all-zones list, as Designate links them.
"""

from typing import Any
from urllib.parse import urlencode

from fabric.gateway.times import micros_or_none as iso
from protocol.dns import DnsQuotas, RecordsetView, ZoneView

#: Designate's default pool (`designate/conf/central.py`); one pool serves every zone here.
DEFAULT_POOL_ID = "794ccc2c-d751-44fe-b57f-8894c9f5c842"
#: Designate's quotas that we show but do not enforce, at Designate's defaults: a zone's records
#: are bounded through its recordsets, and there is no zone export.
SHOWN_ONLY_QUOTAS = {"zone_records": 500, "api_export_size": 1000}
#: The date Designate gives its v2 API's version entry.
#: Where the DNS v2 routes are mounted on the gateway.
V2 = "/dns/v2"
V2_UPDATED = "2022-06-29T00:00:00Z"
API_REF_URL = "https://docs.openstack.org/api-ref/dns/"


def updated(created_at: float, updated_at: float) -> str | None:
    """Designate leaves `updated_at` null until the row changes after being created."""
    return iso(updated_at) if updated_at > created_at else None


class Urls:
    """The public URLs of `/dns`: the version root, items and pages."""

    def __init__(self, gateway_url: str) -> None:
        self.root = f"{gateway_url}/dns"
        self.v2 = f"{self.root}/v2"

    def zone(self, zone_id: str) -> str:
        return f"{self.v2}/zones/{zone_id}"

    def recordset(self, zone_id: str, recordset_id: str) -> str:
        return f"{self.zone(zone_id)}/recordsets/{recordset_id}"

    def page(self, path: str, query: list[tuple[str, str]]) -> str:
        """`path` is the request's, under `/dns`; an empty query leaves no `?`."""
        return f"{self.root}{path.removeprefix('/dns')}" + (f"?{urlencode(query)}" if query else "")


def versions_body(urls: Urls) -> dict[str, Any]:
    return {
        "versions": [
            {
                "id": "v2",
                "status": "CURRENT",
                "updated": V2_UPDATED,
                "links": [{"rel": "self", "href": urls.v2}, {"rel": "help", "href": API_REF_URL}],
            }
        ]
    }


def zone_body(z: ZoneView, urls: Urls) -> dict[str, Any]:
    return {
        "id": z.id,
        "pool_id": DEFAULT_POOL_ID,
        "project_id": z.project_id,
        "name": z.name,
        "email": z.email,
        "description": z.description,
        "ttl": z.ttl,
        "serial": z.serial,
        "status": z.status,
        "action": z.action,
        "version": z.version,
        "attributes": {},
        "type": "PRIMARY",
        "masters": [],
        "created_at": iso(z.created_at),
        "updated_at": updated(z.created_at, z.updated_at),
        "transferred_at": None,
        "shared": False,
        "links": {"self": urls.zone(z.id)},
    }


def recordset_body(r: RecordsetView, urls: Urls) -> dict[str, Any]:
    return {
        "id": r.id,
        "project_id": r.project_id,
        "zone_id": r.zone_id,
        "zone_name": r.zone_name,
        "name": r.name,
        "type": r.type,
        "records": list(r.records),
        "ttl": r.ttl,
        "description": r.description,
        "status": r.status,
        "action": r.action,
        "version": r.version,
        "created_at": iso(r.created_at),
        "updated_at": updated(r.created_at, r.updated_at),
        "links": {"self": urls.recordset(r.zone_id, r.id)},
    }


def page_body(
    collection: str, items: list[dict[str, Any]], total_count: int, self_url: str, next_url: str | None
) -> dict[str, Any]:
    """`{collection: [...], "links": {"self", "next"?}, "metadata": {"total_count"}}`; `next` only
    when there is more (Designate also gives it after a last page that happens to be full)."""
    links = {"self": self_url} | ({"next": next_url} if next_url is not None else {})
    return {collection: items, "links": links, "metadata": {"total_count": total_count}}


def quotas_body(q: DnsQuotas) -> dict[str, int]:
    """Designate's flat `{resource: limit}`, every resource it knows, sorted as it sorts them."""
    return dict(sorted((SHOWN_ONLY_QUOTAS | q.limits).items()))
