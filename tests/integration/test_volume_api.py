"""Block Storage v3 through the gateway, on the test cloud's volume service and its fake volume
host: version documents, volumes (with the nulls the SDK sends), actions, snapshots, types,
quotas and limits, every refusal with its field named, projects kept apart, and pages."""

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

from fabric.client import Client
from fabric.compose import Cloud
from fabric.service import service_context
from protocol.volume import QUEUE, TRANSITIONAL, CompleteAttachment, RemoveAttachment, ReserveAttachment
from tests.support import api_call

pytestmark = [pytest.mark.postgres, pytest.mark.amqp]

#: `openstack volume create --size 1 NAME` sends exactly this (recorded from the CLI).
SDK_NULLS = {
    "volume_type": None, "imageRef": None, "source_volid": None, "snapshot_id": None,
    "availability_zone": None, "backup_id": None, "consistencygroup_id": None, "metadata": None,
    "description": None,
}  # fmt: skip


class Cinder:
    """One project's Block Storage v3, with one of its users' token."""

    def __init__(self, cloud: Cloud, token: str, project_id: str) -> None:
        self.url, self.token, self.project_id = cloud.url, token, project_id
        self.base = f"{cloud.url}/volume/v3/{project_id}"

    async def call(self, method: str, path: str, json: Any = None, **kw: Any) -> tuple[int, Any]:
        status, body, _ = await api_call(method, f"{self.base}{path}", self.token, json=json, **kw)
        return status, body

    async def create(self, size: int | None = 1, **fields: Any) -> dict[str, Any]:
        body = {"volume": SDK_NULLS | {"name": f"vol-{uuid.uuid4().hex[:6]}", "size": size} | fields}
        status, created = await self.call("POST", "/volumes", body)
        assert status == 202, created
        return dict(created["volume"])

    async def wait(self, volume_id: str, status: str, *, timeout_s: float = 30.0) -> dict[str, Any]:
        return await self._wait("volumes", "volume", volume_id, status, timeout_s)

    async def wait_snapshot(
        self, snapshot_id: str, status: str, *, timeout_s: float = 30.0
    ) -> dict[str, Any]:
        return await self._wait("snapshots", "snapshot", snapshot_id, status, timeout_s)

    async def _wait(
        self, plural: str, key: str, item_id: str, status: str, timeout_s: float
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        last: Any = None
        while time.monotonic() < deadline:
            code, body = await self.call("GET", f"/{plural}/{item_id}")
            if status == "deleted" and code == 404:
                return {}
            assert code == 200, body
            last = body[key]
            if last["status"] == status:
                return dict(last)
            assert not last["status"].startswith("error"), last
            await asyncio.sleep(0.05)
        raise AssertionError(f"{key} {item_id} not {status} in {timeout_s}s: {last}")

    async def available(self, size: int = 1, **fields: Any) -> dict[str, Any]:
        return await self.wait((await self.create(size, **fields))["id"], "available")

    async def delete_all(self) -> None:
        """Every volume of the project, once none is on its way somewhere."""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            _, listed = await self.call("GET", "/volumes/detail")
            if not any(v["status"] in TRANSITIONAL for v in listed["volumes"]):
                break
            await asyncio.sleep(0.05)
        for v in listed["volumes"]:
            await self.delete(v["id"])

    async def delete(self, volume_id: str) -> None:
        status, body = await self.call("DELETE", f"/volumes/{volume_id}?cascade=True")
        assert status in (202, 404), body
        await self.wait(volume_id, "deleted")


@dataclass
class Tenant:
    """A fresh project with a member user (and a reader), gone after the test."""

    project_id: str
    member: Cinder
    reader: Cinder


async def token_of(admin: Client, user: str, password: str, project: str) -> str:
    async with Client(admin.auth_url, username=user, password=password, project_name=project) as client:
        assert client.token is not None
        return client.token.id


@pytest.fixture
async def tenant(cloud: Cloud, admin: Client) -> AsyncIterator[Tenant]:
    suffix = uuid.uuid4().hex[:8]
    project = await admin.identity.create_project(f"vol-{suffix}")
    users = []
    tokens = {}
    for role_name in ("member", "reader"):
        password = uuid.uuid4().hex
        user = await admin.identity.create_user(f"vol-{role_name}-{suffix}", password=password)
        users.append(user)
        await admin.identity.grant((await admin.identity.role(role_name)).id, user.id, project_id=project.id)
        tokens[role_name] = await token_of(admin, user.name, password, project.name)
    member = Cinder(cloud, tokens["member"], project.id)
    yield Tenant(project.id, member, Cinder(cloud, tokens["reader"], project.id))
    await member.delete_all()
    for user in users:
        await admin.identity.delete_user(user.id)
    await admin.identity.delete_project(project.id)


@pytest.fixture
async def operator(cloud: Cloud, admin: Client) -> Cinder:
    assert admin.token is not None and admin.token.project_id is not None
    return Cinder(cloud, admin.token.id, admin.token.project_id)


@pytest.fixture(autouse=True)
async def volume_host(operator: Cinder) -> None:
    """The suite's cloud starts its volume host with everything else; until the host's first
    report reaches the volume service a new volume has nowhere to go (`error`, as in Cinder).
    A probe volume, made until one becomes available, shows the host is known."""
    global _host_known
    deadline = time.monotonic() + 30
    while not _host_known:
        probe = await operator.create(1, name="probe")
        for _ in range(200):
            _, body = await operator.call("GET", f"/volumes/{probe['id']}")
            if body["volume"]["status"] != "creating":
                break
            await asyncio.sleep(0.02)
        _host_known = body["volume"]["status"] == "available"
        await operator.call("DELETE", f"/volumes/{probe['id']}")
        await operator.wait(probe["id"], "deleted")
        assert _host_known or time.monotonic() < deadline, body
        await asyncio.sleep(0 if _host_known else 0.2)


_host_known = False


# --- discovery ---------------------------------------------------------------------------------


async def test_version_documents_and_the_catalog(cloud: Cloud, admin: Client) -> None:
    for path, code in (("/volume", 300), ("/volume/v3/", 200)):
        status, body, headers = await api_call("GET", f"{cloud.url}{path}", None)
        assert status == code and body["versions"][0]["version"] == "3.0", body
        assert headers["OpenStack-API-Version"] == "volume 3.0"
    status, body, _ = await api_call(
        "GET", f"{cloud.url}/volume/v3/", None, headers={"OpenStack-API-Version": "volume 3.71"}
    )
    assert status == 406, body
    url = admin.endpoint("block-storage")
    assert url == f"{cloud.url}/volume/v3/{admin.token.project_id if admin.token else ''}"


# --- volumes -----------------------------------------------------------------------------------


async def test_create_list_show_update_extend_delete(tenant: Tenant) -> None:
    cinder = tenant.member
    created = await cinder.create(1, name="data", metadata={"tier": "gold"}, description="  notes ")
    assert created["status"] == "creating" and created["size"] == 1
    assert (created["name"], created["description"], created["bootable"]) == ("data", "notes", "false")
    volume = await cinder.wait(created["id"], "available")
    assert volume["os-vol-tenant-attr:tenant_id"] == tenant.project_id and volume["attachments"] == []
    assert volume["volume_type"] and volume["availability_zone"] and volume["encrypted"] is False
    assert "os-vol-host-attr:host" not in volume  # admins only
    assert volume["created_at"].count(":") == 2 and "." in volume["created_at"]

    status, listed = await cinder.call("GET", "/volumes")
    assert status == 200 and listed["volumes"] == [
        {"id": volume["id"], "name": "data", "links": volume["links"]}
    ]  # fmt: skip
    for query in ("name=data", "status=available", "metadata={'tier': 'gold'}", "bootable=false"):
        status, found = await cinder.call("GET", f"/volumes/detail?{query}")
        assert status == 200 and [v["id"] for v in found["volumes"]] == [volume["id"]], query
    for query in ("name=other", "status=error", "metadata={'tier': 'lead'}", "bootable=true"):
        status, found = await cinder.call("GET", f"/volumes/detail?{query}")
        assert status == 200 and found["volumes"] == [], query

    status, updated = await cinder.call(
        "PUT", f"/volumes/{volume['id']}", {"volume": {"name": "renamed", "metadata": {"a": "1"}}}
    )
    assert status == 200 and (updated["volume"]["name"], updated["volume"]["metadata"]) == (
        "renamed",
        {"a": "1"},
    )
    assert updated["volume"]["description"] == "notes"
    status, merged = await cinder.call("POST", f"/volumes/{volume['id']}/metadata", {"metadata": {"b": "2"}})
    assert status == 200 and merged["metadata"] == {"a": "1", "b": "2"}
    status, item = await cinder.call("GET", f"/volumes/{volume['id']}/metadata/b")
    assert status == 200 and item == {"meta": {"b": "2"}}
    assert (await cinder.call("DELETE", f"/volumes/{volume['id']}/metadata/a"))[0] == 200
    assert (await cinder.call("GET", f"/volumes/{volume['id']}/metadata"))[1] == {"metadata": {"b": "2"}}

    status, body = await cinder.call(
        "POST", f"/volumes/{volume['id']}/action", {"os-extend": {"new_size": 2}}
    )
    assert status == 202, body
    assert (await cinder.wait(volume["id"], "available"))["size"] in (1, 2)  # `extending` may be brief
    for _ in range(100):
        if (await cinder.call("GET", f"/volumes/{volume['id']}"))[1]["volume"]["size"] == 2:
            break
        await asyncio.sleep(0.05)
    assert (await cinder.wait(volume["id"], "available"))["size"] == 2
    status, _ = await cinder.call(
        "POST", f"/volumes/{volume['id']}/action", {"os-set_bootable": {"bootable": True}}
    )
    assert status == 200
    assert (await cinder.call("GET", f"/volumes/{volume['id']}"))[1]["volume"]["bootable"] == "true"

    status, body = await cinder.call("DELETE", f"/volumes/{volume['id']}?cascade=False")
    assert status == 202, body
    await cinder.wait(volume["id"], "deleted")
    status, body = await cinder.call("GET", f"/volumes/{volume['id']}")
    assert status == 404 and body["itemNotFound"]["code"] == 404
    assert (await cinder.call("GET", "/volumes"))[1]["volumes"] == []


async def test_find_by_name_as_the_cli_does(tenant: Tenant) -> None:
    volume = await tenant.member.available(name="by-name")
    status, body = await tenant.member.call("GET", "/volumes/by-name")
    assert status == 404 and "itemNotFound" in body
    status, found = await tenant.member.call("GET", "/volumes/detail?name=by-name")
    assert [v["id"] for v in found["volumes"]] == [volume["id"]]


@pytest.mark.parametrize(
    ("fields", "code", "field"),
    [
        ({"size": 0}, 400, "size"),
        ({"size": -1}, 400, "size"),
        ({"size": "x"}, 400, "size"),
        ({"size": 1.5}, 400, "size"),
        ({"size": None}, 400, "size"),
        ({"backup_id": str(uuid.uuid4())}, 400, "backup_id"),
        ({"consistencygroup_id": str(uuid.uuid4())}, 400, "consistencygroup_id"),
        ({"imageRef": str(uuid.uuid4())}, 400, "imageRef"),
        ({"snapshot_id": str(uuid.uuid4())}, 404, "snapshot"),
        ({"source_volid": str(uuid.uuid4())}, 404, "source_volid"),
        ({"snapshot_id": "nope"}, 400, "snapshot_id"),
        ({"volume_type": "no-such-type"}, 404, "type"),
        ({"metadata": {"k": 7}}, 400, "metadata"),
    ],
)
async def test_bad_creates_are_refused_naming_the_field_and_leave_nothing(
    tenant: Tenant, fields: dict[str, Any], code: int, field: str
) -> None:
    body = {"volume": SDK_NULLS | {"name": "bad", "size": 1} | fields}
    status, answer = await tenant.member.call("POST", "/volumes", body)
    assert status == code, answer
    (kind,) = answer
    assert answer[kind]["code"] == code and field in answer[kind]["message"], answer
    status, listed = await tenant.member.call("GET", "/volumes/detail")
    assert listed["volumes"] == []
    status, quotas = await tenant.member.call("GET", f"/os-quota-sets/{tenant.project_id}?usage=True")
    assert status == 200 and quotas["quota_set"]["volumes"]["in_use"] == 0, quotas


async def test_bad_requests_on_a_volume(tenant: Tenant, operator: Cinder) -> None:
    cinder = tenant.member
    volume = await cinder.available(2)
    path = f"/volumes/{volume['id']}/action"
    for body, field in (
        ({"os-extend": {"new_size": 1}}, "size"),  # smaller
        ({"os-extend": {"new_size": 2}}, "size"),  # not larger
        ({"os-extend": {"new_size": "x"}}, "new_size"),
        ({"os-extend": {}}, "new_size"),
        ({"os-set_bootable": {"bootable": "maybe"}}, "bootable"),
        ({"os-attach": {"instance_uuid": str(uuid.uuid4())}}, "os-attach"),
        ({"os-extend": {"new_size": 3}, "os-set_bootable": {"bootable": True}}, "body"),
    ):
        status, answer = await cinder.call("POST", path, body)
        assert status == 400 and field in answer["badRequest"]["message"], (body, answer)
    assert (await cinder.wait(volume["id"], "available"))["size"] == 2
    status, answer = await cinder.call("PUT", f"/volumes/{volume['id']}", {"volume": {"size": 5}})
    assert status == 400 and "size" in answer["badRequest"]["message"]
    status, answer = await cinder.call("DELETE", f"/volumes/{volume['id']}?cascade=perhaps")
    assert status == 400 and "cascade" in answer["badRequest"]["message"]
    # The project in the path must be the token's, for admins too (Cinder: "Malformed request url").
    for caller in (cinder, operator):
        status, answer, _ = await api_call(
            "GET", f"{caller.url}/volume/v3/{uuid.uuid4().hex}/volumes", caller.token
        )
        assert status == 400 and "Malformed request url" in answer["badRequest"]["message"]
    status, _ = await cinder.call("GET", "/limits", headers={"OpenStack-API-Version": "volume 3.1"})
    assert status == 406


async def test_a_volume_in_use_is_not_deleted(cloud: Cloud, tenant: Tenant) -> None:
    """Attached as compute attaches it (the volume service's messages), then refused, then freed."""
    cinder = tenant.member
    volume = await cinder.available()
    ctx, bus = service_context(), cloud.bus
    assert bus is not None
    attachment_id, server_id = str(uuid.uuid4()), str(uuid.uuid4())
    reserve = ReserveAttachment(
        attachment_id=attachment_id, volume_id=volume["id"], server_id=server_id, host="itest-host"
    )
    await bus.call(QUEUE, reserve, ctx)
    await bus.call(
        QUEUE, CompleteAttachment(attachment_id=attachment_id, volume_id=volume["id"], device="/dev/vdb"), ctx
    )
    in_use = await cinder.wait(volume["id"], "in-use")
    (shown,) = in_use["attachments"]
    assert shown == {
        "id": volume["id"], "attachment_id": attachment_id, "volume_id": volume["id"], "server_id": server_id,
        "host_name": None, "device": "/dev/vdb", "attached_at": shown["attached_at"],
    }  # fmt: skip
    assert shown["attached_at"] is not None
    for query in ("cascade=False", "cascade=True"):
        status, answer = await cinder.call("DELETE", f"/volumes/{volume['id']}?{query}")
        assert status == 400 and "in-use" in answer["badRequest"]["message"], answer
    status, answer = await cinder.call(
        "POST", f"/volumes/{volume['id']}/action", {"os-extend": {"new_size": 2}}
    )
    assert status == 400, answer
    await bus.call(QUEUE, RemoveAttachment(attachment_id=attachment_id, volume_id=volume["id"]), ctx)
    assert (await cinder.wait(volume["id"], "available"))["attachments"] == []
    await cinder.delete(volume["id"])


# --- projects, roles, quotas, pages -------------------------------------------------------------


async def test_projects_cannot_see_or_touch_each_others_volumes(tenant: Tenant, operator: Cinder) -> None:
    theirs = await operator.available(name=f"ops-{uuid.uuid4().hex[:6]}")
    try:
        cinder = tenant.member
        for method, path, body in (
            ("GET", f"/volumes/{theirs['id']}", None),
            ("PUT", f"/volumes/{theirs['id']}", {"volume": {"name": "mine"}}),
            ("DELETE", f"/volumes/{theirs['id']}", None),
            ("POST", f"/volumes/{theirs['id']}/action", {"os-extend": {"new_size": 5}}),
            ("GET", f"/volumes/{theirs['id']}/metadata", None),
        ):
            status, answer = await cinder.call(method, path, body)
            assert status == 404, (method, path, answer)
        status, answer = await cinder.call("POST", "/snapshots", {"snapshot": {"volume_id": theirs["id"]}})
        assert status == 404, answer
        status, answer = await cinder.call("POST", "/volumes", {"volume": {"source_volid": theirs["id"]}})
        assert status == 404, answer
        for query in ("", "?all_tenants=1", f"?all_tenants=1&project_id={operator.project_id}"):
            status, listed = await cinder.call("GET", f"/volumes/detail{query}")
            assert status == 200 and theirs["id"] not in {v["id"] for v in listed["volumes"]}
        # The admin sees every project's with all_tenants, and the host they are on.
        mine = await cinder.available()
        status, everything = await operator.call("GET", "/volumes/detail?all_tenants=True")
        seen = {v["id"]: v for v in everything["volumes"]}
        assert {mine["id"], theirs["id"]} <= set(seen)
        assert seen[mine["id"]]["os-vol-tenant-attr:tenant_id"] == tenant.project_id
        assert seen[mine["id"]]["os-vol-host-attr:host"]
        status, one = await operator.call("GET", f"/volumes/detail?project_id={tenant.project_id}")
        assert [v["id"] for v in one["volumes"]] == [mine["id"]]
    finally:
        await operator.delete(theirs["id"])


async def test_a_reader_reads_but_does_not_change(tenant: Tenant) -> None:
    volume = await tenant.member.available()
    reader = tenant.reader
    status, answer = await reader.call("POST", "/volumes", {"volume": SDK_NULLS | {"size": 1}})
    assert status == 403 and answer["forbidden"]["code"] == 403
    for method, path, body in (
        ("PUT", f"/volumes/{volume['id']}", {"volume": {"name": "x"}}),
        ("POST", f"/volumes/{volume['id']}/action", {"os-extend": {"new_size": 2}}),
        ("DELETE", f"/volumes/{volume['id']}", None),
        ("POST", "/snapshots", {"snapshot": {"volume_id": volume["id"]}}),
    ):
        status, answer = await reader.call(method, path, body)
        assert status == 403, (method, path, answer)
    assert (await reader.call("GET", f"/volumes/{volume['id']}"))[0] == 200
    assert [v["id"] for v in (await reader.call("GET", "/volumes"))[1]["volumes"]] == [volume["id"]]


async def test_quotas_and_limits(tenant: Tenant, operator: Cinder) -> None:
    cinder = tenant.member
    status, answer = await cinder.call(
        "PUT", f"/os-quota-sets/{tenant.project_id}", {"quota_set": {"volumes": 50}}
    )
    assert status == 403, answer  # only admins set quotas
    status, answer = await operator.call(
        "PUT", f"/os-quota-sets/{tenant.project_id}", {"quota_set": {"bogus": 1}}
    )
    assert status == 400 and "bogus" in answer["badRequest"]["message"]
    limits = {"volumes": 2, "gigabytes": 5, "snapshots": 1, "per_volume_gigabytes": 3}
    status, set_to = await operator.call("PUT", f"/os-quota-sets/{tenant.project_id}", {"quota_set": limits})
    assert status == 200 and all(set_to["quota_set"][k] == v for k, v in limits.items()), set_to

    status, answer = await cinder.call("POST", "/volumes", {"volume": {"size": 4}})
    assert status == 413 and answer["overLimit"]["code"] == 413, answer  # per_volume_gigabytes
    first = await cinder.available(3)
    status, answer = await cinder.call("POST", "/volumes", {"volume": {"size": 3}})
    assert status == 413 and "gigabytes" in answer["overLimit"]["message"], answer
    second = await cinder.available(1)
    status, answer = await cinder.call("POST", "/volumes", {"volume": {"size": 1}})
    assert status == 413 and "volumes" in answer["overLimit"]["message"], answer
    status, answer = await cinder.call(
        "POST", f"/volumes/{second['id']}/action", {"os-extend": {"new_size": 3}}
    )
    assert status == 413, answer  # 3 + 3 > 5 gigabytes

    status, shown = await cinder.call("GET", f"/os-quota-sets/{tenant.project_id}?usage=True")
    assert status == 200 and shown["quota_set"]["id"] == tenant.project_id
    assert shown["quota_set"]["volumes"] == {"limit": 2, "in_use": 2, "reserved": 0}
    assert shown["quota_set"]["gigabytes"]["in_use"] == 4
    status, plain = await cinder.call("GET", f"/os-quota-sets/{tenant.project_id}")
    assert plain["quota_set"]["volumes"] == 2
    status, defaults = await cinder.call("GET", f"/os-quota-sets/{tenant.project_id}/defaults")
    assert status == 200 and defaults["quota_set"]["volumes"] == 10
    status, limited = await cinder.call("GET", "/limits")
    assert status == 200 and limited["limits"]["rate"] == []
    absolute = limited["limits"]["absolute"]
    assert (absolute["maxTotalVolumes"], absolute["totalVolumesUsed"]) == (2, 2)
    assert (absolute["maxTotalVolumeGigabytes"], absolute["totalGigabytesUsed"]) == (5, 4)
    assert (absolute["maxTotalSnapshots"], absolute["totalSnapshotsUsed"]) == (1, 0)
    # Another project's quotas are not a member's to see (hidden, as its volumes are).
    status, _ = await cinder.call("GET", f"/os-quota-sets/{operator.project_id}")
    assert status == 404
    for v in (first, second):
        await cinder.delete(v["id"])


async def test_pages_of_volumes(tenant: Tenant) -> None:
    cinder = tenant.member
    made = [(await cinder.create(1, name=f"page-{i}"))["id"] for i in range(5)]
    seen: list[str] = []
    path = "/volumes/detail?limit=2"
    while True:
        status, page = await cinder.call("GET", path)
        assert status == 200 and len(page["volumes"]) <= 2
        seen += [v["id"] for v in page["volumes"]]
        if "volumes_links" not in page:
            break
        (link,) = page["volumes_links"]
        assert link["rel"] == "next" and link["href"].startswith(cinder.base + "/volumes/detail?")
        path = link["href"].removeprefix(cinder.base)
    assert seen == list(reversed(made))  # newest first, each once
    status, summary = await cinder.call("GET", "/volumes?limit=2")
    assert [v["id"] for v in summary["volumes"]] == seen[:2] and "volumes_links" in summary
    assert summary["volumes_links"][0]["href"].startswith(cinder.base + "/volumes?")
    assert (await cinder.call("GET", "/volumes?limit=0"))[1] == {"volumes": []}
    for bad in ("limit=-1", "limit=x", "sort=name:asc", "bootable=perhaps", "metadata=oops"):
        status, answer = await cinder.call("GET", f"/volumes?{bad}")
        assert status == 400 and bad.split("=")[0] in answer["badRequest"]["message"], (bad, answer)
    for volume_id in made:
        await cinder.wait(volume_id, "available")


# --- snapshots ---------------------------------------------------------------------------------


async def test_snapshots(tenant: Tenant) -> None:
    cinder = tenant.member
    volume = await cinder.available(2)
    status, made = await cinder.call(
        "POST", "/snapshots", {"snapshot": {"volume_id": volume["id"], "name": "snap", "description": None,
                                            "force": False, "metadata": {"k": "v"}}}
    )  # fmt: skip
    assert status == 202, made
    snap = made["snapshot"]
    assert (snap["volume_id"], snap["size"], snap["name"], snap["metadata"]) == (
        volume["id"],
        2,
        "snap",
        {"k": "v"},
    )
    snap = await cinder.wait_snapshot(snap["id"], "available")
    assert snap["os-extended-snapshot-attributes:project_id"] == tenant.project_id
    for path in (
        "/snapshots",
        "/snapshots/detail",
        f"/snapshots?volume_id={volume['id']}",
        "/snapshots?name=snap",
    ):
        status, listed = await cinder.call("GET", path)
        assert status == 200 and [s["id"] for s in listed["snapshots"]] == [snap["id"]], path
    assert (await cinder.call("GET", "/snapshots?status=error"))[1]["snapshots"] == []
    status, renamed = await cinder.call("PUT", f"/snapshots/{snap['id']}", {"snapshot": {"name": "snap2"}})
    assert status == 200 and renamed["snapshot"]["name"] == "snap2"

    # A volume from the snapshot takes its size; the volume with a snapshot is not deleted.
    copy = await cinder.create(None, snapshot_id=snap["id"])
    assert copy["snapshot_id"] == snap["id"]
    copy = await cinder.wait(copy["id"], "available")
    assert copy["size"] == 2
    status, answer = await cinder.call("DELETE", f"/volumes/{volume['id']}?cascade=False")
    assert status == 400 and "snapshot" in answer["badRequest"]["message"], answer

    for body, field in (
        ({"snapshot": {}}, "volume_id"),
        ({"snapshot": {"volume_id": "nope"}}, "volume_id"),
        ({"snapshot": {"volume_id": volume["id"], "force": "sometimes"}}, "force"),
        ({"snapshot": {"volume_id": volume["id"], "colour": "red"}}, "colour"),
    ):
        status, answer = await cinder.call("POST", "/snapshots", body)
        assert status == 400 and field in answer["badRequest"]["message"], (body, answer)
    status, _ = await cinder.call("POST", "/snapshots", {"snapshot": {"volume_id": str(uuid.uuid4())}})
    assert status == 404
    assert (await cinder.call("GET", "/snapshots/not-an-id"))[0] == 404

    status, _ = await cinder.call("DELETE", f"/snapshots/{snap['id']}")
    assert status == 202
    await cinder.wait_snapshot(snap["id"], "deleted")
    await cinder.delete(copy["id"])
    await cinder.delete(volume["id"])


async def test_cascade_deletes_the_snapshots_too(tenant: Tenant) -> None:
    cinder = tenant.member
    volume = await cinder.available()
    _, made = await cinder.call("POST", "/snapshots", {"snapshot": {"volume_id": volume["id"]}})
    await cinder.wait_snapshot(made["snapshot"]["id"], "available")
    status, answer = await cinder.call("DELETE", f"/volumes/{volume['id']}?cascade=True")
    assert status == 202, answer
    await cinder.wait(volume["id"], "deleted")
    assert (await cinder.call("GET", f"/snapshots/{made['snapshot']['id']}"))[0] == 404


# --- types -------------------------------------------------------------------------------------


async def test_volume_types(tenant: Tenant, operator: Cinder) -> None:
    status, listed = await tenant.member.call("GET", "/types")
    assert status == 200 and listed["volume_types"], listed
    status, default = await tenant.member.call("GET", "/types/default")
    assert status == 200 and default["volume_type"]["name"] in {t["name"] for t in listed["volume_types"]}
    assert "volume_backend_name" not in default["volume_type"]["extra_specs"]  # the operator's
    status, answer = await tenant.member.call("POST", "/types", {"volume_type": {"name": "mine"}})
    assert status == 403, answer

    name = f"type-{uuid.uuid4().hex[:6]}"
    body = {
        "volume_type": {"name": name, "description": "fast", "extra_specs": {"volume_backend_name": "fake"}}
    }
    status, made = await operator.call("POST", "/types", body)
    assert status == 200, made
    vtype = made["volume_type"]
    assert (vtype["name"], vtype["is_public"], vtype["extra_specs"]) == (
        name,
        True,
        {"volume_backend_name": "fake"},
    )
    status, answer = await operator.call("POST", "/types", body)
    assert status == 409, answer
    for ref in (vtype["id"], name):
        status, shown = await tenant.member.call("GET", f"/types/{ref}")
        assert status == 200 and shown["volume_type"]["id"] == vtype["id"]
    status, specs = await operator.call(
        "POST", f"/types/{vtype['id']}/extra_specs", {"extra_specs": {"x": "1"}}
    )
    assert status == 200 and specs == {"extra_specs": {"x": "1"}}
    status, specs = await operator.call("GET", f"/types/{vtype['id']}/extra_specs")
    assert specs["extra_specs"] == {"volume_backend_name": "fake", "x": "1"}
    status, renamed = await operator.call(
        "PUT", f"/types/{vtype['id']}", {"volume_type": {"description": "faster"}}
    )
    assert status == 200 and renamed["volume_type"]["description"] == "faster"

    volume = await tenant.member.create(1, volume_type=name)
    assert volume["volume_type"] == name
    await tenant.member.wait(volume["id"], "available")
    status, answer = await operator.call("DELETE", f"/types/{vtype['id']}")
    assert status == 400, answer  # in use
    await tenant.member.delete(volume["id"])
    assert (await operator.call("DELETE", f"/types/{vtype['id']}"))[0] == 202
    assert (await tenant.member.call("GET", f"/types/{vtype['id']}"))[0] == 404


# --- the Python client -------------------------------------------------------------------------


async def test_the_client_drives_volumes_and_snapshots(admin: Client) -> None:
    api = admin.volume
    created = await api.create_volume(1, name=f"client-{uuid.uuid4().hex[:6]}")
    volume = await api.wait(created.id, "available")
    assert volume is not None and (volume.size_gb, volume.bootable, volume.attachments) == (1, False, ())
    await api.extend_volume(volume.id, 2)
    for _ in range(100):
        grown = await api.get_volume(volume.id)
        if grown is not None and grown.size_gb == 2 and grown.status == "available":
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("the volume never grew")
    assert [v.id for v in await api.list_volumes(name=volume.name)] == [volume.id]
    assert (await api.update_volume(volume.id, description="d")).raw["description"] == "d"
    snap = await api.create_snapshot(volume.id, name="s")
    assert (await api.wait_snapshot(snap.id, "available")) is not None
    assert [s.id for s in await api.list_snapshots(volume_id=volume.id)] == [snap.id]
    await api.delete_snapshot(snap.id)
    await api.wait_snapshot(snap.id, "deleted")
    await api.delete_volume(volume.id)
    assert await api.wait(volume.id, "deleted") is None
    assert await api.get_volume(volume.id) is None
    assert any(t["name"] for t in await api.list_types())
