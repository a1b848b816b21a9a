"""The statements behind volume types."""

from typing import Any

import asyncpg
import orjson

from fabric.store import Connection
from protocol.volume import VolumeTypeView

COLUMNS = "id, name, description, is_public, extra_specs, is_default"


def view(r: asyncpg.Record) -> VolumeTypeView:
    specs = r["extra_specs"]
    return VolumeTypeView(
        id=r["id"],
        name=r["name"],
        description=r["description"],
        is_public=r["is_public"],
        extra_specs=orjson.loads(specs) if isinstance(specs, str) else dict(specs),
        is_default=r["is_default"],
    )


async def find(conn: Connection, ref: str) -> asyncpg.Record | None:
    """By id, else by name; `default` (Cinder's `/types/default`) is the default type."""
    if ref == "default":
        return await conn.fetchrow(f"SELECT {COLUMNS} FROM volume.volume_types WHERE is_default")
    return await conn.fetchrow(
        f"SELECT {COLUMNS} FROM volume.volume_types WHERE id = $1 OR name = $1 ORDER BY id = $1 DESC LIMIT 1",
        ref,
    )


async def get(conn: Connection, type_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(f"SELECT {COLUMNS} FROM volume.volume_types WHERE id = $1", type_id)


async def insert(tx: Connection, type_id: str, values: dict[str, Any]) -> asyncpg.Record | None:
    """None when the id or the name is taken."""
    return await tx.fetchrow(
        f"""INSERT INTO volume.volume_types (id, name, description, is_public, extra_specs)
            VALUES ($1, $2, $3, $4, $5::jsonb) ON CONFLICT DO NOTHING RETURNING {COLUMNS}""",
        type_id, values["name"], values["description"], values["is_public"],
        orjson.dumps(values["extra_specs"]).decode(),
    )  # fmt: skip


async def update(tx: Connection, type_id: str, fields: dict[str, Any]) -> asyncpg.Record | None:
    sets = []
    args: list[Any] = [type_id]
    for column, value in fields.items():
        args.append(orjson.dumps(value).decode() if column == "extra_specs" else value)
        sets.append(f"{column} = ${len(args)}" + ("::jsonb" if column == "extra_specs" else ""))
    if not sets:
        return await get(tx, type_id)
    return await tx.fetchrow(
        f"UPDATE volume.volume_types SET {', '.join(sets)} WHERE id = $1 RETURNING {COLUMNS}", *args
    )


async def listing(conn: Connection, *, admin: bool) -> list[asyncpg.Record]:
    return await conn.fetch(
        f"SELECT {COLUMNS} FROM volume.volume_types WHERE $1 OR is_public ORDER BY name", admin
    )
