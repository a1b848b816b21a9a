"""Image v2 through the gateway: records in the image service, bytes streamed to the store."""

import asyncio
import hashlib
import os
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from fabric.client import Client
from fabric.compose import Cloud
from tests.integration.test_identity import Member, member  # noqa: F401 - the fixture
from tests.support import IMAGE_QUOTA_BYTES, api_call

pytestmark = [pytest.mark.postgres, pytest.mark.amqp]
PATCH = "application/openstack-images-v2.1-json-patch"


class Images:
    def __init__(self, cloud: Cloud, token: str) -> None:
        self.base = f"{cloud.url}/image/v2"
        self.token = token

    async def call(
        self, method: str, path: str, *, json: Any = None, data: Any = None, content_type: str | None = None
    ) -> tuple[int, Any, dict[str, str]]:
        headers = {"Content-Type": content_type} if content_type else None
        return await api_call(method, f"{self.base}{path}", self.token, json=json, data=data, headers=headers)

    async def create(self, **fields: Any) -> dict[str, Any]:
        body = {"name": f"img-{uuid.uuid4().hex[:8]}", "disk_format": "raw", "container_format": "bare"}
        status, created, _ = await self.call("POST", "/images", json={**body, **fields})
        assert status == 201, created
        return dict(created)

    async def upload(self, image_id: str, data: Any) -> tuple[int, Any]:
        status, body, _ = await self.call(
            "PUT", f"/images/{image_id}/file", data=data, content_type="application/octet-stream"
        )
        return status, body


@pytest.fixture
async def images(cloud: Cloud, admin: Client) -> Images:
    assert admin.token is not None
    return Images(cloud, admin.token.id)


@pytest.fixture
async def member_images(cloud: Cloud, admin: Client, member: Member) -> AsyncIterator[Images]:  # noqa: F811
    async with Client(
        admin.auth_url, username=member.name, password=member.password, project_name=member.project_name
    ) as client:
        assert client.token is not None
        yield Images(cloud, client.token.id)


async def chunks(data: bytes, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


async def test_create_upload_download_delete(images: Images) -> None:
    image = await images.create(**{"owner_specified.openstack.object": "images/x", "hw_arch": "x86_64"})
    assert (image["status"], image["size"], image["hw_arch"]) == ("queued", None, "x86_64")
    data = os.urandom(3 * 1024 * 1024 + 17)
    assert (await images.upload(image["id"], chunks(data)))[0] == 204
    status, shown, _ = await images.call("GET", f"/images/{image['id']}")
    assert status == 200
    assert shown["status"] == "active" and shown["size"] == len(data)
    assert shown["checksum"] == hashlib.md5(data).hexdigest()
    assert (shown["os_hash_algo"], shown["os_hash_value"]) == ("sha512", hashlib.sha512(data).hexdigest())
    status, got, headers = await images.call("GET", f"/images/{image['id']}/file")
    assert status == 200 and got == data
    assert headers["Content-MD5"] == shown["checksum"]
    # Data can be uploaded once.
    assert (await images.upload(image["id"], b"again"))[0] == 409
    assert (await images.call("DELETE", f"/images/{image['id']}"))[0] == 204
    assert (await images.call("GET", f"/images/{image['id']}"))[0] == 404
    assert (await images.call("GET", f"/images/{image['id']}/file"))[0] == 404


async def test_an_image_without_data_downloads_as_no_content(images: Images) -> None:
    image = await images.create()
    assert (await images.call("GET", f"/images/{image['id']}/file"))[0] == 204


async def test_list_filters_pagination_and_the_in_operator(images: Images) -> None:
    tag = uuid.uuid4().hex[:6]
    made = [await images.create(name=f"page-{tag}-{i}") for i in range(5)]
    ids = {m["id"] for m in made}
    status, body, _ = await images.call("GET", f"/images?name=page-{tag}-3")
    assert status == 200 and [i["id"] for i in body["images"]] == [made[3]["id"]]
    status, body, _ = await images.call("GET", f"/images?id=in:{made[0]['id']},{made[4]['id']}")
    assert {i["id"] for i in body["images"]} == {made[0]["id"], made[4]["id"]}
    seen: list[str] = []
    path = "/images?limit=2"
    for _ in range(100):
        status, body, _ = await images.call("GET", path)
        assert status == 200 and len(body["images"]) <= 2
        seen += [i["id"] for i in body["images"]]
        if "next" not in body:
            break
        path = body["next"].removeprefix("/v2")
    assert ids <= set(seen) and len(seen) == len(set(seen))
    assert (await images.call("GET", "/images?limit=0"))[0] == 400
    assert (await images.call("GET", "/images?status=nonsense"))[0] == 400


async def test_json_patch_updates_fields_and_properties(images: Images) -> None:
    image = await images.create()
    ops = [
        {"op": "replace", "path": "/name", "value": "renamed"},
        {"op": "add", "path": "/os_distro", "value": "debian"},
        {"op": "add", "path": "/tags", "value": ["a", "b"]},
        {"op": "replace", "path": "/min_ram", "value": 512},
    ]
    status, updated, _ = await images.call("PATCH", f"/images/{image['id']}", json=ops, content_type=PATCH)
    assert status == 200, updated
    assert (updated["name"], updated["os_distro"], updated["tags"], updated["min_ram"]) == (
        "renamed", "debian", ["a", "b"], 512,
    )  # fmt: skip
    remove = [{"op": "remove", "path": "/os_distro"}]
    status, updated, _ = await images.call("PATCH", f"/images/{image['id']}", json=remove, content_type=PATCH)
    assert status == 200 and "os_distro" not in updated
    for bad, code in (
        ([{"op": "replace", "path": "/status", "value": "active"}], 403),
        ([{"op": "replace", "path": "/min_ram", "value": "lots"}], 400),
        ([{"op": "move", "path": "/name"}], 400),
        ({"name": "not a list"}, 400),
    ):
        status, body, _ = await images.call("PATCH", f"/images/{image['id']}", json=bad, content_type=PATCH)
        assert status == code, (bad, body)
    status, _, _ = await images.call(
        "PATCH", f"/images/{image['id']}", json=ops, content_type="application/json"
    )
    assert status == 415


async def test_bad_input_is_a_clear_4xx_and_leaves_nothing_half_made(images: Images) -> None:
    for body, code, field in (
        ({"name": "x", "disk_format": "floppy"}, 400, "disk_format"),
        ({"name": "x", "min_disk": -1}, 400, "min_disk"),
        ({"name": "x", "status": "active"}, 403, "status"),
        ({"name": "x", "hw_thing": 5}, 400, "hw_thing"),
    ):
        status, got, _ = await images.call("POST", "/images", json=body)
        assert status == code, (body, got)
        assert field in got["error"]["message"]
    # An empty upload is refused and the image stays queued, ready for a real one.
    image = await images.create()
    status, got = await images.upload(image["id"], b"")
    assert status == 400 and "empty" in got["error"]["message"]
    assert (await images.call("GET", f"/images/{image['id']}"))[1]["status"] == "queued"
    # A declared md5 that the data does not match.
    declared = await images.create(**{"owner_specified.openstack.md5": hashlib.md5(b"other").hexdigest()})
    status, got = await images.upload(declared["id"], b"these bytes")
    assert status == 400 and "md5" in got["error"]["message"]
    assert (await images.call("GET", f"/images/{declared['id']}"))[1]["status"] == "queued"
    assert (await images.upload(declared["id"], b"other"))[0] == 204


async def test_the_project_quota_holds_while_streaming(member_images: Images) -> None:
    first = await member_images.create()
    assert (await member_images.upload(first["id"], chunks(os.urandom(IMAGE_QUOTA_BYTES // 2 + 1))))[0] == 204
    second = await member_images.create()
    status, got = await member_images.upload(second["id"], chunks(os.urandom(IMAGE_QUOTA_BYTES // 2 + 1)))
    assert status == 413, got
    status, shown, _ = await member_images.call("GET", f"/images/{second['id']}")
    assert shown["status"] == "queued" and shown["size"] is None
    assert (await member_images.upload(second["id"], b"small"))[0] == 204


async def test_projects_see_only_their_own_and_public_images(images: Images, member_images: Images) -> None:
    private = await images.create(visibility="private")
    public = await images.create(visibility="public")
    theirs = await member_images.create()
    assert (await member_images.call("GET", f"/images/{private['id']}"))[0] == 404
    assert (await member_images.call("GET", f"/images/{public['id']}"))[0] == 200
    assert (await member_images.call("DELETE", f"/images/{public['id']}"))[0] == 403
    assert (await member_images.upload(private["id"], b"x"))[0] == 404
    status, body, _ = await member_images.call("GET", "/images?limit=1000")
    listed = {i["id"] for i in body["images"]}
    assert theirs["id"] in listed and public["id"] in listed and private["id"] not in listed
    # Only admins publicize.
    status, _, _ = await member_images.call("POST", "/images", json={"name": "x", "visibility": "public"})
    assert status == 403
    # Protected images cannot be deleted until unprotected.
    guarded = await images.create(protected=True)
    assert (await images.call("DELETE", f"/images/{guarded['id']}"))[0] == 403
    unprotect = [{"op": "replace", "path": "/protected", "value": False}]
    assert (await images.call("PATCH", f"/images/{guarded['id']}", json=unprotect, content_type=PATCH))[
        0
    ] == 200
    assert (await images.call("DELETE", f"/images/{guarded['id']}"))[0] == 204


async def test_discovery_needs_no_token(cloud: Cloud) -> None:
    async with aiohttp.ClientSession() as http, http.get(f"{cloud.url}/image") as resp:
        assert resp.status == 300
        body = await resp.json()
        assert body["versions"][0]["status"] == "CURRENT"


async def test_a_shared_image_reaches_a_member_project_once_accepted(
    images: Images,
    member_images: Images,
    member: Member,  # noqa: F811
) -> None:
    shared = await images.create(visibility="shared")
    image_id = shared["id"]
    # Before being added, the other project cannot see it.
    assert (await member_images.call("GET", f"/images/{image_id}"))[0] == 404
    status, added, _ = await images.call(
        "POST", f"/images/{image_id}/members", json={"member": member.project_id}
    )
    assert status == 200 and (added["member_id"], added["status"]) == (member.project_id, "pending")
    assert (await images.call("POST", f"/images/{image_id}/members", json={"member": member.project_id}))[
        0
    ] == 409
    # Pending: visible by id, not yet in the default listing, listed when asked for pending ones.
    assert (await member_images.call("GET", f"/images/{image_id}"))[0] == 200
    listed = (await member_images.call("GET", "/images?limit=1000"))[1]["images"]
    assert image_id not in {i["id"] for i in listed}
    listed = (await member_images.call("GET", "/images?limit=1000&member_status=pending"))[1]["images"]
    assert image_id in {i["id"] for i in listed}
    # Only the member answers, and a member cannot change or share the image.
    path = f"/images/{image_id}/members/{member.project_id}"
    assert (await images.call("PUT", path, json={"status": "accepted"}))[0] == 403
    status, answered, _ = await member_images.call("PUT", path, json={"status": "accepted"})
    assert status == 200 and answered["status"] == "accepted"
    listed = (await member_images.call("GET", "/images?limit=1000"))[1]["images"]
    assert image_id in {i["id"] for i in listed}
    assert (await member_images.call("DELETE", f"/images/{image_id}"))[0] == 403
    other = {"member": "someone-else"}
    assert (await member_images.call("POST", f"/images/{image_id}/members", json=other))[0] == 403
    assert (await member_images.call("PUT", path, json={"status": "maybe"}))[0] == 400
    # The owner sees every member, the member only itself; removing one ends its access.
    status, body, _ = await images.call("GET", f"/images/{image_id}/members")
    assert [m["member_id"] for m in body["members"]] == [member.project_id]
    assert (await images.call("DELETE", path))[0] == 204
    assert (await member_images.call("GET", f"/images/{image_id}"))[0] == 404
    assert (await images.call("DELETE", path))[0] == 404


async def test_only_shared_images_have_members(images: Images, member: Member) -> None:  # noqa: F811
    private = await images.create(visibility="private")
    body = {"member": member.project_id}
    assert (await images.call("POST", f"/images/{private['id']}/members", json=body))[0] == 403
    assert (await images.call("POST", f"/images/{private['id']}/members", json={}))[0] == 400


async def test_concurrent_patches_all_land(images: Images) -> None:
    image = await images.create()

    async def add(i: int) -> int:
        ops = [{"op": "add", "path": f"/prop_{i}", "value": str(i)}]
        status, _, _ = await images.call("PATCH", f"/images/{image['id']}", json=ops, content_type=PATCH)
        return status

    assert await asyncio.gather(*(add(i) for i in range(8))) == [200] * 8
    _, shown, _ = await images.call("GET", f"/images/{image['id']}")
    assert {f"prop_{i}" for i in range(8)} <= set(shown), "a patch was lost"
