"""The statements the compute service runs, beside the functions that run them."""

from typing import Any

import asyncpg
import orjson

from fabric.store import Connection
from protocol.compute import CreateFlavor, FlavorView

FLAVOR_COLUMNS = "id, name, vcpus, ram, disk, swap, ephemeral, is_public, rxtx_factor, disabled, description"


def usable(project_param: str) -> str:
    """Which flavors a project may use: public ones and private ones it was given."""
    return f"""(is_public OR EXISTS (SELECT 1 FROM compute.flavor_access a
                WHERE a.flavor_id = flavors.id AND a.project_id = {project_param}::text))"""


def flavor_view(r: asyncpg.Record) -> FlavorView:
    return FlavorView(**dict(r))


async def insert_flavor(tx: Connection, f: CreateFlavor) -> FlavorView | None:
    """The new flavor; None when its id or name is taken."""
    r = await tx.fetchrow(
        f"""INSERT INTO compute.flavors (id, name, vcpus, ram, disk, swap, ephemeral, is_public,
                rxtx_factor, description)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
            ON CONFLICT DO NOTHING RETURNING {FLAVOR_COLUMNS}""",
        f.flavor_id, f.name, f.vcpus, f.ram, f.disk, f.swap, f.ephemeral, f.is_public,
        f.rxtx_factor, f.description,
    )  # fmt: skip
    return flavor_view(r) if r else None


async def get_flavor(
    tx: Connection, flavor_id: str, *, project: str | None, admin: bool
) -> FlavorView | None:
    r = await tx.fetchrow(
        f"SELECT {FLAVOR_COLUMNS} FROM compute.flavors WHERE id = $2 AND ($3::bool OR {usable('$1')})",
        project, flavor_id, admin,
    )  # fmt: skip
    return flavor_view(r) if r else None


async def list_flavors(
    tx: Connection,
    *,
    project: str | None,
    admin: bool,
    is_public: bool | None,
    min_ram: int,
    min_disk: int,
    marker: str | None,
    limit: int,
) -> list[FlavorView]:
    # Admins choose with is_public (None: all); other callers get what they may use.
    where = ["ram >= $1", "disk >= $2"]
    args: list[Any] = [min_ram, min_disk]
    if not admin:
        args.append(project)
        where.append(usable(f"${len(args)}"))
    elif is_public is not None:
        args.append(is_public)
        where.append(f"is_public = ${len(args)}")
    if marker is not None:
        args.append(marker)
        where.append(f"id > ${len(args)}")
    args.append(limit)
    rows = await tx.fetch(
        f"""SELECT {FLAVOR_COLUMNS} FROM compute.flavors WHERE {" AND ".join(where)}
            ORDER BY id LIMIT ${len(args)}""",
        *args,
    )
    return [flavor_view(r) for r in rows]


async def delete_flavor(tx: Connection, flavor_id: str) -> bool:
    done: str = await tx.execute("DELETE FROM compute.flavors WHERE id = $1", flavor_id)
    return done != "DELETE 0"


async def flavor_access(tx: Connection, flavor_id: str) -> list[str]:
    rows = await tx.fetch(
        "SELECT project_id FROM compute.flavor_access WHERE flavor_id = $1 ORDER BY project_id", flavor_id
    )
    return [r["project_id"] for r in rows]


async def grant_flavor(tx: Connection, flavor_id: str, project_id: str) -> bool:
    """False when the project had access already."""
    done: str = await tx.execute(
        "INSERT INTO compute.flavor_access (flavor_id, project_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        flavor_id, project_id,
    )  # fmt: skip
    return done != "INSERT 0 0"


async def revoke_flavor(tx: Connection, flavor_id: str, project_id: str) -> bool:
    done: str = await tx.execute(
        "DELETE FROM compute.flavor_access WHERE flavor_id = $1 AND project_id = $2", flavor_id, project_id
    )
    return done != "DELETE 0"


async def extra_specs(tx: Connection, flavor_id: str) -> dict[str, str] | None:
    raw = await tx.fetchval("SELECT extra_specs FROM compute.flavors WHERE id = $1", flavor_id)
    return None if raw is None else dict(orjson.loads(raw))


async def merge_extra_specs(tx: Connection, flavor_id: str, specs: dict[str, str]) -> dict[str, str] | None:
    raw = await tx.fetchval(
        """UPDATE compute.flavors SET extra_specs = extra_specs || $2::jsonb
           WHERE id = $1 RETURNING extra_specs""",
        flavor_id, orjson.dumps(specs).decode(),
    )  # fmt: skip
    return None if raw is None else dict(orjson.loads(raw))


async def delete_extra_spec(tx: Connection, flavor_id: str, key: str) -> dict[str, str] | None:
    """The specs left; None when the flavor has no such key."""
    raw = await tx.fetchval(
        """UPDATE compute.flavors SET extra_specs = extra_specs - $2
           WHERE id = $1 AND extra_specs ? $2 RETURNING extra_specs""",
        flavor_id, key,
    )  # fmt: skip
    return None if raw is None else dict(orjson.loads(raw))
