"""The statements behind a server's volume attachments.

Each step of an attachment is one conditional UPDATE naming the status it expects, so a
replayed agent answer changes nothing. Every change also rewrites the server's `volumes`
column (what the server shows), in the same transaction.
"""

from typing import Any

import asyncpg
import orjson

from fabric.store import Connection
from protocol.compute import VolumeAttachmentView

COLUMNS = """server_id, volume_id, attachment_id, device, status, connection, is_root,
    delete_on_termination, extract(epoch FROM now() - step_at) AS idle_s"""

SHOW_ON_SERVER = """
UPDATE compute.servers
   SET volumes = (SELECT coalesce(jsonb_agg(jsonb_build_object(
                             'id', volume_id, 'delete_on_termination', delete_on_termination)
                         ORDER BY is_root DESC, created_at, volume_id), '[]')
                    FROM compute.volume_attachments WHERE server_id = $1),
       updated_at = now()
 WHERE id = $1"""


def view(r: asyncpg.Record) -> VolumeAttachmentView:
    return VolumeAttachmentView(
        server_id=r["server_id"],
        volume_id=r["volume_id"],
        device=r["device"],
        status=r["status"],
        delete_on_termination=r["delete_on_termination"],
    )


async def of_server(conn: Connection, server_id: str) -> list[asyncpg.Record]:
    return await conn.fetch(
        f"""SELECT {COLUMNS} FROM compute.volume_attachments WHERE server_id = $1
             ORDER BY is_root DESC, created_at, volume_id""",
        server_id,
    )


async def get(conn: Connection, server_id: str, volume_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"SELECT {COLUMNS} FROM compute.volume_attachments WHERE server_id = $1 AND volume_id = $2",
        server_id, volume_id,
    )  # fmt: skip


async def by_attachment(conn: Connection, attachment_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"SELECT {COLUMNS} FROM compute.volume_attachments WHERE attachment_id = $1", attachment_id
    )


async def insert(tx: Connection, values: dict[str, Any]) -> asyncpg.Record | None:
    """The new row; None when the volume is already on some server (a race the volume service
    would also have refused)."""
    try:
        async with tx.transaction():
            row = await tx.fetchrow(
                f"""INSERT INTO compute.volume_attachments (server_id, volume_id, attachment_id, device,
                       status, connection, is_root, delete_on_termination)
                   VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7, $8)
                   RETURNING {COLUMNS}""",
                values["server_id"], values["volume_id"], values["attachment_id"], values["device"],
                values["status"], orjson.dumps(values["connection"]).decode(), values["is_root"],
                values["delete_on_termination"],
            )  # fmt: skip
    except asyncpg.UniqueViolationError:
        return None
    await tx.execute(SHOW_ON_SERVER, values["server_id"])
    return row


async def move(
    tx: Connection, attachment_id: str, expected: str, status: str, device: str | None = None
) -> bool:
    """One step: `expected` → `status` (and the device the host gave). False: not in `expected`."""
    done = await tx.fetchval(
        """UPDATE compute.volume_attachments
              SET status = $3, device = coalesce($4, device), step_at = now()
            WHERE attachment_id = $1 AND status = $2
        RETURNING true""",
        attachment_id, expected, status, device,
    )  # fmt: skip
    return bool(done)


async def remove(tx: Connection, attachment_id: str, *, statuses: tuple[str, ...]) -> asyncpg.Record | None:
    """Drop the attachment if it is in one of `statuses`; the row as it was, or None."""
    row = await tx.fetchrow(
        f"""DELETE FROM compute.volume_attachments WHERE attachment_id = $1 AND status = ANY($2::text[])
            RETURNING {COLUMNS}""",
        attachment_id, list(statuses),
    )  # fmt: skip
    if row is not None:
        await tx.execute(SHOW_ON_SERVER, row["server_id"])
    return row


async def remove_all(tx: Connection, server_id: str) -> list[asyncpg.Record]:
    """Every attachment of a server being deleted: its guest is gone, so are its disks."""
    return await tx.fetch(
        f"DELETE FROM compute.volume_attachments WHERE server_id = $1 RETURNING {COLUMNS}", server_id
    )


async def stale(tx: Connection, older_than_s: float, limit: int) -> list[asyncpg.Record]:
    """Attachments stuck in `attaching` or `detaching` (the agent's answer never came), locked so
    one replica drives each again."""
    return await tx.fetch(
        f"""SELECT {COLUMNS} FROM compute.volume_attachments
             WHERE status IN ('attaching', 'detaching') AND step_at < now() - make_interval(secs => $1)
             ORDER BY step_at LIMIT $2 FOR UPDATE SKIP LOCKED""",
        older_than_s, limit,
    )  # fmt: skip


async def touch(tx: Connection, attachment_id: str) -> None:
    await tx.execute(
        "UPDATE compute.volume_attachments SET step_at = now() WHERE attachment_id = $1", attachment_id
    )
