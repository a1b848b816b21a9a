"""Identity v3 (Keystone) under `/identity`: decode, call the identity service, encode.

Authorization is the identity service's job; the gateway only turns the caller's token into a
request context. Token checks need no round trip (see `fabric.gateway.auth`).
"""

from dataclasses import dataclass
from typing import Annotated, Any, Literal

from aiohttp import web

from fabric.gateway import identity_views as views
from fabric.gateway.context import AUTH, BUS, SETTINGS, authenticated, request_id
from fabric.gateway.http import json_response, no_content, query_bool, query_str, read_json
from protocol.codec import MaxLen, MinLen
from protocol.errors import Forbidden, Invalid, NotFound, Unauthorized
from protocol.identity import (
    QUEUE,
    Authenticate,
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
    GetDomain,
    GetProject,
    GetRole,
    GetUser,
    Grant,
    GrantRole,
    ListDomains,
    ListProjects,
    ListRoleAssignments,
    ListRoles,
    ListUserProjects,
    ListUsers,
    PasswordCredentials,
    RevokeRole,
    RevokeToken,
    RoleView,
    Scope,
    TokenIssued,
    UpdateDomain,
    UpdateProject,
    UpdateRole,
    UpdateUser,
)

# --- request bodies ------------------------------------------------------------------------
# Keystone accepts properties it does not know (it stores them); we accept and ignore them.

Name64 = Annotated[str, MinLen(1), MaxLen(64)]
Name255 = Annotated[str, MinLen(1), MaxLen(255)]


@dataclass(frozen=True, slots=True, kw_only=True)
class DomainRef:
    id: str | None = None
    name: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthUser:
    password: Annotated[str, MaxLen(4096)]
    id: str | None = None
    name: str | None = None
    domain: DomainRef | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class PasswordMethod:
    user: AuthUser


@dataclass(frozen=True, slots=True, kw_only=True)
class TokenMethod:
    id: Annotated[str, MaxLen(8192)]


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthIdentity:
    methods: Annotated[tuple[str, ...], MinLen(1)]
    password: PasswordMethod | None = None
    token: TokenMethod | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ProjectRef:
    id: str | None = None
    name: str | None = None
    domain: DomainRef | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ScopeBody:
    project: ProjectRef | None = None
    domain: DomainRef | None = None
    system: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthBody:
    identity: AuthIdentity
    scope: ScopeBody | Literal["unscoped"] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthRequest:
    auth: AuthBody


@dataclass(frozen=True, slots=True, kw_only=True)
class DomainBody:
    name: Name64 | None = None
    description: str | None = None
    enabled: bool | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class DomainRequest:
    domain: DomainBody


@dataclass(frozen=True, slots=True, kw_only=True)
class ProjectBody:
    name: Name64 | None = None
    domain_id: str | None = None
    description: str | None = None
    enabled: bool | None = None
    tags: tuple[Annotated[str, MinLen(1), MaxLen(255)], ...] | None = None
    parent_id: str | None = None
    is_domain: bool | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ProjectRequest:
    project: ProjectBody


@dataclass(frozen=True, slots=True, kw_only=True)
class UserBody:
    name: Name255 | None = None
    domain_id: str | None = None
    password: Annotated[str, MaxLen(4096)] | None = None
    enabled: bool | None = None
    default_project_id: str | None = None
    email: Annotated[str, MaxLen(255)] | None = None
    description: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class UserRequest:
    user: UserBody


@dataclass(frozen=True, slots=True, kw_only=True)
class PasswordBody:
    password: Annotated[str, MaxLen(4096)]
    original_password: Annotated[str, MaxLen(4096)]


@dataclass(frozen=True, slots=True, kw_only=True)
class PasswordRequest:
    user: PasswordBody


@dataclass(frozen=True, slots=True, kw_only=True)
class RoleBody:
    name: Name255 | None = None
    description: str | None = None
    domain_id: None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RoleRequest:
    role: RoleBody


def _required(value: str | None, field: str) -> str:
    if value is None:
        raise Invalid(field, "this field is required")
    return value


def _base(request: web.Request) -> str:
    return f"{request.app[SETTINGS].gateway_url}/identity/v3"


def _url(request: web.Request) -> str:
    return f"{request.app[SETTINGS].gateway_url}{request.path_qs}"


# --- version discovery ---------------------------------------------------------------------


async def versions(request: web.Request) -> web.Response:
    return json_response({"versions": {"values": [views.version(_base(request))]}}, status=300)


async def version(request: web.Request) -> web.Response:
    return json_response({"version": views.version(_base(request))})


# --- tokens --------------------------------------------------------------------------------


def _authenticate_message(body: AuthBody) -> Authenticate:
    ident = body.identity
    for method in ident.methods:
        if method not in ("password", "token"):
            raise Unauthorized(f"Attempted to authenticate with an unsupported method: {method[:40]}.")
    password = None
    if ident.password is not None:
        u = ident.password.user
        password = PasswordCredentials(
            password=u.password,
            user_id=u.id,
            user_name=u.name,
            domain_id=u.domain.id if u.domain else None,
            domain_name=u.domain.name if u.domain else None,
        )
    scope = None
    if isinstance(body.scope, ScopeBody):
        s = body.scope
        if s.system is not None:
            raise Invalid("auth.scope.system", "system scope is not supported; scope to a project or domain")
        if s.project is not None:
            d = s.project.domain
            scope = Scope(
                project_id=s.project.id,
                project_name=s.project.name,
                project_domain_id=d.id if d else None,
                project_domain_name=d.name if d else None,
            )
        elif s.domain is not None:
            scope = Scope(domain_id=s.domain.id, domain_name=s.domain.name)
        else:
            raise Invalid("auth.scope", "a scope names a project or a domain")
    return Authenticate(
        methods=ident.methods,  # type: ignore[arg-type]
        password=password,
        token=ident.token.id if ident.token else None,
        scope=scope,
        unscoped=body.scope == "unscoped",
    )


async def issue_token(request: web.Request) -> web.Response:
    body = await read_json(request, AuthRequest)
    msg = _authenticate_message(body.auth)
    ctx = request.app[AUTH].anonymous(request_id(request))
    issued: TokenIssued = await request.app[BUS].call(QUEUE, msg, ctx)
    catalog = None if "nocatalog" in request.query else await request.app[AUTH].catalog()
    return json_response(
        views.token(issued.data, catalog), status=201, headers={"X-Subject-Token": issued.token}
    )


def _subject(request: web.Request) -> tuple[str, Any]:
    token = request.headers.get("X-Subject-Token")
    if not token:
        raise Invalid("X-Subject-Token", "this header is required")
    try:
        return token, request.app[AUTH].check(token)
    except Unauthorized:
        raise NotFound("token", "(the subject token)") from None


async def validate_token(request: web.Request) -> web.Response:
    ctx = authenticated(request)
    token, data = _subject(request)
    if not ctx.is_admin and data.user_id != ctx.user_id:
        raise Forbidden("identity:validate_token")
    catalog = None if "nocatalog" in request.query else await request.app[AUTH].catalog()
    return json_response(views.token(data, catalog), headers={"X-Subject-Token": token})


async def revoke_token(request: web.Request) -> web.Response:
    ctx = authenticated(request)
    token = request.headers.get("X-Subject-Token")
    if not token:
        raise Invalid("X-Subject-Token", "this header is required")
    revoked = await request.app[BUS].call(QUEUE, RevokeToken(token=token), ctx)
    request.app[AUTH].revocations.add_all(revoked.items)
    return no_content()


async def auth_catalog(request: web.Request) -> web.Response:
    ctx = authenticated(request)
    catalog = await request.app[AUTH].catalog()
    return json_response(
        {"catalog": views.catalog(catalog, ctx.project_id), "links": views.list_links(_url(request))}
    )


async def auth_projects(request: web.Request) -> web.Response:
    ctx = authenticated(request)
    found = await request.app[BUS].call(QUEUE, ListUserProjects(user_id=str(ctx.user_id)), ctx)
    base = _base(request)
    return json_response(
        {"projects": [views.project(base, p) for p in found.items], "links": views.list_links(_url(request))}
    )


async def auth_domains(request: web.Request) -> web.Response:
    ctx = authenticated(request)
    found = await request.app[BUS].call(QUEUE, ListDomains(), ctx)
    base = _base(request)
    return json_response(
        {"domains": [views.domain(base, d) for d in found.items], "links": views.list_links(_url(request))}
    )


# --- domains -------------------------------------------------------------------------------


async def list_domains(request: web.Request) -> web.Response:
    ctx = authenticated(request)
    msg = ListDomains(name=query_str(request, "name"), enabled=query_bool(request, "enabled"))
    found = await request.app[BUS].call(QUEUE, msg, ctx)
    base = _base(request)
    return json_response(
        {"domains": [views.domain(base, d) for d in found.items], "links": views.list_links(_url(request))}
    )


async def create_domain(request: web.Request) -> web.Response:
    ctx = authenticated(request)
    body = (await read_json(request, DomainRequest)).domain
    msg = CreateDomain(
        name=_required(body.name, "domain.name"),
        description=body.description or "",
        enabled=body.enabled if body.enabled is not None else True,
    )
    created = await request.app[BUS].call(QUEUE, msg, ctx)
    return json_response({"domain": views.domain(_base(request), created)}, status=201)


async def show_domain(request: web.Request) -> web.Response:
    ctx = authenticated(request)
    found = await request.app[BUS].call(QUEUE, GetDomain(domain_id=request.match_info["domain_id"]), ctx)
    return json_response({"domain": views.domain(_base(request), found)})


async def update_domain(request: web.Request) -> web.Response:
    ctx = authenticated(request)
    body = (await read_json(request, DomainRequest)).domain
    msg = UpdateDomain(
        domain_id=request.match_info["domain_id"],
        name=body.name,
        description=body.description,
        enabled=body.enabled,
    )
    updated = await request.app[BUS].call(QUEUE, msg, ctx)
    return json_response({"domain": views.domain(_base(request), updated)})


async def delete_domain(request: web.Request) -> web.Response:
    ctx = authenticated(request)
    await request.app[BUS].call(QUEUE, DeleteDomain(domain_id=request.match_info["domain_id"]), ctx)
    return no_content()


# --- projects ------------------------------------------------------------------------------


async def list_projects(request: web.Request) -> web.Response:
    ctx = authenticated(request)
    msg = ListProjects(
        name=query_str(request, "name"),
        domain_id=query_str(request, "domain_id"),
        enabled=query_bool(request, "enabled"),
    )
    found = await request.app[BUS].call(QUEUE, msg, ctx)
    base = _base(request)
    return json_response(
        {"projects": [views.project(base, p) for p in found.items], "links": views.list_links(_url(request))}
    )


async def create_project(request: web.Request) -> web.Response:
    ctx = authenticated(request)
    body = (await read_json(request, ProjectRequest)).project
    if body.is_domain:
        raise Invalid("project.is_domain", "projects acting as domains are not supported")
    domain_id = body.domain_id or "default"
    if body.parent_id is not None and body.parent_id != domain_id:
        raise Invalid("project.parent_id", "nested projects are not supported")
    msg = CreateProject(
        name=_required(body.name, "project.name"),
        domain_id=domain_id,
        description=body.description or "",
        enabled=body.enabled if body.enabled is not None else True,
        tags=body.tags or (),
    )
    created = await request.app[BUS].call(QUEUE, msg, ctx)
    return json_response({"project": views.project(_base(request), created)}, status=201)


async def show_project(request: web.Request) -> web.Response:
    ctx = authenticated(request)
    found = await request.app[BUS].call(QUEUE, GetProject(project_id=request.match_info["project_id"]), ctx)
    return json_response({"project": views.project(_base(request), found)})


async def update_project(request: web.Request) -> web.Response:
    ctx = authenticated(request)
    body = (await read_json(request, ProjectRequest)).project
    msg = UpdateProject(
        project_id=request.match_info["project_id"],
        name=body.name,
        description=body.description,
        enabled=body.enabled,
        tags=body.tags,
    )
    updated = await request.app[BUS].call(QUEUE, msg, ctx)
    return json_response({"project": views.project(_base(request), updated)})


async def delete_project(request: web.Request) -> web.Response:
    ctx = authenticated(request)
    await request.app[BUS].call(QUEUE, DeleteProject(project_id=request.match_info["project_id"]), ctx)
    return no_content()


# --- users ---------------------------------------------------------------------------------


async def list_users(request: web.Request) -> web.Response:
    ctx = authenticated(request)
    msg = ListUsers(
        name=query_str(request, "name"),
        domain_id=query_str(request, "domain_id"),
        enabled=query_bool(request, "enabled"),
    )
    found = await request.app[BUS].call(QUEUE, msg, ctx)
    base = _base(request)
    return json_response(
        {"users": [views.user(base, u) for u in found.items], "links": views.list_links(_url(request))}
    )


async def create_user(request: web.Request) -> web.Response:
    ctx = authenticated(request)
    body = (await read_json(request, UserRequest)).user
    msg = CreateUser(
        name=_required(body.name, "user.name"),
        domain_id=body.domain_id or "default",
        password=body.password,
        enabled=body.enabled if body.enabled is not None else True,
        default_project_id=body.default_project_id,
        email=body.email,
        description=body.description,
    )
    created = await request.app[BUS].call(QUEUE, msg, ctx)
    return json_response({"user": views.user(_base(request), created)}, status=201)


async def show_user(request: web.Request) -> web.Response:
    ctx = authenticated(request)
    found = await request.app[BUS].call(QUEUE, GetUser(user_id=request.match_info["user_id"]), ctx)
    return json_response({"user": views.user(_base(request), found)})


async def update_user(request: web.Request) -> web.Response:
    ctx = authenticated(request)
    body = (await read_json(request, UserRequest)).user
    msg = UpdateUser(
        user_id=request.match_info["user_id"],
        name=body.name,
        password=body.password,
        enabled=body.enabled,
        default_project_id=body.default_project_id,
        email=body.email,
        description=body.description,
    )
    updated = await request.app[BUS].call(QUEUE, msg, ctx)
    return json_response({"user": views.user(_base(request), updated)})


async def delete_user(request: web.Request) -> web.Response:
    ctx = authenticated(request)
    await request.app[BUS].call(QUEUE, DeleteUser(user_id=request.match_info["user_id"]), ctx)
    return no_content()


async def change_password(request: web.Request) -> web.Response:
    ctx = authenticated(request)
    body = (await read_json(request, PasswordRequest)).user
    msg = ChangePassword(
        user_id=request.match_info["user_id"],
        original_password=body.original_password,
        password=body.password,
    )
    await request.app[BUS].call(QUEUE, msg, ctx)
    return no_content()


async def user_projects(request: web.Request) -> web.Response:
    ctx = authenticated(request)
    found = await request.app[BUS].call(QUEUE, ListUserProjects(user_id=request.match_info["user_id"]), ctx)
    base = _base(request)
    return json_response(
        {"projects": [views.project(base, p) for p in found.items], "links": views.list_links(_url(request))}
    )


async def user_groups(request: web.Request) -> web.Response:
    ctx = authenticated(request)
    await request.app[BUS].call(QUEUE, GetUser(user_id=request.match_info["user_id"]), ctx)
    # Groups are not implemented: every user belongs to none.
    return json_response({"groups": [], "links": views.list_links(_url(request))})


# --- roles and grants ----------------------------------------------------------------------


async def list_roles(request: web.Request) -> web.Response:
    ctx = authenticated(request)
    found = await request.app[BUS].call(QUEUE, ListRoles(name=query_str(request, "name")), ctx)
    base = _base(request)
    return json_response(
        {"roles": [views.role(base, r) for r in found.items], "links": views.list_links(_url(request))}
    )


async def create_role(request: web.Request) -> web.Response:
    ctx = authenticated(request)
    body = (await read_json(request, RoleRequest)).role
    msg = CreateRole(name=_required(body.name, "role.name"), description=body.description or "")
    created = await request.app[BUS].call(QUEUE, msg, ctx)
    return json_response({"role": views.role(_base(request), created)}, status=201)


async def show_role(request: web.Request) -> web.Response:
    ctx = authenticated(request)
    found = await request.app[BUS].call(QUEUE, GetRole(role_id=request.match_info["role_id"]), ctx)
    return json_response({"role": views.role(_base(request), found)})


async def update_role(request: web.Request) -> web.Response:
    ctx = authenticated(request)
    body = (await read_json(request, RoleRequest)).role
    msg = UpdateRole(role_id=request.match_info["role_id"], name=body.name, description=body.description)
    updated = await request.app[BUS].call(QUEUE, msg, ctx)
    return json_response({"role": views.role(_base(request), updated)})


async def delete_role(request: web.Request) -> web.Response:
    ctx = authenticated(request)
    await request.app[BUS].call(QUEUE, DeleteRole(role_id=request.match_info["role_id"]), ctx)
    return no_content()


def _grant(request: web.Request) -> Grant:
    m = request.match_info
    return Grant(
        role_id=m["role_id"],
        user_id=m["user_id"],
        project_id=m.get("project_id"),
        domain_id=m.get("domain_id"),
    )


async def put_grant(request: web.Request) -> web.Response:
    ctx = authenticated(request)
    await request.app[BUS].call(QUEUE, GrantRole(grant=_grant(request)), ctx)
    return no_content()


async def check_grant(request: web.Request) -> web.Response:
    ctx = authenticated(request)
    await request.app[BUS].call(QUEUE, CheckRole(grant=_grant(request)), ctx)
    return no_content()


async def delete_grant(request: web.Request) -> web.Response:
    ctx = authenticated(request)
    await request.app[BUS].call(QUEUE, RevokeRole(grant=_grant(request)), ctx)
    return no_content()


async def list_grants(request: web.Request) -> web.Response:
    ctx = authenticated(request)
    m = request.match_info
    msg = ListRoleAssignments(
        user_id=m["user_id"], project_id=m.get("project_id"), domain_id=m.get("domain_id")
    )
    found = await request.app[BUS].call(QUEUE, msg, ctx)
    base = _base(request)
    roles = [views.role(base, RoleView(id=a.role_id, name=a.role_name, description="")) for a in found.items]
    return json_response({"roles": roles, "links": views.list_links(_url(request))})


def _flag(request: web.Request, name: str) -> bool:
    """Keystone's flags: present with no value (`?effective`) means true."""
    if name not in request.query:
        return False
    return request.query[name] == "" or bool(query_bool(request, name))


async def role_assignments(request: web.Request) -> web.Response:
    ctx = authenticated(request)
    q = request.query
    if q.get("group.id"):
        return json_response({"role_assignments": [], "links": views.list_links(_url(request))})
    msg = ListRoleAssignments(
        user_id=query_str(request, "user.id"),
        project_id=query_str(request, "scope.project.id"),
        domain_id=query_str(request, "scope.domain.id"),
        role_id=query_str(request, "role.id"),
        effective=_flag(request, "effective"),
    )
    found = await request.app[BUS].call(QUEUE, msg, ctx)
    names = _flag(request, "include_names")
    base = _base(request)
    return json_response(
        {
            "role_assignments": [views.assignment(base, a, names=names) for a in found.items],
            "links": views.list_links(_url(request)),
        }
    )


# --- services, endpoints and regions, read from the cached catalog -------------------------


async def list_services(request: web.Request) -> web.Response:
    authenticated(request)
    catalog = await request.app[AUTH].catalog()
    base = _base(request)
    services = [
        {
            "id": s.id,
            "type": s.type,
            "name": s.name,
            "enabled": True,
            "description": "",
            "links": {"self": f"{base}/services/{s.id}"},
        }
        for s in catalog.services
        if not query_str(request, "type") or s.type == request.query["type"]
    ]
    return json_response({"services": services, "links": views.list_links(_url(request))})


async def list_endpoints(request: web.Request) -> web.Response:
    authenticated(request)
    catalog = await request.app[AUTH].catalog()
    base = _base(request)
    endpoints = [
        {
            "id": e.id,
            "service_id": s.id,
            "interface": e.interface,
            "region": e.region,
            "region_id": e.region,
            "url": e.url,
            "enabled": True,
            "links": {"self": f"{base}/endpoints/{e.id}"},
        }
        for s in catalog.services
        for e in s.endpoints
        if request.query.get("interface") in (None, e.interface)
        and request.query.get("service_id") in (None, s.id)
    ]
    return json_response({"endpoints": endpoints, "links": views.list_links(_url(request))})


async def list_regions(request: web.Request) -> web.Response:
    authenticated(request)
    catalog = await request.app[AUTH].catalog()
    base = _base(request)
    names = sorted({e.region for s in catalog.services for e in s.endpoints})
    regions = [
        {"id": r, "description": "", "parent_region_id": None, "links": {"self": f"{base}/regions/{r}"}}
        for r in names
    ]
    return json_response({"regions": regions, "links": views.list_links(_url(request))})


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/identity", versions)
    r.add_get("/identity/", versions)
    r.add_get("/identity/v3", version)
    r.add_get("/identity/v3/", version)
    v3 = "/identity/v3"
    r.add_post(f"{v3}/auth/tokens", issue_token)
    r.add_get(f"{v3}/auth/tokens", validate_token)
    r.add_delete(f"{v3}/auth/tokens", revoke_token)
    r.add_get(f"{v3}/auth/catalog", auth_catalog)
    r.add_get(f"{v3}/auth/projects", auth_projects)
    r.add_get(f"{v3}/auth/domains", auth_domains)
    r.add_get(f"{v3}/domains", list_domains)
    r.add_post(f"{v3}/domains", create_domain)
    r.add_get(f"{v3}/domains/{{domain_id}}", show_domain)
    r.add_patch(f"{v3}/domains/{{domain_id}}", update_domain)
    r.add_delete(f"{v3}/domains/{{domain_id}}", delete_domain)
    r.add_get(f"{v3}/projects", list_projects)
    r.add_post(f"{v3}/projects", create_project)
    r.add_get(f"{v3}/projects/{{project_id}}", show_project)
    r.add_patch(f"{v3}/projects/{{project_id}}", update_project)
    r.add_delete(f"{v3}/projects/{{project_id}}", delete_project)
    r.add_get(f"{v3}/users", list_users)
    r.add_post(f"{v3}/users", create_user)
    r.add_get(f"{v3}/users/{{user_id}}", show_user)
    r.add_patch(f"{v3}/users/{{user_id}}", update_user)
    r.add_delete(f"{v3}/users/{{user_id}}", delete_user)
    r.add_post(f"{v3}/users/{{user_id}}/password", change_password)
    r.add_get(f"{v3}/users/{{user_id}}/projects", user_projects)
    r.add_get(f"{v3}/users/{{user_id}}/groups", user_groups)
    r.add_get(f"{v3}/roles", list_roles)
    r.add_post(f"{v3}/roles", create_role)
    r.add_get(f"{v3}/roles/{{role_id}}", show_role)
    r.add_patch(f"{v3}/roles/{{role_id}}", update_role)
    r.add_delete(f"{v3}/roles/{{role_id}}", delete_role)
    for target in ("projects/{project_id}", "domains/{domain_id}"):
        grant = f"{v3}/{target}/users/{{user_id}}/roles/{{role_id}}"
        r.add_put(grant, put_grant)
        r.add_get(grant, check_grant)
        r.add_delete(grant, delete_grant)
        r.add_get(f"{v3}/{target}/users/{{user_id}}/roles", list_grants)
    r.add_get(f"{v3}/role_assignments", role_assignments)
    r.add_get(f"{v3}/services", list_services)
    r.add_get(f"{v3}/endpoints", list_endpoints)
    r.add_get(f"{v3}/regions", list_regions)
