"""Volumes on servers through the gateway, on fake compute hosts and a fake volume host: Nova's
os-volume_attachments coupled with Cinder's statuses, and boot from volume."""

import asyncio
import time
import uuid
from typing import Any

import pytest

from fabric.client import Client
from fabric.compose import Cloud
from tests.integration.test_identity import Member, member  # noqa: F401 - the fixture
from tests.integration.test_servers import Api, login
from tests.support import api_call

pytestmark = [pytest.mark.postgres, pytest.mark.amqp]


class Cinder:
    """Block Storage v3 of one project, with that project's token."""

    def __init__(self, api: Api, project_id: str) -> None:
        self.api = api
        self.base = f"{api.url}/volume/v3/{project_id}"

    async def call(self, method: str, path: str, json: Any = None) -> tuple[int, Any]:
        status, body, _ = await api_call(method, f"{self.base}{path}", self.api.token, json=json)
        return status, body

    async def create(self, size: int = 1, **fields: Any) -> dict[str, Any]:
        status, body = await self.call("POST", "/volumes", {"volume": {"size": size} | fields})
        assert status == 202, body
        return dict(body["volume"])

    async def wait(self, volume_id: str, status: str, *, timeout_s: float = 30.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        last: Any = None
        while time.monotonic() < deadline:
            code, body = await self.call("GET", f"/volumes/{volume_id}")
            if status == "deleted" and code == 404:
                return {}
            assert code == 200, body
            last = body["volume"]
            if last["status"] == status:
                return dict(last)
            await asyncio.sleep(0.05)
        raise AssertionError(f"volume {volume_id} not {status} in {timeout_s}s: {last}")


async def project_of(client: Client) -> str:
    assert client.token is not None and client.token.project_id is not None
    return client.token.project_id


@pytest.fixture
async def api(cloud: Cloud, admin: Client) -> Api:
    assert admin.token is not None
    return Api(cloud, admin.token.id)


@pytest.fixture
async def cinder(api: Api, admin: Client) -> Cinder:
    return Cinder(api, await project_of(admin))


async def attach(api: Api, server_id: str, volume_id: str) -> tuple[int, Any]:
    body = {"volumeAttachment": {"volumeId": volume_id}}
    return await api.nova("POST", f"/servers/{server_id}/os-volume_attachments", body)


async def active_server(api: Api, maker: Api | None = None) -> dict[str, Any]:
    """An ACTIVE server of `api`'s project, on an image and flavor `maker` (an admin) made."""
    maker = maker or api
    image, flavor = await maker.image(visibility="public"), await maker.flavor()
    return await api.wait((await api.boot(image["id"], flavor["id"]))["id"], "ACTIVE")


async def test_attach_and_detach_couple_nova_and_cinder(api: Api, cinder: Cinder) -> None:
    server = await active_server(api)
    volume = await cinder.wait((await cinder.create(1, name="data"))["id"], "available")
    status, made = await attach(api, server["id"], volume["id"])
    assert status == 200, made
    assert made["volumeAttachment"] == {
        "id": volume["id"], "serverId": server["id"], "volumeId": volume["id"], "device": "/dev/vdb"
    }  # fmt: skip
    in_use = await cinder.wait(volume["id"], "in-use")
    (attached,) = in_use["attachments"]
    assert attached["server_id"] == server["id"] and attached["device"] == "/dev/vdb"
    _, shown = await api.nova("GET", f"/servers/{server['id']}")
    assert shown["server"]["os-extended-volumes:volumes_attached"] == [{"id": volume["id"]}]
    status, listed = await api.nova("GET", f"/servers/{server['id']}/os-volume_attachments")
    assert status == 200 and [a["volumeId"] for a in listed["volumeAttachments"]] == [volume["id"]]
    status, one = await api.nova("GET", f"/servers/{server['id']}/os-volume_attachments/{volume['id']}")
    assert status == 200 and one["volumeAttachment"]["device"] == "/dev/vdb"
    # The fake host shows the disk on the console as the test guest would.
    _, console = await api.nova("POST", f"/servers/{server['id']}/action", {"os-getConsoleOutput": {}})
    assert f"serial={volume['id'][:20]}" in console["output"]

    # In use: neither deleted nor attached a second time.
    status, body = await cinder.call("DELETE", f"/volumes/{volume['id']}?cascade=False")
    assert status == 400, body
    status, body = await attach(api, server["id"], volume["id"])
    assert status == 400, body

    status, _ = await api.nova("DELETE", f"/servers/{server['id']}/os-volume_attachments/{volume['id']}")
    assert status == 202
    available = await cinder.wait(volume["id"], "available")
    assert available["attachments"] == []
    _, shown = await api.nova("GET", f"/servers/{server['id']}")
    assert shown["server"]["os-extended-volumes:volumes_attached"] == []
    status, _ = await api.nova("GET", f"/servers/{server['id']}/os-volume_attachments/{volume['id']}")
    assert status == 404
    await api.nova("DELETE", f"/servers/{server['id']}")
    await api.wait(server["id"], "DELETED")
    assert (await cinder.call("DELETE", f"/volumes/{volume['id']}"))[0] == 202
    await cinder.wait(volume["id"], "deleted")


async def test_one_volume_two_servers_at_once_exactly_one_wins(api: Api, cinder: Cinder) -> None:
    a, b = await asyncio.gather(active_server(api), active_server(api))
    volume = await cinder.wait((await cinder.create(1))["id"], "available")
    body = {"volumeAttachment": {"volumeId": volume["id"], "device": None}}
    answers = await asyncio.gather(
        api.nova("POST", f"/servers/{a['id']}/os-volume_attachments", body),
        api.nova("POST", f"/servers/{b['id']}/os-volume_attachments", body),
    )
    codes = sorted(status for status, _ in answers)
    assert codes[0] == 200 and codes[1] in (400, 409), answers
    winner = a if answers[0][0] == 200 else b
    in_use = await cinder.wait(volume["id"], "in-use")
    assert [x["server_id"] for x in in_use["attachments"]] == [winner["id"]]
    # Deleting the server gives the volume back.
    for server in (a, b):
        await api.nova("DELETE", f"/servers/{server['id']}")
    await asyncio.gather(api.wait(a["id"], "DELETED"), api.wait(b["id"], "DELETED"))
    assert (await cinder.wait(volume["id"], "available"))["attachments"] == []
    await cinder.call("DELETE", f"/volumes/{volume['id']}")


async def test_attach_refuses_what_it_should(
    cloud: Cloud,
    api: Api,
    cinder: Cinder,
    admin: Client,
    member: Member,  # noqa: F811
) -> None:
    server = await active_server(api)
    path = f"/servers/{server['id']}/os-volume_attachments"
    for body, field in (
        ({"volumeAttachment": {"volumeId": "not-a-uuid"}}, "volumeId"),
        ({"volumeAttachment": {}}, "volumeId"),
        ({"volumeAttachment": {"volumeId": str(uuid.uuid4()), "device": "vdb"}}, "device"),
    ):
        status, answer = await api.nova("POST", path, body)
        assert status == 400 and field in answer["badRequest"]["message"], answer
    status, _ = await api.nova("POST", path, {"volumeAttachment": {"volumeId": str(uuid.uuid4())}})
    assert status == 404
    status, _ = await api.nova("DELETE", f"{path}/{uuid.uuid4()}")
    assert status == 404
    # Another project: cannot see our server, nor attach our volume to theirs.
    other = await login(cloud, admin, member)
    theirs = await active_server(other, api)
    volume = await cinder.wait((await cinder.create(1))["id"], "available")
    status, _ = await other.nova("POST", path, {"volumeAttachment": {"volumeId": volume["id"]}})
    assert status == 404
    status, _ = await attach(other, theirs["id"], volume["id"])
    assert status == 404
    assert (await cinder.wait(volume["id"], "available"))["attachments"] == []
    # A stopped server takes a volume (into its definition).
    await api.nova("POST", f"/servers/{server['id']}/action", {"os-stop": None})
    await api.wait(server["id"], "SHUTOFF")
    status, answer = await api.nova("POST", path, {"volumeAttachment": {"volumeId": volume["id"]}})
    assert status == 200, answer
    await cinder.wait(volume["id"], "in-use")
    for s, client in ((server, api), (theirs, other)):
        await client.nova("DELETE", f"/servers/{s['id']}")
        await client.wait(s["id"], "DELETED")
    await cinder.wait(volume["id"], "available")
    await cinder.call("DELETE", f"/volumes/{volume['id']}")


async def test_boot_from_a_volume_made_of_an_image(api: Api, cinder: Cinder) -> None:
    image, flavor = await api.image(), await api.flavor(disk=0)
    mapping = {
        "uuid": image["id"],
        "boot_index": 0,
        "source_type": "image",
        "destination_type": "volume",
        "volume_size": 2,
        "delete_on_termination": True,
    }
    server = await api.boot("", flavor["id"], block_device_mapping_v2=[mapping])
    active = await api.wait(server["id"], "ACTIVE")
    assert active["image"] == ""
    (root,) = active["os-extended-volumes:volumes_attached"]
    volume = await cinder.wait(root["id"], "in-use")
    assert volume["bootable"] == "true" and volume["size"] == 2
    assert volume["volume_image_metadata"]["image_id"] == image["id"]
    assert volume["attachments"][0]["server_id"] == server["id"]
    # The root volume is not detachable.
    status, _ = await api.nova("DELETE", f"/servers/{server['id']}/os-volume_attachments/{root['id']}")
    assert status == 400
    await api.nova("DELETE", f"/servers/{server['id']}")
    await api.wait(server["id"], "DELETED")
    await cinder.wait(root["id"], "deleted")  # delete_on_termination


async def test_boot_from_an_existing_volume_keeps_it(api: Api, cinder: Cinder) -> None:
    image, flavor = await api.image(), await api.flavor()
    volume = await cinder.wait((await cinder.create(1, imageRef=image["id"]))["id"], "available")
    mapping = {"uuid": volume["id"], "boot_index": "0", "source_type": "volume", "destination_type": "volume"}
    server = await api.boot("", flavor["id"], block_device_mapping_v2=[mapping])
    active = await api.wait(server["id"], "ACTIVE")
    assert active["os-extended-volumes:volumes_attached"] == [{"id": volume["id"]}]
    await cinder.wait(volume["id"], "in-use")
    # A volume in use cannot be booted from again.
    status, body = await api.nova(
        "POST",
        "/servers",
        {
            "server": {
                "name": "again",
                "imageRef": "",
                "flavorRef": flavor["id"],
                "block_device_mapping_v2": [mapping],
            }
        },
    )
    assert status == 400 and "block_device_mapping_v2[0].uuid" in body["badRequest"]["message"], body
    await api.nova("DELETE", f"/servers/{server['id']}")
    await api.wait(server["id"], "DELETED")
    kept = await cinder.wait(volume["id"], "available")
    assert kept["attachments"] == []
    await cinder.call("DELETE", f"/volumes/{volume['id']}")


async def test_boot_mappings_this_cloud_does_not_take_are_refused(api: Api) -> None:
    image, flavor = await api.image(), await api.flavor()
    for mapping, field in (
        ({"uuid": image["id"], "boot_index": 1, "source_type": "volume", "destination_type": "volume"},
         "boot_index"),
        ({"boot_index": 0, "source_type": "blank", "destination_type": "volume"}, "source_type"),
        ({"uuid": image["id"], "boot_index": 0, "source_type": "image", "destination_type": "volume",
          "volume_size": 0}, "volume_size"),
        ({"uuid": str(uuid.uuid4()), "boot_index": 0, "source_type": "volume", "destination_type": "volume"},
         "uuid"),
    ):  # fmt: skip
        status, body = await api.nova(
            "POST",
            "/servers",
            {"server": {"name": "x", "flavorRef": flavor["id"], "block_device_mapping_v2": [mapping]}},
        )
        assert status == 400 and field in body["badRequest"]["message"], (mapping, body)


async def test_up_gives_the_demo_vm_a_volume_once(api: Api, admin: Client) -> None:
    """`fabric up`'s demo attaches `demo-data` to its VM; seeding again changes nothing."""
    from fabric.seed import seed_demo_volume

    server = await active_server(api)
    await seed_demo_volume(admin, server["id"])
    await seed_demo_volume(admin, server["id"])
    (volume,) = await admin.volume.list_volumes(name="demo-data")
    assert volume.status == "in-use" and [a["server_id"] for a in volume.attachments] == [server["id"]]
    await api.nova("DELETE", f"/servers/{server['id']}")
    await api.wait(server["id"], "DELETED")
    await admin.volume.wait(volume.id, "available")
    await admin.volume.delete_volume(volume.id)
    await admin.volume.wait(volume.id, "deleted")
