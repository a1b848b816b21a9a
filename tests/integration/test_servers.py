"""Servers through the gateway on fake hosts: the boot saga, power actions, console, delete."""

import asyncio
import hashlib
import time
import uuid
from typing import Any

import asyncpg
import pytest

from actors.compute import quota_sql
from fabric.client import Client
from fabric.compose import Cloud
from fabric.service import service_context
from protocol.compute import CreateServer, NetworkRequest, QuotaLimitsChanged, ServerView
from protocol.envelope import Context
from protocol.network_agent import GetHostNetworking
from tests.integration.test_identity import Member, member  # noqa: F401 - the fixture
from tests.support import api_call

pytestmark = [pytest.mark.postgres, pytest.mark.amqp]


class Api:
    """Nova and Glance as a client reaches them, with one token."""

    def __init__(self, cloud: Cloud, token: str) -> None:
        self.url = cloud.url
        self.token = token

    async def nova(self, method: str, path: str, json: Any = None) -> tuple[int, Any]:
        status, body, _ = await api_call(method, f"{self.url}/compute/v2.1{path}", self.token, json=json)
        return status, body

    async def glance(self, method: str, path: str, **kw: Any) -> tuple[int, Any]:
        status, body, _ = await api_call(method, f"{self.url}/image/v2{path}", self.token, **kw)
        return status, body

    async def image(self, data: bytes = b"\0" * 4096, **fields: Any) -> dict[str, Any]:
        body = {"name": f"img-{uuid.uuid4().hex[:8]}", "disk_format": "raw", "container_format": "bare"}
        status, image = await self.glance("POST", "/images", json=body | fields)
        assert status == 201, image
        headers = {"Content-Type": "application/octet-stream"}
        status, _ = await self.glance("PUT", f"/images/{image['id']}/file", data=data, headers=headers)
        assert status == 204
        return dict(image)

    async def flavor(self, vcpus: int = 1, ram: int = 512, disk: int = 1) -> dict[str, Any]:
        body = {"flavor": {"name": f"flv-{uuid.uuid4().hex[:8]}", "vcpus": vcpus, "ram": ram, "disk": disk}}
        status, created = await self.nova("POST", "/flavors", body)
        assert status == 200, created
        return dict(created["flavor"])

    async def boot(self, image: str, flavor: str, **fields: Any) -> dict[str, Any]:
        body = {
            "server": {"name": f"vm-{uuid.uuid4().hex[:6]}", "imageRef": image, "flavorRef": flavor} | fields
        }
        status, created = await self.nova("POST", "/servers", body)
        assert status == 202, created
        return dict(created["server"])

    async def wait(self, server_id: str, status: str, *, timeout_s: float = 30.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        last: Any = None
        while time.monotonic() < deadline:
            code, body = await self.nova("GET", f"/servers/{server_id}")
            if status == "DELETED" and code == 404:
                return {}
            assert code == 200, body
            last = body["server"]
            if last["status"] == status and last["OS-EXT-STS:task_state"] is None:
                return dict(last)
            if last["status"] == "ERROR" and status != "ERROR":
                raise AssertionError(f"server went to ERROR: {last.get('fault')}")
            await asyncio.sleep(0.05)
        raise AssertionError(f"server {server_id} not {status} in {timeout_s}s: {last}")


@pytest.fixture
async def api(cloud: Cloud, admin: Client) -> Api:
    assert admin.token is not None
    return Api(cloud, admin.token.id)


async def test_boot_stop_start_reboot_console_delete(api: Api, admin: Client) -> None:
    image, flavor = await api.image(), await api.flavor()
    created = await api.boot(image["id"], flavor["id"])
    assert set(created) >= {"id", "links", "adminPass", "OS-DCF:diskConfig", "security_groups"}
    server = await api.wait(created["id"], "ACTIVE")
    assert (server["OS-EXT-STS:vm_state"], server["OS-EXT-STS:power_state"]) == ("active", 1)
    assert server["flavor"]["id"] == flavor["id"] and server["image"]["id"] == image["id"]
    host = server["OS-EXT-SRV-ATTR:host"]
    assert host and server["hostId"] == hashlib.sha224(f"{server['tenant_id']}{host}".encode()).hexdigest()
    assert server["OS-SRV-USG:launched_at"] is not None

    status, listed = await api.nova("GET", f"/servers/detail?name={server['name']}")
    assert status == 200 and [s["id"] for s in listed["servers"]] == [server["id"]]

    assert (await api.nova("POST", f"/servers/{server['id']}/action", {"os-stop": None}))[0] == 202
    assert (await api.wait(server["id"], "SHUTOFF"))["OS-EXT-STS:power_state"] == 4
    # Stopping a stopped server is a conflict, as in Nova.
    status, body = await api.nova("POST", f"/servers/{server['id']}/action", {"os-stop": None})
    assert status == 409 and "vm_state stopped" in body["conflictingRequest"]["message"]
    assert (await api.nova("POST", f"/servers/{server['id']}/action", {"os-start": None}))[0] == 202
    await api.wait(server["id"], "ACTIVE")
    assert (await api.nova("POST", f"/servers/{server['id']}/action", {"reboot": {"type": "SOFT"}}))[0] == 202
    await api.wait(server["id"], "ACTIVE")

    status, console = await api.nova("POST", f"/servers/{server['id']}/action", {"os-getConsoleOutput": {}})
    assert status == 200 and "FABRIC-GUEST-BOOTED" in console["output"]
    status, one = await api.nova(
        "POST", f"/servers/{server['id']}/action", {"os-getConsoleOutput": {"length": 1}}
    )
    assert status == 200 and one["output"].count("\n") == 1

    since = server["created"]
    assert (await api.nova("DELETE", f"/servers/{server['id']}"))[0] == 204
    await api.wait(server["id"], "DELETED")
    status, body = await api.nova("GET", f"/servers/{server['id']}")
    assert status == 404 and body["itemNotFound"]["code"] == 404
    # Gone from lists, but a client catching up on changes sees it go, as in Nova.
    status, listed = await api.nova("GET", f"/servers/detail?name={server['name']}")
    assert listed["servers"] == []
    status, changed = await api.nova("GET", f"/servers/detail?changes-since={since}&name={server['name']}")
    assert status == 200 and [(s["id"], s["status"]) for s in changed["servers"]] == [
        (server["id"], "DELETED")
    ]
    assert changed["servers"][0]["OS-EXT-STS:vm_state"] == "deleted"
    assert changed["servers"][0]["updated"] >= since
    status, deleted = await api.nova("GET", f"/servers/detail?deleted=True&name={server['name']}")
    assert [s["id"] for s in deleted["servers"]] == [server["id"]]


async def test_hypervisors_and_zones_show_the_fleet(api: Api) -> None:
    deadline = time.monotonic() + 10
    while True:
        status, body = await api.nova("GET", "/os-hypervisors/detail")
        assert status == 200
        names = {h["hypervisor_hostname"] for h in body["hypervisors"]}
        if {"itest-host", "fake-00001", "fake-00003"} <= names or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    assert {"itest-host", "fake-00001", "fake-00002", "fake-00003"} <= names
    one = next(h for h in body["hypervisors"] if h["hypervisor_hostname"] == "fake-00001")
    assert (one["state"], one["status"], one["hypervisor_type"], one["vcpus"]) == (
        "up",
        "enabled",
        "fake",
        32,
    )
    status, shown = await api.nova("GET", f"/os-hypervisors/{one['id']}")
    assert status == 200 and shown["hypervisor"]["hypervisor_hostname"] == "fake-00001"
    assert (await api.nova("GET", "/os-hypervisors/999999999"))[0] == 404
    # One page at a time (Nova's limit/marker), and the fleet's totals summed by the database.
    status, first = await api.nova("GET", "/os-hypervisors/detail?limit=2")
    assert status == 200 and len(first["hypervisors"]) == 2
    next_href = first["hypervisors_links"][0]["href"]
    assert f"marker={first['hypervisors'][-1]['id']}" in next_href and "limit=2" in next_href
    marker = first["hypervisors"][-1]["id"]
    status, second = await api.nova("GET", f"/os-hypervisors/detail?limit=2&marker={marker}")
    assert status == 200 and all(h["id"] > marker for h in second["hypervisors"])
    for bad in ("limit=0", "limit=x", "limit=2&marker=x", "marker=3"):
        assert (await api.nova("GET", f"/os-hypervisors/detail?{bad}"))[0] == 400, bad
    status, stats = await api.nova("GET", "/os-hypervisors/statistics")
    _, everything = await api.nova("GET", "/os-hypervisors/detail")
    totals = stats["hypervisor_statistics"]
    assert status == 200 and totals["count"] == len(everything["hypervisors"])
    assert totals["vcpus"] == sum(h["vcpus"] for h in everything["hypervisors"])
    status, zones = await api.nova("GET", "/os-availability-zone")
    assert status == 200
    assert {"zoneName": "nova", "zoneState": {"available": True}, "hosts": None} in zones[
        "availabilityZoneInfo"
    ]


async def test_no_valid_host_says_why(api: Api) -> None:
    image = await api.image()
    huge = await api.flavor(disk=100000)
    created = await api.boot(image["id"], huge["id"])
    server = await api.wait(created["id"], "ERROR")
    assert "No valid host was found" in server["fault"]["message"]
    assert "DiskFilter" in server["fault"]["message"]
    status, explained = await api.nova("POST", "/os-scheduler/explain", {"flavorRef": huge["id"]})
    assert status == 200 and explained["explanation"]["candidates"] == []
    assert explained["explanation"]["rejected"]["DiskFilter"] >= 4
    assert (await api.nova("DELETE", f"/servers/{server['id']}"))[0] == 204
    await api.wait(server["id"], "DELETED")


async def login(cloud: Cloud, admin: Client, who: Member) -> Api:
    async with Client(
        admin.auth_url, username=who.name, password=who.password, project_name=who.project_name
    ) as client:
        assert client.token is not None
        return Api(cloud, client.token.id)


async def test_projects_cannot_see_or_touch_each_others_servers(
    cloud: Cloud,
    api: Api,
    admin: Client,
    member: Member,  # noqa: F811
) -> None:
    other = await login(cloud, admin, member)
    image, flavor = await api.image(), await api.flavor()  # private to the admin project
    mine = await api.wait((await api.boot(image["id"], flavor["id"]))["id"], "ACTIVE")
    for method, path, body in (
        ("GET", f"/servers/{mine['id']}", None),
        ("DELETE", f"/servers/{mine['id']}", None),
        ("POST", f"/servers/{mine['id']}/action", {"os-stop": None}),
        ("POST", f"/servers/{mine['id']}/action", {"os-getConsoleOutput": {}}),
    ):
        status, answer = await other.nova(method, path, body)
        assert status == 404, (method, path, answer)
    status, listed = await other.nova("GET", "/servers/detail")
    assert status == 200 and mine["id"] not in {s["id"] for s in listed["servers"]}
    status, listed = await other.nova("GET", "/servers/detail?all_tenants=1")
    assert status == 404 or mine["id"] not in {s["id"] for s in listed["servers"]}
    # The admin's private image and flavor are not theirs to boot from.
    public = await api.flavor()
    status, body = await other.nova(
        "POST", "/servers", {"server": {"name": "x", "imageRef": image["id"], "flavorRef": "1-nope"}}
    )
    assert status == 400 and "flavorRef" in body["badRequest"]["message"]
    status, body = await other.nova(
        "POST", "/servers", {"server": {"name": "x", "imageRef": image["id"], "flavorRef": public["id"]}}
    )
    assert status == 400 and "could not be found" in body["badRequest"]["message"]
    # Admins see every project's servers when they ask.
    status, listed = await api.nova("GET", "/servers/detail?all_tenants=True")
    assert status == 200 and mine["id"] in {s["id"] for s in listed["servers"]}
    await api.nova("DELETE", f"/servers/{mine['id']}")
    await api.wait(mine["id"], "DELETED")
    status, changed = await other.nova("GET", f"/servers/detail?changes-since={mine['created']}")
    assert status == 200 and mine["id"] not in {s["id"] for s in changed["servers"]}  # not theirs


async def test_a_reader_cannot_create(cloud: Cloud, api: Api, admin: Client, member: Member) -> None:  # noqa: F811
    role = await admin.identity.role("reader")
    member_role = await admin.identity.role("member")
    await admin.identity.revoke(member_role.id, member.user_id, project_id=member.project_id)
    await admin.identity.grant(role.id, member.user_id, project_id=member.project_id)
    reader = await login(cloud, admin, member)
    image = await api.image(visibility="public")
    flavor = await api.flavor()
    body = {"server": {"name": "r", "imageRef": image["id"], "flavorRef": flavor["id"]}}
    status, answer = await reader.nova("POST", "/servers", body)
    assert status == 403 and answer["forbidden"]["code"] == 403
    assert (await reader.nova("POST", "/os-keypairs", {"keypair": {"name": "k"}}))[0] == 403
    assert (await reader.nova("GET", "/servers"))[0] == 200


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "server"),
        ({"server": {"imageRef": "x", "flavorRef": "1"}}, "server.name"),
        ({"server": {"name": "", "imageRef": "x", "flavorRef": "1"}}, "server.name"),
        ({"server": {"name": "a", "imageRef": "x"}}, "server.flavorRef"),
        ({"server": {"name": "a", "flavorRef": "1"}}, "server.imageRef"),
        ({"server": {"name": "a", "imageRef": "x", "flavorRef": "1", "min_count": 0}}, "server.min_count"),
        (
            {"server": {"name": "a", "imageRef": "x", "flavorRef": "1", "metadata": {"k": 1}}},
            "server.metadata.k",
        ),
        ({"server": {"name": "a", "imageRef": "x", "flavorRef": "1", "networks": "none"}}, "server.networks"),
        (
            {
                "server": {
                    "name": "a",
                    "imageRef": "x",
                    "flavorRef": "1",
                    "networks": [{"fixed_ip": "10.0.0.1"}],
                }
            },
            "server.networks[0]",
        ),
        ({"server": {"name": "a", "imageRef": "no-such-image", "flavorRef": "1"}}, "flavorRef"),
    ],
)
async def test_bad_server_bodies_are_refused_by_field(api: Api, body: dict[str, Any], field: str) -> None:
    status, answer = await api.nova("POST", "/servers", body)
    assert status == 400, answer
    assert field in answer["badRequest"]["message"]


async def test_a_boot_sees_an_image_change_at_once(api: Api) -> None:
    """Compute keeps the images it boots from; the image service's `ImageChanged` makes it
    forget one the moment it changes, so the next boot is checked against the image as it is."""
    image, flavor = await api.image(), await api.flavor(ram=512)
    first = await api.boot(image["id"], flavor["id"])  # compute now keeps the image
    patch = [{"op": "replace", "path": "/min_ram", "value": 4096}]
    headers = {"Content-Type": "application/openstack-images-v2.1-json-patch"}
    status, _ = await api.glance("PATCH", f"/images/{image['id']}", json=patch, headers=headers)
    assert status == 200
    body = {"server": {"name": "too-small", "imageRef": image["id"], "flavorRef": flavor["id"]}}
    deadline = time.monotonic() + 5  # the event travels through the broker after the PATCH's 200
    while True:
        status, answer = await api.nova("POST", "/servers", body)
        if status == 400 or time.monotonic() > deadline:
            break
        assert status == 202
        await api.nova("DELETE", f"/servers/{answer['server']['id']}")
        await asyncio.sleep(0.05)
    assert status == 400 and "smaller than image" in answer["badRequest"]["message"], answer
    status, _ = await api.glance("DELETE", f"/images/{image['id']}")
    assert status == 204
    body["server"]["name"] = "gone"
    deadline = time.monotonic() + 5
    while True:
        status, answer = await api.nova("POST", "/servers", body)
        if status == 400 or time.monotonic() > deadline:
            break
        await api.nova("DELETE", f"/servers/{answer['server']['id']}")
        await asyncio.sleep(0.05)
    assert status == 400 and "could not be found" in answer["badRequest"]["message"], answer
    await api.nova("DELETE", f"/servers/{first['id']}")


async def test_unknown_image_and_malformed_json(api: Api) -> None:
    flavor = await api.flavor()
    body = {"server": {"name": "a", "imageRef": str(uuid.uuid4()), "flavorRef": flavor["id"]}}
    status, answer = await api.nova("POST", "/servers", body)
    assert status == 400 and "imageRef" in answer["badRequest"]["message"]
    status, _, _ = await api_call(
        "POST",
        f"{api.url}/compute/v2.1/servers",
        api.token,
        data=b"{not json",
        headers={"Content-Type": "application/json"},
    )
    assert status == 400
    status, answer = await api.nova("POST", f"/servers/{uuid.uuid4()}/action", {"os-frobnicate": None})
    assert status == 400 and "no such action" in answer["badRequest"]["message"]


async def test_quotas_are_checked_and_negative_ones_refused(
    cloud: Cloud,
    api: Api,
    admin: Client,
    member: Member,  # noqa: F811
) -> None:
    assert (await api.nova("PUT", f"/os-quota-sets/{member.project_id}", {"quota_set": {"instances": -2}}))[
        0
    ] == 400
    assert (await api.nova("PUT", f"/os-quota-sets/{member.project_id}", {"quota_set": {"bogus": 1}}))[
        0
    ] == 400
    status, quotas = await api.nova(
        "PUT", f"/os-quota-sets/{member.project_id}", {"quota_set": {"instances": 1}}
    )
    assert status == 200 and quotas["quota_set"]["instances"] == 1
    user = await login(cloud, admin, member)
    assert (await user.nova("PUT", f"/os-quota-sets/{member.project_id}", {"quota_set": {"instances": 5}}))[
        0
    ] == 403
    image = await api.image(visibility="public")
    flavor = await api.flavor()
    first = await user.boot(image["id"], flavor["id"])
    status, answer = await user.nova(
        "POST", "/servers", {"server": {"name": "two", "imageRef": image["id"], "flavorRef": flavor["id"]}}
    )
    assert status == 413 and "instances" in answer["overLimit"]["message"]
    status, listed = await user.nova("GET", "/servers")
    assert [s["id"] for s in listed["servers"]] == [first["id"]]  # nothing half-created
    status, limits = await user.nova("GET", "/limits")
    assert limits["limits"]["absolute"]["totalInstancesUsed"] == 1
    assert limits["limits"]["absolute"]["maxTotalInstances"] == 1
    await user.nova("DELETE", f"/servers/{first['id']}")
    await user.wait(first["id"], "DELETED")
    status, detail = await user.nova("GET", f"/os-quota-sets/{member.project_id}/detail")
    assert detail["quota_set"]["instances"] == {"limit": 1, "in_use": 0, "reserved": 0}
    # A limit the project's very first server would already pass names its resource too.
    await api.nova("PUT", f"/os-quota-sets/{member.project_id}", {"quota_set": {"cores": 0}})
    status, answer = await user.nova(
        "POST", "/servers", {"server": {"name": "three", "imageRef": image["id"], "flavorRef": flavor["id"]}}
    )
    assert status == 413 and "cores" in answer["overLimit"]["message"], answer


async def test_creates_racing_for_the_last_of_a_quota_never_pass_it(
    cloud: Cloud,
    api: Api,
    admin: Client,
    member: Member,  # noqa: F811
) -> None:
    await api.nova("PUT", f"/os-quota-sets/{member.project_id}", {"quota_set": {"instances": 3}})
    user = await login(cloud, admin, member)
    image, flavor = await api.image(visibility="public"), await api.flavor()

    async def create(i: int) -> tuple[int, Any]:
        body = {"server": {"name": f"race-{i}", "imageRef": image["id"], "flavorRef": flavor["id"]}}
        return await user.nova("POST", "/servers", body)

    answers = await asyncio.gather(*(create(i) for i in range(12)))
    assert sorted(status for status, _ in answers) == [202] * 3 + [413] * 9, answers
    assert all("instances" in body["overLimit"]["message"] for status, body in answers if status == 413)
    _, limits = await user.nova("GET", "/limits")
    assert limits["limits"]["absolute"]["totalInstancesUsed"] == 3
    _, listed = await user.nova("GET", "/servers")
    assert len(listed["servers"]) == 3
    for server in listed["servers"]:
        await user.nova("DELETE", f"/servers/{server['id']}")


async def test_a_private_flavor_boots_only_in_the_projects_given_it(
    cloud: Cloud,
    api: Api,
    admin: Client,
    member: Member,  # noqa: F811
) -> None:
    body = {"flavor": {"name": f"priv-{uuid.uuid4().hex[:6]}", "vcpus": 1, "ram": 256, "disk": 1}}
    status, made = await api.nova(
        "POST", "/flavors", {"flavor": body["flavor"] | {"os-flavor-access:is_public": False}}
    )
    assert status == 200, made
    flavor = made["flavor"]["id"]
    user = await login(cloud, admin, member)
    image = await api.image(visibility="public")
    server = {"server": {"name": "private", "imageRef": image["id"], "flavorRef": flavor}}
    status, answer = await user.nova("POST", "/servers", server)
    assert status == 400 and "flavorRef" in answer["badRequest"]["message"], answer
    access = {"addTenantAccess": {"tenant": member.project_id}}
    assert (await api.nova("POST", f"/flavors/{flavor}/action", access))[0] == 200
    status, answer = await user.nova("POST", "/servers", server)
    assert status == 202, answer
    shown = await user.wait(answer["server"]["id"], "ACTIVE")
    assert shown["flavor"]["id"] == flavor
    await user.nova("DELETE", f"/servers/{answer['server']['id']}")
    # Compute keeps the flavor for creates now; taking the access back is seen at once.
    revoke = {"removeTenantAccess": {"tenant": member.project_id}}
    assert (await api.nova("POST", f"/flavors/{flavor}/action", revoke))[0] == 200
    status, answer = await user.nova("POST", "/servers", server)
    assert status == 400 and "flavorRef" in answer["badRequest"]["message"], answer


async def test_limits_set_by_another_compute_replica_reach_this_ones_creates(
    cloud: Cloud,
    api: Api,
    admin: Client,
    member: Member,  # noqa: F811
) -> None:
    """Each replica keeps the quota limits its creates read; another replica that sets them
    announces `QuotaLimitsChanged`, and this one's next creates check the new limits. The other
    replica here is the test: it writes the limit as that replica's handler would, then says so."""
    user = await login(cloud, admin, member)
    image, flavor = await api.image(visibility="public"), await api.flavor()
    first = await user.boot(image["id"], flavor["id"])  # this replica keeps the project's limits
    conn = await asyncpg.connect(cloud.settings.database_url)
    try:
        await quota_sql.set_limits(conn, member.project_id, {"instances": 1})
    finally:
        await conn.close()
    assert cloud.bus is not None
    await cloud.bus.publish(QuotaLimitsChanged(project_id=member.project_id), service_context())
    body = {"server": {"name": "over", "imageRef": image["id"], "flavorRef": flavor["id"]}}
    deadline = time.monotonic() + 5  # the event travels through the broker
    while True:
        status, answer = await user.nova("POST", "/servers", body)
        if status == 413 or time.monotonic() > deadline:
            break
        assert status == 202, answer
        await user.nova("DELETE", f"/servers/{answer['server']['id']}")
        await user.wait(answer["server"]["id"], "DELETED")
        await asyncio.sleep(0.05)
    assert status == 413 and "instances" in answer["overLimit"]["message"], answer
    await user.nova("DELETE", f"/servers/{first['id']}")


async def test_keypairs_import_generate_and_conflict(api: Api) -> None:
    name = f"kp-{uuid.uuid4().hex[:6]}"
    status, made = await api.nova("POST", "/os-keypairs", {"keypair": {"name": name}})
    assert status == 200 and made["keypair"]["private_key"].startswith("-----BEGIN RSA PRIVATE KEY-----")
    public = made["keypair"]["public_key"]
    assert (await api.nova("POST", "/os-keypairs", {"keypair": {"name": name}}))[0] == 409
    status, imported = await api.nova(
        "POST", "/os-keypairs", {"keypair": {"name": name + "-i", "public_key": public}}
    )
    assert status == 200 and imported["keypair"]["fingerprint"] == made["keypair"]["fingerprint"]
    assert "private_key" not in imported["keypair"]
    status, bad = await api.nova(
        "POST", "/os-keypairs", {"keypair": {"name": "x", "public_key": "ssh-rsa nope"}}
    )
    assert status == 400 and "public_key" in bad["badRequest"]["message"]
    status, listed = await api.nova("GET", "/os-keypairs")
    assert {name, name + "-i"} <= {k["keypair"]["name"] for k in listed["keypairs"]}
    assert (await api.nova("DELETE", f"/os-keypairs/{name}"))[0] == 202
    assert (await api.nova("DELETE", f"/os-keypairs/{name}"))[0] == 404
    await api.nova("DELETE", f"/os-keypairs/{name}-i")


async def test_anti_affinity_group_spreads_members(api: Api) -> None:
    status, made = await api.nova(
        "POST", "/os-server-groups", {"server_group": {"name": "spread", "policies": ["anti-affinity"]}}
    )
    assert status == 200
    group = made["server_group"]
    image, flavor = await api.image(), await api.flavor()
    body = {"server": {"name": "g", "imageRef": image["id"], "flavorRef": flavor["id"]},
            "os:scheduler_hints": {"group": group["id"]}}  # fmt: skip
    ids = []
    for _ in range(4):  # four hosts in the test fleet
        status, created = await api.nova("POST", "/servers", body)
        assert status == 202, created
        ids.append(created["server"]["id"])
    servers = [await api.wait(i, "ACTIVE") for i in ids]
    assert len({s["OS-EXT-SRV-ATTR:host"] for s in servers}) == 4
    status, shown = await api.nova("GET", f"/os-server-groups/{group['id']}")
    assert sorted(shown["server_group"]["members"]) == sorted(ids)
    # A fifth member has nowhere to go.
    status, created = await api.nova("POST", "/servers", body)
    fifth = await api.wait(created["server"]["id"], "ERROR")
    assert "ServerGroupAntiAffinityFilter" in fifth["fault"]["message"]
    for server_id in [*ids, fifth["id"]]:
        await api.nova("DELETE", f"/servers/{server_id}")
    for server_id in [*ids, fifth["id"]]:
        await api.wait(server_id, "DELETED")
    assert (await api.nova("DELETE", f"/os-server-groups/{group['id']}"))[0] == 204


async def test_admins_pick_a_host_with_zone_colon_host(
    cloud: Cloud,
    api: Api,
    admin: Client,
    member: Member,  # noqa: F811
) -> None:
    image, flavor = await api.image(visibility="public"), await api.flavor()
    created = await api.boot(image["id"], flavor["id"], availability_zone="nova:fake-00002")
    server = await api.wait(created["id"], "ACTIVE")
    assert server["OS-EXT-SRV-ATTR:host"] == "fake-00002"
    assert server["OS-EXT-AZ:availability_zone"] == "nova"
    other = await login(cloud, admin, member)
    body = {"server": {"name": "f", "imageRef": image["id"], "flavorRef": "1", "availability_zone": "nova:x"}}
    status, answer = await other.nova("POST", "/servers", body)
    assert status == 403 and "forced_host" in answer["forbidden"]["message"]
    await api.nova("DELETE", f"/servers/{server['id']}")
    await api.wait(server["id"], "DELETED")


async def test_server_lists_page_with_their_filters_kept(api: Api) -> None:
    image, flavor = await api.image(), await api.flavor()
    ids = [(await api.boot(image["id"], flavor["id"]))["id"] for _ in range(3)]
    status, page = await api.nova("GET", f"/servers?image={image['id']}&limit=2")
    assert status == 200 and len(page["servers"]) == 2
    href = page["servers_links"][0]["href"]
    assert f"image={image['id']}" in href
    status, rest = await api.nova("GET", href.split("/v2.1", 1)[1])
    assert len(rest["servers"]) == 1 and "servers_links" not in rest
    assert {s["id"] for s in page["servers"] + rest["servers"]} == set(ids)
    for server_id in ids:
        await api.nova("DELETE", f"/servers/{server_id}")
    for server_id in ids:
        await api.wait(server_id, "DELETED")


async def test_servers_get_ports_on_their_networks(api: Api) -> None:
    neutron = f"{api.url}/network/v2.0"

    async def net_call(method: str, path: str, json: Any = None) -> tuple[int, Any]:
        status, body, _ = await api_call(method, f"{neutron}{path}", api.token, json=json)
        return status, body

    status, net = await net_call("POST", "/networks", {"network": {"name": f"vmnet-{uuid.uuid4().hex[:6]}"}})
    network = net["network"]
    subnet = {"subnet": {"network_id": network["id"], "cidr": "10.99.0.0/29"}}
    assert (await net_call("POST", "/subnets", subnet))[0] == 201
    image, flavor = await api.image(), await api.flavor()
    created = await api.boot(
        image["id"], flavor["id"], networks=[{"uuid": network["id"], "fixed_ip": "10.99.0.5"}]
    )
    server = await api.wait(created["id"], "ACTIVE")
    assert server["addresses"] == {
        network["name"]: [
            {"addr": "10.99.0.5", "version": 4, "OS-EXT-IPS:type": "fixed",
             "OS-EXT-IPS-MAC:mac_addr": server["addresses"][network["name"]][0]["OS-EXT-IPS-MAC:mac_addr"]}
        ]
    }  # fmt: skip
    status, ports = await net_call("GET", f"/ports?device_id={server['id']}")
    (port,) = ports["ports"]
    assert (
        port["device_owner"] == "compute:nova" and port["binding:host_id"] == server["OS-EXT-SRV-ATTR:host"]
    )
    # A port brought by the user is attached, and only released when the server goes.
    status, own = await net_call("POST", "/ports", {"port": {"network_id": network["id"], "name": "mine"}})
    with_port = await api.boot(image["id"], flavor["id"], networks=[{"port": own["port"]["id"]}])
    await api.wait(with_port["id"], "ACTIVE")
    body = {"server": {"name": "x", "imageRef": image["id"], "flavorRef": flavor["id"],
                       "networks": [{"uuid": str(uuid.uuid4())}]}}  # fmt: skip
    status, answer = await api.nova("POST", "/servers", body)
    assert status == 400 and "server.networks[0].uuid" in answer["badRequest"]["message"]
    # An address taken refuses the server and leaves nothing behind.
    body = {"server": {"name": "x", "imageRef": image["id"], "flavorRef": flavor["id"],
                       "networks": [{"uuid": network["id"], "fixed_ip": "10.99.0.5"}]}}  # fmt: skip
    status, answer = await api.nova("POST", "/servers", body)
    assert status == 409 and "already allocated" in answer["conflictingRequest"]["message"]
    status, everything = await net_call("GET", f"/ports?network_id={network['id']}")
    assert len(everything["ports"]) == 3  # DHCP, the first server's, the user's
    for server_id in (server["id"], with_port["id"]):
        await api.nova("DELETE", f"/servers/{server_id}")
        await api.wait(server_id, "DELETED")
    status, mine = await net_call("GET", f"/ports/{own['port']['id']}")
    assert status == 200 and mine["port"]["device_id"] == "" and mine["port"]["binding:host_id"] == ""
    assert (await net_call("GET", f"/ports/{port['id']}"))[0] == 404
    await net_call("DELETE", f"/ports/{own['port']['id']}")
    assert (await net_call("DELETE", f"/networks/{network['id']}"))[0] == 204


async def test_a_hosts_networking_follows_its_servers(cloud: Cloud, api: Api) -> None:
    async def net(method: str, path: str, json: Any = None) -> dict[str, Any]:
        status, body, _ = await api_call(method, f"{api.url}/network/v2.0{path}", api.token, json=json)
        assert status in (200, 201, 204), body
        return dict(body) if isinstance(body, dict) else {}

    suffix = uuid.uuid4().hex[:6]
    ext = (await net("POST", "/networks", {"network": {"name": f"ext-{suffix}", "router:external": True}}))[
        "network"
    ]
    ext_sub = {"network_id": ext["id"], "cidr": "203.0.113.0/24", "enable_dhcp": False}
    await net("POST", "/subnets", {"subnet": ext_sub})
    lan = (await net("POST", "/networks", {"network": {"name": f"lan-{suffix}"}}))["network"]
    sub = (await net("POST", "/subnets", {"subnet": {"network_id": lan["id"], "cidr": "10.98.0.0/24"}}))[
        "subnet"
    ]
    router = (await net("POST", "/routers", {"router": {"name": f"r-{suffix}"}}))["router"]
    await net("PUT", f"/routers/{router['id']}/add_router_interface", {"subnet_id": sub["id"]})
    await net(
        "PUT", f"/routers/{router['id']}", {"router": {"external_gateway_info": {"network_id": ext["id"]}}}
    )
    image, flavor = await api.image(), await api.flavor()
    created = await api.boot(
        image["id"], flavor["id"], name="Web Server 1", availability_zone="nova:fake-00003",
        networks=[{"uuid": lan["id"]}],
    )  # fmt: skip
    server = await api.wait(created["id"], "ACTIVE")
    fixed = server["addresses"][lan["name"]][0]["addr"]
    port = (await net("GET", f"/ports?device_id={server['id']}"))["ports"][0]
    fip = await net(
        "POST", "/floatingips", {"floatingip": {"floating_network_id": ext["id"], "port_id": port["id"]}}
    )

    # The server shows its floating address once the network service said it moved.
    floating_ip = fip["floatingip"]["floating_ip_address"]
    for _ in range(100):
        shown = (await api.nova("GET", f"/servers/{server['id']}"))[1]["server"]["addresses"][lan["name"]]
        if [a["addr"] for a in shown if a["OS-EXT-IPS:type"] == "floating"] == [floating_ip]:
            break
        await asyncio.sleep(0.05)
    assert [(a["addr"], a["OS-EXT-IPS:type"]) for a in shown] == [(fixed, "fixed"), (floating_ip, "floating")]

    assert cloud.bus is not None
    state = await cloud.bus.call("network", GetHostNetworking(host="fake-00003"), service_context())
    assert state.outside_namespace == "fabric-outside" and state.generation > 0
    by_id = {n.network_id: n for n in state.networks}
    assert set(by_id) >= {lan["id"], ext["id"]}
    assert by_id[ext["id"]].external and not by_id[lan["id"]].external
    (lan_subnet,) = by_id[lan["id"]].subnets
    assert (lan_subnet.cidr, lan_subnet.gateway_ip, lan_subnet.enable_dhcp) == (
        "10.98.0.0/24",
        "10.98.0.1",
        True,
    )
    assert lan_subnet.dhcp_ip == "10.98.0.2"
    assert [(le.ip, le.hostname) for le in by_id[lan["id"]].leases] == [(fixed, "web-server-1")]
    (plumbed_router,) = [r for r in state.routers if r.router_id == router["id"]]
    assert [leg.address for leg in plumbed_router.interfaces] == ["10.98.0.1/24"]
    assert plumbed_router.gateway is not None and plumbed_router.gateway.address.startswith("203.0.113.")
    assert plumbed_router.gateway_next_hop == "203.0.113.1" and plumbed_router.snat
    assert [(f.floating_ip, f.fixed_ip) for f in plumbed_router.floating_ips] == [
        (fip["floatingip"]["floating_ip_address"], fixed)
    ]
    (plumbed_port,) = [p for p in state.ports if p.port_id == port["id"]]
    assert plumbed_port.ips == (fixed,) and plumbed_port.port_security
    ingress = [r for r in plumbed_port.rules if r.direction == "ingress"]
    assert ingress and fixed in (ingress[0].remote_ips or ())  # the default group: its members
    other_host = await cloud.bus.call("network", GetHostNetworking(host="fake-00001"), service_context())
    assert all(p.port_id != port["id"] for p in other_host.ports)
    await net("DELETE", f"/floatingips/{fip['floatingip']['id']}")
    await api.nova("DELETE", f"/servers/{server['id']}")
    await api.wait(server["id"], "DELETED")


async def test_a_retried_create_returns_the_first_server_and_keeps_one_port(cloud: Cloud, api: Api) -> None:
    """The caller picks a create's id so that a retry (the gateway's, or a redelivery) returns
    the same server. With the flavor and limits kept, the retry is recognised only by the
    create's statement, after it has made a port of its own: that port goes back."""
    status, made, _ = await api_call(
        "POST", f"{api.url}/network/v2.0/networks", api.token, json={"network": {"name": "retry-net"}}
    )
    assert status == 201, made
    network = made["network"]["id"]
    subnet = {"subnet": {"network_id": network, "cidr": "10.97.0.0/24"}}
    assert (await api_call("POST", f"{api.url}/network/v2.0/subnets", api.token, json=subnet))[0] == 201
    image, flavor = await api.image(visibility="public"), await api.flavor()
    server_id = str(uuid.uuid4())
    create = CreateServer(
        server_id=server_id, name="retried", image_id=image["id"], flavor_id=flavor["id"],
        networks=(NetworkRequest(network_id=network),),
    )  # fmt: skip
    assert cloud.bus is not None
    ctx = Context(
        request_id=f"req-{uuid.uuid4()}", user_id="retry-user", project_id=f"retry-{uuid.uuid4().hex[:8]}",
        roles=("admin", "member"), deadline=time.time() + 30,
    )  # fmt: skip
    first: ServerView = await cloud.bus.call("compute", create, ctx)  # reads, then keeps, the flavor
    again: ServerView = await cloud.bus.call("compute", create, ctx)
    assert again.id == first.id == server_id and again.addresses == first.addresses
    status, ports, _ = await api_call("GET", f"{api.url}/network/v2.0/ports?network_id={network}", api.token)
    assert [p["device_id"] for p in ports["ports"] if p["device_owner"].startswith("compute:")] == [server_id]
    await api.nova("DELETE", f"/servers/{server_id}")
    await api.wait(server_id, "DELETED")
