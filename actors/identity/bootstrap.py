"""`fabric bootstrap`: the first admin, as `keystone-manage bootstrap` makes it.

Idempotent: every run ensures the default domain, the roles admin ⇒ member ⇒ reader, the admin
project and user (resetting the password when it no longer matches the configured one), the
admin's role on the project and on the default domain, the identity endpoint and a token key.
It works on the database directly, so it runs before any actor is up.
"""

import dataclasses

from actors.identity import sql
from actors.identity.actor import MIGRATIONS, new_id
from actors.identity.passwords import hash_password, verify_password
from fabric.config import Settings
from fabric.store import Store, migrate
from fabric.tokens import new_key
from protocol.identity import Grant

ROLES = ("admin", "member", "reader")


@dataclasses.dataclass(frozen=True, slots=True)
class Bootstrapped:
    user_id: str
    project_id: str
    created: bool


async def bootstrap(store: Store, settings: Settings) -> Bootstrapped:
    assert settings.admin_password, "resolve the admin password first (Settings.with_admin_password)"
    await migrate(settings.database_url, "identity", MIGRATIONS)
    cost = settings.password_hash_cost
    async with store.transaction() as tx:
        # Two `fabric up` starting together must not both create the admin.
        await tx.execute("SELECT pg_advisory_xact_lock(hashtext('identity.bootstrap'))")
        if await sql.get_domain(tx, "default") is None:
            await sql.insert_domain(tx, "default", "Default", "The default domain", True)
        roles = {}
        for name in ROLES:
            role = await sql.get_role_by_name(tx, name) or await sql.insert_role(tx, new_id(), name, "")
            roles[name] = role.id
        await sql.imply_role(tx, roles["admin"], roles["member"])
        await sql.imply_role(tx, roles["member"], roles["reader"])
        project = await sql.get_project_by_name(tx, "default", settings.admin_project)
        if project is None:
            project = await sql.insert_project(
                tx, new_id(), settings.admin_project, "default", "Bootstrap project", True, ()
            )
        login = await sql.find_login(tx, None, settings.admin_user, "default", None)
        created = login is None
        if login is None:
            hashed = await hash_password(settings.admin_password, cost)
            user = await sql.insert_user(
                tx, new_id(), settings.admin_user, "default", hashed, True, project.id, None, None
            )
            user_id = user.id
        else:
            user_id = login["id"]
            if not await verify_password(login["password_hash"], settings.admin_password, cost):
                hashed = await hash_password(settings.admin_password, cost)
                await sql.update_user(
                    tx,
                    user_id,
                    name=None,
                    password_hash=hashed,
                    enabled=True,
                    default_project_id=None,
                    email=None,
                    description=None,
                )
        await sql.insert_assignment(tx, Grant(role_id=roles["admin"], user_id=user_id, project_id=project.id))
        await sql.insert_assignment(tx, Grant(role_id=roles["admin"], user_id=user_id, domain_id="default"))
        service_id = await sql.upsert_service(tx, new_id(), "identity", "keystone")
        for interface in ("public", "internal", "admin"):
            await sql.upsert_endpoint(
                tx, new_id(), service_id, interface, settings.region, f"{settings.gateway_url}/identity"
            )
        await sql.ensure_token_key(tx, new_key())
    return Bootstrapped(user_id=user_id, project_id=project.id, created=created)
