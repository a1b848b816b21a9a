"""A project's DNS quota limits: its own where set, Designate's defaults otherwise."""

from fabric.store import Connection
from protocol.dns import DEFAULT_QUOTAS


async def limits(conn: Connection, project_id: str) -> dict[str, int]:
    rows = await conn.fetch("SELECT resource, hard_limit FROM dns.quotas WHERE project_id = $1", project_id)
    return DEFAULT_QUOTAS | {row["resource"]: row["hard_limit"] for row in rows}


def merged(resources: list[str], limits: list[int]) -> dict[str, int]:
    """Limits read beside a zone (`sql.zone_with_limits`), over the defaults."""
    return DEFAULT_QUOTAS | dict(zip(resources, limits, strict=True))


async def set_limits(conn: Connection, project_id: str, values: dict[str, int]) -> None:
    await conn.executemany(
        """
        INSERT INTO dns.quotas (project_id, resource, hard_limit) VALUES ($1, $2, $3)
        ON CONFLICT (project_id, resource) DO UPDATE SET hard_limit = EXCLUDED.hard_limit
        """,
        [(project_id, resource, limit) for resource, limit in values.items()],
    )
