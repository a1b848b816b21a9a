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
from tests.integration.dashboard_support import (
    WebUser,
    eventually,
    external_network,
    image_and_flavor,
    person,
    sessions_of,
    unique,
)
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
        # One character off (a token ending in "A" would otherwise be sent unchanged, 1 in 64).
        wrong = web.csrf[:-1] + ("B" if web.csrf.endswith("A") else "A")
        assert (await web.post("/servers", launch | {"csrf_token": wrong}, csrf=False)).status == 403
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
        # The simulated hosts register over the bus as the cloud starts: when this test runs
        # first, the page may come before the first report.
        deadline = time.monotonic() + 10
        fleet = await web.get("/fleet")
        while "fake-00001" not in fleet.text and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
            fleet = await web.get("/fleet")
        assert fleet.status == 200 and "fake-00001" in fleet.text
        assert 'role="meter" aria-label="vCPUs of fake-00001"' in fleet.text
        stream = asyncio.create_task(_events(cloud, web, "hosts", got))
        try:
            await eventually(lambda: any(k == "host" for k, _ in got), timeout_s=10)
        finally:
            stream.cancel()
            await asyncio.gather(stream, return_exceptions=True)
    hosts = [d for k, d in got if k == "host"]
    assert hosts and {"host", "vcpus", "vcpus_used", "memory_mb", "local_gb_used"} <= set(hosts[0])


async def test_the_fleet_page_asks_the_scheduler_where_a_flavor_would_fit(
    cloud: Cloud, admin: Client
) -> None:
    _, small = await image_and_flavor(admin)
    huge = await admin.compute.create_flavor(unique("dash-huge"), vcpus=4096, ram=256, disk=1)
    s = cloud.settings
    async with WebUser(cloud.url) as web:
        await web.login(s.admin_user, s.admin_password, s.admin_project)
        fleet = await web.get("/fleet")
        assert f'<option value="{small}">' in fleet.text and f'<option value="{huge["id"]}">' in fleet.text
        fits = await web.post("/fleet/explain", {"flavor": small})
        assert fits.status == 200 and 'id="explanation"' in fits.text
        assert re.search(r"<p>Best hosts: [^<]*fake-00001", fits.text), fits.text[-1500:]
        assert f'<option value="{small}" selected>' in fits.text
        nowhere = await web.post("/fleet/explain", {"flavor": huge["id"]})
        assert nowhere.status == 200 and "Best hosts" not in nowhere.text
        assert re.search(r"<li>VCPUFilter turned away [1-9]\d*</li>", nowhere.text), nowhere.text[-1500:]
        unknown = await web.post("/fleet/explain", {"flavor": "no-such-flavor"})
        assert unknown.status == 200 and 'class="flash error" role="alert"' in unknown.text
        assert "no-such-flavor" in unknown.text


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


# --- networks, images, DNS --------------------------------------------------------------------


async def _signed_in(cloud: Cloud, admin: Client, web: WebUser) -> tuple[str, str]:
    """Signs a fresh member in on `web`: (their token, their project id)."""
    someone, _ = await person(admin)
    await web.login(someone.name, someone.password, someone.project)
    token = next(t for t in sessions_of(cloud).tokens() if t.user_name == someone.name)
    return token.id, someone.project_id


async def _api(cloud: Cloud, token: str, path: str) -> Any:
    status, body, _ = await api_call("GET", f"{cloud.url}{path}", token)
    assert status == 200, body
    return body


async def test_the_networks_page_makes_a_network_with_a_subnet_and_deletes_it(
    cloud: Cloud, admin: Client
) -> None:
    async with WebUser(cloud.url) as web:
        token, _ = await _signed_in(cloud, admin, web)
        page = await web.get("/networks")
        assert page.status == 200 and 'id="network-create"' in page.text
        made = await web.post("/networks", {"name": "web-net", "cidr": "10.42.0.0/24", "enable_dhcp": "on"})
        assert (made.status, made.location) == (303, "/dashboard/networks"), made.text[:500]
        page = await web.get("/networks")
        assert "web-net" in page.text and "10.42.0.0/24" in page.text
        networks = (await _api(cloud, token, "/network/v2.0/networks?name=web-net"))["networks"]
        assert len(networks) == 1
        # A bad CIDR: the message beside the field, what was typed kept, no network left behind.
        page = await web.post("/networks", {"name": "bad-net", "cidr": "10.1.2.300/24", "enable_dhcp": "on"})
        assert page.status == 400, page.text[:500]
        assert 'id="cidr-error"' in page.text and 'value="10.1.2.300/24"' in page.text
        assert 'value="bad-net"' in page.text
        assert not (await _api(cloud, token, "/network/v2.0/networks?name=bad-net"))["networks"]
        gone = await web.post(f"/networks/{networks[0]['id']}/delete", {"name": "web-net"})
        assert gone.status == 303
        assert not (await _api(cloud, token, "/network/v2.0/networks?name=web-net"))["networks"]


async def test_routers_get_a_gateway_and_interfaces_and_floating_ips_reach_a_server(
    cloud: Cloud, admin: Client
) -> None:
    ext_id, ext_name = await external_network(admin, "198.18.10.0/24")
    image, flavor = await image_and_flavor(admin)
    async with WebUser(cloud.url) as web:
        token, _ = await _signed_in(cloud, admin, web)
        await web.get("/networks")
        await web.post("/networks", {"name": "inside", "cidr": "10.43.0.0/24", "enable_dhcp": "on"})
        net = (await _api(cloud, token, "/network/v2.0/networks?name=inside"))["networks"][0]
        subnet_id = net["subnets"][0]
        routers = await web.get("/routers")
        assert ext_name in routers.text
        # A gateway on a network that is not external: the API's message beside the select.
        page = await web.post("/routers", {"name": "r-bad", "network_id": net["id"]})
        assert page.status == 400 and 'id="network_id-error"' in page.text, page.text[:800]
        assert "not external" in page.text and 'value="r-bad"' in page.text
        page = await web.post("/routers", {"name": "r1", "network_id": ext_id})
        assert page.status == 303, page.text[:500]
        router = (await _api(cloud, token, "/network/v2.0/routers?name=r1"))["routers"][0]
        assert router["external_gateway_info"]["network_id"] == ext_id
        page = await web.post(
            f"/routers/{router['id']}/action", {"action": "add_interface", "subnet_id": subnet_id}
        )
        assert page.status == 303
        routers = await web.get("/routers")
        assert "10.43.0.1" in routers.text and "198.18.10." in routers.text

        await web.get("/servers/new")
        launched = await web.post(
            "/servers",
            {"name": "fip-vm", "image": image, "flavor": flavor, "network": net["id"], "key_name": ""},
        )
        assert launched.status == 303, launched.text[:500]
        server_id = (launched.location or "").rsplit("/", 1)[-1]

        # A floating IP from a network that is not external: refused beside the field.
        await web.get("/floating-ips")
        page = await web.post("/floating-ips", {"network_id": net["id"]})
        assert page.status == 400 and 'id="network_id-error"' in page.text, page.text[:800]
        page = await web.post("/floating-ips", {"network_id": ext_id})
        assert page.status == 303
        fip = (await _api(cloud, token, "/network/v2.0/floatingips"))["floatingips"][0]
        ports = (await _api(cloud, token, f"/network/v2.0/ports?device_id={server_id}"))["ports"]
        listing = await web.get("/floating-ips")
        assert f'<option value="{ports[0]["id"]}">fip-vm' in listing.text
        page = await web.post(
            f"/floating-ips/{fip['id']}/action", {"action": "associate", "port_id": ports[0]["id"]}
        )
        assert page.status == 303
        listing = await web.get("/floating-ips")
        assert "fip-vm (" in listing.text and "Disassociate" in listing.text, listing.text
        topology = await web.get("/network-topology")
        assert topology.status == 200 and "<svg" in topology.text
        assert "inside" in topology.text and "r1" in topology.text and "fip-vm" in topology.text
        assert f'data-server="{server_id}"' in topology.text and f'data-network="{ext_id}"' in topology.text
        page = await web.post(f"/floating-ips/{fip['id']}/action", {"action": "disassociate"})
        assert page.status == 303
        assert (await _api(cloud, token, f"/network/v2.0/floatingips/{fip['id']}"))["floatingip"][
            "port_id"
        ] is None
        page = await web.post(f"/floating-ips/{fip['id']}/action", {"action": "release"})
        assert page.status == 303
        assert not (await _api(cloud, token, "/network/v2.0/floatingips"))["floatingips"]
        await web.post(f"/servers/{server_id}/action", {"action": "delete", "name": "fip-vm"})
        page = await web.post(
            f"/routers/{router['id']}/action", {"action": "remove_interface", "subnet_id": subnet_id}
        )
        assert page.status == 303
        assert "10.43.0.1" not in (await web.get("/routers")).text


async def test_the_topology_picture_escapes_names(cloud: Cloud, admin: Client) -> None:
    async with WebUser(cloud.url) as web:
        await _signed_in(cloud, admin, web)
        await web.get("/networks")
        page = await web.post("/networks", {"name": "<script>x</script>", "cidr": "10.44.0.0/24"})
        assert page.status == 303
        picture = await web.get("/network-topology")
        assert "&lt;script&gt;x&lt;/script&gt;" in picture.text and "<script>x" not in picture.text


async def test_security_groups_take_rules_and_a_bad_rule_is_shown_in_its_form(
    cloud: Cloud, admin: Client
) -> None:
    async with WebUser(cloud.url) as web:
        token, project_id = await _signed_in(cloud, admin, web)
        await web.get("/security-groups")
        page = await web.post("/security-groups", {"name": "web", "description": "http in"})
        assert page.status == 303, page.text[:500]
        group = (await _api(cloud, token, f"/network/v2.0/security-groups?name=web&project_id={project_id}"))[
            "security_groups"
        ][0]
        rule = {"direction": "ingress", "protocol": "tcp", "port_range_min": "80", "port_range_max": "80",
                "remote_ip_prefix": "0.0.0.0/0"}  # fmt: skip
        page = await web.post(f"/security-groups/{group['id']}/rules", rule)
        assert page.status == 303, page.text[:500]
        listing = await web.get("/security-groups")
        assert "<td>0.0.0.0/0</td>" in listing.text
        bad = rule | {"port_range_min": "90", "port_range_max": "85"}
        page = await web.post(f"/security-groups/{group['id']}/rules", bad)
        assert page.status == 400, page.text[:500]
        assert f'id="rule-{group["id"]}-port_range_min-error"' in page.text
        assert (
            f'id="rule-{group["id"]}-port_range_max" name="port_range_max" size="5" value="85"' in page.text
        )
        rules = await _api(
            cloud, token, f"/network/v2.0/security-group-rules?security_group_id={group['id']}"
        )
        http_rule = next(r for r in rules["security_group_rules"] if r["port_range_min"] == 80)
        page = await web.post(
            f"/security-groups/{group['id']}/action", {"action": "delete_rule", "rule_id": http_rule["id"]}
        )
        assert page.status == 303
        assert f'data-rule="{http_rule["id"]}"' not in (await web.get("/security-groups")).text


async def test_images_upload_streamed_or_posted_and_change_visibility(cloud: Cloud, admin: Client) -> None:
    async with WebUser(cloud.url) as web:
        token, _ = await _signed_in(cloud, admin, web)
        page = await web.get("/images")
        assert page.status == 200 and 'id="image-form"' in page.text
        # As the page's script does it: the fields first, then the file as a streamed body.
        fields = {"name": "streamed", "disk_format": "raw", "visibility": "private", "csrf_token": web.csrf}
        async with web.http.post(
            f"{cloud.url}/dashboard/images", data=fields, headers={"Accept": "application/json"}
        ) as resp:
            assert resp.status == 201, await resp.text()
            made = await resp.json()

        async def chunks() -> Any:
            for _ in range(4):
                yield b"\1" * 300_000

        async with web.http.put(
            f"{cloud.url}{made['upload']}",
            data=chunks(),
            headers={"X-CSRF-Token": web.csrf, "Content-Type": "application/octet-stream"},
        ) as resp:
            assert resp.status == 200, await resp.text()
        image = await _api(cloud, token, f"/image/v2/images/{made['id']}")
        assert (image["status"], image["size"]) == ("active", 1_200_000)

        # Without a script: one multipart post, as a browser sends the form (the CSRF token, its
        # first field, first), streamed through: larger than the gateway's 1 MiB body limit.
        def plain_form(token_first: bool) -> aiohttp.FormData:
            form = aiohttp.FormData()
            if token_first:
                form.add_field("csrf_token", web.csrf)
            for name, value in {"name": "posted", "disk_format": "raw", "visibility": "private"}.items():
                form.add_field(name, value)
            if not token_first:
                form.add_field("csrf_token", web.csrf)
            data = b"\2" * 3_000_000
            form.add_field("file", data, filename="disk.raw", content_type="application/octet-stream")
            return form

        async with web.http.post(
            f"{cloud.url}/dashboard/images", data=plain_form(False), allow_redirects=False
        ) as resp:
            assert resp.status == 403, "the token must come first, before any file"
        async with web.http.post(
            f"{cloud.url}/dashboard/images", data=plain_form(True), allow_redirects=False
        ) as resp:
            assert resp.status == 303, await resp.text()
        posted = (await _api(cloud, token, "/image/v2/images?name=posted"))["images"][0]
        assert (posted["status"], posted["size"]) == ("active", 3_000_000)
        listing = await web.get("/images")
        assert "streamed" in listing.text and "posted" in listing.text
        # Bad input: the API's message beside the field, what was typed kept.
        page = await web.post("/images", {"name": "odd", "disk_format": "raw", "visibility": "everyone"})
        assert page.status == 400, page.text[:500]
        assert 'id="visibility-error"' in page.text and 'value="odd"' in page.text
        # A member may share an image but not publicize it: the API's refusal, shown.
        page = await web.post(
            f"/images/{posted['id']}/visibility", {"visibility": "shared", "name": "posted"}
        )
        assert page.status == 303
        assert (await _api(cloud, token, f"/image/v2/images/{posted['id']}"))["visibility"] == "shared"
        page = await web.post(
            f"/images/{posted['id']}/visibility", {"visibility": "public", "name": "posted"}
        )
        assert page.status == 303
        listing = await web.get("/images")
        assert "Cannot make posted public" in listing.text


async def test_dns_zones_and_recordsets(cloud: Cloud, admin: Client) -> None:
    zone_name = f"{uuid.uuid4().hex[:10]}.dash.test."
    async with WebUser(cloud.url) as web:
        token, _ = await _signed_in(cloud, admin, web)
        page = await web.get("/dns")
        assert page.status == 200 and 'id="zone-create"' in page.text
        page = await web.post("/dns", {"name": zone_name, "email": "", "ttl": ""})
        assert page.status == 400 and 'id="email-error"' in page.text, page.text[:800]
        assert f'value="{zone_name}"' in page.text
        page = await web.post("/dns", {"name": zone_name, "email": "hostmaster@dash.test", "ttl": "600"})
        assert page.status == 303, page.text[:500]
        zone = (await _api(cloud, token, f"/dns/v2/zones?name={zone_name}"))["zones"][0]
        detail = await web.get(f"/dns/{zone['id']}")
        assert detail.status == 200 and ">SOA<" in detail.text and ">NS<" in detail.text
        page = await web.post(
            f"/dns/{zone['id']}/recordsets",
            {"name": "www", "type": "A", "records": "not-an-address", "ttl": ""},
        )
        assert page.status == 400 and 'id="records-error"' in page.text, page.text[:800]
        assert "not-an-address</textarea>" in page.text
        page = await web.post(
            f"/dns/{zone['id']}/recordsets",
            {"name": "www", "type": "A", "records": "192.0.2.10\n192.0.2.11", "ttl": "300"},
        )
        assert page.status == 303, page.text[:500]
        detail = await web.get(f"/dns/{zone['id']}")
        assert f"www.{zone_name}" in detail.text and "192.0.2.11" in detail.text
        rs = (await _api(cloud, token, f"/dns/v2/zones/{zone['id']}/recordsets?type=A"))["recordsets"][0]
        page = await web.post(f"/dns/{zone['id']}/recordsets/{rs['id']}/delete", {"name": "A www"})
        assert page.status == 303
        assert not (await _api(cloud, token, f"/dns/v2/zones/{zone['id']}/recordsets?type=A"))["recordsets"]
        page = await web.post(f"/dns/{zone['id']}/delete", {"name": zone_name})
        assert page.status == 303
        assert f'data-zone="{zone["id"]}"' not in (await web.get("/dns")).text


async def test_a_reader_sees_no_create_forms_on_the_network_image_and_dns_pages(
    cloud: Cloud, admin: Client
) -> None:
    reader, _ = await person(admin, role="reader")
    async with WebUser(cloud.url) as web:
        await web.login(reader.name, reader.password, reader.project)
        for path, button in (
            ("/networks", "network-create"),
            ("/routers", "router-create"),
            ("/floating-ips", "fip-allocate"),
            ("/security-groups", "group-create"),
            ("/images", "image-create"),
            ("/dns", "zone-create"),
        ):
            page = await web.get(path)
            assert page.status == 200 and f'id="{button}"' not in page.text, (path, page.text[:300])
        assert (await web.get("/network-topology")).status == 200
        forged = await web.post("/networks", {"name": "sneaky", "cidr": "10.9.0.0/24"})
        assert forged.status == 403 and 'id="form-error"' in forged.text, forged.text[:500]


async def test_the_upload_script_gets_the_apis_refusal_as_json_by_field(cloud: Cloud, admin: Client) -> None:
    async with WebUser(cloud.url) as web:
        await _signed_in(cloud, admin, web)
        await web.get("/images")
        fields = {"name": "odd", "disk_format": "raw", "visibility": "everyone", "csrf_token": web.csrf}
        async with web.http.post(
            f"{cloud.url}/dashboard/images", data=fields, headers={"Accept": "application/json"}
        ) as resp:
            assert resp.status == 400
            body = await resp.json()
        assert set(body["errors"]) == {"visibility"} and body["message"] is None
        # The streamed upload needs the CSRF header like any other change.
        async with web.http.put(f"{cloud.url}/dashboard/images/{uuid.uuid4()}/file", data=b"x") as resp:
            assert resp.status == 403
