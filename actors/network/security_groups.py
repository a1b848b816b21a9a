"""Security groups and rules (mixed into `actor.Network`), and each project's `default` group."""

import ipaddress
import uuid

import asyncpg

from actors.network import quotas, sql
from actors.network.quotas import Quotas
from fabric.actor import handles
from fabric.service import require_member
from fabric.store import Connection
from protocol.envelope import Context
from protocol.errors import Conflict, Invalid, NotFound
from protocol.security_groups import (
    CreateSecurityGroup,
    CreateSecurityGroupRule,
    DeleteSecurityGroup,
    DeleteSecurityGroupRule,
    GetSecurityGroup,
    GetSecurityGroupRule,
    ListSecurityGroupRules,
    ListSecurityGroups,
    RuleList,
    RuleView,
    SecurityGroupList,
    SecurityGroupView,
    UpdateSecurityGroup,
)
from protocol.system import Done

RULE_COLUMNS = """r.id, r.security_group_id, r.direction, r.ethertype, r.protocol, r.port_range_min,
    r.port_range_max, r.remote_ip_prefix::text AS remote_ip_prefix, r.remote_group_id, r.description,
    r.project_id,
    extract(epoch FROM r.created_at) AS created_at, extract(epoch FROM r.updated_at) AS updated_at,
    r.revision_number"""
GROUP_COLUMNS = """s.id, s.name, s.description, s.project_id, s.is_default,
    extract(epoch FROM s.created_at) AS created_at, extract(epoch FROM s.updated_at) AS updated_at,
    s.revision_number"""


def rule_view(r: asyncpg.Record) -> RuleView:
    return RuleView(**{k: r[k] for k in r.keys() if k not in ("created_at", "updated_at")},
                    created_at=float(r["created_at"]), updated_at=float(r["updated_at"]))  # fmt: skip


def check_rule(msg: CreateSecurityGroupRule) -> str | None:
    """Neutron's checks on a rule; the remote prefix in canonical form."""
    low, high = msg.port_range_min, msg.port_range_max
    if msg.protocol in ("tcp", "udp"):
        if (low is None) != (high is None):
            raise Invalid(
                "security_group_rule.port_range_max", "give both ends of the port range, or neither"
            )
        if low is not None and high is not None:
            if low < 1:
                raise Invalid("security_group_rule.port_range_min", "ports start at 1")
            if low > high:
                raise Invalid("security_group_rule.port_range_min", f"{low} is above port_range_max {high}")
    elif msg.protocol == "icmp":
        for name, value in (("port_range_min", low), ("port_range_max", high)):
            if value is not None and value > 255:
                raise Invalid(f"security_group_rule.{name}", "an ICMP type or code is 0 to 255")
    elif low is not None or high is not None:
        raise Invalid("security_group_rule.protocol", "a port range needs protocol tcp or udp")
    if msg.remote_ip_prefix is not None and msg.remote_group_id is not None:
        raise Invalid(
            "security_group_rule.remote_ip_prefix", "give remote_ip_prefix or remote_group_id, not both"
        )
    if msg.remote_ip_prefix is None:
        return None
    try:
        prefix = ipaddress.ip_network(msg.remote_ip_prefix, strict=False)
    except ValueError:
        raise Invalid(
            "security_group_rule.remote_ip_prefix", f"{msg.remote_ip_prefix!r} is not a CIDR"
        ) from None
    if prefix.version != 4:
        raise Invalid("security_group_rule.remote_ip_prefix", "only IPv4 rules are supported")
    return str(prefix)


class SecurityGroups(Quotas):
    async def ensure_default_group(self, tx: Connection, project_id: str) -> str:
        """The project's `default` group, made on first need (idempotent across replicas)."""
        group_id = str(uuid.uuid4())
        made = await tx.fetchval(
            """INSERT INTO network.security_groups (id, name, description, project_id, is_default)
                VALUES ($1, 'default', 'Default security group', $2, true)
                ON CONFLICT (project_id) WHERE is_default DO NOTHING RETURNING id""",
            group_id, project_id,
        )  # fmt: skip
        if made is None:
            found: str = await tx.fetchval(
                "SELECT id FROM network.security_groups WHERE project_id = $1 AND is_default", project_id
            )
            return found
        await tx.executemany(
            """INSERT INTO network.security_group_rules
                    (id, security_group_id, project_id, direction, remote_group_id)
                VALUES ($1, $2, $3, $4, $5)""",
            [
                (str(uuid.uuid4()), group_id, project_id, "egress", None),
                (str(uuid.uuid4()), group_id, project_id, "ingress", group_id),
            ],
        )
        return group_id

    async def _group(self, conn: Connection, group_id: str, ctx: Context) -> SecurityGroupView:
        row = await conn.fetchrow(
            f"SELECT {GROUP_COLUMNS} FROM network.security_groups s WHERE s.id = $1", group_id
        )
        if row is None or (row["project_id"] != ctx.project_id and not ctx.is_admin):
            raise NotFound("security group", group_id)
        return (await self._with_rules(conn, [row]))[0]

    async def _with_rules(self, conn: Connection, rows: list[asyncpg.Record]) -> list[SecurityGroupView]:
        rules = await conn.fetch(
            f"""SELECT {RULE_COLUMNS} FROM network.security_group_rules r
                 WHERE r.security_group_id = ANY($1) ORDER BY r.id""",
            [r["id"] for r in rows],
        )
        by_group: dict[str, list[RuleView]] = {}
        for rule in rules:
            by_group.setdefault(rule["security_group_id"], []).append(rule_view(rule))
        return [
            SecurityGroupView(
                id=r["id"],
                name=r["name"],
                description=r["description"],
                project_id=r["project_id"],
                rules=tuple(by_group.get(r["id"], [])),
                created_at=float(r["created_at"]),
                updated_at=float(r["updated_at"]),
                revision_number=r["revision_number"],
            )
            for r in rows
        ]

    @handles(CreateSecurityGroup, key=lambda m: m.group_id)
    async def create_security_group(self, msg: CreateSecurityGroup, ctx: Context) -> SecurityGroupView:
        require_member(ctx, "create_security_group")
        if msg.project_id not in (None, ctx.project_id) and not ctx.is_admin:
            raise NotFound("project", msg.project_id or "")
        if msg.name == "default":
            raise Conflict("security group", "default is the name of each project's own default group")
        project = msg.project_id or ctx.project_id or ""
        async with self.store.transaction() as tx:
            await self.ensure_default_group(tx, project)
            await quotas.take(tx, project, "security_group")
            try:
                await tx.execute(
                    """INSERT INTO network.security_groups (id, name, description, project_id)
                        VALUES ($1, $2, $3, $4)""",
                    msg.group_id, msg.name, msg.description, project,
                )  # fmt: skip
            except asyncpg.UniqueViolationError:
                raise Conflict("security group", f"a group with id {msg.group_id} exists") from None
            await tx.execute(
                """INSERT INTO network.security_group_rules (id, security_group_id, project_id, direction)
                    VALUES ($1, $2, $3, 'egress')""",
                str(uuid.uuid4()), msg.group_id, project,
            )  # fmt: skip
            return await self._group(tx, msg.group_id, ctx)

    @handles(GetSecurityGroup)
    async def get_security_group(self, msg: GetSecurityGroup, ctx: Context) -> SecurityGroupView:
        async with self.store.connection() as conn:
            return await self._group(conn, msg.group_id, ctx)

    @handles(ListSecurityGroups)
    async def list_security_groups(self, msg: ListSecurityGroups, ctx: Context) -> SecurityGroupList:
        async with self.store.transaction() as tx:
            if ctx.project_id:
                await self.ensure_default_group(tx, ctx.project_id)
            rows = await sql.list_rows(
                tx,
                table="security_groups",
                columns=GROUP_COLUMNS,
                filters={"name": msg.name, "project_id": msg.project_id, "id": msg.ids},
                scope="($2::bool OR s.project_id = $1)",
                args=[ctx.project_id, ctx.is_admin],
                marker=msg.marker,
                limit=msg.limit + 1,
            )
            items = await self._with_rules(tx, rows[: msg.limit])
        return SecurityGroupList(items=tuple(items), more=len(rows) > msg.limit)

    @handles(UpdateSecurityGroup, key=lambda m: m.group_id)
    async def update_security_group(self, msg: UpdateSecurityGroup, ctx: Context) -> SecurityGroupView:
        require_member(ctx, "update_security_group")
        async with self.store.transaction() as tx:
            group = await self._group(tx, msg.group_id, ctx)
            if group.name == "default" and msg.name not in (None, "default"):
                raise Conflict("security group", "the default group keeps its name")
            await tx.execute(
                """UPDATE network.security_groups
                    SET name = coalesce($2, name), description = coalesce($3, description),
                        updated_at = now(), revision_number = revision_number + 1
                    WHERE id = $1""",
                msg.group_id, msg.name, msg.description,
            )  # fmt: skip
            return await self._group(tx, msg.group_id, ctx)

    @handles(DeleteSecurityGroup, key=lambda m: m.group_id)
    async def delete_security_group(self, msg: DeleteSecurityGroup, ctx: Context) -> Done:
        require_member(ctx, "delete_security_group")
        async with self.store.transaction() as tx:
            await self._group(tx, msg.group_id, ctx)
            if await tx.fetchval(
                "SELECT is_default FROM network.security_groups WHERE id = $1", msg.group_id
            ):
                raise Conflict("security group", "a project's default group cannot be deleted")
            try:
                await tx.execute("DELETE FROM network.security_groups WHERE id = $1", msg.group_id)
            except asyncpg.ForeignKeyViolationError:
                raise Conflict("security group", f"{msg.group_id} is in use by ports") from None
        return Done()

    # --- rules ---------------------------------------------------------------------------------

    @handles(CreateSecurityGroupRule, key=lambda m: m.security_group_id)
    async def create_rule(self, msg: CreateSecurityGroupRule, ctx: Context) -> RuleView:
        require_member(ctx, "create_security_group_rule")
        prefix = check_rule(msg)
        async with self.store.transaction() as tx:
            group = await self._group(tx, msg.security_group_id, ctx)
            if msg.remote_group_id is not None:
                await self._group(tx, msg.remote_group_id, ctx)
            await quotas.take(tx, group.project_id, "security_group_rule")
            try:
                await tx.execute(
                    """INSERT INTO network.security_group_rules (id, security_group_id, project_id,
                            direction, ethertype, protocol, port_range_min, port_range_max, remote_ip_prefix,
                            remote_group_id, description)
                        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::cidr, $10, $11)""",
                    msg.rule_id, group.id, group.project_id, msg.direction, msg.ethertype, msg.protocol,
                    msg.port_range_min, msg.port_range_max, prefix, msg.remote_group_id, msg.description,
                )  # fmt: skip
            except asyncpg.UniqueViolationError:
                raise Conflict("security group rule", "the group has this rule already") from None
            row = await tx.fetchrow(
                f"SELECT {RULE_COLUMNS} FROM network.security_group_rules r WHERE r.id = $1", msg.rule_id
            )
        assert row is not None
        return rule_view(row)

    async def _rule(self, conn: Connection, rule_id: str, ctx: Context) -> RuleView:
        row = await conn.fetchrow(
            f"SELECT {RULE_COLUMNS} FROM network.security_group_rules r WHERE r.id = $1", rule_id
        )
        if row is None or (row["project_id"] != ctx.project_id and not ctx.is_admin):
            raise NotFound("security group rule", rule_id)
        return rule_view(row)

    @handles(GetSecurityGroupRule)
    async def get_rule(self, msg: GetSecurityGroupRule, ctx: Context) -> RuleView:
        async with self.store.connection() as conn:
            return await self._rule(conn, msg.rule_id, ctx)

    @handles(ListSecurityGroupRules)
    async def list_rules(self, msg: ListSecurityGroupRules, ctx: Context) -> RuleList:
        async with self.store.connection() as conn:
            rows = await sql.list_rows(
                conn,
                table="security_group_rules",
                columns=RULE_COLUMNS,
                filters={
                    "security_group_id": msg.security_group_id,
                    "direction": msg.direction,
                    "protocol": msg.protocol,
                    "project_id": msg.project_id,
                    "id": msg.ids,
                },
                scope="($2::bool OR r.project_id = $1)",
                args=[ctx.project_id, ctx.is_admin],
                marker=msg.marker,
                limit=msg.limit + 1,
                alias="r",
            )
        return RuleList(items=tuple(rule_view(r) for r in rows[: msg.limit]), more=len(rows) > msg.limit)

    @handles(DeleteSecurityGroupRule, key=lambda m: m.rule_id)
    async def delete_rule(self, msg: DeleteSecurityGroupRule, ctx: Context) -> Done:
        require_member(ctx, "delete_security_group_rule")
        async with self.store.transaction() as tx:
            await self._rule(tx, msg.rule_id, ctx)
            await tx.execute("DELETE FROM network.security_group_rules WHERE id = $1", msg.rule_id)
        return Done()
