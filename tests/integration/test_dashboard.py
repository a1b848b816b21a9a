"""The dashboard against the test cloud, over HTTP as a browser speaks it: sessions, CSRF,
logout revoking the token, the project switcher, the launch form's errors and the scheduler's
explanation, and the live stream's events, filtered by project."""

import asyncio
import re
import time
import uuid
from typing import Any

import aiohttp
import orjson
import pytest

from fabric.client import Client
from fabric.compose import Cloud
from tests.integration.dashboard_support import WebUser, eventually, image_and_flavor, person, sessions_of
from tests.support import api_call

pytestmark = [pytest.mark.postgres, pytest.mark.amqp]


async def test_login_gives_a_strict_httponly_cookie_and_never_the_token(cloud: Cloud, admin: Client) -> None:
    someone, _ = await person(admin)
    async with WebUser(cloud.url) as web:
        first = await web.get("/login")
        assert first.status == 200
        anonymous = web.cookie()
        cookie = first.headers.getall("Set-Cookie")[0]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/dashboard" in cookie
        await web.login(someone.name, someone.password, someone.project)
        assert web.cookie() not in (None, anonymous), "signing in must give the session a new id"
        overview = await web.get("/overview")
        assert overview.status == 200 and someone.project in overview.text
        assert overview.headers["Cache-Control"] == "no-store"
        tokens = [t for t in sessions_of(cloud).tokens() if t.user_name == someone.name]
        assert len(tokens) == 1
        for path in ("/overview", "/servers", "/servers/new", "/volumes"):
            page = await web.get(path)
            assert page.status == 200, (path, page.text[:300])
            assert tokens[0].id not in page.text
        # Pages need a session: a stranger is sent to the login page.
    async with WebUser(cloud.url) as stranger:
        page = await stranger.get("/servers")
        assert (page.status, page.location) == (303, "/dashboard/login")


async def test_a_wrong_password_shows_why_and_keeps_what_was_typed(cloud: Cloud, admin: Client) -> None:
    someone, _ = await person(admin)
    async with WebUser(cloud.url) as web:
        await web.get("/login")
        page = await web.post(
            "/login", {"user": someone.name, "password": "wrong", "project": someone.project}
        )
        assert page.status == 401
        assert 'id="login-error"' in page.text
        assert f'value="{someone.name}"' in page.text and f'value="{someone.project}"' in page.text
        assert "wrong" not in re.findall(r'id="password"[^>]*>', page.text)[0]


async def test_posts_without_the_csrf_token_or_with_a_wrong_one_are_refused(
    cloud: Cloud, admin: Client
) -> None:
    someone, _ = await person(admin)
    async with WebUser(cloud.url) as web:
        # Even the login form: without its token, nothing is tried.
        await web.get("/login")
        refused = await web.post(
            "/login",
            {"user": someone.name, "password": someone.password, "project": someone.project},
            csrf=False,
        )
        assert refused.status == 403
        await web.login(someone.name, someone.password, someone.project)
        assert (await web.post("/logout", {}, csrf=False)).status == 403
        assert (await web.post("/logout", {"csrf_token": "not-the-token"}, csrf=False)).status == 403
        launch = {"name": "x", "image": "i", "flavor": "f", "network": "", "key_name": ""}
        assert (
            await web.post("/servers", launch | {"csrf_token": web.csrf[:-1] + "A"}, csrf=False)
        ).status == 403
        # Still signed in: the refusals changed nothing.
        assert (await web.get("/overview")).status == 200
    async with WebUser(cloud.url) as stranger:  # no session at all
        assert (await stranger.post("/logout", {"csrf_token": "x"}, csrf=False)).status == 403


async def test_logout_revokes_the_token_and_the_old_cookie_gets_the_login_page(
    cloud: Cloud, admin: Client
) -> None:
    someone, _ = await person(admin)
    async with WebUser(cloud.url) as web:
        await web.login(someone.name, someone.password, someone.project)
        token = next(t for t in sessions_of(cloud).tokens() if t.user_name == someone.name)
        status, _, _ = await api_call("GET", f"{cloud.url}/compute/v2.1/servers", token.id)
        assert status == 200
        old_cookie = web.cookie()
        page = await web.post("/logout", {})
        assert (page.status, page.location) == (303, "/dashboard/login")
        status, _, _ = await api_call("GET", f"{cloud.url}/compute/v2.1/servers", token.id)
        assert status == 401, "the token must be revoked at logout"
    async with aiohttp.ClientSession() as http:
        headers = {"Cookie": f"fabric_dashboard={old_cookie}"}
        async with http.get(
            f"{cloud.url}/dashboard/overview", headers=headers, allow_redirects=False
        ) as resp:
            assert (resp.status, resp.headers["Location"]) == (303, "/dashboard/login")


async def test_the_project_switcher_rescopes_and_revokes_the_old_token(cloud: Cloud, admin: Client) -> None:
    someone, project_ids = await person(admin, projects=2)
    other = await admin.identity.get_project(project_ids[1])
    async with WebUser(cloud.url) as web:
        await web.login(someone.name, someone.password, someone.project)
        overview = await web.get("/overview")
        assert other.name in overview.text  # offered by the switcher
        old = next(t for t in sessions_of(cloud).tokens() if t.user_name == someone.name)
        page = await web.post("/project", {"project_id": other.id})
        assert page.status == 303
        overview = await web.get("/overview")
        assert f"Overview of {other.name}" in overview.text
        await asyncio.sleep(0.3)  # the old token is revoked in the background
        status, _, _ = await api_call("GET", f"{cloud.url}/compute/v2.1/servers", old.id)
        assert status == 401


async def test_the_launch_form_shows_the_api_message_beside_the_field(cloud: Cloud, admin: Client) -> None:
    someone, _ = await person(admin)
    image, flavor = await image_and_flavor(admin)
    async with WebUser(cloud.url) as web:
        await web.login(someone.name, someone.password, someone.project)
        await web.get("/servers/new")
        typed = {"name": "", "image": image, "flavor": flavor, "network": "", "key_name": ""}
        page = await web.post("/servers", typed)
        assert page.status == 400
        assert 'id="name-error"' in page.text and "server.name" in page.text
        assert f'<option value="{flavor}" selected>' in page.text, "the form keeps what was chosen"
        typed = {
            "name": "kept-name",
            "image": str(uuid.uuid4()),
            "flavor": flavor,
            "network": "",
            "key_name": "",
        }
        page = await web.post("/servers", typed)
        assert page.status in (400, 404), page.text[:500]
        assert 'id="image-error"' in page.text
        assert 'value="kept-name"' in page.text


async def test_a_server_no_host_can_take_shows_the_schedulers_explanation(
    cloud: Cloud, admin: Client
) -> None:
    someone, project_ids = await person(admin)
    await admin.compute.set_quotas(project_ids[0], cores=-1, ram=-1)
    image, flavor = await image_and_flavor(admin, vcpus=512, ram=1024 * 1024)
    async with WebUser(cloud.url) as web:
        await web.login(someone.name, someone.password, someone.project)
        await web.get("/servers/new")
        page = await web.post(
            "/servers", {"name": "huge", "image": image, "flavor": flavor, "network": "", "key_name": ""}
        )
        assert page.status == 303, page.text[:500]
        assert page.location is not None
        detail = None
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            detail = await web.get(page.location.removeprefix("/dashboard"))
            if 'id="fault"' in detail.text:
                break
            await asyncio.sleep(0.2)
        assert detail is not None and 'id="fault"' in detail.text, detail.text if detail else None
        fault = re.search(r'id="fault">([^<]+)<', detail.text)
        assert fault and "host" in fault.group(1).lower(), fault


async def _events(cloud: Cloud, web: WebUser, topics: str, into: list[tuple[str, Any]]) -> None:
    async with web.http.get(f"{cloud.url}/dashboard/events?topics={topics}&since={time.time()}") as resp:
        assert resp.status == 200 and resp.content_type == "text/event-stream"
        kind = ""
        async for line in resp.content:
            text = line.decode().rstrip("\n")
            if text.startswith("event: "):
                kind = text[7:]
            elif text.startswith("data: "):
                into.append((kind, orjson.loads(text[6:])))


async def test_the_live_stream_shows_own_servers_only(cloud: Cloud, admin: Client) -> None:
    alice, _ = await person(admin)
    bob, _ = await person(admin)
    image, flavor = await image_and_flavor(admin)
    alice_events: list[tuple[str, Any]] = []
    bob_events: list[tuple[str, Any]] = []
    async with WebUser(cloud.url) as a, WebUser(cloud.url) as b:
        await a.login(alice.name, alice.password, alice.project)
        await b.login(bob.name, bob.password, bob.project)
        streams = [
            asyncio.create_task(_events(cloud, a, "servers,volumes,hosts", alice_events)),
            asyncio.create_task(_events(cloud, b, "servers,volumes,hosts", bob_events)),
        ]
        try:
            await asyncio.sleep(0.3)
            await a.get("/servers/new")
            launched = await a.post(
                "/servers", {"name": "live", "image": image, "flavor": flavor, "network": "", "key_name": ""}
            )
            assert launched.status == 303
            server_id = (launched.location or "").rsplit("/", 1)[-1]
            await eventually(
                lambda: any(d.get("status") == "ACTIVE" for _, d in alice_events if d.get("id") == server_id)
            )
            statuses = [d["status"] for k, d in alice_events if k == "server" and d["id"] == server_id]
            assert statuses and statuses[-1] == "ACTIVE", alice_events
            page = await a.post(f"/servers/{server_id}/action", {"action": "delete", "name": "live"})
            assert page.status == 303
            await eventually(
                lambda: any(d.get("status") == "DELETED" for _, d in alice_events if d.get("id") == server_id)
            )
            assert any(d.get("status") == "DELETED" for k, d in alice_events if d.get("id") == server_id)
        finally:
            for task in streams:
                task.cancel()
            await asyncio.gather(*streams, return_exceptions=True)
    assert not any(d.get("id") == server_id for _, d in bob_events), bob_events
    # Neither is an admin: no host's capacity reaches them.
    assert not any(kind == "host" for kind, _ in alice_events + bob_events)


async def test_admins_get_capacity_reports_on_their_stream(cloud: Cloud, admin: Client) -> None:
    got: list[tuple[str, Any]] = []
    async with WebUser(cloud.url) as web:
        await web.login(
            cloud.settings.admin_user, cloud.settings.admin_password, cloud.settings.admin_project
        )
        fleet = await web.get("/fleet")
        assert fleet.status == 200 and "fake-00001" in fleet.text
        stream = asyncio.create_task(_events(cloud, web, "hosts", got))
        try:
            await eventually(lambda: any(k == "host" for k, _ in got), timeout_s=10)
        finally:
            stream.cancel()
            await asyncio.gather(stream, return_exceptions=True)
    hosts = [d for k, d in got if k == "host"]
    assert hosts and {"host", "vcpus", "vcpus_used", "memory_mb", "local_gb_used"} <= set(hosts[0])


async def test_a_member_is_refused_the_fleet_by_the_api(cloud: Cloud, admin: Client) -> None:
    someone, _ = await person(admin)
    async with WebUser(cloud.url) as web:
        await web.login(someone.name, someone.password, someone.project)
        page = await web.get("/fleet")
        assert page.status == 403 and "Fleet</a>" not in page.text


async def test_a_reader_sees_no_launch_button_and_a_forged_launch_is_refused_by_the_api(
    cloud: Cloud, admin: Client
) -> None:
    reader, _ = await person(admin, role="reader")
    image, flavor = await image_and_flavor(admin)
    async with WebUser(cloud.url) as web:
        await web.login(reader.name, reader.password, reader.project)
        servers = await web.get("/servers")
        assert servers.status == 200 and 'id="launch"' not in servers.text
        volumes = await web.get("/volumes")
        assert 'id="volume-create"' not in volumes.text
        forged = {"name": "sneaky", "image": image, "flavor": flavor, "network": "", "key_name": ""}
        page = await web.post("/servers", forged)
        assert page.status == 403, page.text[:500]
        assert 'id="form-error"' in page.text and 'value="sneaky"' in page.text
