"""Quota handlers: a project's limits and usage, and admins setting them. A limit below what
the project uses already is refused, as Cinder refuses it."""

from actors.volume import quota_sql
from fabric.actor import handles
from fabric.service import ServiceActor, require_admin
from fabric.store import Connection
from protocol.envelope import Context
from protocol.errors import Invalid, NotFound
from protocol.volume import DEFAULT_QUOTAS, GetVolumeQuotas, SetVolumeQuotas, VolumeQuotaSet


class Quotas(ServiceActor):
    """The quota handlers of the volume service (mixed into `actor.Volume`)."""

    async def _quota_set(self, conn: Connection, project_id: str) -> VolumeQuotaSet:
        return VolumeQuotaSet(
            project_id=project_id,
            limits=await quota_sql.limits(conn, project_id),
            in_use=await quota_sql.usage(conn, project_id),
        )

    @handles(GetVolumeQuotas)
    async def get_volume_quotas(self, msg: GetVolumeQuotas, ctx: Context) -> VolumeQuotaSet:
        """Another project's quotas are not found, as the other services here answer."""
        if msg.project_id != ctx.project_id and not ctx.is_admin:
            raise NotFound("quota set of project", msg.project_id)
        async with self.store.connection() as conn:
            return await self._quota_set(conn, msg.project_id)

    @handles(SetVolumeQuotas, key=lambda m: m.project_id)
    async def set_volume_quotas(self, msg: SetVolumeQuotas, ctx: Context) -> VolumeQuotaSet:
        require_admin(ctx, "volume_extension:quotas:update")
        for resource in msg.limits:
            if resource not in DEFAULT_QUOTAS:
                known = ", ".join(DEFAULT_QUOTAS)
                raise Invalid(f"quota_set.{resource[:64]}", f"not a volume quota (known: {known})")
        async with self.store.transaction() as tx:
            used = await quota_sql.lock_usage(tx, msg.project_id)
            for resource, limit in msg.limits.items():
                if 0 <= limit < used.get(resource, 0):
                    raise Invalid(
                        f"quota_set.{resource}",
                        f"quota limit {limit} must be equal or greater than the {used[resource]} in use",
                    )
            await quota_sql.set_limits(tx, msg.project_id, msg.limits)
            return await self._quota_set(tx, msg.project_id)
