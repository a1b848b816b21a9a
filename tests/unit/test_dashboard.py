"""The dashboard's own parts without a cloud: sessions, CSRF, how refusals are read, and the
pages' error display against a stand-in gateway that answers as the real APIs do (a 400 naming a
field, a 500 with its request id)."""

import re
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from fabric.config import Settings
from fabric.dashboard import app as dashboard
from fabric.dashboard import sessions as sessions_module
from fabric.dashboard.api import ApiError, Project, Token, error_message
from fabric.dashboard.pages.servers import field_of
from fabric.dashboard.sessions import SessionStore

TOKEN = "gAAAA-the-secret-token"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def token(expires_in_s: float = 3600, roles: tuple[str, ...] = ("member",)) -> Token:
    return Token(
        id=TOKEN,
        user_id="u1",
        user_name="alice",
        domain_name="Default",
        project=Project("p1", "demo"),
        roles=roles,
        expires_at=time.time() + expires_in_s,
        catalog=(),
    )


# --- sessions -----------------------------------------------------------------------------------


def test_signing_in_gives_a_new_id_and_csrf_token_and_ends_the_anonymous_session() -> None:
    store = SessionStore()
    visitor = store.anonymous()
    session = store.sign_in(visitor, token(), [Project("p1", "demo")])
    assert session.id != visitor.id and session.csrf != visitor.csrf
    assert store.get(visitor.id) is None
    assert store.get(session.id) is session and session.is_signed_in
    assert len(session.id) >= 40, "ids are 256 random bits"


def test_a_session_ends_with_its_token_or_when_idle(monkeypatch: pytest.MonkeyPatch) -> None:
    store = SessionStore()
    expired = store.sign_in(None, token(expires_in_s=-1), [])
    assert store.get(expired.id) is None and len(store) == 0
    idle = store.sign_in(None, token(), [])
    idle.last_seen -= sessions_module.IDLE_TTL_S + 1
    assert store.get(idle.id) is None
    visitor = store.anonymous()
    visitor.last_seen -= sessions_module.ANONYMOUS_TTL_S + 1
    assert store.get(visitor.id) is None
    assert store.get(None) is None and store.get("") is None and store.get("made-up") is None


def test_the_store_is_bounded_and_forgets_the_least_recently_used_first() -> None:
    store = SessionStore(max_sessions=3)
    first, second, third = store.anonymous(), store.anonymous(), store.anonymous()
    assert store.get(first.id) is first  # used: now the most recent
    store.anonymous()
    assert len(store) == 3
    assert store.get(second.id) is None and store.get(first.id) is first and store.get(third.id) is third


def test_flashes_are_shown_once() -> None:
    session = SessionStore().anonymous()
    session.flash("done")
    session.flash("oops", "error")
    assert session.take_flashes() == [("ok", "done"), ("error", "oops")]
    assert session.take_flashes() == []


# --- reading refusals ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"badRequest": {"code": 400, "message": "Invalid input for field 'server.name': too short"}},
         "Invalid input for field 'server.name': too short"),
        ({"NeutronError": {"type": "HTTPBadRequest", "message": "no", "detail": ""}}, "no"),
        ({"error": {"code": 401, "message": "The request you have made requires authentication."}},
         "The request you have made requires authentication."),
        ({"code": 400, "type": "invalid_object", "message": "bad zone"}, "bad zone"),
        (b"<html>proxy error</html>", "<html>proxy error</html>"),
    ],
)  # fmt: skip
def test_the_message_is_found_in_every_services_error_body(body: Any, message: str) -> None:
    assert error_message(body) == message


def test_a_refusal_names_the_form_field_it_is_about() -> None:
    assert field_of(ApiError(400, "Invalid input for field 'server.name': too short", "r")) == "name"
    assert field_of(ApiError(400, "Invalid input for field 'server.networks[0]': bad", "r")) == "network"
    assert field_of(ApiError(400, "Invalid input for field 'server.flavorRef': x", "r")) == "flavor"
    assert field_of(ApiError(404, "Could not find image: 123.", "r")) == "image"
    assert field_of(ApiError(400, "Could not find keypair: k.", "r")) == "key_name"
    assert field_of(ApiError(413, "Quota exceeded for instances", "r")) is None
    assert field_of(ApiError(409, "The server is busy", "r")) is None


# --- pages against a stand-in gateway -----------------------------------------------------------


class FakeCloud:
    """Identity and Compute as far as the login and launch pages use them; `launch_status` is
    what creating a server answers."""

    def __init__(self) -> None:
        self.launch_status = 500
        self.revoked: list[str] = []

    def routes(self, app: web.Application) -> None:
        r = app.router
        r.add_post("/identity/v3/auth/tokens", self.issue)
        r.add_delete("/identity/v3/auth/tokens", self.revoke)
        r.add_get("/identity/v3/auth/projects", self.projects)
        r.add_get("/image/v2/images", self.empty("images"))
        r.add_get("/compute/v2.1/flavors/detail", self.flavors)
        r.add_get("/network/v2.0/networks", self.empty("networks"))
        r.add_get("/network/v2.0/security-groups", self.empty("security_groups"))
        r.add_get("/compute/v2.1/os-keypairs", self.empty("keypairs"))
        r.add_post("/compute/v2.1/servers", self.launch)

    async def issue(self, request: web.Request) -> web.Response:
        body = await request.json()
        if body["auth"]["identity"]["password"]["user"]["password"] != "right":
            return web.json_response({"error": {"code": 401, "message": "Invalid credentials."}}, status=401)
        base = f"http://{request.host}"
        catalog = [
            {"type": kind, "endpoints": [{"interface": "public", "url": base + path}]}
            for kind, path in (("compute", "/compute/v2.1"), ("image", "/image"), ("network", "/network"))
        ]
        token_body = {
            "token": {
                "user": {"id": "u1", "name": "alice", "domain": {"name": "Default"}},
                "project": {"id": "p1", "name": "demo"},
                "roles": [{"name": "member"}],
                "expires_at": "2999-01-01T00:00:00.000000Z",
                "catalog": catalog,
            }
        }
        return web.json_response(token_body, status=201, headers={"X-Subject-Token": TOKEN})

    async def revoke(self, request: web.Request) -> web.Response:
        self.revoked.append(request.headers["X-Subject-Token"])
        return web.Response(status=204)

    async def projects(self, request: web.Request) -> web.Response:
        return web.json_response({"projects": [{"id": "p1", "name": "demo", "enabled": True}]})

    def empty(self, key: str) -> Any:
        async def handler(request: web.Request) -> web.Response:
            return web.json_response({key: []})

        return handler

    async def flavors(self, request: web.Request) -> web.Response:
        flavor = {"id": "f1", "name": "m1.tiny", "vcpus": 1, "ram": 512, "disk": 1}
        return web.json_response({"flavors": [flavor]})

    async def launch(self, request: web.Request) -> web.Response:
        headers = {"x-openstack-request-id": "req-stand-in-0001"}
        if self.launch_status == 500:
            body = {"computeFault": {"code": 500, "message": "Unexpected error; request req-stand-in-0001"}}
        else:
            body = {"badRequest": {"code": 400, "message": "Invalid input for field 'server.name': too long"}}
        return web.json_response(body, status=self.launch_status, headers=headers)


@pytest.fixture
async def stand_in() -> AsyncIterator[tuple[TestClient[Any, Any], FakeCloud]]:
    fake = FakeCloud()
    app = web.Application()
    fake.routes(app)
    app.add_subapp("/dashboard", dashboard.build(None, Settings()))
    async with TestClient(TestServer(app)) as client:
        yield client, fake


async def _sign_in(client: TestClient[Any, Any]) -> str:
    page = await (await client.get("/dashboard/login")).text()
    csrf = CSRF.search(page)
    assert csrf
    form = {"user": "alice", "password": "right", "project": "demo", "csrf_token": csrf.group(1)}
    resp = await client.post("/dashboard/login", data=form, allow_redirects=False)
    assert resp.status == 303, await resp.text()
    found = CSRF.search(await (await client.get("/dashboard/servers/new")).text())
    assert found
    return found.group(1)


async def test_a_cloud_failure_shows_the_request_id_and_keeps_the_form(
    stand_in: tuple[TestClient[Any, Any], FakeCloud],
) -> None:
    client, _ = stand_in
    csrf = await _sign_in(client)
    form = {"name": "web", "image": "", "flavor": "f1", "network": "", "key_name": "", "csrf_token": csrf}
    resp = await client.post("/dashboard/servers", data=form)
    page = await resp.text()
    assert resp.status == 500
    assert "req-stand-in-0001" in page and 'id="form-error"' in page
    assert 'value="web"' in page and '<option value="f1" selected>' in page
    assert TOKEN not in page


async def test_a_refusal_is_shown_beside_the_field_it_names(
    stand_in: tuple[TestClient[Any, Any], FakeCloud],
) -> None:
    client, fake = stand_in
    fake.launch_status = 400
    csrf = await _sign_in(client)
    form = {"name": "x" * 300, "image": "", "flavor": "f1", "network": "", "key_name": "", "csrf_token": csrf}
    resp = await client.post("/dashboard/servers", data=form)
    page = await resp.text()
    assert resp.status == 400
    assert '<p class="field-error" id="name-error" role="alert">' in page and "too long" in page
    assert 'aria-invalid="true" aria-describedby="name-error"' in page


async def test_a_wrong_password_is_refused_with_identitys_message(
    stand_in: tuple[TestClient[Any, Any], FakeCloud],
) -> None:
    client, _ = stand_in
    found = CSRF.search(await (await client.get("/dashboard/login")).text())
    assert found
    form = {"user": "alice", "password": "wrong", "project": "demo", "csrf_token": found.group(1)}
    resp = await client.post("/dashboard/login", data=form, allow_redirects=False)
    assert resp.status == 401 and "Invalid credentials." in await resp.text()


async def test_logout_revokes_and_needs_the_csrf_token(
    stand_in: tuple[TestClient[Any, Any], FakeCloud],
) -> None:
    client, fake = stand_in
    csrf = await _sign_in(client)
    assert (await client.post("/dashboard/logout", data={})).status == 403
    assert (await client.post("/dashboard/logout", data={"csrf_token": "forged"})).status == 403
    resp = await client.post("/dashboard/logout", data={"csrf_token": csrf}, allow_redirects=False)
    assert (resp.status, resp.headers["Location"]) == (303, "/dashboard/login")
    assert fake.revoked == [TOKEN]
    resp = await client.get("/dashboard/overview", allow_redirects=False)
    assert (resp.status, resp.headers["Location"]) == (303, "/dashboard/login")
    assert (await client.get("/dashboard/events")).status == 401
