"""Image v2 (Glance) bodies: an image is a flat object, its free-form properties at top level."""

from typing import Any

from fabric.gateway.times import seconds as iso
from protocol.image import ImageView, MemberView

#: Keys Glance computes or owns; a client may not set them.
READ_ONLY = frozenset(
    {"id", "status", "owner", "size", "virtual_size", "checksum", "os_hash_algo", "os_hash_value",
     "created_at", "updated_at", "self", "file", "schema", "direct_url", "locations"}
)  # fmt: skip
#: Keys that are fields of the image rather than free-form properties.
BASE = frozenset(
    {"name", "disk_format", "container_format", "visibility", "min_disk", "min_ram", "protected",
     "os_hidden", "tags"}
)  # fmt: skip


def image(i: ImageView) -> dict[str, Any]:
    body: dict[str, Any] = dict(i.properties)
    body.update(
        id=i.id,
        name=i.name,
        status=i.status,
        visibility=i.visibility,
        owner=i.owner,
        disk_format=i.disk_format,
        container_format=i.container_format,
        size=i.size,
        virtual_size=None,
        checksum=i.checksum,
        os_hash_algo=i.os_hash_algo,
        os_hash_value=i.os_hash_value,
        min_disk=i.min_disk,
        min_ram=i.min_ram,
        protected=i.protected,
        os_hidden=i.os_hidden,
        tags=list(i.tags),
        created_at=iso(i.created_at),
        updated_at=iso(i.updated_at),
        self=f"/v2/images/{i.id}",
        file=f"/v2/images/{i.id}/file",
        schema="/v2/schemas/image",
    )
    return body


def settable(i: ImageView) -> dict[str, Any]:
    """What a JSON patch may act on: the base fields and the properties, as one flat object."""
    body: dict[str, Any] = dict(i.properties)
    body.update(
        name=i.name,
        disk_format=i.disk_format,
        container_format=i.container_format,
        visibility=i.visibility,
        min_disk=i.min_disk,
        min_ram=i.min_ram,
        protected=i.protected,
        os_hidden=i.os_hidden,
        tags=list(i.tags),
    )
    return body


def member(m: MemberView) -> dict[str, Any]:
    return {
        "image_id": m.image_id,
        "member_id": m.member_id,
        "status": m.status,
        "created_at": iso(m.created_at),
        "updated_at": iso(m.updated_at),
        "schema": "/v2/schemas/member",
    }


def members(ms: tuple[MemberView, ...]) -> dict[str, Any]:
    return {"members": [member(m) for m in ms], "schema": "/v2/schemas/members"}


def version(base: str) -> dict[str, Any]:
    return {"id": "v2.9", "status": "CURRENT", "links": [{"rel": "self", "href": f"{base}/v2/"}]}
