"""Quota handlers: a project's limits and usage, and admins setting them."""

from actors.compute import create_inputs, quota_sql
from actors.compute.create_inputs import CreateInputs
from fabric.actor import handles
from fabric.service import ServiceActor, require_admin
from protocol.compute import QUOTA_DEFAULTS, GetQuotas, QuotaLimitsChanged, QuotaSet, SetQuotas
from protocol.envelope import Context
from protocol.errors import Invalid, NotFound


class Quotas(ServiceActor):
    """The quota handlers of the compute service (mixed into `actor.Compute`)."""

    #: Made by `servers.Servers`, of the same actor: what creates keep of the limits set here.
    create_inputs: CreateInputs

    async def _quota_set(self, project_id: str) -> QuotaSet:
        async with self.store.transaction() as tx:
            limits = await quota_sql.limits(tx, project_id)
            used = await quota_sql.usage(tx, project_id)
        return QuotaSet(project_id=project_id, limits=limits, in_use=used)

    @handles(GetQuotas)
    async def get_quotas(self, msg: GetQuotas, ctx: Context) -> QuotaSet:
        if msg.project_id != ctx.project_id and not ctx.is_admin:
            raise NotFound("quota set of project", msg.project_id)
        return await self._quota_set(msg.project_id)

    @handles(SetQuotas, key=lambda m: m.project_id)
    async def set_quotas(self, msg: SetQuotas, ctx: Context) -> QuotaSet:
        require_admin(ctx, "os_compute_api:os-quota-sets:update")
        for resource in msg.limits:
            if resource not in QUOTA_DEFAULTS:
                known = ", ".join(QUOTA_DEFAULTS)
                raise Invalid(f"quota_set.{resource[:64]}", f"not a compute quota (known: {known})")
        async with self.store.transaction() as tx:
            await quota_sql.set_limits(tx, msg.project_id, msg.limits)
        self.create_inputs.forget_limits(msg.project_id)  # this replica now, the others when told
        await create_inputs.announce(self.bus, QuotaLimitsChanged(project_id=msg.project_id), ctx)
        return await self._quota_set(msg.project_id)
