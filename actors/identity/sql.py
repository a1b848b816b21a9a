"""The statements the identity service runs, beside the small functions that run them."""

import asyncpg

from fabric.store import Connection
from protocol.identity import (
    AssignmentView,
    DomainView,
    EndpointView,
    Grant,
    ProjectView,
    Revocation,
    RoleRef,
    RoleView,
    ServiceView,
    UserView,
)

# --- domains -------------------------------------------------------------------------------

DOMAIN_COLUMNS = "id, name, description, enabled"


def domain_view(r: asyncpg.Record) -> DomainView:
    return DomainView(id=r["id"], name=r["name"], description=r["description"], enabled=r["enabled"])


async def get_domain(tx: Connection, domain_id: str) -> DomainView | None:
    r = await tx.fetchrow(f"SELECT {DOMAIN_COLUMNS} FROM identity.domains WHERE id = $1", domain_id)
    return domain_view(r) if r else None


async def get_domain_by_name(tx: Connection, name: str) -> DomainView | None:
    r = await tx.fetchrow(f"SELECT {DOMAIN_COLUMNS} FROM identity.domains WHERE name = $1", name)
    return domain_view(r) if r else None


async def list_domains(tx: Connection, name: str | None, enabled: bool | None) -> list[DomainView]:
    rows = await tx.fetch(
        f"""SELECT {DOMAIN_COLUMNS} FROM identity.domains
             WHERE ($1::text IS NULL OR name = $1) AND ($2::boolean IS NULL OR enabled = $2)
             ORDER BY name""",
        name,
        enabled,
    )
    return [domain_view(r) for r in rows]


async def insert_domain(tx: Connection, id: str, name: str, description: str, enabled: bool) -> DomainView:
    r = await tx.fetchrow(
        f"""INSERT INTO identity.domains (id, name, description, enabled) VALUES ($1, $2, $3, $4)
            RETURNING {DOMAIN_COLUMNS}""",
        id,
        name,
        description,
        enabled,
    )
    assert r is not None, "INSERT ... RETURNING returns its row"
    return domain_view(r)


async def update_domain(
    tx: Connection, id: str, name: str | None, description: str | None, enabled: bool | None
) -> DomainView | None:
    r = await tx.fetchrow(
        f"""UPDATE identity.domains
               SET name = coalesce($2, name), description = coalesce($3, description),
                   enabled = coalesce($4, enabled)
             WHERE id = $1
         RETURNING {DOMAIN_COLUMNS}""",
        id,
        name,
        description,
        enabled,
    )
    return domain_view(r) if r else None


async def delete_domain(tx: Connection, id: str) -> bool:
    return await tx.fetchval("DELETE FROM identity.domains WHERE id = $1 RETURNING true", id) is not None


# --- projects ------------------------------------------------------------------------------

PROJECT_COLUMNS = "id, name, domain_id, description, enabled, tags"


def project_view(r: asyncpg.Record) -> ProjectView:
    return ProjectView(
        id=r["id"],
        name=r["name"],
        domain_id=r["domain_id"],
        description=r["description"],
        enabled=r["enabled"],
        tags=tuple(r["tags"]),
    )


async def get_project(tx: Connection, project_id: str) -> ProjectView | None:
    r = await tx.fetchrow(f"SELECT {PROJECT_COLUMNS} FROM identity.projects WHERE id = $1", project_id)
    return project_view(r) if r else None


async def get_project_by_name(tx: Connection, domain_id: str, name: str) -> ProjectView | None:
    r = await tx.fetchrow(
        f"SELECT {PROJECT_COLUMNS} FROM identity.projects WHERE domain_id = $1 AND name = $2",
        domain_id,
        name,
    )
    return project_view(r) if r else None


async def list_projects(
    tx: Connection, name: str | None, domain_id: str | None, enabled: bool | None
) -> list[ProjectView]:
    rows = await tx.fetch(
        f"""SELECT {PROJECT_COLUMNS} FROM identity.projects
             WHERE ($1::text IS NULL OR name = $1) AND ($2::text IS NULL OR domain_id = $2)
               AND ($3::boolean IS NULL OR enabled = $3)
             ORDER BY name, id""",
        name,
        domain_id,
        enabled,
    )
    return [project_view(r) for r in rows]


async def list_user_projects(tx: Connection, user_id: str) -> list[ProjectView]:
    rows = await tx.fetch(
        f"""SELECT {PROJECT_COLUMNS} FROM identity.projects
             WHERE id IN (SELECT project_id FROM identity.assignments WHERE user_id = $1)
             ORDER BY name, id""",
        user_id,
    )
    return [project_view(r) for r in rows]


async def insert_project(
    tx: Connection, id: str, name: str, domain_id: str, description: str, enabled: bool, tags: tuple[str, ...]
) -> ProjectView:
    r = await tx.fetchrow(
        f"""INSERT INTO identity.projects (id, name, domain_id, description, enabled, tags)
            VALUES ($1, $2, $3, $4, $5, $6) RETURNING {PROJECT_COLUMNS}""",
        id,
        name,
        domain_id,
        description,
        enabled,
        list(tags),
    )
    assert r is not None, "INSERT ... RETURNING returns its row"
    return project_view(r)


async def update_project(
    tx: Connection,
    id: str,
    name: str | None,
    description: str | None,
    enabled: bool | None,
    tags: tuple[str, ...] | None,
) -> ProjectView | None:
    r = await tx.fetchrow(
        f"""UPDATE identity.projects
               SET name = coalesce($2, name), description = coalesce($3, description),
                   enabled = coalesce($4, enabled), tags = coalesce($5, tags)
             WHERE id = $1
         RETURNING {PROJECT_COLUMNS}""",
        id,
        name,
        description,
        enabled,
        list(tags) if tags is not None else None,
    )
    return project_view(r) if r else None


async def delete_project(tx: Connection, id: str) -> bool:
    return await tx.fetchval("DELETE FROM identity.projects WHERE id = $1 RETURNING true", id) is not None


# --- users ---------------------------------------------------------------------------------

USER_COLUMNS = "id, name, domain_id, enabled, default_project_id, email, description"


def user_view(r: asyncpg.Record) -> UserView:
    return UserView(
        id=r["id"],
        name=r["name"],
        domain_id=r["domain_id"],
        enabled=r["enabled"],
        default_project_id=r["default_project_id"],
        email=r["email"],
        description=r["description"],
    )


async def get_user(tx: Connection, user_id: str) -> UserView | None:
    r = await tx.fetchrow(f"SELECT {USER_COLUMNS} FROM identity.users WHERE id = $1", user_id)
    return user_view(r) if r else None


async def list_users(
    tx: Connection, name: str | None, domain_id: str | None, enabled: bool | None
) -> list[UserView]:
    rows = await tx.fetch(
        f"""SELECT {USER_COLUMNS} FROM identity.users
             WHERE ($1::text IS NULL OR name = $1) AND ($2::text IS NULL OR domain_id = $2)
               AND ($3::boolean IS NULL OR enabled = $3)
             ORDER BY name, id""",
        name,
        domain_id,
        enabled,
    )
    return [user_view(r) for r in rows]


async def insert_user(
    tx: Connection,
    id: str,
    name: str,
    domain_id: str,
    password_hash: str | None,
    enabled: bool,
    default_project_id: str | None,
    email: str | None,
    description: str | None,
) -> UserView:
    r = await tx.fetchrow(
        f"""INSERT INTO identity.users
                (id, name, domain_id, password_hash, enabled, default_project_id, email, description)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING {USER_COLUMNS}""",
        id,
        name,
        domain_id,
        password_hash,
        enabled,
        default_project_id,
        email,
        description,
    )
    assert r is not None, "INSERT ... RETURNING returns its row"
    return user_view(r)


async def update_user(
    tx: Connection,
    id: str,
    *,
    name: str | None,
    password_hash: str | None,
    enabled: bool | None,
    default_project_id: str | None,
    email: str | None,
    description: str | None,
) -> UserView | None:
    r = await tx.fetchrow(
        f"""UPDATE identity.users
               SET name = coalesce($2, name), password_hash = coalesce($3, password_hash),
                   enabled = coalesce($4, enabled),
                   default_project_id = coalesce($5, default_project_id),
                   email = coalesce($6, email), description = coalesce($7, description)
             WHERE id = $1
         RETURNING {USER_COLUMNS}""",
        id,
        name,
        password_hash,
        enabled,
        default_project_id,
        email,
        description,
    )
    return user_view(r) if r else None


async def delete_user(tx: Connection, id: str) -> bool:
    return await tx.fetchval("DELETE FROM identity.users WHERE id = $1 RETURNING true", id) is not None


FIND_LOGIN = """
SELECT u.id, u.name, u.password_hash, u.enabled, u.default_project_id,
       d.id AS domain_id, d.name AS domain_name, d.enabled AS domain_enabled
  FROM identity.users u JOIN identity.domains d ON d.id = u.domain_id
 WHERE ($1::text IS NOT NULL AND u.id = $1)
    OR ($1::text IS NULL AND u.name = $2 AND (d.id = $3 OR ($3::text IS NULL AND d.name = $4)))"""


async def find_login(
    tx: Connection, user_id: str | None, name: str | None, domain_id: str | None, domain_name: str | None
) -> asyncpg.Record | None:
    return await tx.fetchrow(FIND_LOGIN, user_id, name, domain_id, domain_name)


# --- roles and assignments -----------------------------------------------------------------


def role_view(r: asyncpg.Record) -> RoleView:
    return RoleView(id=r["id"], name=r["name"], description=r["description"])


async def get_role(tx: Connection, role_id: str) -> RoleView | None:
    r = await tx.fetchrow("SELECT id, name, description FROM identity.roles WHERE id = $1", role_id)
    return role_view(r) if r else None


async def get_role_by_name(tx: Connection, name: str) -> RoleView | None:
    r = await tx.fetchrow("SELECT id, name, description FROM identity.roles WHERE name = $1", name)
    return role_view(r) if r else None


async def list_roles(tx: Connection, name: str | None) -> list[RoleView]:
    rows = await tx.fetch(
        "SELECT id, name, description FROM identity.roles"
        " WHERE ($1::text IS NULL OR name = $1) ORDER BY name",
        name,
    )
    return [role_view(r) for r in rows]


async def insert_role(tx: Connection, id: str, name: str, description: str) -> RoleView:
    r = await tx.fetchrow(
        "INSERT INTO identity.roles (id, name, description) VALUES ($1, $2, $3)"
        " RETURNING id, name, description",
        id,
        name,
        description,
    )
    assert r is not None, "INSERT ... RETURNING returns its row"
    return role_view(r)


async def update_role(tx: Connection, id: str, name: str | None, description: str | None) -> RoleView | None:
    r = await tx.fetchrow(
        """UPDATE identity.roles SET name = coalesce($2, name), description = coalesce($3, description)
            WHERE id = $1 RETURNING id, name, description""",
        id,
        name,
        description,
    )
    return role_view(r) if r else None


async def delete_role(tx: Connection, id: str) -> bool:
    return await tx.fetchval("DELETE FROM identity.roles WHERE id = $1 RETURNING true", id) is not None


async def imply_role(tx: Connection, prior_role_id: str, implied_role_id: str) -> None:
    await tx.execute(
        "INSERT INTO identity.role_implications VALUES ($1, $2) ON CONFLICT DO NOTHING",
        prior_role_id,
        implied_role_id,
    )


async def insert_assignment(tx: Connection, g: Grant) -> None:
    target = "project_id" if g.project_id else "domain_id"
    await tx.execute(
        f"""INSERT INTO identity.assignments (user_id, role_id, project_id, domain_id)
            VALUES ($1, $2, $3, $4)
            ON CONFLICT (user_id, {target}, role_id) WHERE {target} IS NOT NULL DO NOTHING""",
        g.user_id,
        g.role_id,
        g.project_id,
        g.domain_id,
    )


async def delete_assignment(tx: Connection, g: Grant) -> bool:
    return (
        await tx.fetchval(
            """DELETE FROM identity.assignments
                WHERE user_id = $1 AND role_id = $2
                  AND project_id IS NOT DISTINCT FROM $3 AND domain_id IS NOT DISTINCT FROM $4
            RETURNING true""",
            g.user_id,
            g.role_id,
            g.project_id,
            g.domain_id,
        )
        is not None
    )


async def has_assignment(tx: Connection, g: Grant) -> bool:
    return bool(
        await tx.fetchval(
            """SELECT true FROM identity.assignments
                WHERE user_id = $1 AND role_id = $2
                  AND project_id IS NOT DISTINCT FROM $3 AND domain_id IS NOT DISTINCT FROM $4""",
            g.user_id,
            g.role_id,
            g.project_id,
            g.domain_id,
        )
    )


EFFECTIVE_ROLES = """
WITH RECURSIVE effective(role_id) AS (
    SELECT role_id FROM identity.assignments
     WHERE user_id = $1 AND project_id IS NOT DISTINCT FROM $2 AND domain_id IS NOT DISTINCT FROM $3
    UNION
    SELECT i.implied_role_id FROM identity.role_implications i JOIN effective e ON i.prior_role_id = e.role_id
)
SELECT r.id, r.name FROM effective e JOIN identity.roles r ON r.id = e.role_id ORDER BY r.name"""


async def effective_roles(
    tx: Connection, user_id: str, project_id: str | None, domain_id: str | None
) -> tuple[RoleRef, ...]:
    rows = await tx.fetch(EFFECTIVE_ROLES, user_id, project_id, domain_id)
    return tuple(RoleRef(id=r["id"], name=r["name"]) for r in rows)


LIST_ASSIGNMENTS = """
WITH RECURSIVE direct AS (
    SELECT user_id, role_id, project_id, domain_id FROM identity.assignments
     WHERE ($1::text IS NULL OR user_id = $1) AND ($2::text IS NULL OR project_id = $2)
       AND ($3::text IS NULL OR domain_id = $3)
), closure(user_id, role_id, project_id, domain_id) AS (
    SELECT * FROM direct
    UNION
    SELECT c.user_id, i.implied_role_id, c.project_id, c.domain_id
      FROM closure c JOIN identity.role_implications i ON i.prior_role_id = c.role_id
     WHERE $5
)
SELECT c.role_id, r.name AS role_name, c.user_id, u.name AS user_name, u.domain_id AS user_domain_id,
       ud.name AS user_domain_name, c.project_id, p.name AS project_name,
       p.domain_id AS project_domain_id, pd.name AS project_domain_name,
       c.domain_id, d.name AS domain_name
  FROM closure c
  JOIN identity.roles r ON r.id = c.role_id
  JOIN identity.users u ON u.id = c.user_id
  JOIN identity.domains ud ON ud.id = u.domain_id
  LEFT JOIN identity.projects p ON p.id = c.project_id
  LEFT JOIN identity.domains pd ON pd.id = p.domain_id
  LEFT JOIN identity.domains d ON d.id = c.domain_id
 WHERE ($4::text IS NULL OR c.role_id = $4)
 ORDER BY u.name, p.name, d.name, r.name"""


async def list_assignments(
    tx: Connection,
    user_id: str | None,
    project_id: str | None,
    domain_id: str | None,
    role_id: str | None,
    effective: bool,
) -> list[AssignmentView]:
    rows = await tx.fetch(LIST_ASSIGNMENTS, user_id, project_id, domain_id, role_id, effective)
    return [AssignmentView(**dict(r)) for r in rows]


# --- catalog -------------------------------------------------------------------------------


async def upsert_service(tx: Connection, id: str, type: str, name: str) -> str:
    service_id: str = await tx.fetchval(
        """INSERT INTO identity.services (id, type, name) VALUES ($1, $2, $3)
           ON CONFLICT (type, name) DO UPDATE SET type = excluded.type
           RETURNING id""",
        id,
        type,
        name,
    )
    return service_id


async def upsert_endpoint(
    tx: Connection, id: str, service_id: str, interface: str, region: str, url: str
) -> bool:
    """True if the endpoint is new or its URL changed."""
    return bool(
        await tx.fetchval(
            """INSERT INTO identity.endpoints (id, service_id, interface, region, url)
               VALUES ($1, $2, $3, $4, $5)
               ON CONFLICT (service_id, interface, region) DO UPDATE SET url = excluded.url
                    WHERE identity.endpoints.url IS DISTINCT FROM excluded.url
               RETURNING true""",
            id,
            service_id,
            interface,
            region,
            url,
        )
    )


async def catalog(tx: Connection) -> list[ServiceView]:
    rows = await tx.fetch(
        """SELECT s.id AS service_id, s.type, s.name, e.id, e.interface, e.region, e.url
             FROM identity.services s LEFT JOIN identity.endpoints e ON e.service_id = s.id
            ORDER BY s.type, s.name, e.interface"""
    )
    services: dict[str, ServiceView] = {}
    endpoints: dict[str, list[EndpointView]] = {}
    for r in rows:
        sid = r["service_id"]
        if sid not in services:
            services[sid] = ServiceView(id=sid, type=r["type"], name=r["name"], endpoints=())
            endpoints[sid] = []
        if r["id"] is not None:
            endpoints[sid].append(
                EndpointView(id=r["id"], interface=r["interface"], region=r["region"], url=r["url"])
            )
    return [
        ServiceView(id=s.id, type=s.type, name=s.name, endpoints=tuple(endpoints[sid]))
        for sid, s in services.items()
    ]


# --- token keys and revocations ------------------------------------------------------------


async def token_keys(tx: Connection) -> list[str]:
    return [r["key"] for r in await tx.fetch("SELECT key FROM identity.token_keys ORDER BY id DESC")]


async def ensure_token_key(tx: Connection, key: str) -> None:
    # Serialised by a transaction-scoped advisory lock, so that two identity processes starting
    # together on an empty table make one key, not two.
    await tx.execute("SELECT pg_advisory_xact_lock(hashtext('identity.token_keys'))")
    await tx.execute(
        "INSERT INTO identity.token_keys (key)"
        " SELECT $1 WHERE NOT EXISTS (SELECT 1 FROM identity.token_keys)",
        key,
    )


async def insert_revocation(tx: Connection, r: Revocation) -> None:
    await tx.execute(
        """INSERT INTO identity.revocations
               (audit_id, user_id, project_id, domain_id, role_id, issued_before, expires_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7)""",
        r.audit_id,
        r.user_id,
        r.project_id,
        r.domain_id,
        r.role_id,
        r.issued_before,
        r.expires_at,
    )


async def live_revocations(tx: Connection, now: float) -> list[Revocation]:
    rows = await tx.fetch(
        """SELECT audit_id, user_id, project_id, domain_id, role_id, issued_before, expires_at
             FROM identity.revocations WHERE expires_at > $1""",
        now,
    )
    return [Revocation(**dict(r)) for r in rows]


async def prune_revocations(tx: Connection, now: float) -> int:
    return int((await tx.execute("DELETE FROM identity.revocations WHERE expires_at <= $1", now)).split()[-1])
