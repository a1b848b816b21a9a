"""The statements behind snapshots, beside the functions that run them. Steps are conditional
UPDATEs naming the statuses they expect, as for volumes."""

from typing import Any

import asyncpg
import orjson

from actors.volume import states
from fabric.store import Connection
from protocol.volume import SnapshotView

COLUMNS = """s.id, s.volume_id, s.project_id, s.user_id, s.name, s.description, s.size_gb, s.status,
    s.error_reason, s.metadata, s.host, s.agent_queue, s.in_use,
    extract(epoch FROM s.created_at) AS created, extract(epoch FROM s.updated_at) AS updated"""


def view(r: asyncpg.Record) -> SnapshotView:
    return SnapshotView(
        id=r["id"],
        volume_id=r["volume_id"],
        project_id=r["project_id"],
        user_id=r["user_id"],
        name=r["name"],
        description=r["description"],
        size_gb=r["size_gb"],
        status=r["status"],
        error_reason=r["error_reason"],
        metadata=orjson.loads(r["metadata"]),
        created_at=float(r["created"]),
        updated_at=float(r["updated"]),
    )


async def get(conn: Connection, snapshot_id: str, *, lock: str = "") -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"SELECT {COLUMNS} FROM volume.snapshots s WHERE s.id = $1 {lock}", snapshot_id
    )


async def of_volume(tx: Connection, volume_id: str, *, lock: str = "") -> list[asyncpg.Record]:
    return await tx.fetch(
        f"SELECT {COLUMNS} FROM volume.snapshots s WHERE s.volume_id = $1 ORDER BY s.id {lock}", volume_id
    )


async def insert(tx: Connection, values: dict[str, Any]) -> asyncpg.Record | None:
    """The new snapshot's row; None when one with this id exists already."""
    return await tx.fetchrow(
        f"""INSERT INTO volume.snapshots AS s (id, volume_id, project_id, user_id, name, description, size_gb,
                status, metadata, host, agent_queue, in_use)
            VALUES ($1, $2, $3, $4, $5, $6, $7, 'creating', $8::jsonb, $9, $10, $11)
            ON CONFLICT (id) DO NOTHING
            RETURNING {COLUMNS}""",
        values["id"], values["volume_id"], values["project_id"], values["user_id"], values["name"],
        values["description"], values["size_gb"], orjson.dumps(values["metadata"]).decode(), values["host"],
        values["agent_queue"], values["in_use"],
    )  # fmt: skip


async def move(
    conn: Connection,
    snapshot_ids: list[str],
    step: str,
    *,
    reason: str | None = None,
    host: str | None = None,
) -> list[asyncpg.Record]:
    """Make the step `step` (states.SNAPSHOT_MOVES) for those snapshots where it starts from;
    the rows that moved."""
    sources, target = states.SNAPSHOT_MOVES[step]
    return await conn.fetch(
        f"""UPDATE volume.snapshots s
               SET status = $3, error_reason = $4, status_at = now(), step_at = now(), updated_at = now()
             WHERE s.id = ANY($1::text[]) AND s.status = ANY($2::text[]) AND ($5::text IS NULL OR s.host = $5)
         RETURNING {COLUMNS}""",
        snapshot_ids, list(sources), target, reason, host,
    )  # fmt: skip


async def update(tx: Connection, snapshot_id: str, fields: dict[str, Any]) -> None:
    sets = []
    args: list[Any] = [snapshot_id]
    for column, value in fields.items():
        args.append(orjson.dumps(value).decode() if column == "metadata" else value)
        sets.append(f"{column} = ${len(args)}" + ("::jsonb" if column == "metadata" else ""))
    if sets:
        await tx.execute(
            f"UPDATE volume.snapshots SET {', '.join(sets)}, updated_at = now() WHERE id = $1", *args
        )


async def remove(tx: Connection, snapshot_id: str, host: str) -> asyncpg.Record | None:
    """Delete the row of a snapshot being deleted on `host` (its file is gone)."""
    return await tx.fetchrow(
        """DELETE FROM volume.snapshots WHERE id = $1 AND status = 'deleting' AND host = $2
        RETURNING id, volume_id, project_id, size_gb""",
        snapshot_id, host,
    )  # fmt: skip


async def list_snapshots(
    conn: Connection,
    *,
    project_id: str | None,
    name: str | None,
    status: str | None,
    volume_id: str | None,
    marker: str | None,
    limit: int,
) -> list[asyncpg.Record]:
    where: list[str] = []
    args: list[Any] = []

    def arg(value: Any) -> str:
        args.append(value)
        return f"${len(args)}"

    if project_id is not None:
        where.append(f"s.project_id = {arg(project_id)}")
    if name is not None:
        where.append(f"s.name = {arg(name)}")
    if status is not None:
        where.append(f"s.status = {arg(status)}")
    if volume_id is not None:
        where.append(f"s.volume_id = {arg(volume_id)}")
    if marker is not None:
        m = arg(marker)
        where.append(f"(s.created_at, s.id) < (SELECT created_at, id FROM volume.snapshots WHERE id = {m})")
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    order = f"ORDER BY s.created_at DESC, s.id DESC LIMIT {arg(limit)}"
    return await conn.fetch(f"SELECT {COLUMNS} FROM volume.snapshots s {clause} {order}", *args)


async def stale(tx: Connection, older_than_s: float, limit: int) -> list[asyncpg.Record]:
    """Snapshots whose step has not moved for `older_than_s`, claimed for this replica."""
    return await tx.fetch(
        f"""UPDATE volume.snapshots s SET step_at = now()
             WHERE s.id IN (SELECT id FROM volume.snapshots
                             WHERE status IN ('creating', 'deleting')
                               AND step_at < now() - make_interval(secs => $1)
                             ORDER BY step_at LIMIT $2 FOR UPDATE SKIP LOCKED)
         RETURNING {COLUMNS}, extract(epoch FROM now() - s.status_at) AS status_age_s""",
        older_than_s, limit,
    )  # fmt: skip
