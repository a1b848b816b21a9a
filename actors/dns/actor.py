"""The DNS service (Designate's core), behind the `dns` queue: zones (`zones.py`), recordsets
(`recordsets.py`), confirming changes served (`served.py`), names of ports and floating IPs
(`bindings.py`), and quotas (here).

It is the only writer of schema `dns`; PowerDNS (`fabric/powerdns.py`) serves it through the
views of schema `pdns`, made by this service's migration.
"""

from collections.abc import Awaitable
from pathlib import Path

from actors.dns import quota_sql
from actors.dns.bindings import Bindings
from fabric.actor import handles
from fabric.service import require_admin
from protocol.dns import DEFAULT_QUOTAS, QUEUE, DnsQuotas, GetDnsQuotas, SetDnsQuotas
from protocol.envelope import Context
from protocol.errors import Invalid, NotFound

MIGRATIONS = Path(__file__).parent / "migrations"


class Dns(Bindings):
    service = QUEUE

    async def setup(self) -> None:
        await self.register_endpoint("dns", "designate", "/dns")

    async def background(self) -> list[Awaitable[None]]:
        return [*self.served_jobs(), self.reconcile_forever()]

    @handles(GetDnsQuotas)
    async def get_dns_quotas(self, msg: GetDnsQuotas, ctx: Context) -> DnsQuotas:
        """Another project's quotas are not found, as the other services here answer."""
        if msg.project_id != ctx.project_id and not ctx.is_admin:
            raise NotFound("quotas of project", msg.project_id)
        async with self.store.connection() as conn:
            return DnsQuotas(project_id=msg.project_id, limits=await quota_sql.limits(conn, msg.project_id))

    @handles(SetDnsQuotas, key=lambda m: m.project_id)
    async def set_dns_quotas(self, msg: SetDnsQuotas, ctx: Context) -> DnsQuotas:
        require_admin(ctx, "set_quota")
        for resource in msg.limits:
            if resource not in DEFAULT_QUOTAS:
                raise Invalid(resource[:64], f"not a DNS quota (known: {', '.join(DEFAULT_QUOTAS)})")
        async with self.store.transaction() as tx:
            await quota_sql.set_limits(tx, msg.project_id, msg.limits)
            return DnsQuotas(project_id=msg.project_id, limits=await quota_sql.limits(tx, msg.project_id))
