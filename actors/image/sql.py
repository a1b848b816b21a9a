"""The statements the image service runs, beside the functions that run them."""

from typing import Any

import asyncpg
import orjson

from fabric.store import Connection
from protocol.image import ImageFields, ImageView, MemberView

COLUMNS = """id, name, status, visibility, owner, disk_format, container_format, size, checksum,
    os_hash_algo, os_hash_value, min_disk, min_ram, protected, os_hidden, tags, properties,
    extract(epoch FROM created_at) AS created_at, extract(epoch FROM updated_at) AS updated_at,
    location"""

# Who sees an image in a listing: admins everything; others their own, public ones, community
# ones (when asked for), and shared ones whose membership has the asked-for status.
VISIBLE = """($1::bool OR owner = $2 OR visibility = 'public'
              OR (visibility = 'community' AND $3::bool)
              OR (visibility = 'shared' AND EXISTS (
                    SELECT 1 FROM image.members m
                    WHERE m.image_id = images.id AND m.member_id = $2 AND m.status = $4)))"""
MEMBER_COLUMNS = """image_id, member_id, status,
    extract(epoch FROM created_at) AS created_at, extract(epoch FROM updated_at) AS updated_at"""


def view(r: asyncpg.Record) -> ImageView:
    props = r["properties"]
    return ImageView(
        id=r["id"],
        name=r["name"],
        status=r["status"],
        visibility=r["visibility"],
        owner=r["owner"],
        disk_format=r["disk_format"],
        container_format=r["container_format"],
        size=r["size"],
        checksum=r["checksum"],
        os_hash_algo=r["os_hash_algo"],
        os_hash_value=r["os_hash_value"],
        min_disk=r["min_disk"],
        min_ram=r["min_ram"],
        protected=r["protected"],
        os_hidden=r["os_hidden"],
        tags=tuple(r["tags"]),
        properties=orjson.loads(props) if isinstance(props, str) else dict(props),
        created_at=float(r["created_at"]),
        updated_at=float(r["updated_at"]),
        location=r["location"],
    )


async def insert(tx: Connection, image_id: str, owner: str, f: ImageFields) -> ImageView | None:
    """The new image; None when the id is taken."""
    r = await tx.fetchrow(
        f"""INSERT INTO image.images (id, name, visibility, owner, disk_format, container_format,
                min_disk, min_ram, protected, os_hidden, tags, properties)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12::jsonb)
            ON CONFLICT (id) DO NOTHING
            RETURNING {COLUMNS}""",
        image_id, f.name, f.visibility, owner, f.disk_format, f.container_format,
        f.min_disk, f.min_ram, f.protected, f.os_hidden, list(f.tags), orjson.dumps(f.properties).decode(),
    )  # fmt: skip
    return view(r) if r else None


async def get(tx: Connection, image_id: str, *, lock: bool = False) -> ImageView | None:
    suffix = " FOR UPDATE" if lock else ""
    r = await tx.fetchrow(f"SELECT {COLUMNS} FROM image.images WHERE id = $1{suffix}", image_id)
    return view(r) if r else None


async def listing(
    tx: Connection,
    *,
    admin: bool,
    project: str | None,
    community: bool,
    member_status: str,
    filters: dict[str, Any],
    marker: str | None,
    limit: int,
) -> list[ImageView]:
    where, args = [VISIBLE], list[Any]([admin, project, community, member_status])
    for column, value in filters.items():
        if value is None:
            continue
        args.append(value)
        where.append(f"{column} = ANY(${len(args)})" if column == "id" else f"{column} = ${len(args)}")
    if marker is not None:
        args.append(marker)
        where.append(f"(created_at, id) < (SELECT created_at, id FROM image.images WHERE id = ${len(args)})")
    args.append(limit)
    rows = await tx.fetch(
        f"""SELECT {COLUMNS} FROM image.images WHERE {" AND ".join(where)}
            ORDER BY created_at DESC, id DESC LIMIT ${len(args)}""",
        *args,
    )
    return [view(r) for r in rows]


async def update(tx: Connection, image_id: str, f: ImageFields) -> ImageView:
    r = await tx.fetchrow(
        f"""UPDATE image.images SET name = $2, visibility = $3, disk_format = $4,
                container_format = $5, min_disk = $6, min_ram = $7, protected = $8, os_hidden = $9,
                tags = $10, properties = $11::jsonb, updated_at = now()
            WHERE id = $1 RETURNING {COLUMNS}""",
        image_id, f.name, f.visibility, f.disk_format, f.container_format, f.min_disk, f.min_ram,
        f.protected, f.os_hidden, list(f.tags), orjson.dumps(f.properties).decode(),
    )  # fmt: skip
    assert r is not None, "updated under a row lock"
    return view(r)


async def set_status(tx: Connection, image_id: str, status: str, *, location: str | None = None) -> ImageView:
    r = await tx.fetchrow(
        f"""UPDATE image.images SET status = $2, location = coalesce($3, location), updated_at = now()
            WHERE id = $1 RETURNING {COLUMNS}""",
        image_id, status, location,
    )  # fmt: skip
    assert r is not None, "updated under a row lock"
    return view(r)


async def activate(tx: Connection, image_id: str, size: int, md5: str, sha512: str) -> ImageView:
    r = await tx.fetchrow(
        f"""UPDATE image.images SET status = 'active', size = $2, checksum = $3,
                os_hash_algo = 'sha512', os_hash_value = $4, updated_at = now()
            WHERE id = $1 RETURNING {COLUMNS}""",
        image_id, size, md5, sha512,
    )  # fmt: skip
    assert r is not None, "updated under a row lock"
    return view(r)


async def lock_owner(tx: Connection, owner: str) -> None:
    """Serialize the quota decisions of one project, across replicas."""
    await tx.execute("SELECT pg_advisory_xact_lock(hashtext('image.quota:' || $1))", owner)


async def bytes_used(tx: Connection, owner: str, *, excluding: str) -> int:
    used: int = await tx.fetchval(
        "SELECT coalesce(sum(size), 0)::bigint FROM image.images WHERE owner = $1 AND id <> $2",
        owner,
        excluding,
    )
    return used


async def delete(tx: Connection, image_id: str) -> None:
    await tx.execute("DELETE FROM image.images WHERE id = $1", image_id)


def member_view(r: asyncpg.Record) -> MemberView:
    return MemberView(
        image_id=r["image_id"],
        member_id=r["member_id"],
        status=r["status"],
        created_at=float(r["created_at"]),
        updated_at=float(r["updated_at"]),
    )


async def member(tx: Connection, image_id: str, member_id: str) -> MemberView | None:
    r = await tx.fetchrow(
        f"SELECT {MEMBER_COLUMNS} FROM image.members WHERE image_id = $1 AND member_id = $2",
        image_id, member_id,
    )  # fmt: skip
    return member_view(r) if r else None


async def members(tx: Connection, image_id: str) -> list[MemberView]:
    rows = await tx.fetch(
        f"SELECT {MEMBER_COLUMNS} FROM image.members WHERE image_id = $1 ORDER BY member_id", image_id
    )
    return [member_view(r) for r in rows]


async def add_member(tx: Connection, image_id: str, member_id: str) -> MemberView | None:
    """The new membership; None when the project is a member already."""
    r = await tx.fetchrow(
        f"""INSERT INTO image.members (image_id, member_id) VALUES ($1, $2)
            ON CONFLICT DO NOTHING RETURNING {MEMBER_COLUMNS}""",
        image_id, member_id,
    )  # fmt: skip
    return member_view(r) if r else None


async def set_member_status(tx: Connection, image_id: str, member_id: str, status: str) -> MemberView | None:
    r = await tx.fetchrow(
        f"""UPDATE image.members SET status = $3, updated_at = now()
            WHERE image_id = $1 AND member_id = $2 RETURNING {MEMBER_COLUMNS}""",
        image_id, member_id, status,
    )  # fmt: skip
    return member_view(r) if r else None


async def remove_member(tx: Connection, image_id: str, member_id: str) -> bool:
    done: str = await tx.execute(
        "DELETE FROM image.members WHERE image_id = $1 AND member_id = $2", image_id, member_id
    )
    return done != "DELETE 0"
