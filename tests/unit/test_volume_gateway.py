"""The Block Storage gateway's own parts, without a cloud: version documents and negotiation over
HTTP (no token needed), request bodies to messages, and Cinder's response shapes."""

import dataclasses
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import given
from hypothesis import strategies as st

from fabric.bus import Bus
from fabric.bus.memory import MemoryBroker
from fabric.config import Settings
from fabric.gateway.app import build_app
from fabric.gateway.auth import Auth
from fabric.gateway.volume import create_message, metadata_filter, whole_number
from fabric.gateway.volume_views import Links, quota_set_body, type_body, volume_body, volume_summary
from protocol.envelope import Context
from protocol.errors import Invalid
from protocol.volume import AttachmentView, VolumeQuotaSet, VolumeTypeView, VolumeView

#: What `openstack volume create --size 1 V` sends (recorded from the real CLI).
SDK_CREATE = {
    "volume": {
        "volume_type": None, "imageRef": None, "source_volid": None, "snapshot_id": None,
        "availability_zone": None, "backup_id": None, "consistencygroup_id": None, "metadata": None,
        "name": "vol1", "size": 1, "description": None,
    }
}  # fmt: skip
SNAPSHOT_ID = "0b3e2a55-3f6f-4c59-a3a4-1f5a5e0d9c11"


@pytest.fixture
async def http(tmp_path: Path) -> AsyncIterator[TestClient[Any, Any]]:
    bus = Bus(MemoryBroker().transport())
    settings = dataclasses.replace(Settings(), state_dir=str(tmp_path))
    async with TestClient(TestServer(build_app(bus, Auth(bus), settings))) as client:
        yield client


@pytest.mark.parametrize(
    ("path", "status"), [("/volume", 300), ("/volume/", 300), ("/volume/v3", 200), ("/volume/v3/", 200)]
)
async def test_version_documents_need_no_token(http: TestClient[Any, Any], path: str, status: int) -> None:
    resp = await http.get(path)
    assert resp.status == status
    (doc,) = (await resp.json())["versions"]
    assert (doc["id"], doc["status"], doc["version"], doc["min_version"]) == ("v3.0", "CURRENT", "3.0", "3.0")
    assert {"rel": "self", "href": "http://127.0.0.1:8080/volume/v3/"} in doc["links"]
    assert doc["media-types"][0]["base"] == "application/json"
    assert resp.headers["OpenStack-API-Version"] == "volume 3.0"
    assert resp.headers["Vary"] == "OpenStack-API-Version"


@pytest.mark.parametrize("asked", ["volume 3.0", "volume latest", "compute 2.1", "compute 2.1, volume 3.0"])
async def test_version_3_0_is_served(http: TestClient[Any, Any], asked: str) -> None:
    resp = await http.get("/volume/v3/", headers={"OpenStack-API-Version": asked})
    assert resp.status == 200 and resp.headers["OpenStack-API-Version"] == "volume 3.0"


async def test_other_versions_are_refused_as_cinder_refuses_them(http: TestClient[Any, Any]) -> None:
    resp = await http.get("/volume/v3/", headers={"OpenStack-API-Version": "volume 3.71"})
    assert resp.status == 406
    assert "Minimum is 3.0 and maximum is 3.0" in (await resp.json())["computeFault"]["message"]
    resp = await http.get("/volume/v3/", headers={"OpenStack-API-Version": "volume 3.x"})
    assert resp.status == 400 and "OpenStack-API-Version" in (await resp.json())["badRequest"]["message"]


async def test_errors_take_cinders_shape_and_echo_the_version(http: TestClient[Any, Any]) -> None:
    resp = await http.get("/volume/v3/p1/volumes/detail")
    assert resp.status == 401 and (await resp.json())["error"]["code"] == 401
    assert resp.headers["OpenStack-API-Version"] == "volume 3.0"
    resp = await http.delete("/volume/v3/")
    assert resp.status == 405 and (await resp.json())["badMethod"]["code"] == 405


# --- bodies to messages ------------------------------------------------------------------------


def test_the_nulls_the_sdk_sends_are_accepted() -> None:
    msg = create_message(SDK_CREATE)
    assert (msg.size_gb, msg.name, msg.description, msg.volume_type, msg.image_id, msg.metadata) == (
        1, "vol1", None, None, None, {}
    )  # fmt: skip
    assert msg.snapshot_id is None and msg.source_volume_id is None and len(msg.volume_id) == 36
    assert create_message(SDK_CREATE).volume_id != msg.volume_id


def with_fields(**fields: Any) -> dict[str, Any]:
    return {"volume": SDK_CREATE["volume"] | fields}


@pytest.mark.parametrize("size", [0, -1, "x", "1.5", 1.5, True, [], {}, 2**20 + 1, ""])
def test_a_bad_size_names_the_field(size: Any) -> None:
    with pytest.raises(Invalid) as err:
        create_message(with_fields(size=size))
    assert err.value.field == "volume.size"


def test_sizes_as_cinder_takes_them() -> None:
    assert create_message(with_fields(size="3")).size_gb == 3
    with pytest.raises(Invalid, match="required unless"):
        create_message(with_fields(size=None))
    from_snapshot = create_message(with_fields(size=None, snapshot_id=SNAPSHOT_ID))
    assert (from_snapshot.size_gb, from_snapshot.snapshot_id) == (None, SNAPSHOT_ID)


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"backup_id": SNAPSHOT_ID}, "volume.backup_id"),
        ({"consistencygroup_id": SNAPSHOT_ID}, "volume.consistencygroup_id"),
        ({"snapshot_id": "not-a-uuid"}, "volume.snapshot_id"),
        ({"source_volid": "x" * 70}, "volume.source_volid"),
        ({"metadata": {"k": 1}}, "volume.metadata.k"),
        ({"metadata": {"": "v"}}, "volume.metadata."),
        ({"name": "n" * 256}, "volume.name"),
        ({"multiattach": True}, "volume.multiattach"),
        ({"imageRef": ""}, "volume.imageRef"),
    ],
)
def test_bad_fields_are_named(fields: dict[str, Any], field: str) -> None:
    with pytest.raises(Invalid) as err:
        create_message(with_fields(**fields))
    assert err.value.field == field


def test_what_else_a_create_takes() -> None:
    msg = create_message(
        with_fields(imageRef="http://x/image/v2/images/abc", name="  spaced  ", multiattach=False)
    )
    assert (msg.image_id, msg.name) == ("abc", "spaced")
    assert create_message(with_fields(volume_type="", availability_zone="")).volume_type is None
    with pytest.raises(Invalid) as err:
        create_message({"volume": {"size": 1}, "OS-SCH-HNT:scheduler_hints": {"same_host": ["x"]}})
    assert err.value.field == "OS-SCH-HNT:scheduler_hints"
    with pytest.raises(Invalid) as err:
        create_message({"volume": {"size": 1}, "other": 1})
    assert err.value.field == "other"


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
        lambda c: st.lists(c) | st.dictionaries(st.text(), c),
        max_leaves=20,
    )
)
def test_any_json_is_a_message_or_invalid(value: Any) -> None:
    for body in (value, {"volume": value}, {"volume": {"size": value}}, with_fields(metadata=value)):
        try:
            create_message(body)
        except Invalid:
            pass
    try:
        whole_number(value, "size")
    except Invalid:
        pass


def test_the_metadata_filter_is_a_dict_literal() -> None:
    assert metadata_filter("{'k': 'v'}") == {"k": "v"}
    assert metadata_filter('{"k": "v", "n": 1}') == {"k": "v", "n": "1"}
    for bad in ("k=v", "['k']", "{1: 'v'}", "(" * 5000, "__import__('os')"):
        with pytest.raises(Invalid) as err:
            metadata_filter(bad)
        assert err.value.field == "metadata"


# --- Cinder's shapes ---------------------------------------------------------------------------


def volume(**fields: Any) -> VolumeView:
    now = time.time()
    base: dict[str, Any] = {
        "id": "v1", "name": "vol", "description": None, "project_id": "p1", "user_id": "u1",
        "size_gb": 1, "status": "available", "error_reason": None, "availability_zone": "nova",
        "volume_type": "__DEFAULT__", "bootable": False, "image_metadata": {}, "snapshot_id": None,
        "source_volume_id": None, "metadata": {}, "host": "storage-1", "attachments": (),
        "created_at": now, "updated_at": now,
    }  # fmt: skip
    return VolumeView(**base | fields)


USER = Context(request_id="r", user_id="u1", project_id="p1", roles=("member", "reader"))
ADMIN = Context(request_id="r", user_id="a", project_id="p0", roles=("admin", "member", "reader"))
LINKS = Links("http://gw", "p1")


def test_a_volume_looks_as_cinder_shows_it() -> None:
    attachment = AttachmentView(
        attachment_id="a1",
        volume_id="v1",
        server_id="s1",
        host="compute-1",
        device="/dev/vdb",
        attached_at=0.0,
    )
    body = volume_body(volume(status="in-use", attachments=(attachment,), bootable=True), USER, LINKS)
    assert (body["bootable"], body["encrypted"], body["multiattach"], body["size"]) == (
        "true",
        False,
        False,
        1,
    )
    assert body["attachments"] == [
        {"id": "v1", "attachment_id": "a1", "volume_id": "v1", "server_id": "s1", "host_name": None,
         "device": "/dev/vdb", "attached_at": "1970-01-01T00:00:00.000000"}
    ]  # fmt: skip
    assert body["links"] == [
        {"rel": "self", "href": "http://gw/volume/v3/p1/volumes/v1"},
        {"rel": "bookmark", "href": "http://gw/volume/p1/volumes/v1"},
    ]
    assert body["os-vol-tenant-attr:tenant_id"] == "p1"
    assert "os-vol-host-attr:host" not in body and "volume_image_metadata" not in body
    assert "error_reason" not in body
    admin = volume_body(volume(attachments=(attachment,)), ADMIN, LINKS)
    assert (
        admin["os-vol-host-attr:host"] == "storage-1" and admin["attachments"][0]["host_name"] == "compute-1"
    )
    assert admin["os-vol-mig-status-attr:migstat"] is None
    failed = volume_body(
        volume(status="error", error_reason="no room", image_metadata={"image_id": "i"}), USER, LINKS
    )
    assert failed["error_reason"] == "no room" and failed["volume_image_metadata"] == {"image_id": "i"}
    assert set(volume_summary(volume(), LINKS)) == {"id", "name", "links"}


def test_types_hide_the_backend_from_users() -> None:
    t = VolumeTypeView(
        id="t1", name="fast", description=None, is_public=True, is_default=False,
        extra_specs={"volume_backend_name": "file", "multiattach": "<is> False"},
    )  # fmt: skip
    assert type_body(t, USER)["extra_specs"] == {"multiattach": "<is> False"}
    assert type_body(t, ADMIN)["extra_specs"]["volume_backend_name"] == "file"
    assert type_body(t, USER)["os-volume-type-access:is_public"] is True


def test_quota_sets_with_and_without_usage() -> None:
    q = VolumeQuotaSet(project_id="p1", limits={"volumes": 10, "gigabytes": 1000}, in_use={"volumes": 2})
    assert quota_set_body(q, usage=False) == {"id": "p1", "volumes": 10, "gigabytes": 1000}
    assert quota_set_body(q, usage=True)["volumes"] == {"limit": 10, "in_use": 2, "reserved": 0}
