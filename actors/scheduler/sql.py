"""The statements the scheduler runs, beside the functions that run them."""

import asyncpg

from fabric.store import Connection
from protocol.scheduler import HypervisorView, Resources

# One row per host; reports that change nothing but the time are written at most every TTL/3.
UPSERT_HOSTS = """
INSERT INTO scheduler.hosts AS h (host, queue, hypervisor_type, availability_zone, vcpus, ram_mb,
        disk_gb, vcpus_limit, ram_mb_limit, disk_gb_limit, running, last_report_at)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::int[], $6::bigint[],
        $7::int[], $8::int[], $9::bigint[], $10::int[], $11::int[], $12::timestamptz[])
ON CONFLICT (host) DO UPDATE SET
    queue = excluded.queue, hypervisor_type = excluded.hypervisor_type,
    availability_zone = excluded.availability_zone, vcpus = excluded.vcpus,
    ram_mb = excluded.ram_mb, disk_gb = excluded.disk_gb, vcpus_limit = excluded.vcpus_limit,
    ram_mb_limit = excluded.ram_mb_limit, disk_gb_limit = excluded.disk_gb_limit,
    running = excluded.running, last_report_at = greatest(h.last_report_at, excluded.last_report_at)
"""

HOST_COLUMNS = """host, queue, hypervisor_type, availability_zone, enabled, vcpus_limit, ram_mb_limit,
    disk_gb_limit, used_vcpus, used_ram_mb, used_disk_gb, extract(epoch FROM last_report_at) AS reported"""


async def upsert_hosts(conn: Connection, rows: list[tuple[object, ...]]) -> None:
    """Rows of (host, queue, type, zone, vcpus, ram_mb, disk_gb, three limits, running,
    reported at), written in one statement."""
    if rows:
        await conn.execute(UPSERT_HOSTS, *(list(column) for column in zip(*rows, strict=True)))


async def all_hosts(conn: Connection) -> list[asyncpg.Record]:
    return await conn.fetch(f"SELECT {HOST_COLUMNS} FROM scheduler.hosts")


async def host_usage(conn: Connection, host: str) -> asyncpg.Record | None:
    return await conn.fetchrow(f"SELECT {HOST_COLUMNS} FROM scheduler.hosts WHERE host = $1", host)


# The claim: one statement, so it is atomic on its own. The UPDATE only matches when the host
# stays within its limits; the INSERT's primary key makes a second claim for the same server
# fail (and with it the whole statement, so the first UPDATE is undone too).
CLAIM = """
WITH claimed AS (
    UPDATE scheduler.hosts
       SET used_vcpus = used_vcpus + $3, used_ram_mb = used_ram_mb + $4,
           used_disk_gb = used_disk_gb + $5, allocations = allocations + 1
     WHERE host = $2 AND enabled
       AND used_vcpus + $3 <= vcpus_limit AND used_ram_mb + $4 <= ram_mb_limit
       AND used_disk_gb + $5 <= disk_gb_limit
    RETURNING host, queue, used_vcpus, used_ram_mb, used_disk_gb
), allocated AS (
    INSERT INTO scheduler.allocations (server_id, host, project_id, vcpus, ram_mb, disk_gb)
    SELECT $1, host, $6, $3, $4, $5 FROM claimed
    RETURNING server_id
)
SELECT c.* FROM claimed c JOIN allocated a ON true
"""


async def claim(
    conn: Connection, server_id: str, host: str, project_id: str, r: Resources
) -> asyncpg.Record | None:
    """The host's queue and new usage; None when it has no room (or is disabled or unknown).
    Raises UniqueViolationError when the server holds an allocation already."""
    return await conn.fetchrow(CLAIM, server_id, host, r.vcpus, r.ram_mb, r.disk_gb, project_id)


async def allocation(conn: Connection, server_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        """SELECT a.host, h.queue, h.availability_zone
             FROM scheduler.allocations a JOIN scheduler.hosts h USING (host)
            WHERE a.server_id = $1""",
        server_id,
    )


RELEASE = """
WITH gone AS (
    DELETE FROM scheduler.allocations WHERE server_id = $1 AND ($2::text IS NULL OR host = $2)
    RETURNING host, vcpus, ram_mb, disk_gb
)
UPDATE scheduler.hosts h
   SET used_vcpus = used_vcpus - g.vcpus, used_ram_mb = used_ram_mb - g.ram_mb,
       used_disk_gb = used_disk_gb - g.disk_gb, allocations = allocations - 1
  FROM gone g WHERE h.host = g.host
RETURNING h.host, h.used_vcpus, h.used_ram_mb, h.used_disk_gb
"""


async def release(conn: Connection, server_id: str, host: str | None) -> asyncpg.Record | None:
    """The host's new usage; None when the server held nothing (there)."""
    return await conn.fetchrow(RELEASE, server_id, host)


HYPERVISOR_COLUMNS = """id, host, hypervisor_type, availability_zone, enabled, vcpus, ram_mb, disk_gb,
    used_vcpus, used_ram_mb, used_disk_gb, running, extract(epoch FROM last_report_at) AS reported"""


def hypervisor_view(r: asyncpg.Record, *, now: float, ttl_s: float) -> HypervisorView:
    return HypervisorView(
        id=r["id"],
        host=r["host"],
        hypervisor_type=r["hypervisor_type"],
        availability_zone=r["availability_zone"],
        state="up" if float(r["reported"]) >= now - ttl_s else "down",
        enabled=r["enabled"],
        vcpus=r["vcpus"],
        ram_mb=r["ram_mb"],
        disk_gb=r["disk_gb"],
        used_vcpus=r["used_vcpus"],
        used_ram_mb=r["used_ram_mb"],
        used_disk_gb=r["used_disk_gb"],
        running=r["running"],
        last_report_at=float(r["reported"]),
    )


async def list_hypervisors(
    conn: Connection, *, host: str | None, marker: int | None, limit: int
) -> list[asyncpg.Record]:
    return await conn.fetch(
        f"""SELECT {HYPERVISOR_COLUMNS} FROM scheduler.hosts
            WHERE ($1::text IS NULL OR host = $1) AND ($2::bigint IS NULL OR id > $2)
            ORDER BY id LIMIT $3""",
        host, marker, limit,
    )  # fmt: skip


async def hypervisor_totals(conn: Connection) -> asyncpg.Record:
    row = await conn.fetchrow(
        """SELECT count(*) AS count, coalesce(sum(vcpus), 0) AS vcpus, coalesce(sum(ram_mb), 0) AS ram_mb,
                  coalesce(sum(disk_gb), 0) AS disk_gb, coalesce(sum(used_vcpus), 0) AS used_vcpus,
                  coalesce(sum(used_ram_mb), 0) AS used_ram_mb,
                  coalesce(sum(used_disk_gb), 0) AS used_disk_gb, coalesce(sum(running), 0) AS running
            FROM scheduler.hosts"""
    )
    assert row is not None
    return row


async def get_hypervisor(conn: Connection, hypervisor_id: int) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"SELECT {HYPERVISOR_COLUMNS} FROM scheduler.hosts WHERE id = $1", hypervisor_id
    )


async def zones(conn: Connection) -> list[asyncpg.Record]:
    return await conn.fetch(
        """SELECT availability_zone, host, extract(epoch FROM last_report_at) AS reported, enabled
            FROM scheduler.hosts ORDER BY availability_zone, host"""
    )
