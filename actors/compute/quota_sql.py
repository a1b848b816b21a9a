"""Per-project quotas: limits (Nova's defaults unless set) and usage counted atomically.

Servers' usage (instances, cores, ram) lives in one row per project that the create and the
delete of a server update in their own transaction: the create's UPDATE only matches when the
new totals stay within the limits, and the row lock it takes makes concurrent creates of one
project queue behind each other, so two of them can never both take the last slot. Other
counted things (keypairs, groups) are counted when created, under the same row lock.
"""

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


# One more server, counted only if the new totals stay within the limits ($4..$6, -1 for none).
# The first server of a project makes the row (its totals are checked before); later ones take
# the row's lock through ON CONFLICT, so concurrent creates of one project queue here and the
# check sees every earlier one. No row back: over a limit (and the row is locked for the read
# that says which).
TAKE_SERVER = """
INSERT INTO compute.quota_usage AS u (project_id, instances, cores, ram) VALUES ($1, 1, $2, $3)
ON CONFLICT (project_id) DO UPDATE
   SET instances = u.instances + 1, cores = u.cores + $2, ram = u.ram + $3
 WHERE ($4 < 0 OR u.instances + 1 <= $4) AND ($5 < 0 OR u.cores + $2 <= $5) AND ($6 < 0 OR u.ram + $3 <= $6)
RETURNING true"""


async def take_server(tx: Connection, project_id: str, cores: int, ram: int, limit: dict[str, int]) -> None:
    """Count one more server within `limit` (the project's `limits`, read before the
    transaction), or raise QuotaExceeded naming the first resource over its limit. One
    statement when it fits: creating servers is the hot path."""
    for resource, more in (("instances", 1), ("cores", cores), ("ram", ram)):
        check(resource, 0, more, limit[resource])  # over the limit even as the first server
    taken = await tx.fetchval(
        TAKE_SERVER, project_id, cores, ram, limit["instances"], limit["cores"], limit["ram"]
    )
    if taken:
        return
    used = await lock_usage(tx, project_id)
    check("instances", used["instances"], 1, limit["instances"])
    check("cores", used["cores"], cores, limit["cores"])
    check("ram", used["ram"], ram, limit["ram"])
    raise AssertionError("the quota update matched no row, yet every limit holds")


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
