"""Per-project network quotas (mixed into `actor.Network`).

Usage is counted from the tables themselves, inside the transaction that creates, under a
transaction-scoped advisory lock per project and resource: two creates of one project queue for
the lock, so the second counts what the first made and neither can pass the limit.
"""

from fabric.actor import handles
from fabric.service import ServiceActor, require_admin
from fabric.store import Connection
from protocol.envelope import Context
from protocol.errors import Invalid, NotFound, QuotaExceeded
from protocol.network import NETWORK_QUOTA_DEFAULTS, GetNetworkQuotas, NetworkQuotas, SetNetworkQuotas

#: How each resource is counted for a project.
COUNTS = {
    "network": "SELECT count(*) FROM network.networks WHERE project_id = $1",
    "subnet": "SELECT count(*) FROM network.subnets WHERE project_id = $1",
    "port": "SELECT count(*) FROM network.ports WHERE project_id = $1 AND device_owner NOT LIKE 'network:%'",
    "router": "SELECT count(*) FROM network.routers WHERE project_id = $1",
    "floatingip": "SELECT count(*) FROM network.floating_ips WHERE project_id = $1",
    "security_group": "SELECT count(*) FROM network.security_groups WHERE project_id = $1",
    "security_group_rule": "SELECT count(*) FROM network.security_group_rules WHERE project_id = $1",
}


async def limits(conn: Connection, project_id: str) -> dict[str, int]:
    rows = await conn.fetch(
        "SELECT resource, hard_limit FROM network.quotas WHERE project_id = $1", project_id
    )
    return NETWORK_QUOTA_DEFAULTS | {r["resource"]: r["hard_limit"] for r in rows}


async def take(tx: Connection, project_id: str, resource: str, more: int = 1) -> None:
    """Raise QuotaExceeded unless the project may have `more` of `resource`; the caller then
    creates them in the same transaction."""
    await tx.execute(
        "SELECT pg_advisory_xact_lock(hashtext('network.quota:' || $1 || ':' || $2))", project_id, resource
    )
    limit = (await limits(tx, project_id))[resource]
    if limit < 0:
        return
    used = await tx.fetchval(COUNTS[resource], project_id)
    if used + more > limit:
        raise QuotaExceeded(resource, f"{limit} (requested {more}, already used {used})")


class Quotas(ServiceActor):
    async def _quotas(self, conn: Connection, project_id: str) -> NetworkQuotas:
        used = {name: int(await conn.fetchval(query, project_id)) for name, query in COUNTS.items()}
        return NetworkQuotas(project_id=project_id, limits=await limits(conn, project_id), used=used)

    @handles(GetNetworkQuotas)
    async def get_quotas(self, msg: GetNetworkQuotas, ctx: Context) -> NetworkQuotas:
        if msg.project_id != ctx.project_id and not ctx.is_admin:
            raise NotFound("quota of project", msg.project_id)
        async with self.store.connection() as conn:
            return await self._quotas(conn, msg.project_id)

    @handles(SetNetworkQuotas, key=lambda m: m.project_id)
    async def set_quotas(self, msg: SetNetworkQuotas, ctx: Context) -> NetworkQuotas:
        require_admin(ctx, "update_quota")
        for resource in msg.limits:
            if resource not in NETWORK_QUOTA_DEFAULTS:
                known = ", ".join(NETWORK_QUOTA_DEFAULTS)
                raise Invalid(f"quota.{resource[:64]}", f"not a network quota (known: {known})")
        async with self.store.transaction() as tx:
            if msg.reset:
                await tx.execute("DELETE FROM network.quotas WHERE project_id = $1", msg.project_id)
            await tx.executemany(
                """INSERT INTO network.quotas (project_id, resource, hard_limit) VALUES ($1, $2, $3)
                    ON CONFLICT (project_id, resource) DO UPDATE SET hard_limit = excluded.hard_limit""",
                [(msg.project_id, k, v) for k, v in msg.limits.items()],
            )
            return await self._quotas(tx, msg.project_id)
