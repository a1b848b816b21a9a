"""Server groups: a policy (affinity or anti-affinity) that the scheduler applies to members.

A server joins a group at boot; its membership is its `group_id`, so deleting the server
leaves the group by itself and a group's members are always servers that exist.
"""

import uuid

import asyncpg

from actors.compute import quota_sql
from fabric.actor import handles
from fabric.service import ServiceActor, require_member
from protocol.compute import (
    CreateServerGroup,
    DeleteServerGroup,
    GetServerGroup,
    ListServerGroups,
    ServerGroupList,
    ServerGroupView,
)
from protocol.envelope import Context
from protocol.errors import NotFound, QuotaExceeded
from protocol.system import Done

SELECT = """SELECT g.id, g.name, g.policy, g.project_id, g.user_id,
    coalesce(array_agg(s.id ORDER BY s.created_at) FILTER (WHERE s.id IS NOT NULL), '{}') AS members
    FROM compute.server_groups g LEFT JOIN compute.servers s ON s.group_id = g.id"""


def view(r: asyncpg.Record) -> ServerGroupView:
    return ServerGroupView(
        id=r["id"],
        name=r["name"],
        policy=r["policy"],
        project_id=r["project_id"],
        user_id=r["user_id"],
        members=tuple(r["members"]),
    )


class ServerGroups(ServiceActor):
    """The server group handlers of the compute service (mixed into `actor.Compute`)."""

    async def _get(self, group_id: str, ctx: Context) -> ServerGroupView:
        async with self.store.transaction() as tx:
            row = await tx.fetchrow(f"{SELECT} WHERE g.id = $1 GROUP BY g.id", group_id)
        if row is None or (row["project_id"] != ctx.project_id and not ctx.is_admin):
            raise NotFound("server group", group_id)
        return view(row)

    @handles(CreateServerGroup)
    async def create_server_group(self, msg: CreateServerGroup, ctx: Context) -> ServerGroupView:
        require_member(ctx, "os_compute_api:os-server-groups:create")
        group_id = str(uuid.uuid4())
        project = ctx.project_id or ""
        async with self.store.transaction() as tx:
            await quota_sql.lock_usage(tx, project)
            count = await tx.fetchval(
                "SELECT count(*) FROM compute.server_groups WHERE project_id = $1", project
            )
            limit = (await quota_sql.limits(tx, project))["server_groups"]
            if 0 <= limit <= count:
                raise QuotaExceeded("server_groups", str(limit))
            await tx.execute(
                """INSERT INTO compute.server_groups (id, name, policy, project_id, user_id)
                    VALUES ($1, $2, $3, $4, $5)""",
                group_id, msg.name, msg.policy, project, ctx.user_id or "",
            )  # fmt: skip
        return await self._get(group_id, ctx)

    @handles(GetServerGroup)
    async def get_server_group(self, msg: GetServerGroup, ctx: Context) -> ServerGroupView:
        return await self._get(msg.group_id, ctx)

    @handles(ListServerGroups)
    async def list_server_groups(self, msg: ListServerGroups, ctx: Context) -> ServerGroupList:
        every = msg.all_projects and ctx.is_admin
        async with self.store.transaction() as tx:
            rows = await tx.fetch(
                f"{SELECT} WHERE $1 OR g.project_id = $2 GROUP BY g.id ORDER BY g.created_at, g.id",
                every, ctx.project_id,
            )  # fmt: skip
        return ServerGroupList(items=tuple(view(r) for r in rows))

    @handles(DeleteServerGroup)
    async def delete_server_group(self, msg: DeleteServerGroup, ctx: Context) -> Done:
        require_member(ctx, "os_compute_api:os-server-groups:delete")
        group = await self._get(msg.group_id, ctx)
        async with self.store.transaction() as tx:
            # Members stay, out of the group (as in Nova).
            await tx.execute("DELETE FROM compute.server_groups WHERE id = $1", group.id)
        return Done()
