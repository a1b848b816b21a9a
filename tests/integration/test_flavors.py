"""Compute v2.1 flavors through the gateway: admins manage them, projects use what they may."""

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from fabric.client import Client
from fabric.compose import Cloud
from tests.integration.test_identity import Member, member  # noqa: F401 - the fixture
from tests.support import api_call

pytestmark = [pytest.mark.postgres, pytest.mark.amqp]


class Nova:
    def __init__(self, cloud: Cloud, token: str) -> None:
        self.base = f"{cloud.url}/compute/v2.1"
        self.token = token

    async def call(
        self, method: str, path: str, json: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, Any, dict[str, str]]:
        return await api_call(method, f"{self.base}{path}", self.token, json=json, headers=headers)

    async def create(self, **fields: Any) -> dict[str, Any]:
        flavor = {"name": f"flv-{uuid.uuid4().hex[:8]}", "ram": 512, "vcpus": 1, "disk": 1, **fields}
        status, body, _ = await self.call("POST", "/flavors", {"flavor": flavor})
        assert status == 200, body
        return dict(body["flavor"])


@pytest.fixture
async def nova(cloud: Cloud, admin: Client) -> Nova:
    assert admin.token is not None
    return Nova(cloud, admin.token.id)


@pytest.fixture
async def member_nova(cloud: Cloud, admin: Client, member: Member) -> AsyncIterator[Nova]:  # noqa: F811
    async with Client(
        admin.auth_url, username=member.name, password=member.password, project_name=member.project_name
    ) as client:
        assert client.token is not None
        yield Nova(cloud, client.token.id)


async def test_version_document_and_microversion_headers(nova: Nova) -> None:
    status, body, headers = await nova.call("GET", "")
    assert status == 200
    assert (body["version"]["version"], body["version"]["min_version"]) == ("2.37", "2.1")
    # No version asked: 2.1, echoed in both of Nova's headers.
    assert headers["OpenStack-API-Version"] == "compute 2.1"
    assert headers["X-OpenStack-Nova-API-Version"] == "2.1"
    status, body, _ = await nova.call("GET", "/flavors", headers={"OpenStack-API-Version": "compute 2.60"})
    assert status == 406 and body["notAcceptable"]["code"] == 406
    status, body, _ = await nova.call("GET", "/flavors", headers={"OpenStack-API-Version": "compute 2.x"})
    assert status == 400 and body["badRequest"]["code"] == 400
    status, _, headers = await nova.call(
        "GET", "/flavors", headers={"X-OpenStack-Nova-API-Version": "latest"}
    )
    assert status == 200 and headers["OpenStack-API-Version"] == "compute 2.37"
    # Errors carry the echo too.
    status, _, headers = await nova.call(
        "GET", "/flavors/nope", headers={"OpenStack-API-Version": "compute 2.26"}
    )
    assert status == 404 and headers["X-OpenStack-Nova-API-Version"] == "2.26"


async def test_flavor_lifecycle_as_the_cli_sends_it(nova: Nova) -> None:
    name = f"flv-{uuid.uuid4().hex[:8]}"
    body = {"flavor": {"name": name, "ram": 512, "vcpus": 1, "disk": 1, "id": None, "swap": 0,
                       "OS-FLV-EXT-DATA:ephemeral": 0, "os-flavor-access:is_public": True}}  # fmt: skip
    status, created, _ = await nova.call("POST", "/flavors", body)
    assert status == 200, created
    flavor = created["flavor"]
    assert (flavor["name"], flavor["ram"], flavor["vcpus"], flavor["swap"]) == (name, 512, 1, "")
    status, listed, _ = await nova.call("GET", "/flavors")
    mine = [f for f in listed["flavors"] if f["id"] == flavor["id"]]
    assert mine and set(mine[0]) == {"id", "name", "links"}
    status, detail, _ = await nova.call("GET", "/flavors/detail?is_public=None")
    assert flavor["id"] in {f["id"] for f in detail["flavors"]}
    assert (await nova.call("GET", f"/flavors/{flavor['id']}"))[0] == 200
    assert (await nova.call("POST", "/flavors", body))[0] == 409
    assert (await nova.call("DELETE", f"/flavors/{flavor['id']}"))[0] == 202
    status, gone, _ = await nova.call("GET", f"/flavors/{flavor['id']}")
    assert status == 404 and gone["itemNotFound"]["code"] == 404


async def test_bad_flavors_are_refused_by_field(nova: Nova) -> None:
    for flavor, field in (
        ({"name": "x", "ram": 0, "vcpus": 1}, "ram"),
        ({"name": "x", "ram": 512, "vcpus": -1}, "vcpus"),
        ({"ram": 512, "vcpus": 1}, "name"),
        ({"name": "x", "ram": 512, "vcpus": 1, "OS-FLV-EXT-DATA:ephemeral": -2}, "ephemeral"),
        ({"name": "x", "ram": 512, "vcpus": 1, "os-flavor-access:is_public": "yes"}, "is_public"),
        ({"name": "x", "ram": 512, "vcpus": 1, "colour": "red"}, "colour"),
    ):
        status, body, _ = await nova.call("POST", "/flavors", {"flavor": flavor})
        assert status == 400, (flavor, body)
        assert field in body["badRequest"]["message"]
    assert (await nova.call("GET", "/flavors?minRam=lots"))[0] == 400


async def test_private_flavors_reach_only_projects_given_access(
    nova: Nova,
    member_nova: Nova,
    member: Member,  # noqa: F811
) -> None:
    public = await nova.create()
    private = await nova.create(**{"os-flavor-access:is_public": False})
    listed = {f["id"] for f in (await member_nova.call("GET", "/flavors/detail"))[1]["flavors"]}
    assert public["id"] in listed and private["id"] not in listed
    assert (await member_nova.call("GET", f"/flavors/{private['id']}"))[0] == 404
    grant = {"addTenantAccess": {"tenant": member.project_id}}
    status, access, _ = await nova.call("POST", f"/flavors/{private['id']}/action", grant)
    assert status == 200 and access["flavor_access"] == [
        {"flavor_id": private["id"], "tenant_id": member.project_id}
    ]
    assert (await member_nova.call("GET", f"/flavors/{private['id']}"))[0] == 200
    listed = {f["id"] for f in (await member_nova.call("GET", "/flavors/detail"))[1]["flavors"]}
    assert private["id"] in listed
    assert (await nova.call("POST", f"/flavors/{private['id']}/action", grant))[0] == 409
    assert (await nova.call("POST", f"/flavors/{public['id']}/action", grant))[0] == 409
    take = {"removeTenantAccess": {"tenant": member.project_id}}
    assert (await nova.call("POST", f"/flavors/{private['id']}/action", take))[0] == 200
    assert (await member_nova.call("GET", f"/flavors/{private['id']}"))[0] == 404
    # Members manage nothing.
    assert (await member_nova.call("POST", "/flavors", {"flavor": {"name": "m", "ram": 1, "vcpus": 1}}))[
        0
    ] == 403
    assert (await member_nova.call("DELETE", f"/flavors/{public['id']}"))[0] == 403
    assert (await member_nova.call("POST", f"/flavors/{private['id']}/action", grant))[0] == 403


async def test_flavor_pages(nova: Nova) -> None:
    for _ in range(3):
        await nova.create()
    seen: list[str] = []
    status, body, _ = await nova.call("GET", "/flavors/detail?limit=2")
    while True:
        assert status == 200
        seen += [f["id"] for f in body["flavors"]]
        if "flavors_links" not in body:
            break
        status, body, _ = await nova.call("GET", body["flavors_links"][0]["href"].split("/v2.1", 1)[1])
    assert len(seen) == len(set(seen)) >= 3
    assert seen == sorted(seen)


async def test_extra_specs(nova: Nova, member_nova: Nova) -> None:
    flavor = await nova.create()
    path = f"/flavors/{flavor['id']}/os-extra_specs"
    assert (await nova.call("GET", path))[1] == {"extra_specs": {}}
    status, body, _ = await nova.call("POST", path, {"extra_specs": {"hw:cpu_policy": "dedicated", "n": 2}})
    assert status == 200 and body == {"extra_specs": {"hw:cpu_policy": "dedicated", "n": "2"}}
    assert (await member_nova.call("GET", path))[1]["extra_specs"] == {"hw:cpu_policy": "dedicated", "n": "2"}
    assert (await member_nova.call("POST", path, {"extra_specs": {"x": "y"}}))[0] == 403
    assert (await nova.call("GET", f"{path}/n"))[1] == {"n": "2"}
    assert (await nova.call("DELETE", f"{path}/n"))[0] == 200
    assert (await nova.call("GET", f"{path}/n"))[0] == 404
    assert (await nova.call("DELETE", f"{path}/n"))[0] == 404
    assert (await nova.call("POST", path, {"extra_specs": {}}))[0] == 400
