"""The DNS service's SQL on schema `dns`. A change to a zone's data first bumps the zone's
serial with `bump` (taking the zone's row lock), so that in one zone changes happen one after
another and each gets its own serial; the checks that depend on the zone's contents (CNAME
exclusivity, quotas) run under that lock."""

from collections.abc import Sequence
from typing import Any

import asyncpg

from fabric.store import Connection

ZONE_COLUMNS = """
    z.id, z.name, z.project_id, z.email, z.ttl, z.serial, z.soa_mname, z.soa_rname, z.description,
    z.status, z.action, z.version, z.managed, z.recordset_count,
    extract(epoch FROM z.created_at)::float8 AS created, extract(epoch FROM z.updated_at)::float8 AS updated
"""

RECORDSET_COLUMNS = """
    r.id, r.zone_id, z.name AS zone_name, r.project_id, r.name, r.type, r.records, r.ttl,
    r.description, r.status, r.action, r.version, r.serial, r.managed_by,
    z.soa_mname, z.soa_rname, z.serial AS zone_serial, z.ttl AS zone_ttl,
    extract(epoch FROM r.created_at)::float8 AS created, extract(epoch FROM r.updated_at)::float8 AS updated
"""

#: One advisory lock for every zone create: whether a name is under (or above) another
#: project's zone is decided with no other create in between.
ZONE_TREE_LOCK = 0x6661627269630009


# --- zones -----------------------------------------------------------------------------------


async def zone(conn: Connection, zone_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(f"SELECT {ZONE_COLUMNS} FROM dns.zones z WHERE z.id = $1", zone_id)


async def zone_with_limits(conn: Connection, zone_id: str) -> asyncpg.Record | None:
    """The zone and, as `quota_resources` / `quota_limits`, its project's own quota limits: what
    a recordset change reads before it takes the zone's lock, in one round trip."""
    return await conn.fetchrow(
        f"""
        SELECT {ZONE_COLUMNS},
               ARRAY(SELECT resource FROM dns.quotas q WHERE q.project_id = z.project_id ORDER BY resource)
                   AS quota_resources,
               ARRAY(SELECT hard_limit FROM dns.quotas q WHERE q.project_id = z.project_id ORDER BY resource)
                   AS quota_limits
        FROM dns.zones z WHERE z.id = $1
        """,
        zone_id,
    )


async def zone_by_name(conn: Connection, name: str) -> asyncpg.Record | None:
    return await conn.fetchrow(f"SELECT {ZONE_COLUMNS} FROM dns.zones z WHERE z.name = $1", name)


async def lock_zone_tree(conn: Connection) -> None:
    await conn.execute("SELECT pg_advisory_xact_lock($1)", ZONE_TREE_LOCK)


async def owners_above(conn: Connection, ancestors: Sequence[str]) -> list[asyncpg.Record]:
    """The zones whose names are among `ancestors` (a name's parents)."""
    return await conn.fetch("SELECT name, project_id FROM dns.zones WHERE name = ANY($1::text[])", ancestors)


async def owners_below(conn: Connection, name: str) -> list[asyncpg.Record]:
    """The zones under `name` (subzones), whoever owns them."""
    return await conn.fetch(
        "SELECT name, project_id FROM dns.zones WHERE right(name, $2) = $1",
        "." + name,
        len(name) + 1,
    )


async def count_zone(conn: Connection, project_id: str, limit: int) -> bool:
    """One more zone for the project, unless that passes `limit` (-1: none)."""
    counted = await conn.fetchval(
        """
        INSERT INTO dns.zone_usage AS u (project_id, zones) VALUES ($1, 1)
        ON CONFLICT (project_id) DO UPDATE SET zones = u.zones + 1
            WHERE $2 < 0 OR u.zones < $2
        RETURNING zones
        """,
        project_id,
        limit,
    )
    return counted is not None and (limit < 0 or counted <= limit)


async def uncount_zone(conn: Connection, project_id: str) -> None:
    await conn.execute("UPDATE dns.zone_usage SET zones = zones - 1 WHERE project_id = $1", project_id)


async def insert_zone(conn: Connection, values: dict[str, Any]) -> asyncpg.Record:
    await conn.execute(
        """
        INSERT INTO dns.zones (id, name, pdns_name, project_id, email, ttl, serial, soa_mname,
                               soa_rname, description, status, action, managed, recordset_count)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'PENDING', 'CREATE', $11, 0)
        """,
        values["id"],
        values["name"],
        values["pdns_name"],
        values["project_id"],
        values["email"],
        values["ttl"],
        values["serial"],
        values["soa_mname"],
        values["soa_rname"],
        values["description"],
        values["managed"],
    )
    row = await zone(conn, values["id"])
    assert row is not None
    return row


async def bump(conn: Connection, zone_id: str, *, recordsets: int = 0, limit: int = -1) -> int | None:
    """The zone's next serial, with `recordsets` added to its count; None when the zone is gone
    or the count would pass `limit` (-1: none). Takes the zone's row lock."""
    serial: int | None = await conn.fetchval(
        """
        UPDATE dns.zones SET serial = serial + 1, recordset_count = recordset_count + $2,
               status = 'PENDING', action = CASE WHEN action = 'CREATE' THEN 'CREATE' ELSE 'UPDATE' END,
               updated_at = now()
        WHERE id = $1 AND ($3 < 0 OR $2 <= 0 OR recordset_count + $2 <= $3)
        RETURNING serial
        """,
        zone_id,
        recordsets,
        limit,
    )
    return serial


async def count_recordsets(conn: Connection, zone_id: str, more: int) -> None:
    """For the service's own recordsets, which no quota limits (the zone is locked already)."""
    await conn.execute(
        "UPDATE dns.zones SET recordset_count = recordset_count + $2 WHERE id = $1", zone_id, more
    )


async def update_zone(
    conn: Connection, zone_id: str, *, email: str | None, rname: str | None, ttl: int | None,
    description: str | None, clear_description: bool = False,
) -> None:  # fmt: skip
    await conn.execute(
        """
        UPDATE dns.zones SET email = COALESCE($2, email), soa_rname = COALESCE($3, soa_rname),
               ttl = COALESCE($4, ttl),
               description = CASE WHEN $6 THEN NULL ELSE COALESCE($5, description) END,
               version = version + 1, action = 'UPDATE'
        WHERE id = $1
        """,
        zone_id,
        email,
        rname,
        ttl,
        description,
        clear_description,
    )


async def delete_zone(conn: Connection, zone_id: str) -> asyncpg.Record | None:
    """Removes the zone and, by cascade, its recordsets: PowerDNS stops serving them at commit."""
    row = await conn.fetchrow(f"SELECT {ZONE_COLUMNS} FROM dns.zones z WHERE z.id = $1 FOR UPDATE", zone_id)
    if row is not None:
        await conn.execute("DELETE FROM dns.zones WHERE id = $1", zone_id)
    return row


# --- recordsets ------------------------------------------------------------------------------


async def recordset(conn: Connection, recordset_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"SELECT {RECORDSET_COLUMNS} FROM dns.recordsets r JOIN dns.zones z ON z.id = r.zone_id"
        " WHERE r.id = $1",
        recordset_id,
    )


async def types_at(conn: Connection, zone_id: str, name: str) -> list[str]:
    rows = await conn.fetch("SELECT type FROM dns.recordsets WHERE zone_id = $1 AND name = $2", zone_id, name)
    return [row["type"] for row in rows]


async def insert_recordsets(conn: Connection, rows: Sequence[tuple[Any, ...]]) -> None:
    """Rows of (id, zone_id, project_id, name, pdns_name, type, records, ttl, description,
    serial, managed_by), all PENDING CREATE."""
    await conn.executemany(
        """
        INSERT INTO dns.recordsets (id, zone_id, project_id, name, pdns_name, type, records, ttl,
                                    description, serial, managed_by, status, action)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 'PENDING', 'CREATE')
        """,
        rows,
    )


async def create_recordset(conn: Connection, values: tuple[Any, ...], limit: int) -> asyncpg.Record:
    """(outcome, serial, created) of `dns.create_recordset` (migration 002): `values` are
    (id, zone_id, project_id, name, pdns_name, type, records, ttl, description). Raises
    asyncpg's RaiseError `duplicate` or `cname` for a name taken."""
    row = await conn.fetchrow(
        "SELECT outcome, serial, created FROM dns.create_recordset($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        *values,
        limit,
    )
    assert row is not None
    return row


async def update_recordset(
    conn: Connection, recordset_id: str, *, records: Sequence[str] | None, ttl: int | None,
    clear_ttl: bool, description: str | None, serial: int, clear_description: bool = False,
) -> None:  # fmt: skip
    await conn.execute(
        """
        UPDATE dns.recordsets SET records = COALESCE($2, records),
               ttl = CASE WHEN $4 THEN NULL ELSE COALESCE($3, ttl) END,
               description = CASE WHEN $7 THEN NULL ELSE COALESCE($5, description) END,
               serial = $6, version = version + 1,
               status = 'PENDING', action = 'UPDATE', updated_at = now()
        WHERE id = $1
        """,
        recordset_id,
        records,
        ttl,
        clear_ttl,
        description,
        serial,
        clear_description,
    )


async def delete_recordset(conn: Connection, recordset_id: str) -> None:
    await conn.execute("DELETE FROM dns.recordsets WHERE id = $1", recordset_id)


async def kept_for_names(conn: Connection, keys: Sequence[str] | None) -> list[asyncpg.Record]:
    """The recordsets the service keeps for these ports and floating IPs (None: for all)."""
    source = f"SELECT {RECORDSET_COLUMNS} FROM dns.recordsets r JOIN dns.zones z ON z.id = r.zone_id"
    if keys is None:
        return await conn.fetch(f"{source} WHERE r.managed_by LIKE ANY('{{port:%,floatingip:%,ptr:%}}')")
    return await conn.fetch(f"{source} WHERE r.managed_by = ANY($1::text[])", keys)


async def ptrs(conn: Connection, floatingip_ids: Sequence[str]) -> list[asyncpg.Record]:
    """The PTR recordsets kept for these floating IPs (`ptr:<id>`)."""
    return await conn.fetch(
        "SELECT substr(r.managed_by, 5) AS floatingip_id, r.records, COALESCE(r.ttl, z.ttl) AS ttl,"
        " r.status, r.action FROM dns.recordsets r JOIN dns.zones z ON z.id = r.zone_id"
        " WHERE r.managed_by = ANY($1::text[])",
        [f"ptr:{f}" for f in floatingip_ids],
    )


# --- becoming ACTIVE ---------------------------------------------------------------------------


async def pending_zones(conn: Connection, idle_s: float) -> list[asyncpg.Record]:
    """Zones PENDING for longer than `idle_s`: whoever changed them did not see them served."""
    return await conn.fetch(
        "SELECT id, name, serial FROM dns.zones"
        " WHERE status = 'PENDING' AND updated_at < now() - make_interval(secs => $1)",
        idle_s,
    )


async def mark_served(conn: Connection, zone_id: str, serial: int) -> None:
    """Everything of the zone carried by `serial` or before is on the nameserver: ACTIVE."""
    await conn.execute(
        "UPDATE dns.recordsets SET status = 'ACTIVE', action = 'NONE'"
        " WHERE zone_id = $1 AND status = 'PENDING' AND serial <= $2",
        zone_id,
        serial,
    )
    await conn.execute(
        "UPDATE dns.zones SET status = 'ACTIVE', action = 'NONE'"
        " WHERE id = $1 AND status = 'PENDING' AND serial <= $2",
        zone_id,
        serial,
    )
