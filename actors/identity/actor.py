"""The identity actor: Keystone's core behind the `identity` queue.

Authorization is decided here, from the request context the gateway filled from a verified
token, so that no other path to this queue can skip it: admins (the `admin` role) manage
everything; other users read only themselves, their own project and their own assignments.

Every change that must invalidate tokens (a user disabled or deleted, a password changed, a
project or domain disabled or deleted, a role removed) writes a revocation rule in the same
transaction and then publishes it, so every gateway stops accepting those tokens at once.
"""

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable
from pathlib import Path

import asyncpg

from actors.identity import sql
from actors.identity.auth import authenticate
from actors.identity.passwords import hash_password, verify_password
from fabric.actor import handles
from fabric.bus import Bus
from fabric.config import Settings
from fabric.service import ServiceActor, require_admin
from fabric.store import Connection, Store
from fabric.tokens import TokenSealer, new_key
from protocol.envelope import Context
from protocol.errors import Conflict, Forbidden, Invalid, NotFound, Unauthorized
from protocol.identity import (
    QUEUE,
    AssignmentList,
    Catalog,
    CatalogChanged,
    ChangePassword,
    CheckRole,
    CreateDomain,
    CreateProject,
    CreateRole,
    CreateUser,
    DeleteDomain,
    DeleteProject,
    DeleteRole,
    DeleteUser,
    DomainList,
    DomainView,
    GetCatalog,
    GetDomain,
    GetProject,
    GetRole,
    GetTokenKeys,
    GetUser,
    Grant,
    GrantRole,
    ListDomains,
    ListProjects,
    ListRevocations,
    ListRoleAssignments,
    ListRoles,
    ListUserProjects,
    ListUsers,
    ProjectList,
    ProjectView,
    RegisterService,
    Revocation,
    Revocations,
    RevokeRole,
    RevokeToken,
    RoleList,
    RoleView,
    TokenIssued,
    TokenKeys,
    TokensRevoked,
    UpdateDomain,
    UpdateProject,
    UpdateRole,
    UpdateUser,
    UserList,
    UserView,
)
from protocol.identity import Authenticate as AuthenticateMsg
from protocol.system import Done

log = logging.getLogger("actors.identity")

MIGRATIONS = Path(__file__).parent / "migrations"
PRUNE_EVERY_S = 3600.0


def new_id() -> str:
    return uuid.uuid4().hex


class Identity(ServiceActor):
    service = QUEUE

    def __init__(self, bus: Bus, store: Store, settings: Settings) -> None:
        super().__init__(bus, store, settings)
        self.sealer: TokenSealer | None = None

    async def setup(self) -> None:
        async with self.store.transaction() as tx:
            await sql.ensure_token_key(tx, new_key())
            self.sealer = TokenSealer(await sql.token_keys(tx))
        await self._register_catalog()

    async def _register_catalog(self) -> None:
        msg = RegisterService(
            type="identity",
            name="keystone",
            url=f"{self.settings.gateway_url}/identity",
            region=self.settings.region,
            interfaces=("public", "internal", "admin"),
        )
        await self.register_service(msg, Context(request_id=f"req-{new_id()}", deadline=time.time() + 30))

    async def background(self) -> list[Awaitable[None]]:
        return [self._prune_revocations()]

    async def _prune_revocations(self) -> None:
        while True:
            await asyncio.sleep(PRUNE_EVERY_S)
            async with self.store.transaction() as tx:
                await sql.prune_revocations(tx, time.time())

    async def _revoke(self, tx: Connection, **match: str) -> Revocation:
        """Write a revocation rule for tokens issued until now; publish it after commit."""
        now = time.time()
        rule = Revocation(issued_before=now, expires_at=now + self.settings.token_ttl_s, **match)
        await sql.insert_revocation(tx, rule)
        return rule

    async def _announce(self, ctx: Context, *rules: Revocation) -> None:
        for rule in rules:
            await self.bus.publish(TokensRevoked(revocation=rule), ctx)

    # --- tokens ----------------------------------------------------------------------------

    @handles(AuthenticateMsg)
    async def authenticate(self, msg: AuthenticateMsg, ctx: Context) -> TokenIssued:
        assert self.sealer is not None
        data = await authenticate(
            self.store,
            msg,
            self.sealer,
            ttl_s=self.settings.token_ttl_s,
            cost=self.settings.password_hash_cost,
        )
        log.info("token issued", extra={"user_id": data.user_id, "audit_id": data.audit_id})
        return TokenIssued(token=self.sealer.seal(data), data=data)

    @handles(RevokeToken)
    async def revoke_token(self, msg: RevokeToken, ctx: Context) -> Revocations:
        assert self.sealer is not None
        try:
            data = self.sealer.open(msg.token)
        except Unauthorized:
            raise NotFound("token", "(the subject token)") from None
        if not ctx.is_admin and data.user_id != ctx.user_id:
            raise Forbidden("identity:revoke_token")
        rule = Revocation(audit_id=data.audit_id, issued_before=data.issued_at, expires_at=data.expires_at)
        async with self.store.transaction() as tx:
            await sql.insert_revocation(tx, rule)
        await self._announce(ctx, rule)
        return Revocations(items=(rule,))

    @handles(GetTokenKeys)
    async def get_token_keys(self, msg: GetTokenKeys, ctx: Context) -> TokenKeys:
        if ctx.user_id is not None:
            raise Forbidden("identity:get_token_keys")  # for gateways, never for users
        async with self.store.transaction() as tx:
            return TokenKeys(keys=tuple(await sql.token_keys(tx)))

    @handles(ListRevocations)
    async def list_revocations(self, msg: ListRevocations, ctx: Context) -> Revocations:
        async with self.store.transaction() as tx:
            return Revocations(items=tuple(await sql.live_revocations(tx, time.time())))

    # --- catalog ---------------------------------------------------------------------------

    @handles(GetCatalog)
    async def get_catalog(self, msg: GetCatalog, ctx: Context) -> Catalog:
        async with self.store.transaction() as tx:
            return Catalog(services=tuple(await sql.catalog(tx)))

    @handles(RegisterService)
    async def register_service(self, msg: RegisterService, ctx: Context) -> Done:
        if ctx.user_id is not None and not ctx.is_admin:
            raise Forbidden("identity:create_endpoint")
        changed = False
        async with self.store.transaction() as tx:
            service_id = await sql.upsert_service(tx, new_id(), msg.type, msg.name)
            for interface in msg.interfaces:
                changed |= await sql.upsert_endpoint(tx, new_id(), service_id, interface, msg.region, msg.url)
        if changed:
            await self.bus.publish(CatalogChanged(), ctx)
        return Done()

    # --- domains ---------------------------------------------------------------------------

    @handles(CreateDomain)
    async def create_domain(self, msg: CreateDomain, ctx: Context) -> DomainView:
        require_admin(ctx, "identity:create_domain")
        try:
            async with self.store.transaction() as tx:
                return await sql.insert_domain(tx, new_id(), msg.name, msg.description, msg.enabled)
        except asyncpg.UniqueViolationError:
            raise Conflict("domain", f"Duplicate entry found with name {msg.name}") from None

    @handles(GetDomain)
    async def get_domain(self, msg: GetDomain, ctx: Context) -> DomainView:
        if not ctx.is_admin and msg.domain_id != ctx.domain_id:
            async with self.store.transaction() as tx:
                project = await sql.get_project(tx, ctx.project_id) if ctx.project_id else None
            if project is None or project.domain_id != msg.domain_id:
                raise Forbidden("identity:get_domain")
        async with self.store.transaction() as tx:
            domain = await sql.get_domain(tx, msg.domain_id)
        if domain is None:
            raise NotFound("domain", msg.domain_id)
        return domain

    @handles(ListDomains)
    async def list_domains(self, msg: ListDomains, ctx: Context) -> DomainList:
        async with self.store.transaction() as tx:
            domains = await sql.list_domains(tx, msg.name, msg.enabled)
            if not ctx.is_admin:
                mine = {ctx.domain_id}
                if ctx.project_id:
                    project = await sql.get_project(tx, ctx.project_id)
                    mine.add(project.domain_id if project else None)
                domains = [d for d in domains if d.id in mine]
        return DomainList(items=tuple(domains))

    @handles(UpdateDomain)
    async def update_domain(self, msg: UpdateDomain, ctx: Context) -> DomainView:
        require_admin(ctx, "identity:update_domain")
        try:
            async with self.store.transaction() as tx:
                domain = await sql.update_domain(tx, msg.domain_id, msg.name, msg.description, msg.enabled)
                if domain is None:
                    raise NotFound("domain", msg.domain_id)
                rules = [await self._revoke(tx, domain_id=domain.id)] if msg.enabled is False else []
        except asyncpg.UniqueViolationError:
            raise Conflict("domain", f"Duplicate entry found with name {msg.name}") from None
        await self._announce(ctx, *rules)
        return domain

    @handles(DeleteDomain)
    async def delete_domain(self, msg: DeleteDomain, ctx: Context) -> Done:
        require_admin(ctx, "identity:delete_domain")
        async with self.store.transaction() as tx:
            domain = await sql.get_domain(tx, msg.domain_id)
            if domain is None:
                raise NotFound("domain", msg.domain_id)
            if domain.enabled:
                raise Forbidden("delete an enabled domain; disable it first")
            await sql.delete_domain(tx, domain.id)
            rule = await self._revoke(tx, domain_id=domain.id)
        await self._announce(ctx, rule)
        return Done()

    # --- projects --------------------------------------------------------------------------

    @handles(CreateProject)
    async def create_project(self, msg: CreateProject, ctx: Context) -> ProjectView:
        require_admin(ctx, "identity:create_project")
        try:
            async with self.store.transaction() as tx:
                if await sql.get_domain(tx, msg.domain_id) is None:
                    raise NotFound("domain", msg.domain_id)
                return await sql.insert_project(
                    tx, new_id(), msg.name, msg.domain_id, msg.description, msg.enabled, msg.tags
                )
        except asyncpg.UniqueViolationError:
            raise Conflict(
                "project",
                f"it is not permitted to have two projects with the same name "
                f"in the same domain : {msg.name}",
            ) from None

    @handles(GetProject)
    async def get_project(self, msg: GetProject, ctx: Context) -> ProjectView:
        if not ctx.is_admin and msg.project_id != ctx.project_id:
            raise Forbidden("identity:get_project")
        async with self.store.transaction() as tx:
            project = await sql.get_project(tx, msg.project_id)
        if project is None:
            raise NotFound("project", msg.project_id)
        return project

    @handles(ListProjects)
    async def list_projects(self, msg: ListProjects, ctx: Context) -> ProjectList:
        require_admin(ctx, "identity:list_projects")
        async with self.store.transaction() as tx:
            return ProjectList(items=tuple(await sql.list_projects(tx, msg.name, msg.domain_id, msg.enabled)))

    @handles(ListUserProjects)
    async def list_user_projects(self, msg: ListUserProjects, ctx: Context) -> ProjectList:
        if not ctx.is_admin and msg.user_id != ctx.user_id:
            raise Forbidden("identity:list_user_projects")
        async with self.store.transaction() as tx:
            if await sql.get_user(tx, msg.user_id) is None:
                raise NotFound("user", msg.user_id)
            return ProjectList(items=tuple(await sql.list_user_projects(tx, msg.user_id)))

    @handles(UpdateProject)
    async def update_project(self, msg: UpdateProject, ctx: Context) -> ProjectView:
        require_admin(ctx, "identity:update_project")
        try:
            async with self.store.transaction() as tx:
                project = await sql.update_project(
                    tx, msg.project_id, msg.name, msg.description, msg.enabled, msg.tags
                )
                if project is None:
                    raise NotFound("project", msg.project_id)
                rules = [await self._revoke(tx, project_id=project.id)] if msg.enabled is False else []
        except asyncpg.UniqueViolationError:
            raise Conflict("project", f"Duplicate entry found with name {msg.name}") from None
        await self._announce(ctx, *rules)
        return project

    @handles(DeleteProject)
    async def delete_project(self, msg: DeleteProject, ctx: Context) -> Done:
        require_admin(ctx, "identity:delete_project")
        async with self.store.transaction() as tx:
            if not await sql.delete_project(tx, msg.project_id):
                raise NotFound("project", msg.project_id)
            rule = await self._revoke(tx, project_id=msg.project_id)
        await self._announce(ctx, rule)
        return Done()

    # --- users -----------------------------------------------------------------------------

    @handles(CreateUser)
    async def create_user(self, msg: CreateUser, ctx: Context) -> UserView:
        require_admin(ctx, "identity:create_user")
        hashed = await hash_password(msg.password, self.settings.password_hash_cost) if msg.password else None
        try:
            async with self.store.transaction() as tx:
                if await sql.get_domain(tx, msg.domain_id) is None:
                    raise NotFound("domain", msg.domain_id)
                return await sql.insert_user(
                    tx,
                    new_id(),
                    msg.name,
                    msg.domain_id,
                    hashed,
                    msg.enabled,
                    msg.default_project_id,
                    msg.email,
                    msg.description,
                )
        except asyncpg.UniqueViolationError:
            raise Conflict(
                "user", f"Duplicate entry found with name {msg.name} at domain ID {msg.domain_id}"
            ) from None

    @handles(GetUser)
    async def get_user(self, msg: GetUser, ctx: Context) -> UserView:
        if not ctx.is_admin and msg.user_id != ctx.user_id:
            raise Forbidden("identity:get_user")
        async with self.store.transaction() as tx:
            user = await sql.get_user(tx, msg.user_id)
        if user is None:
            raise NotFound("user", msg.user_id)
        return user

    @handles(ListUsers)
    async def list_users(self, msg: ListUsers, ctx: Context) -> UserList:
        require_admin(ctx, "identity:list_users")
        async with self.store.transaction() as tx:
            return UserList(items=tuple(await sql.list_users(tx, msg.name, msg.domain_id, msg.enabled)))

    @handles(UpdateUser)
    async def update_user(self, msg: UpdateUser, ctx: Context) -> UserView:
        require_admin(ctx, "identity:update_user")
        hashed = await hash_password(msg.password, self.settings.password_hash_cost) if msg.password else None
        try:
            async with self.store.transaction() as tx:
                user = await sql.update_user(
                    tx,
                    msg.user_id,
                    name=msg.name,
                    password_hash=hashed,
                    enabled=msg.enabled,
                    default_project_id=msg.default_project_id,
                    email=msg.email,
                    description=msg.description,
                )
                if user is None:
                    raise NotFound("user", msg.user_id)
                revoke = hashed is not None or msg.enabled is False
                rules = [await self._revoke(tx, user_id=user.id)] if revoke else []
        except asyncpg.UniqueViolationError:
            raise Conflict("user", f"Duplicate entry found with name {msg.name}") from None
        await self._announce(ctx, *rules)
        return user

    @handles(ChangePassword)
    async def change_password(self, msg: ChangePassword, ctx: Context) -> Done:
        if msg.user_id != ctx.user_id:
            raise Forbidden("identity:change_password")
        async with self.store.transaction() as tx:
            login = await sql.find_login(tx, msg.user_id, None, None, None)
        if login is None:
            raise NotFound("user", msg.user_id)
        cost = self.settings.password_hash_cost
        if not await verify_password(login["password_hash"], msg.original_password, cost):
            raise Unauthorized("The original password is not correct.")
        hashed = await hash_password(msg.password, cost)
        async with self.store.transaction() as tx:
            await sql.update_user(
                tx,
                msg.user_id,
                name=None,
                password_hash=hashed,
                enabled=None,
                default_project_id=None,
                email=None,
                description=None,
            )
            rule = await self._revoke(tx, user_id=msg.user_id)
        await self._announce(ctx, rule)
        return Done()

    @handles(DeleteUser)
    async def delete_user(self, msg: DeleteUser, ctx: Context) -> Done:
        require_admin(ctx, "identity:delete_user")
        async with self.store.transaction() as tx:
            if not await sql.delete_user(tx, msg.user_id):
                raise NotFound("user", msg.user_id)
            rule = await self._revoke(tx, user_id=msg.user_id)
        await self._announce(ctx, rule)
        return Done()

    # --- roles -----------------------------------------------------------------------------

    @handles(CreateRole)
    async def create_role(self, msg: CreateRole, ctx: Context) -> RoleView:
        require_admin(ctx, "identity:create_role")
        try:
            async with self.store.transaction() as tx:
                return await sql.insert_role(tx, new_id(), msg.name, msg.description)
        except asyncpg.UniqueViolationError:
            raise Conflict("role", f"Duplicate entry found with name {msg.name}") from None

    @handles(GetRole)
    async def get_role(self, msg: GetRole, ctx: Context) -> RoleView:
        require_admin(ctx, "identity:get_role")
        async with self.store.transaction() as tx:
            role = await sql.get_role(tx, msg.role_id)
        if role is None:
            raise NotFound("role", msg.role_id)
        return role

    @handles(ListRoles)
    async def list_roles(self, msg: ListRoles, ctx: Context) -> RoleList:
        require_admin(ctx, "identity:list_roles")
        async with self.store.transaction() as tx:
            return RoleList(items=tuple(await sql.list_roles(tx, msg.name)))

    @handles(UpdateRole)
    async def update_role(self, msg: UpdateRole, ctx: Context) -> RoleView:
        require_admin(ctx, "identity:update_role")
        try:
            async with self.store.transaction() as tx:
                role = await sql.update_role(tx, msg.role_id, msg.name, msg.description)
        except asyncpg.UniqueViolationError:
            raise Conflict("role", f"Duplicate entry found with name {msg.name}") from None
        if role is None:
            raise NotFound("role", msg.role_id)
        return role

    @handles(DeleteRole)
    async def delete_role(self, msg: DeleteRole, ctx: Context) -> Done:
        require_admin(ctx, "identity:delete_role")
        async with self.store.transaction() as tx:
            if not await sql.delete_role(tx, msg.role_id):
                raise NotFound("role", msg.role_id)
            rule = await self._revoke(tx, role_id=msg.role_id)
        await self._announce(ctx, rule)
        return Done()

    # --- assignments -----------------------------------------------------------------------

    async def _check_grant(self, tx: Connection, g: Grant) -> None:
        if (g.project_id is None) == (g.domain_id is None):
            raise Invalid("grant", "name exactly one of a project or a domain")
        if await sql.get_role(tx, g.role_id) is None:
            raise NotFound("role", g.role_id)
        if await sql.get_user(tx, g.user_id) is None:
            raise NotFound("user", g.user_id)
        if g.project_id is not None and await sql.get_project(tx, g.project_id) is None:
            raise NotFound("project", g.project_id)
        if g.domain_id is not None and await sql.get_domain(tx, g.domain_id) is None:
            raise NotFound("domain", g.domain_id)

    @handles(GrantRole)
    async def grant_role(self, msg: GrantRole, ctx: Context) -> Done:
        require_admin(ctx, "identity:create_grant")
        async with self.store.transaction() as tx:
            await self._check_grant(tx, msg.grant)
            await sql.insert_assignment(tx, msg.grant)
        return Done()

    @handles(RevokeRole)
    async def revoke_role(self, msg: RevokeRole, ctx: Context) -> Done:
        require_admin(ctx, "identity:revoke_grant")
        g = msg.grant
        async with self.store.transaction() as tx:
            await self._check_grant(tx, g)
            if not await sql.delete_assignment(tx, g):
                raise NotFound("role assignment", f"{g.role_id} for {g.user_id}")
            target = {"project_id": g.project_id} if g.project_id else {"domain_id": str(g.domain_id)}
            rule = await self._revoke(tx, user_id=g.user_id, **target)  # type: ignore[arg-type]
        await self._announce(ctx, rule)
        return Done()

    @handles(CheckRole)
    async def check_role(self, msg: CheckRole, ctx: Context) -> Done:
        require_admin(ctx, "identity:check_grant")
        async with self.store.transaction() as tx:
            await self._check_grant(tx, msg.grant)
            if not await sql.has_assignment(tx, msg.grant):
                raise NotFound("role assignment", f"{msg.grant.role_id} for {msg.grant.user_id}")
        return Done()

    @handles(ListRoleAssignments)
    async def list_role_assignments(self, msg: ListRoleAssignments, ctx: Context) -> AssignmentList:
        user_id = msg.user_id
        if not ctx.is_admin:
            if user_id not in (None, ctx.user_id):
                raise Forbidden("identity:list_role_assignments")
            user_id = ctx.user_id
        async with self.store.transaction() as tx:
            items = await sql.list_assignments(
                tx, user_id, msg.project_id, msg.domain_id, msg.role_id, msg.effective
            )
        return AssignmentList(items=tuple(items))
