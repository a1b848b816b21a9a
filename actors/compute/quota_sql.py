"""Per-project quotas: limits (Nova's defaults unless set) and usage counted atomically.

Servers' usage (instances, cores, ram) lives in one row per project that the create and the
delete of a server update with the server's own row: the create's upsert (in
`compute.create_server`, migration 006) only matches when the new totals stay within the limits,
and the row lock it takes makes concurrent creates of one project queue behind each other, so
two of them can never both take the last slot. Other
counted things (keypairs, groups) are counted when created, under the same row lock.
"""

from collections.abc import Mapping

import asyncpg

from fabric.store import Connection
from protocol.compute import QUOTA_DEFAULTS
from protocol.errors import QuotaExceeded


async def limits(conn: Connection, project_id: str) -> dict[str, int]:
    rows = await conn.fetch(
        "SELECT resource, hard_limit FROM compute.quota_limits WHERE project_id = $1", project_id
    )
    return QUOTA_DEFAULTS | {r["resource"]: r["hard_limit"] for r in rows}


async def set_limits(tx: Connection, project_id: str, values: dict[str, int]) -> None:
    await tx.executemany(
        """INSERT INTO compute.quota_limits (project_id, resource, hard_limit) VALUES ($1, $2, $3)
            ON CONFLICT (project_id, resource) DO UPDATE SET hard_limit = excluded.hard_limit""",
        [(project_id, k, v) for k, v in values.items()],
    )


async def lock_usage(tx: Connection, project_id: str) -> asyncpg.Record:
    """The project's usage row, locked until the transaction ends (made on first use)."""
    await tx.execute(
        "INSERT INTO compute.quota_usage (project_id) VALUES ($1) ON CONFLICT DO NOTHING", project_id
    )
    row = await tx.fetchrow(
        "SELECT instances, cores, ram FROM compute.quota_usage WHERE project_id = $1 FOR UPDATE", project_id
    )
    assert row is not None
    return row


def check(resource: str, used: int, more: int, limit: int) -> None:
    if limit >= 0 and used + more > limit:
        raise QuotaExceeded(resource, f"{limit} (requested {more}, already used {used})")


def refuse_server(used: Mapping[str, int], cores: int, ram: int, limit: Mapping[str, int]) -> None:
    """Raise QuotaExceeded naming the first resource (instances, cores, ram) that one more server
    of `cores` and `ram` would take over its limit, the project already using `used`."""
    check("instances", used["instances"], 1, limit["instances"])
    check("cores", used["cores"], cores, limit["cores"])
    check("ram", used["ram"], ram, limit["ram"])


async def give_back_server(tx: Connection, project_id: str, cores: int, ram: int) -> None:
    await tx.execute(
        """UPDATE compute.quota_usage
              SET instances = greatest(instances - 1, 0), cores = greatest(cores - $2, 0),
                  ram = greatest(ram - $3, 0)
            WHERE project_id = $1""",
        project_id, cores, ram,
    )  # fmt: skip


async def usage(conn: Connection, project_id: str) -> dict[str, int]:
    row = await conn.fetchrow(
        """SELECT coalesce(u.instances, 0) AS instances, coalesce(u.cores, 0) AS cores,
                  coalesce(u.ram, 0) AS ram,
                  (SELECT count(*) FROM compute.server_groups WHERE project_id = $1) AS server_groups
             FROM (SELECT 1) one LEFT JOIN compute.quota_usage u ON u.project_id = $1""",
        project_id,
    )
    assert row is not None
    return {k: int(v) for k, v in dict(row).items()}
