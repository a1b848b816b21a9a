"""Identity through the gateway, as a client sees it: real PostgreSQL, RabbitMQ and HTTP."""

import dataclasses
import logging
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import asyncpg
import pytest

from fabric.client import ApiError, Client, password_auth
from fabric.compose import Cloud
from fabric.logs import QUIET_LIBRARIES
from fabric.tokens import TokenSealer
from protocol.identity import RoleRef
from tests.support import api_call

pytestmark = [pytest.mark.postgres, pytest.mark.amqp]


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@dataclasses.dataclass
class Member:
    user_id: str
    name: str
    password: str
    project_id: str
    project_name: str


@pytest.fixture
async def member(admin: Client) -> AsyncIterator[Member]:
    """A fresh user holding only `member` on a fresh project."""
    project = await admin.identity.create_project(unique("proj"))
    password = uuid.uuid4().hex
    user = await admin.identity.create_user(unique("user"), password=password)
    role = await admin.identity.role("member")
    await admin.identity.grant(role.id, user.id, project_id=project.id)
    yield Member(user.id, user.name, password, project.id, project.name)
    await admin.identity.delete_user(user.id)
    await admin.identity.delete_project(project.id)


async def raw(cloud: Cloud, method: str, path: str, token: str | None, **kw: Any) -> tuple[int, Any]:
    status, body, _ = await api_call(method, f"{cloud.url}{path}", token, **kw)
    return status, body


# --- CRUD -----------------------------------------------------------------------------------


async def test_project_lifecycle(admin: Client) -> None:
    name = unique("proj")
    created = await admin.identity.create_project(name, description="first")
    assert created.name == name and created.enabled
    assert (await admin.identity.get_project(created.id)).description == "first"
    assert [p.id for p in await admin.identity.list_projects(name=name)] == [created.id]
    updated = await admin.identity.update_project(created.id, description="second", enabled=False)
    assert (updated.description, updated.enabled) == ("second", False)
    await admin.identity.delete_project(created.id)
    with pytest.raises(ApiError) as err:
        await admin.identity.get_project(created.id)
    assert err.value.status == 404


async def test_duplicate_names_conflict(admin: Client) -> None:
    name = unique("proj")
    project = await admin.identity.create_project(name)
    try:
        with pytest.raises(ApiError) as err:
            await admin.identity.create_project(name)
        assert err.value.status == 409
    finally:
        await admin.identity.delete_project(project.id)


async def test_user_lifecycle_and_password_change(admin: Client) -> None:
    user = await admin.identity.create_user(unique("user"), password="first-pass")
    try:
        assert [u.id for u in await admin.identity.list_users(name=user.name)] == [user.id]
        await admin.identity.issue_token(password_auth(user.name, "first-pass"))
        await admin.identity.update_user(user.id, password="second-pass")
        with pytest.raises(ApiError) as err:
            await admin.identity.issue_token(password_auth(user.name, "first-pass"))
        assert err.value.status == 401
        await admin.identity.issue_token(password_auth(user.name, "second-pass"))
    finally:
        await admin.identity.delete_user(user.id)
    with pytest.raises(ApiError) as err:
        await admin.identity.get_user(user.id)
    assert err.value.status == 404


async def test_grants_show_in_role_assignments(admin: Client, member: Member) -> None:
    found = await admin.identity.role_assignments(user_id=member.user_id, names=True)
    assert [(a.role_name, a.project_id) for a in found] == [("member", member.project_id)]
    role = await admin.identity.role("member")
    await admin.identity.revoke(role.id, member.user_id, project_id=member.project_id)
    assert await admin.identity.role_assignments(user_id=member.user_id) == []


async def test_bad_input_names_the_field(cloud: Cloud, admin: Client) -> None:
    assert admin.token is not None
    status, body = await raw(cloud, "POST", "/identity/v3/projects", admin.token.id, json={"project": {}})
    assert status == 400
    assert "name" in body["error"]["message"]
    status, body = await raw(
        cloud, "POST", "/identity/v3/users", admin.token.id, json={"user": {"name": "x" * 300}}
    )
    assert status == 400 and "name" in body["error"]["message"]
    status, body = await raw(
        cloud,
        "POST",
        "/identity/v3/projects",
        admin.token.id,
        data=b"{not json",
        headers={"Content-Type": "application/json"},
    )
    assert status == 400


# --- security -------------------------------------------------------------------------------


async def test_wrong_password_and_unknown_user_are_the_same_401(admin: Client, member: Member) -> None:
    errors = []
    for name, password in ((member.name, "wrong"), (unique("nobody"), "wrong")):
        with pytest.raises(ApiError) as err:
            await admin.identity.issue_token(password_auth(name, password, project=member.project_name))
        errors.append((err.value.status, err.value.message))
    assert errors[0] == errors[1]
    assert errors[0][0] == 401


async def test_a_revoked_token_is_refused(cloud: Cloud, admin: Client, member: Member) -> None:
    token = await admin.identity.issue_token(
        password_auth(member.name, member.password, project=member.project_name)
    )
    assert (await raw(cloud, "GET", "/identity/v3/auth/projects", token.id))[0] == 200
    await admin.identity.revoke_token(token.id)
    status, body = await raw(cloud, "GET", "/identity/v3/auth/projects", token.id)
    assert status == 401 and body["error"]["code"] == 401
    with pytest.raises(ApiError) as err:
        await admin.identity.validate_token(token.id)
    assert err.value.status == 404  # Keystone: a revoked subject token is "not found"


async def test_disabling_a_user_revokes_its_tokens(cloud: Cloud, admin: Client, member: Member) -> None:
    token = await admin.identity.issue_token(
        password_auth(member.name, member.password, project=member.project_name)
    )
    await admin.identity.update_user(member.user_id, enabled=False)
    assert (await raw(cloud, "GET", "/identity/v3/auth/projects", token.id))[0] == 401
    with pytest.raises(ApiError) as err:
        await admin.identity.issue_token(password_auth(member.name, member.password))
    assert err.value.status == 401


async def test_an_expired_token_is_refused(cloud: Cloud, admin: Client, member: Member) -> None:
    """A token sealed with the cloud's own key but past its expiry: only the expiry is wrong."""
    token = await admin.identity.issue_token(
        password_auth(member.name, member.password, project=member.project_name)
    )
    conn = await asyncpg.connect(cloud.settings.database_url)
    try:
        keys = [r["key"] for r in await conn.fetch("SELECT key FROM identity.token_keys ORDER BY id DESC")]
    finally:
        await conn.close()
    sealer = TokenSealer(keys)
    data = sealer.open(token.id)
    past = time.time() - 10
    expired = sealer.seal(dataclasses.replace(data, issued_at=past - 3600, expires_at=past))
    fresh = sealer.seal(dataclasses.replace(data, audit_id=data.audit_id))
    assert (await raw(cloud, "GET", "/identity/v3/auth/projects", fresh))[0] == 200
    status, body = await raw(cloud, "GET", "/identity/v3/auth/projects", expired)
    assert status == 401 and "expired" in body["error"]["message"].lower()
    # Nor can a token be forged by editing its roles without the key.
    forged = TokenSealer([__import__("fabric.tokens").tokens.new_key()]).seal(
        dataclasses.replace(data, roles=(RoleRef(id="x", name="admin"),))
    )
    assert (await raw(cloud, "GET", "/identity/v3/projects", forged))[0] == 401


async def test_no_token_is_401(cloud: Cloud) -> None:
    status, body = await raw(cloud, "GET", "/identity/v3/projects", None)
    assert status == 401 and body["error"]["code"] == 401
    status, _ = await raw(cloud, "GET", "/identity/v3/projects", "garbage-token")
    assert status == 401


async def test_a_member_cannot_create_projects_users_or_grants(
    cloud: Cloud, admin: Client, member: Member
) -> None:
    async with Client(
        admin.auth_url, username=member.name, password=member.password, project_name=member.project_name
    ) as client:
        assert client.token is not None
        token = client.token.id
        for path, body in (
            ("/identity/v3/projects", {"project": {"name": unique("p")}}),
            ("/identity/v3/users", {"user": {"name": unique("u"), "password": "x"}}),
            ("/identity/v3/roles", {"role": {"name": unique("r")}}),
        ):
            status, got = await raw(cloud, "POST", path, token, json=body)
            assert status == 403, (path, got)
        admin_role = await admin.identity.role("admin")
        status, _ = await raw(
            cloud,
            "PUT",
            f"/identity/v3/projects/{member.project_id}/users/{member.user_id}/roles/{admin_role.id}",
            token,
        )
        assert status == 403
        assert await admin.identity.role_assignments(user_id=member.user_id, names=True) != []
        assert "admin" not in {
            a.role_name for a in await admin.identity.role_assignments(user_id=member.user_id, names=True)
        }


async def test_a_member_sees_only_what_its_scope_allows(cloud: Cloud, admin: Client, member: Member) -> None:
    other = await admin.identity.create_project(unique("other"))
    try:
        async with Client(
            admin.auth_url, username=member.name, password=member.password, project_name=member.project_name
        ) as client:
            assert client.token is not None
            token = client.token.id
            status, body = await raw(cloud, "GET", "/identity/v3/auth/projects", token)
            assert status == 200 and [p["id"] for p in body["projects"]] == [member.project_id]
            assert (await raw(cloud, "GET", f"/identity/v3/projects/{member.project_id}", token))[0] == 200
            assert (await raw(cloud, "GET", f"/identity/v3/projects/{other.id}", token))[0] == 403
            assert (await raw(cloud, "GET", "/identity/v3/projects", token))[0] == 403
            assert (await raw(cloud, "GET", "/identity/v3/users", token))[0] == 403
            assert (await raw(cloud, "GET", f"/identity/v3/users/{member.user_id}", token))[0] == 200
            # Scoping to a project the user has no role on is refused.
            with pytest.raises(ApiError) as err:
                await admin.identity.issue_token(
                    password_auth(member.name, member.password, project=other.name)
                )
            assert err.value.status == 401
    finally:
        await admin.identity.delete_project(other.id)


class Recorder(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.getMessage()} {record.__dict__}")


async def test_passwords_appear_in_no_response_and_no_log(cloud: Cloud, admin: Client) -> None:
    secret = f"s3cret-{uuid.uuid4().hex}"
    recorder, root = Recorder(), logging.getLogger()
    saved = root.level, {name: logging.getLogger(name).level for name in QUIET_LIBRARIES}
    root.setLevel(logging.DEBUG)
    for name in QUIET_LIBRARIES:  # as the fabric's own logging set-up holds them
        logging.getLogger(name).setLevel(logging.WARNING)
    root.addHandler(recorder)
    try:
        bodies = await exercise_passwords(cloud, admin, secret)
    finally:
        root.removeHandler(recorder)
        root.setLevel(saved[0])
        for name, level in saved[1].items():
            logging.getLogger(name).setLevel(level)
    assert recorder.lines, "the gateway logs requests; nothing recorded means the check is blind"
    for text in [*bodies, *recorder.lines]:
        assert secret not in text
        assert "$argon2" not in text


async def exercise_passwords(cloud: Cloud, admin: Client, secret: str) -> list[str]:
    """Every call that carries a password; returns the bodies answered."""
    assert admin.token is not None
    bodies: list[str] = []
    status, body = await raw(
        cloud,
        "POST",
        "/identity/v3/users",
        admin.token.id,
        json={"user": {"name": unique("user"), "password": secret}},
    )
    assert status == 201
    user_id = body["user"]["id"]
    bodies.append(str(body))
    bodies.append(str((await raw(cloud, "GET", f"/identity/v3/users/{user_id}", admin.token.id))[1]))
    bodies.append(str((await raw(cloud, "GET", "/identity/v3/users", admin.token.id))[1]))
    bad = {
        "auth": {
            "identity": {
                "methods": ["password"],
                "password": {"user": {"id": user_id, "password": secret + "x"}},
            }
        }
    }
    status, body = await raw(cloud, "POST", "/identity/v3/auth/tokens", None, json=bad)
    assert status == 401
    bodies.append(str(body))
    status, body = await raw(
        cloud,
        "POST",
        f"/identity/v3/users/{user_id}/password",
        admin.token.id,
        json={"user": {"original_password": "wrong" + secret, "password": secret + "2"}},
    )
    bodies.append(str(body))
    await admin.identity.delete_user(user_id)
    return bodies


# --- the gateway's own errors ---------------------------------------------------------------


async def test_unknown_paths_wrong_methods_and_huge_bodies_get_openstack_errors(
    cloud: Cloud, admin: Client
) -> None:
    assert admin.token is not None
    token = admin.token.id
    status, body = await raw(cloud, "GET", "/identity/v3/no-such-thing", token)
    assert status == 404 and body["error"]["code"] == 404
    status, body = await raw(cloud, "PATCH", "/identity/v3/auth/tokens", token)
    assert status == 405 and body["error"]["code"] == 405
    huge = b'{"project": {"name": "' + b"x" * (2 * 1024 * 1024) + b'"}}'
    status, body = await raw(
        cloud, "POST", "/identity/v3/projects", token, data=huge, headers={"Content-Type": "application/json"}
    )
    assert status == 413 and body["error"]["code"] == 413
    status, body = await raw(cloud, "GET", "/identity/v3/projects/" + "a" * 5000, token)
    assert status in (400, 404) and body["error"]["code"] == status


async def test_every_response_carries_a_request_id(cloud: Cloud) -> None:
    async with aiohttp.ClientSession() as http, http.get(f"{cloud.url}/identity/v3") as resp:
        assert resp.headers["x-openstack-request-id"].startswith("req-")
    async with aiohttp.ClientSession() as http, http.get(f"{cloud.url}/healthz") as resp:
        assert resp.status == 200
        assert (await resp.json())["checks"] == {"bus": "ok", "identity": "ok", "database": "ok"}


# --- scopes ---------------------------------------------------------------------------------


async def test_unscoped_domain_scoped_and_project_scoped_tokens(admin: Client, member: Member) -> None:
    # Unscoped: the member names no scope and has no default project.
    unscoped = await admin.identity.issue_token(password_auth(member.name, member.password))
    assert unscoped.project_id is None and unscoped.roles == ()
    project_scoped = await admin.identity.issue_token(
        password_auth(member.name, member.password, project=member.project_name)
    )
    assert project_scoped.project_id == member.project_id
    assert set(project_scoped.roles) == {"member", "reader"}  # member implies reader, as in Keystone
    # Domain scope needs a role on the domain.
    with pytest.raises(ApiError) as err:
        await admin.identity.issue_token(password_auth(member.name, member.password, domain="Default"))
    assert err.value.status == 401
    reader = await admin.identity.role("reader")
    await admin.identity.grant(reader.id, member.user_id, domain_id="default")
    domain_scoped = await admin.identity.issue_token(
        password_auth(member.name, member.password, domain="Default")
    )
    assert domain_scoped.project_id is None and domain_scoped.domain_id == "default"
    assert set(domain_scoped.roles) == {"reader"}
