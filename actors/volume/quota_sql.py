"""Per-project quotas: limits (Cinder's defaults unless set) and usage counted atomically.

Usage lives in one row per project that every create, extend and delete changes in its own
transaction, beside the row it counts. Taking is one conditional upsert: it matches only while
the new totals stay within the limits, and the row lock it takes makes concurrent creates of one
project queue behind each other, so two of them can never both take the last unit. Giving back
happens when the volume or snapshot row goes (its file is gone), in the same transaction.
"""

from typing import Any

import orjson

from fabric.store import Connection
from protocol.errors import QuotaExceeded
from protocol.volume import DEFAULT_QUOTAS

#: The counted resources, in the order a QuotaExceeded names the first one over its limit.
COUNTED = ("volumes", "snapshots", "gigabytes")


def limits_from(stored: Any) -> dict[str, int]:
    """The limits as set for a project (a jsonb object, or a dict), over the defaults."""
    given = orjson.loads(stored) if isinstance(stored, str) else (stored or {})
    return DEFAULT_QUOTAS | {k: int(v) for k, v in given.items()}


async def limits(conn: Connection, project_id: str) -> dict[str, int]:
    rows = await conn.fetch(
        "SELECT resource, hard_limit FROM volume.quotas WHERE project_id = $1", project_id
    )
    return DEFAULT_QUOTAS | {r["resource"]: r["hard_limit"] for r in rows}


async def set_limits(tx: Connection, project_id: str, values: dict[str, int]) -> None:
    await tx.executemany(
        """INSERT INTO volume.quotas (project_id, resource, hard_limit) VALUES ($1, $2, $3)
            ON CONFLICT (project_id, resource) DO UPDATE SET hard_limit = excluded.hard_limit""",
        [(project_id, k, v) for k, v in values.items()],
    )


def check(resource: str, used: int, more: int, limit: int) -> None:
    if more > 0 and limit >= 0 and used + more > limit:
        raise QuotaExceeded(resource, f"{limit} (requested {more}, already used {used})")


def check_volume_size(size_gb: int, limit: dict[str, int]) -> None:
    """Cinder's per_volume_gigabytes: no volume larger than this, whatever else is free."""
    per_volume = limit["per_volume_gigabytes"]
    if per_volume >= 0 and size_gb > per_volume:
        raise QuotaExceeded("per_volume_gigabytes", f"{per_volume} (requested {size_gb})")


# Add to the project's usage only if each resource asked for stays within its limit ($5..$7,
# -1 for none; a resource not asked for is not checked). The first use of a project makes the
# row (the deltas were checked against the limits before); later ones take the row's lock
# through ON CONFLICT, so concurrent takes of one project queue here and each check sees every
# earlier one. No row back: over a limit.
TAKE = """
INSERT INTO volume.usage AS u (project_id, volumes, gigabytes, snapshots) VALUES ($1, $2, $3, $4)
ON CONFLICT (project_id) DO UPDATE
   SET volumes = u.volumes + $2, gigabytes = u.gigabytes + $3, snapshots = u.snapshots + $4
 WHERE ($2 = 0 OR $5 < 0 OR u.volumes + $2 <= $5)
   AND ($3 = 0 OR $6 < 0 OR u.gigabytes + $3 <= $6)
   AND ($4 = 0 OR $7 < 0 OR u.snapshots + $4 <= $7)
RETURNING true"""


async def take(
    tx: Connection,
    project_id: str,
    limit: dict[str, int],
    *,
    volumes: int = 0,
    gigabytes: int = 0,
    snapshots: int = 0,
) -> None:
    """Count more usage within `limit`, or raise QuotaExceeded naming the first resource over
    its limit. One statement when it fits: creating volumes is the hot path."""
    more = {"volumes": volumes, "gigabytes": gigabytes, "snapshots": snapshots}
    for resource in COUNTED:
        check(resource, 0, more[resource], limit[resource])  # over the limit even when first
    taken = await tx.fetchval(
        TAKE, project_id, volumes, gigabytes, snapshots,
        limit["volumes"], limit["gigabytes"], limit["snapshots"],
    )  # fmt: skip
    if taken:
        return
    used = await lock_usage(tx, project_id)
    for resource in COUNTED:
        check(resource, used[resource], more[resource], limit[resource])
    raise AssertionError("the quota update matched no row, yet every limit holds")


async def give_back(
    tx: Connection, project_id: str, *, volumes: int = 0, gigabytes: int = 0, snapshots: int = 0
) -> None:
    await tx.execute(
        """UPDATE volume.usage
              SET volumes = greatest(volumes - $2, 0), gigabytes = greatest(gigabytes - $3, 0),
                  snapshots = greatest(snapshots - $4, 0)
            WHERE project_id = $1""",
        project_id, volumes, gigabytes, snapshots,
    )  # fmt: skip


async def lock_usage(tx: Connection, project_id: str) -> dict[str, int]:
    """The project's usage, its row locked until the transaction ends (made on first use)."""
    await tx.execute("INSERT INTO volume.usage (project_id) VALUES ($1) ON CONFLICT DO NOTHING", project_id)
    row = await tx.fetchrow(
        "SELECT volumes, gigabytes, snapshots FROM volume.usage WHERE project_id = $1 FOR UPDATE", project_id
    )
    assert row is not None
    return {k: int(v) for k, v in dict(row).items()}


async def usage(conn: Connection, project_id: str) -> dict[str, int]:
    row = await conn.fetchrow(
        "SELECT volumes, gigabytes, snapshots FROM volume.usage WHERE project_id = $1", project_id
    )
    found = {k: int(v) for k, v in dict(row).items()} if row is not None else dict.fromkeys(COUNTED, 0)
    return found | {"per_volume_gigabytes": 0}
