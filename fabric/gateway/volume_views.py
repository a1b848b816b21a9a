"""Block Storage v3 (Cinder) bodies: volumes, snapshots, types, quotas and limits, in the shapes
Cinder 3.0 returns, which the SDK, the CLI and tempest read.

Times are Cinder's: ISO 8601 with microseconds and no zone (`2018-11-29T06:50:07.770785`).
`bootable` is the string "true" or "false", as Cinder has always sent it. What Cinder shows
only to admins (the storage host, migration status, an attachment's host) is left out for others.
"""

from typing import Any

from fabric.gateway.times import micros_or_none as iso
from protocol.envelope import Context
from protocol.volume import SnapshotView, VolumeQuotaSet, VolumeTypeView, VolumeView

#: Extra specs Cinder shows to users who are not admins; the rest (the backend) is the operator's.
USER_VISIBLE_EXTRA_SPECS = frozenset({"RESKEY:availability_zones", "multiattach", "replication_enabled"})

#: `GET /limits`: the quota behind each of Cinder's absolute limits, and its usage's name.
LIMIT_NAMES = {
    "volumes": ("maxTotalVolumes", "totalVolumesUsed"),
    "gigabytes": ("maxTotalVolumeGigabytes", "totalGigabytesUsed"),
    "snapshots": ("maxTotalSnapshots", "totalSnapshotsUsed"),
}


class Links:
    """Cinder's self and bookmark links: the versioned URL of the request's project, and the
    same without the version."""

    def __init__(self, gateway_url: str, project_id: str) -> None:
        self.versioned = f"{gateway_url}/volume/v3/{project_id}"
        self.bookmark = f"{gateway_url}/volume/{project_id}"

    def of(self, collection: str, item_id: str) -> list[dict[str, str]]:
        return [
            {"rel": "self", "href": f"{self.versioned}/{collection}/{item_id}"},
            {"rel": "bookmark", "href": f"{self.bookmark}/{collection}/{item_id}"},
        ]


def volume_summary(v: VolumeView, links: Links) -> dict[str, Any]:
    """The non-detail list's item: exactly these three keys, as in Cinder."""
    return {"id": v.id, "name": v.name, "links": links.of("volumes", v.id)}


def volume_body(v: VolumeView, ctx: Context, links: Links) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": v.id,
        "name": v.name,
        "description": v.description,
        "size": v.size_gb,
        "status": v.status,
        "availability_zone": v.availability_zone,
        "created_at": iso(v.created_at),
        "updated_at": iso(v.updated_at),
        "volume_type": v.volume_type,
        "snapshot_id": v.snapshot_id,
        "source_volid": v.source_volume_id,
        "metadata": v.metadata,
        "links": links.of("volumes", v.id),
        "user_id": v.user_id,
        "bootable": "true" if v.bootable else "false",
        "encrypted": False,
        "replication_status": "disabled",
        "consistencygroup_id": None,
        "multiattach": False,
        "attachments": [
            {
                "id": a.volume_id,
                "attachment_id": a.attachment_id,
                "volume_id": a.volume_id,
                "server_id": a.server_id,
                "host_name": a.host if ctx.is_admin else None,
                "device": a.device,
                "attached_at": iso(a.attached_at),
            }
            for a in v.attachments
        ],
        # Cinder shows it to readers of the project, which is everyone who can see the volume.
        "os-vol-tenant-attr:tenant_id": v.project_id,
    }
    if v.image_metadata:
        body["volume_image_metadata"] = v.image_metadata
    if v.error_reason is not None:
        # Cinder keeps the reason in its messages API (3.3 and later); at 3.0 nothing else
        # would tell the user why a volume failed.
        body["error_reason"] = v.error_reason
    if ctx.is_admin:
        body["migration_status"] = None
        body["os-vol-host-attr:host"] = v.host
        body["os-vol-mig-status-attr:migstat"] = None
        body["os-vol-mig-status-attr:name_id"] = None
    return body


def snapshot_body(s: SnapshotView) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": s.id,
        "created_at": iso(s.created_at),
        "updated_at": iso(s.updated_at),
        "name": s.name,
        "description": s.description,
        "volume_id": s.volume_id,
        "status": s.status,
        "size": s.size_gb,
        "metadata": s.metadata,
        # The extended snapshot attributes Cinder shows to the snapshot's project and admins.
        "os-extended-snapshot-attributes:project_id": s.project_id,
        "os-extended-snapshot-attributes:progress": "100%" if s.status == "available" else "0%",
    }
    if s.error_reason is not None:
        body["error_reason"] = s.error_reason
    return body


def type_body(t: VolumeTypeView, ctx: Context) -> dict[str, Any]:
    specs = (
        t.extra_specs
        if ctx.is_admin
        else {k: v for k, v in t.extra_specs.items() if k in USER_VISIBLE_EXTRA_SPECS}
    )
    body: dict[str, Any] = {
        "id": t.id,
        "name": t.name,
        "description": t.description,
        "is_public": t.is_public,
        "os-volume-type-access:is_public": t.is_public,
        "extra_specs": specs,
    }
    if ctx.is_admin:
        body["qos_specs_id"] = None
    return body


def quota_set_body(q: VolumeQuotaSet, *, usage: bool) -> dict[str, Any]:
    """`{"id": project, name: limit}`, or with `usage` each as `{limit, in_use, reserved}`:
    quotas are checked and counted in one transaction, so nothing is ever reserved."""
    if usage:
        values: dict[str, Any] = {
            k: {"limit": limit, "in_use": q.in_use.get(k, 0), "reserved": 0} for k, limit in q.limits.items()
        }
    else:
        values = dict(q.limits)
    return {"id": q.project_id} | values


def limits_body(q: VolumeQuotaSet) -> dict[str, Any]:
    absolute: dict[str, int] = {}
    for quota, (limit_name, used_name) in LIMIT_NAMES.items():
        if quota in q.limits:
            absolute[limit_name] = q.limits[quota]
            absolute[used_name] = q.in_use.get(quota, 0)
    return {"limits": {"rate": [], "absolute": absolute}}
