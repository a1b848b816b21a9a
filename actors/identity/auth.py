"""Authentication: credentials and a scope in, the data of a new token out.

Kept apart from the actor so that the rules read in one place: who is the user (password, or an
existing token), which scope (project, domain, the default project, or none) and which roles the
token carries there (assigned plus implied). Every failure is the same `Unauthorized`, whatever
was wrong, so that a caller learns nothing about which names exist.
"""

import secrets
import time

from actors.identity import sql
from actors.identity.passwords import Cost, verify_password
from fabric.store import Connection, Store
from fabric.tokens import TokenSealer, matches
from protocol.errors import Invalid, Unauthorized
from protocol.identity import Authenticate, DomainView, ProjectView, RoleRef, Scope, TokenData

DENIED = "The request you have made requires authentication."


def new_audit_id() -> str:
    return secrets.token_urlsafe(16)


async def authenticate(
    store: Store, msg: Authenticate, sealer: TokenSealer, *, ttl_s: int, cost: Cost
) -> TokenData:
    if len(set(msg.methods)) != 1:
        raise Invalid("auth.identity.methods", "exactly one of 'password' or 'token' is supported")
    if msg.methods[0] == "password":
        user, expires_at = await _by_password(store, msg, cost), time.time() + ttl_s
        methods: tuple[str, ...] = ("password",)
    else:
        async with store.transaction() as tx:
            user, expires_at, methods = await _by_token(tx, msg, sealer)
    if not user["enabled"] or not user["domain_enabled"]:
        raise Unauthorized(DENIED)
    async with store.transaction() as tx:
        return await _token_data(tx, user, msg, expires_at, methods)


async def _token_data(
    tx: Connection, user: dict[str, object], msg: Authenticate, expires_at: float, methods: tuple[str, ...]
) -> TokenData:
    project, domain, roles = await _scope(tx, user, msg)
    return TokenData(
        user_id=str(user["id"]),
        user_name=str(user["name"]),
        user_domain_id=str(user["domain_id"]),
        user_domain_name=str(user["domain_name"]),
        project_id=project.id if project else None,
        project_name=project.name if project else None,
        project_domain_id=project.domain_id if project else None,
        project_domain_name=(await _domain_name(tx, project.domain_id)) if project else None,
        domain_id=domain.id if domain else None,
        domain_name=domain.name if domain else None,
        roles=roles,
        methods=methods,
        issued_at=time.time(),
        expires_at=expires_at,
        audit_id=new_audit_id(),
    )


async def _by_password(store: Store, msg: Authenticate, cost: Cost) -> dict[str, object]:
    creds = msg.password
    if creds is None:
        raise Invalid("auth.identity.password", "this field is required with the password method")
    if creds.user_id is None:
        if creds.user_name is None:
            raise Invalid("auth.identity.password.user", "an id, or a name and a domain, is required")
        if creds.domain_id is None and creds.domain_name is None:
            raise Invalid("auth.identity.password.user.domain", "a user given by name needs its domain")
    async with store.transaction() as tx:
        user = await sql.find_login(tx, creds.user_id, creds.user_name, creds.domain_id, creds.domain_name)
    stored = user["password_hash"] if user else None
    # Verified even when the user does not exist (against a decoy), so that both cost the same;
    # outside the transaction, so that no connection is held for the hash's 100 ms.
    if not await verify_password(stored, creds.password, cost) or user is None:
        raise Unauthorized(DENIED)
    return dict(user)


async def _by_token(
    tx: Connection, msg: Authenticate, sealer: TokenSealer
) -> tuple[dict[str, object], float, tuple[str, ...]]:
    if msg.token is None:
        raise Invalid("auth.identity.token.id", "this field is required with the token method")
    old = sealer.open(msg.token)
    now = time.time()
    if old.expires_at <= now:
        raise Unauthorized("The token has expired.")
    if any(matches(rule, old) for rule in await sql.live_revocations(tx, now)):
        raise Unauthorized("The token has been revoked.")
    user = await sql.find_login(tx, old.user_id, None, None, None)
    if user is None:
        raise Unauthorized(DENIED)
    # A token made from a token lives no longer than the one it came from, as in Keystone.
    return dict(user), old.expires_at, tuple(dict.fromkeys((*old.methods, "token")))


async def _domain_name(tx: Connection, domain_id: str) -> str:
    domain = await sql.get_domain(tx, domain_id)
    return domain.name if domain else domain_id


async def _scope(
    tx: Connection, user: dict[str, object], msg: Authenticate
) -> tuple[ProjectView | None, DomainView | None, tuple[RoleRef, ...]]:
    user_id = str(user["id"])
    scope = msg.scope
    if scope is None:
        default = user["default_project_id"]
        if msg.unscoped or not default:
            return None, None, ()
        project = await sql.get_project(tx, str(default))
        if project is None or not project.enabled:
            return None, None, ()
        roles = await sql.effective_roles(tx, user_id, project.id, None)
        # Keystone falls back to an unscoped token when the user has no role there any more.
        return (project, None, roles) if roles else (None, None, ())
    if scope.project_id or scope.project_name:
        project = await _find_project(tx, scope)
        domain = await sql.get_domain(tx, project.domain_id) if project else None
        if project is None or domain is None or not project.enabled or not domain.enabled:
            raise Unauthorized(DENIED)
        roles = await sql.effective_roles(tx, user_id, project.id, None)
        if not roles:
            raise Unauthorized(f"User {user_id} has no access to project {project.id}.")
        return project, None, roles
    if scope.domain_id or scope.domain_name:
        domain = await (
            sql.get_domain(tx, scope.domain_id)
            if scope.domain_id
            else sql.get_domain_by_name(tx, str(scope.domain_name))
        )
        if domain is None or not domain.enabled:
            raise Unauthorized(DENIED)
        roles = await sql.effective_roles(tx, user_id, None, domain.id)
        if not roles:
            raise Unauthorized(f"User {user_id} has no access to domain {domain.id}.")
        return None, domain, roles
    raise Invalid("auth.scope", "a scope names a project or a domain")


async def _find_project(tx: Connection, scope: Scope) -> ProjectView | None:
    if scope.project_id:
        return await sql.get_project(tx, scope.project_id)
    domain_id = scope.project_domain_id
    if domain_id is None:
        if scope.project_domain_name is None:
            raise Invalid("auth.scope.project.domain", "a project given by name needs its domain")
        domain = await sql.get_domain_by_name(tx, scope.project_domain_name)
        if domain is None:
            return None
        domain_id = domain.id
    return await sql.get_project_by_name(tx, domain_id, str(scope.project_name))
