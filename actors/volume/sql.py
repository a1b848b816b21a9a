"""The statements behind volumes, their attachments and the storage hosts, beside the functions
that run them.

Every saga step is one conditional UPDATE naming the statuses it expects (`move`); no row back
means the step was done already or the volume moved on, and the caller does nothing more.
"""

from typing import Any

import asyncpg
import orjson

from actors.volume import states
from fabric.store import Connection
from protocol.volume import AttachmentView, VolumeView

_ATTACHMENTS = """(SELECT coalesce(jsonb_agg(jsonb_build_object(
        'attachment_id', a.id, 'server_id', a.server_id, 'host', a.host, 'device', a.device,
        'attached_at', extract(epoch FROM a.attached_at)) ORDER BY a.created_at), '[]')
      FROM volume.attachments a WHERE a.volume_id = v.id AND a.attached_at IS NOT NULL)"""

#: A volume as VolumeView shows it (aliased `v`, its type `t`).
COLUMNS = f"""v.id, v.name, v.description, v.project_id, v.user_id, v.size_gb, v.new_size_gb, v.status,
    v.error_reason, v.availability_zone, v.type_id, t.name AS volume_type, v.bootable, v.image_metadata,
    v.image, v.snapshot_id, v.source_volume_id, v.metadata, v.host, v.agent_queue,
    extract(epoch FROM v.created_at) AS created, extract(epoch FROM v.updated_at) AS updated,
    {_ATTACHMENTS} AS attachments"""

FROM = "volume.volumes v JOIN volume.volume_types t ON t.id = v.type_id"


def view(r: asyncpg.Record) -> VolumeView:
    return VolumeView(
        id=r["id"],
        name=r["name"],
        description=r["description"],
        project_id=r["project_id"],
        user_id=r["user_id"],
        size_gb=r["size_gb"],
        status=r["status"],
        error_reason=r["error_reason"],
        availability_zone=r["availability_zone"],
        volume_type=r["volume_type"],
        bootable=r["bootable"],
        image_metadata=orjson.loads(r["image_metadata"]),
        snapshot_id=r["snapshot_id"],
        source_volume_id=r["source_volume_id"],
        metadata=orjson.loads(r["metadata"]),
        host=r["host"],
        attachments=tuple(
            AttachmentView(
                attachment_id=a["attachment_id"],
                volume_id=r["id"],
                server_id=a["server_id"],
                host=a["host"],
                device=a["device"],
                attached_at=float(a["attached_at"]) if a["attached_at"] is not None else None,
            )
            for a in orjson.loads(r["attachments"])
        ),
        created_at=float(r["created"]),
        updated_at=float(r["updated"]),
    )


async def get(conn: Connection, volume_id: str, *, lock: str = "") -> asyncpg.Record | None:
    """`lock`: "" or a row lock (`FOR UPDATE OF v`, `FOR SHARE OF v`) held to the transaction's end."""
    return await conn.fetchrow(f"SELECT {COLUMNS} FROM {FROM} WHERE v.id = $1 {lock}", volume_id)


# What a create needs to know before it starts, in one round trip: whether the volume exists
# already (a retried create), the type asked for ($1; NULL: the default one), and the project's
# quota limits as set (absent: the defaults).
PRELUDE = """
SELECT EXISTS (SELECT 1 FROM volume.volumes WHERE id = $3) AS exists,
       t.id AS type_id, t.name AS type_name, t.is_public, t.extra_specs,
       (SELECT coalesce(jsonb_object_agg(resource, hard_limit), '{}')
          FROM volume.quotas WHERE project_id = $2) AS limits
  FROM (SELECT 1) one
  LEFT JOIN volume.volume_types t
    ON CASE WHEN $1::text IS NULL THEN t.is_default ELSE t.id = $1 OR t.name = $1 END
 ORDER BY t.id = $1 DESC NULLS LAST
 LIMIT 1"""


async def prelude(conn: Connection, type_ref: str | None, project_id: str, volume_id: str) -> asyncpg.Record:
    row = await conn.fetchrow(PRELUDE, type_ref, project_id, volume_id)
    assert row is not None
    return row


_INSERTED = """id, name, description, project_id, user_id, size_gb, status, error_reason, availability_zone,
    type_id, bootable, image_metadata, image, snapshot_id, source_volume_id, metadata, host, agent_queue"""

#: The values of `_INSERTED`, typed: they are also read in a SELECT, where nothing infers them.
_VALUES = """$1::text, $2::text, $3::text, $4::text, $5::text, $6::integer, $7::text, $8::text, $9::text,
    $10::text, $11::boolean, $12::jsonb, $13::jsonb, $14::text, $15::text, $16::jsonb, $17::text, $18::text"""

#: The inserted row (`v`) as `view` reads it; $19 is its type's name.
_AS_VIEW = """SELECT v.id, v.name, v.description, v.project_id, v.user_id, v.size_gb, v.new_size_gb, v.status,
       v.error_reason, v.availability_zone, v.type_id, $19::text AS volume_type, v.bootable, v.image_metadata,
       v.image, v.snapshot_id, v.source_volume_id, v.metadata, v.host, v.agent_queue,
       extract(epoch FROM v.created_at) AS created, extract(epoch FROM v.updated_at) AS updated,
       '[]'::jsonb AS attachments
  FROM v"""

INSERT = f"""
WITH v AS (INSERT INTO volume.volumes ({_INSERTED}) VALUES ({_VALUES})
           ON CONFLICT (id) DO NOTHING RETURNING *)
{_AS_VIEW}"""

# A new volume and its count in the project's usage in one statement, so that the usage row's
# lock is held for no round trip: counted only if it fits ($20: the volumes limit, $21: the
# gigabytes limit; -1: none), and inserted only if counted. No row back: over a limit. A volume
# with this id already is a unique violation, which undoes the count with the statement.
INSERT_COUNTED = f"""
WITH take AS (
    INSERT INTO volume.usage AS u (project_id, volumes, gigabytes) VALUES ($4, 1, $6)
    ON CONFLICT (project_id) DO UPDATE SET volumes = u.volumes + 1, gigabytes = u.gigabytes + $6
     WHERE ($20::integer < 0 OR u.volumes + 1 <= $20) AND ($21::integer < 0 OR u.gigabytes + $6 <= $21)
    RETURNING true),
v AS (INSERT INTO volume.volumes ({_INSERTED}) SELECT {_VALUES} FROM take RETURNING *)
{_AS_VIEW}"""


def _arguments(values: dict[str, Any], type_name: str) -> list[Any]:
    return [
        values["id"], values["name"], values["description"], values["project_id"], values["user_id"],
        values["size_gb"], values["status"], values["error_reason"], values["availability_zone"],
        values["type_id"], values["bootable"], orjson.dumps(values["image_metadata"]).decode(),
        orjson.dumps(values["image"]).decode() if values["image"] is not None else None,
        values["snapshot_id"], values["source_volume_id"], orjson.dumps(values["metadata"]).decode(),
        values["host"], values["agent_queue"], type_name,
    ]  # fmt: skip


async def insert(tx: Connection, values: dict[str, Any], type_name: str) -> asyncpg.Record | None:
    """The new volume's row as `view` reads it; None when one with this id exists already. The
    caller counts it (quota_sql.take) in the same transaction."""
    return await tx.fetchrow(INSERT, *_arguments(values, type_name))


async def insert_counted(
    conn: Connection, values: dict[str, Any], type_name: str, limit: dict[str, int]
) -> asyncpg.Record | None:
    """The new volume's row, counted in the usage (`INSERT_COUNTED`); None: over a limit.
    Raises asyncpg.UniqueViolationError when the volume exists already."""
    args = _arguments(values, type_name)
    return await conn.fetchrow(INSERT_COUNTED, *args, limit["volumes"], limit["gigabytes"])


async def move(
    conn: Connection, volume_id: str, step: str, *, reason: str | None = None, host: str | None = None
) -> asyncpg.Record | None:
    """Make the saga step `step` (states.MOVES) if the volume is where it starts from (and, when
    `host` is given, on that host: an answer from elsewhere is stale). Returns the volume's
    project, sizes and host after the move, or None when it did not move. An error status
    records `reason`; any other clears it."""
    sources, target = states.MOVES[step]
    return await conn.fetchrow(
        """UPDATE volume.volumes
              SET status = $3, error_reason = $4, status_at = now(), step_at = now(), updated_at = now()
            WHERE id = $1 AND status = ANY($2::text[]) AND ($5::text IS NULL OR host = $5)
        RETURNING id, project_id, status, error_reason, bootable, size_gb, new_size_gb, host, agent_queue""",
        volume_id, list(sources), target, reason, host,
    )  # fmt: skip


async def begin_extend(tx: Connection, volume_id: str, new_size_gb: int) -> asyncpg.Record | None:
    sources, target = states.MOVES["extend"]
    return await tx.fetchrow(
        """UPDATE volume.volumes
              SET status = $3, new_size_gb = $4, error_reason = NULL, status_at = now(), step_at = now(),
                  updated_at = now()
            WHERE id = $1 AND status = ANY($2::text[]) AND size_gb < $4
        RETURNING id, project_id, status, error_reason, bootable, size_gb, host, agent_queue""",
        volume_id, list(sources), target, new_size_gb,
    )  # fmt: skip


async def end_extend(
    tx: Connection, volume_id: str, host: str, *, ok: bool, reason: str | None
) -> asyncpg.Record | None:
    """Extending → available at the new size, or → error_extending at the old one. Returns the
    gigabytes the extend had taken (for the caller to give back on failure)."""
    sources, target = states.MOVES["file_resized" if ok else "resize_failed"]
    return await tx.fetchrow(
        """UPDATE volume.volumes v
              SET status = $3, size_gb = CASE WHEN $4 THEN v.new_size_gb ELSE v.size_gb END,
                  new_size_gb = NULL, error_reason = $5, status_at = now(), step_at = now(),
                  updated_at = now()
             FROM volume.volumes old
            WHERE v.id = $1 AND old.id = v.id AND v.status = ANY($2::text[]) AND v.host = $6
        RETURNING v.id, v.project_id, v.status, v.error_reason, v.bootable,
                  coalesce(old.new_size_gb, old.size_gb) - old.size_gb AS taken_gb""",
        volume_id, list(sources), target, ok, reason, host,
    )  # fmt: skip


async def update(tx: Connection, volume_id: str, fields: dict[str, Any]) -> None:
    """Name, description, metadata: those given (the others unchanged)."""
    sets = []
    args: list[Any] = [volume_id]
    for column, value in fields.items():
        args.append(orjson.dumps(value).decode() if column == "metadata" else value)
        sets.append(f"{column} = ${len(args)}" + ("::jsonb" if column == "metadata" else ""))
    if sets:
        await tx.execute(
            f"UPDATE volume.volumes SET {', '.join(sets)}, updated_at = now() WHERE id = $1", *args
        )


async def set_bootable(conn: Connection, volume_id: str, bootable: bool) -> None:
    await conn.execute(
        "UPDATE volume.volumes SET bootable = $2, updated_at = now() WHERE id = $1", volume_id, bootable
    )


async def remove(tx: Connection, volume_id: str, host: str | None) -> asyncpg.Record | None:
    """Delete the row of a volume being deleted whose file on `host` is gone (None: it never had
    one); its usage, for the quota."""
    return await tx.fetchrow(
        """DELETE FROM volume.volumes WHERE id = $1 AND status = 'deleting' AND host IS NOT DISTINCT FROM $2
            AND NOT EXISTS (SELECT 1 FROM volume.snapshots s WHERE s.volume_id = $1)
        RETURNING id, project_id, size_gb, host""",
        volume_id, host,
    )  # fmt: skip


async def creating_from(
    tx: Connection, *, snapshot_id: str | None = None, volume_id: str | None = None
) -> int:
    """How many volumes are being made from this snapshot or volume."""
    found = await tx.fetchval(
        """SELECT count(*) FROM volume.volumes
            WHERE status = 'creating' AND (snapshot_id = $1 OR source_volume_id = $2)""",
        snapshot_id, volume_id,
    )  # fmt: skip
    return int(found)


async def list_volumes(
    conn: Connection,
    *,
    project_id: str | None,
    name: str | None,
    status: str | None,
    metadata: dict[str, str] | None,
    bootable: bool | None,
    marker: str | None,
    limit: int,
) -> list[asyncpg.Record]:
    """Newest first; `marker`: after that volume (which the caller checked exists)."""
    where: list[str] = []
    args: list[Any] = []

    def arg(value: Any) -> str:
        args.append(value)
        return f"${len(args)}"

    if project_id is not None:
        where.append(f"v.project_id = {arg(project_id)}")
    if name is not None:
        where.append(f"v.name = {arg(name)}")
    if status is not None:
        where.append(f"v.status = {arg(status)}")
    if metadata:
        where.append(f"v.metadata @> {arg(orjson.dumps(metadata).decode())}::jsonb")
    if bootable is not None:
        where.append(f"v.bootable = {arg(bootable)}")
    if marker is not None:
        m = arg(marker)
        where.append(f"(v.created_at, v.id) < (SELECT created_at, id FROM volume.volumes WHERE id = {m})")
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    order = f"ORDER BY v.created_at DESC, v.id DESC LIMIT {arg(limit)}"
    return await conn.fetch(f"SELECT {COLUMNS} FROM {FROM} {clause} {order}", *args)


async def project_of(conn: Connection, volume_id: str) -> str | None:
    project: str | None = await conn.fetchval(
        "SELECT project_id FROM volume.volumes WHERE id = $1", volume_id
    )
    return project


async def on_host(conn: Connection, host: str) -> tuple[list[str], list[str]]:
    """The volume ids and snapshot ids the database puts on `host` (in any status)."""
    volumes = await conn.fetch("SELECT id FROM volume.volumes WHERE host = $1", host)
    snapshots = await conn.fetch("SELECT id FROM volume.snapshots WHERE host = $1", host)
    return [r["id"] for r in volumes], [r["id"] for r in snapshots]


async def stale(tx: Connection, older_than_s: float, limit: int) -> list[asyncpg.Record]:
    """Volumes whose step has not moved for `older_than_s`, claimed for this replica by touching
    their step time (SKIP LOCKED: replicas reaping at once take different rows)."""
    return await tx.fetch(
        f"""UPDATE volume.volumes v SET step_at = now()
             FROM volume.volume_types t
            WHERE t.id = v.type_id
              AND v.id IN (SELECT id FROM volume.volumes
                            WHERE status IN ('creating', 'attaching', 'detaching', 'extending', 'deleting')
                              AND step_at < now() - make_interval(secs => $1)
                            ORDER BY step_at LIMIT $2 FOR UPDATE SKIP LOCKED)
        RETURNING {COLUMNS}, extract(epoch FROM now() - v.status_at) AS status_age_s""",
        older_than_s, limit,
    )  # fmt: skip


# --- attachments -------------------------------------------------------------------------------


async def get_attachment(conn: Connection, attachment_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT id, volume_id, server_id, host, device, connection, attached_at FROM volume.attachments"
        " WHERE id = $1",
        attachment_id,
    )


async def insert_attachment(
    tx: Connection, attachment_id: str, volume_id: str, server_id: str, host: str
) -> None:
    await tx.execute(
        "INSERT INTO volume.attachments (id, volume_id, server_id, host) VALUES ($1, $2, $3, $4)",
        attachment_id, volume_id, server_id, host,
    )  # fmt: skip


async def set_connection(conn: Connection, attachment_id: str, connection: dict[str, Any]) -> None:
    await conn.execute(
        "UPDATE volume.attachments SET connection = $2::jsonb WHERE id = $1",
        attachment_id, orjson.dumps(connection).decode(),
    )  # fmt: skip


async def attached(tx: Connection, attachment_id: str, device: str | None) -> None:
    await tx.execute(
        """UPDATE volume.attachments
              SET device = coalesce($2, device), attached_at = coalesce(attached_at, now())
            WHERE id = $1""",
        attachment_id, device,
    )  # fmt: skip


async def delete_attachment(tx: Connection, attachment_id: str) -> bool:
    done: str = await tx.execute("DELETE FROM volume.attachments WHERE id = $1", attachment_id)
    return done.endswith(" 1")


async def pending_attachments(tx: Connection, volume_id: str) -> list[asyncpg.Record]:
    """Attachments of the volume that never completed (what an attach past its deadline leaves)."""
    return await tx.fetch(
        "DELETE FROM volume.attachments WHERE volume_id = $1 AND attached_at IS NULL RETURNING id, host",
        volume_id,
    )


# --- storage hosts -----------------------------------------------------------------------------


async def upsert_host(conn: Connection, row: tuple[Any, ...]) -> None:
    await conn.execute(
        """INSERT INTO volume.hosts (host, backend, queue, availability_zone, total_gb, free_gb, reported_at)
           VALUES ($1, $2, $3, $4, $5, $6, to_timestamp($7))
           ON CONFLICT (host) DO UPDATE SET backend = excluded.backend, queue = excluded.queue,
               availability_zone = excluded.availability_zone, total_gb = excluded.total_gb,
               free_gb = excluded.free_gb, reported_at = excluded.reported_at
           WHERE volume.hosts.reported_at <= excluded.reported_at""",
        *row,
    )


async def all_hosts(conn: Connection) -> list[asyncpg.Record]:
    return await conn.fetch(
        """SELECT host, backend, queue, availability_zone, total_gb, free_gb,
                  extract(epoch FROM now() - reported_at) AS age_s
             FROM volume.hosts"""
    )
