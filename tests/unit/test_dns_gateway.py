"""The DNS v2 (Designate) gateway over the in-memory bus, with a fake `dns` service
(`fake_dns.py`): discovery without a token, every body in Designate's shape, status codes, what
each request asks the service, Designate's headers and who may use them, and its error bodies.
The async client's DNS calls run against the same gateway at the end."""

import dataclasses
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from fabric.bus import Bus
from fabric.bus.memory import MemoryBroker
from fabric.client import Client, DnsFailed, Token
from fabric.config import Settings
from fabric.gateway.app import build_app
from fabric.gateway.auth import Auth
from fabric.tokens import TokenSealer, new_key
from protocol.codec import decode
from protocol.dns import (
    CreateRecordset,
    CreateZone,
    GetZone,
    ListRecordsets,
    ListZones,
    SetDnsQuotas,
    UpdateRecordset,
    UpdateZone,
)
from protocol.errors import Conflict, FabricError, Forbidden, Invalid, NotFound, QuotaExceeded
from protocol.identity import RoleRef, TokenData
from tests.unit.fake_dns import FakeDns

Http = TestClient[Any, Any]
GW = "http://127.0.0.1:8080"
ZONE_KEYS = {
    "id", "pool_id", "project_id", "name", "email", "description", "ttl", "serial", "status", "action",
    "version", "attributes", "type", "masters", "created_at", "updated_at", "transferred_at", "shared",
    "links",
}  # fmt: skip
RECORDSET_KEYS = {
    "id", "project_id", "zone_id", "zone_name", "name", "type", "records", "ttl", "description",
    "status", "action", "version", "created_at", "updated_at", "links",
}  # fmt: skip
MISSING = str(uuid.UUID(int=1))


def _can_set_quotas() -> bool:
    """SetDnsQuotas's `limits` must have plain `str` keys for the codec to take it."""
    try:
        decode(SetDnsQuotas, {"project_id": "p", "limits": {"zones": 1}})
    except TypeError:
        return False
    return True


# Until then the service cannot decode the message and the call waits out its 60 s.
needs_set_quotas = pytest.mark.skipif(
    not _can_set_quotas(), reason="protocol.dns.SetDnsQuotas.limits keys must be plain str"
)


def token_data(project_id: str, *roles: str) -> TokenData:
    return TokenData(
        user_id=f"u-{project_id}", user_name="someone", user_domain_id="default",
        user_domain_name="Default", project_id=project_id, project_name=project_id,
        project_domain_id="default", project_domain_name="Default", domain_id=None, domain_name=None,
        roles=tuple(RoleRef(id=f"r-{r}", name=r) for r in roles), methods=("password",),
        issued_at=time.time(), expires_at=time.time() + 3600, audit_id=uuid.uuid4().hex,
    )  # fmt: skip


@dataclasses.dataclass
class Cloud:
    http: Http
    dns: FakeDns
    tokens: dict[str, str]

    def h(self, who: str = "member", **headers: str) -> dict[str, str]:
        return {"X-Auth-Token": self.tokens[who], **headers}

    async def call(self, method: str, path: str, who: str = "member", **kw: Any) -> tuple[int, Any]:
        headers = self.h(who, **kw.pop("headers", {}))
        async with self.http.request(method, path, headers=headers, **kw) as resp:
            body = await resp.json() if resp.content_type == "application/json" else None
            if isinstance(body, dict) and "request_id" in body:
                assert body["request_id"] == resp.headers["x-openstack-request-id"]
            return resp.status, body

    async def zone(self, name: str = "example.org.", who: str = "member") -> dict[str, Any]:
        status, body = await self.call("POST", "/dns/v2/zones", who, json={"name": name, "email": "a@b.c"})
        assert status == 202, body
        return dict(body)


@pytest.fixture
async def cloud(tmp_path: Path) -> AsyncIterator[Cloud]:
    broker = MemoryBroker()
    gateway_bus, service_bus = Bus(broker.transport()), Bus(broker.transport())
    await gateway_bus.start()
    await service_bus.start()
    fake = FakeDns()
    await fake.serve(service_bus)
    auth = Auth(gateway_bus)
    auth.sealer = TokenSealer([new_key()])
    tokens = {
        "member": auth.sealer.seal(token_data("p1", "member", "reader")),
        "other": auth.sealer.seal(token_data("p2", "member", "reader")),
        "admin": auth.sealer.seal(token_data("p0", "admin", "member", "reader")),
    }
    settings = dataclasses.replace(Settings(), state_dir=str(tmp_path))
    async with TestClient(TestServer(build_app(gateway_bus, auth, settings))) as http:
        yield Cloud(http, fake, tokens)
    await service_bus.close(drain_s=0.1)
    await gateway_bus.close(drain_s=0.1)


# --- discovery and authentication --------------------------------------------------------------


@pytest.mark.parametrize("path", ["/dns", "/dns/", "/dns/v2", "/dns/v2/"])
async def test_the_version_document_needs_no_token(cloud: Cloud, path: str) -> None:
    async with cloud.http.get(path) as resp:
        assert resp.status == 200
        (v2,) = (await resp.json())["versions"]
    assert (v2["id"], v2["status"]) == ("v2", "CURRENT")
    assert {"rel": "self", "href": f"{GW}/dns/v2"} in v2["links"]


async def test_the_api_needs_a_token_and_answers_as_keystone_does(cloud: Cloud) -> None:
    async with cloud.http.get("/dns/v2/zones") as resp:
        assert resp.status == 401 and "WWW-Authenticate" in resp.headers
        assert (await resp.json())["error"]["code"] == 401
    assert cloud.dns.seen == []


# --- zones -------------------------------------------------------------------------------------


async def test_a_zone_is_created_pending_in_designates_shape(cloud: Cloud) -> None:
    async with cloud.http.post(
        "/dns/v2/zones",
        json={"name": "example.org.", "type": "PRIMARY", "email": "admin@example.org"},
        headers=cloud.h(),
    ) as resp:
        assert resp.status == 202
        zone = await resp.json()
        assert resp.headers["Location"] == zone["links"]["self"]
    msg = cloud.dns.last(CreateZone)
    assert (msg.name, msg.email, msg.ttl, msg.description) == (
        "example.org.",
        "admin@example.org",
        None,
        None,
    )
    assert zone == {
        "id": msg.zone_id, "pool_id": "794ccc2c-d751-44fe-b57f-8894c9f5c842", "project_id": "p1",
        "name": "example.org.", "email": "admin@example.org", "description": None, "ttl": 3600,
        "serial": 1, "status": "PENDING", "action": "CREATE", "version": 1, "attributes": {},
        "type": "PRIMARY", "masters": [], "created_at": "2026-11-26T12:00:00.000000", "updated_at": None,
        "transferred_at": None, "shared": False, "links": {"self": f"{GW}/dns/v2/zones/{msg.zone_id}"},
    }  # fmt: skip
    again = await cloud.zone("example.net.")
    assert again["id"] != zone["id"] and uuid.UUID(again["id"])


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"email": "a@b.c"}, "name"),
        ({"name": "x.org.", "email": "a@b.c", "ttl": "60"}, "ttl"),
        ({"name": "x.org.", "email": "a@b.c", "ttl": 0}, "ttl"),
        ({"name": "x.org.", "email": "a@b.c", "colour": "red"}, "colour"),
        ({"name": "x.org.", "email": "a@b.c", "type": "SECONDARY"}, "type"),
        ({"name": "x.org.", "email": "a@b.c", "masters": ["192.0.2.1"]}, "masters"),
        ({"name": "x.org.", "email": "a@b.c", "attributes": {"tier": "gold"}}, "attributes"),
        ({"name": "x.org."}, "email"),
        ({"name": "x" * 256, "email": "a@b.c"}, "name"),
        ({"name": "x.org.", "email": "a@b.c", "description": "d" * 161}, "description"),
        (["x.org."], "body"),
    ],
)
async def test_a_bad_zone_is_a_400_naming_the_field(cloud: Cloud, body: Any, field: str) -> None:
    status, error = await cloud.call("POST", "/dns/v2/zones", json=body)
    assert status == 400 and error["code"] == 400 and error["type"] == "invalid_object"
    assert field in error["message"] and error["errors"]["errors"][0]["path"] == [field]
    assert cloud.dns.seen == []


@pytest.mark.parametrize(
    ("raw", "kind"),
    [(b"", "empty_request_body"), (b"{'name':", "invalid_json"), (b"  ", "empty_request_body")],
)
async def test_a_body_that_is_not_json_is_a_400(cloud: Cloud, raw: bytes, kind: str) -> None:
    status, error = await cloud.call("POST", "/dns/v2/zones", data=raw)
    assert (status, error["type"]) == (400, kind)


async def test_a_body_over_the_limit_is_a_413(cloud: Cloud) -> None:
    big = {"name": "x.org.", "email": "a@b.c", "description": "d" * (1024 * 1024)}
    status, error = await cloud.call("POST", "/dns/v2/zones", json=big)
    assert status == 413 and error["code"] == 413 and error["request_id"]


async def test_zones_are_listed_with_filters_and_pages(cloud: Cloud) -> None:
    names = [f"z{i}.example.org." for i in range(3)]
    for name in names:
        await cloud.zone(name)
    status, page = await cloud.call("GET", "/dns/v2/zones?limit=2&sort_key=name&sort_dir=desc")
    assert status == 200 and set(page) == {"zones", "links", "metadata"}
    assert [z["name"] for z in page["zones"]] == names[:0:-1] and page["metadata"] == {"total_count": 3}
    assert set(page["zones"][0]) == ZONE_KEYS
    assert page["links"]["self"] == f"{GW}/dns/v2/zones?limit=2&sort_key=name&sort_dir=desc"
    marker = page["zones"][-1]["id"]
    assert page["links"]["next"] == f"{GW}/dns/v2/zones?limit=2&sort_key=name&sort_dir=desc&marker={marker}"
    status, rest = await cloud.call("GET", page["links"]["next"].removeprefix(GW))
    assert [z["name"] for z in rest["zones"]] == names[:1] and "next" not in rest["links"]
    msg = cloud.dns.last(ListZones)
    assert (msg.limit, msg.marker, msg.sort_key, msg.sort_dir, msg.all_projects) == (
        2,
        marker,
        "name",
        "desc",
        False,
    )
    query = "name=z1.example.org.&email=a@b.c&ttl=3600&status=PENDING&description=d&type=PRIMARY"
    status, page = await cloud.call("GET", f"/dns/v2/zones?{query}")
    msg = cloud.dns.last(ListZones)
    assert (msg.name, msg.email, msg.ttl, msg.status, msg.description) == (
        "z1.example.org.", "a@b.c", 3600, "PENDING", "d"
    )  # fmt: skip
    assert msg.limit == 20  # Designate's default page
    asked = len(cloud.dns.seen)
    status, page = await cloud.call("GET", "/dns/v2/zones?type=SECONDARY")
    assert (status, page["zones"], page["metadata"]) == (200, [], {"total_count": 0})
    assert len(cloud.dns.seen) == asked
    assert (await cloud.call("GET", "/dns/v2/zones?limit=max"))[0] == 200
    assert cloud.dns.last(ListZones).limit == 1000


@pytest.mark.parametrize(
    ("query", "kind"),
    [
        ("colour=red", "bad_request"),
        ("name=a.&name=b.", "bad_request"),
        ("ttl=soon", "bad_request"),
        ("limit=0", "invalid_limit"),
        ("limit=-1", "invalid_limit"),
        ("limit=x", "invalid_limit"),
        ("sort_key=colour", "invalid_sort_key"),
        ("sort_dir=up", "invalid_sort_dir"),
    ],
)
async def test_a_bad_list_query_is_a_400_of_its_kind(cloud: Cloud, query: str, kind: str) -> None:
    status, error = await cloud.call("GET", f"/dns/v2/zones?{query}")
    assert (status, error["type"]) == (400, kind), error
    assert cloud.dns.seen == []


async def test_a_zone_is_shown_changed_and_deleted(cloud: Cloud) -> None:
    zone_id = (await cloud.zone())["id"]
    status, shown = await cloud.call("GET", f"/dns/v2/zones/{zone_id}")
    assert status == 200 and set(shown) == ZONE_KEYS and shown["id"] == zone_id
    status, changed = await cloud.call(
        "PATCH", f"/dns/v2/zones/{zone_id}", json={"email": "b@b.c", "ttl": 600, "description": "mine"}
    )
    assert status == 202 and (changed["status"], changed["action"], changed["ttl"]) == (
        "PENDING",
        "UPDATE",
        600,
    )
    assert changed["updated_at"] == "2026-11-26T12:00:02.000000" and "Location" not in changed
    msg = cloud.dns.last(UpdateZone)
    assert (msg.zone_id, msg.email, msg.ttl, msg.description) == (zone_id, "b@b.c", 600, "mine")
    status, cleared = await cloud.call("PATCH", f"/dns/v2/zones/{zone_id}", json={"description": None})
    assert status == 202 and cloud.dns.last(UpdateZone).clear_description and cleared["description"] is None
    status, deleted = await cloud.call("DELETE", f"/dns/v2/zones/{zone_id}")
    assert status == 202 and set(deleted) == ZONE_KEYS
    assert (deleted["id"], deleted["status"], deleted["action"]) == (zone_id, "PENDING", "DELETE")
    status, error = await cloud.call("GET", f"/dns/v2/zones/{zone_id}")
    assert (status, error["type"], error["code"]) == (404, "zone_not_found", 404)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "other.org."}, "name"),
        ({"ttl": None}, "ttl"),
        ({"email": None}, "email"),
        ({"x": 1}, "x"),
        ({"status": "ACTIVE"}, "status"),
        ({"ttl": -5}, "ttl"),
        ({"masters": ["192.0.2.1"]}, "masters"),
    ],
)
async def test_a_bad_zone_change_is_a_400(cloud: Cloud, body: dict[str, Any], field: str) -> None:
    zone_id = (await cloud.zone())["id"]
    status, error = await cloud.call("PATCH", f"/dns/v2/zones/{zone_id}", json=body)
    assert (status, error["type"]) == (400, "invalid_object") and error["errors"]["errors"][0]["path"] == [
        field
    ]


@pytest.mark.parametrize("method", ["GET", "PATCH", "DELETE"])
async def test_an_id_that_is_not_a_uuid_is_a_400(cloud: Cloud, method: str) -> None:
    status, error = await cloud.call(method, "/dns/v2/zones/example.org.", json={})
    assert (status, error["type"]) == (400, "invalid_uuid") and "zone_id" in error["message"]
    status, error = await cloud.call("GET", f"/dns/v2/zones/{MISSING}/recordsets/www")
    assert (status, error["type"]) == (400, "invalid_uuid") and "recordset_id" in error["message"]


# --- recordsets --------------------------------------------------------------------------------


async def test_recordsets_are_created_listed_changed_and_deleted(cloud: Cloud) -> None:
    zone_id = (await cloud.zone())["id"]
    base = f"/dns/v2/zones/{zone_id}/recordsets"
    status, rs = await cloud.call(
        "POST", base, json={"name": "www.example.org.", "type": "a", "records": ["192.0.2.1"]}
    )
    assert status == 202 and set(rs) == RECORDSET_KEYS
    msg = cloud.dns.last(CreateRecordset)
    assert (msg.zone_id, msg.name, msg.type, msg.records, msg.ttl) == (
        zone_id, "www.example.org.", "A", ("192.0.2.1",), None
    )  # fmt: skip
    assert rs["links"] == {"self": f"{GW}{base}/{rs['id']}"} and rs["id"] == msg.recordset_id
    assert (rs["zone_name"], rs["records"], rs["ttl"], rs["status"], rs["action"]) == (
        "example.org.", ["192.0.2.1"], None, "PENDING", "CREATE"
    )  # fmt: skip
    status, page = await cloud.call("GET", base)
    assert status == 200 and {r["type"] for r in page["recordsets"]} == {"SOA", "NS", "A"}
    assert page["metadata"] == {"total_count": 3} and page["links"] == {"self": f"{GW}{base}"}
    status, page = await cloud.call("GET", f"{base}?name=www.example.org.&type=A&data=192.0.2.1&ttl=60")
    msg_list = cloud.dns.last(ListRecordsets)
    assert (msg_list.zone_id, msg_list.name, msg_list.type, msg_list.data, msg_list.ttl) == (
        zone_id, "www.example.org.", "A", "192.0.2.1", 60
    )  # fmt: skip
    status, page = await cloud.call("GET", f"{base}?type=CAA")
    assert (status, page["recordsets"]) == (200, [])
    status, shown = await cloud.call("GET", f"{base}/{rs['id']}")
    assert status == 200 and shown["id"] == rs["id"]
    status, changed = await cloud.call(
        "PUT", f"{base}/{rs['id']}", json={"records": ["192.0.2.2", "192.0.2.3"], "ttl": 300}
    )
    assert status == 202 and (changed["records"], changed["ttl"], changed["action"]) == (
        ["192.0.2.2", "192.0.2.3"], 300, "UPDATE"
    )  # fmt: skip
    update = cloud.dns.last(UpdateRecordset)
    assert (update.records, update.ttl, update.clear_ttl) == (("192.0.2.2", "192.0.2.3"), 300, False)
    status, changed = await cloud.call("PUT", f"{base}/{rs['id']}", json={"ttl": None, "description": None})
    update = cloud.dns.last(UpdateRecordset)
    assert (update.records, update.ttl, update.clear_ttl, update.description) == (None, None, True, None)
    assert update.clear_description
    assert status == 202 and changed["ttl"] is None
    status, deleted = await cloud.call("DELETE", f"{base}/{rs['id']}")
    assert status == 202 and (deleted["status"], deleted["action"]) == ("PENDING", "DELETE")
    status, error = await cloud.call("GET", f"{base}/{rs['id']}")
    assert (status, error["type"]) == (404, "recordset_not_found")


async def test_every_zones_recordsets_are_listed_at_the_root(cloud: Cloud) -> None:
    one, two = (await cloud.zone("one.org."))["id"], (await cloud.zone("two.org."))["id"]
    status, page = await cloud.call("GET", "/dns/v2/recordsets?type=SOA")
    assert status == 200 and {r["zone_id"] for r in page["recordsets"]} == {one, two}
    assert cloud.dns.last(ListRecordsets).zone_id is None
    soa = page["recordsets"][0]
    assert soa["links"]["self"] == f"{GW}/dns/v2/zones/{soa['zone_id']}/recordsets/{soa['id']}"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "www.example.org.", "type": "SOA", "records": ["x"]}, "type"),
        ({"name": "www.example.org.", "type": "CAA", "records": ["x"]}, "type"),
        ({"name": "www.example.org.", "type": "A", "records": []}, "records"),
        ({"name": "www.example.org.", "type": "A", "records": "192.0.2.1"}, "records"),
        ({"name": "www.example.org.", "type": "A"}, "records"),
        ({"type": "A", "records": ["192.0.2.1"]}, "name"),
        ({"name": "www.example.org.", "type": "A", "records": ["192.0.2.1"], "id": MISSING}, "id"),
    ],
)
async def test_a_bad_recordset_is_a_400(cloud: Cloud, body: dict[str, Any], field: str) -> None:
    zone_id = (await cloud.zone())["id"]
    status, error = await cloud.call("POST", f"/dns/v2/zones/{zone_id}/recordsets", json=body)
    assert (status, error["type"]) == (400, "invalid_object") and error["errors"]["errors"][0]["path"] == [
        field
    ]


@pytest.mark.parametrize(("body", "field"), [({"name": "a.org."}, "name"), ({"type": "AAAA"}, "type")])
async def test_a_recordsets_name_and_type_cannot_change(
    cloud: Cloud, body: dict[str, Any], field: str
) -> None:
    zone_id = (await cloud.zone())["id"]
    status, error = await cloud.call("PUT", f"/dns/v2/zones/{zone_id}/recordsets/{MISSING}", json=body)
    assert (status, error["type"]) == (400, "invalid_object") and field in error["message"]


# --- Designate's headers -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "query"),
    [
        ({"X-Auth-All-Projects": "True"}, ""),
        ({}, "?all_projects=True"),
        ({}, "?all_tenants=1"),
        ({"X-Auth-Sudo-Project-ID": "p2"}, ""),
        ({"X-Designate-Edit-Managed-Records": "true"}, ""),
        ({"X-Designate-Hard-Delete": "yes"}, ""),
    ],
)
async def test_designates_admin_headers_are_a_403_for_others(
    cloud: Cloud, headers: dict[str, str], query: str
) -> None:
    status, error = await cloud.call("GET", f"/dns/v2/zones{query}", headers=headers)
    assert (status, error["type"], error["code"]) == (403, "forbidden", 403)
    assert cloud.dns.seen == []


async def test_admins_see_every_project_with_the_header(cloud: Cloud) -> None:
    zone_id = (await cloud.zone())["id"]
    status, _ = await cloud.call("GET", f"/dns/v2/zones/{zone_id}", "admin")
    assert status == 404 and cloud.dns.last(GetZone).all_projects is False
    status, shown = await cloud.call(
        "GET", f"/dns/v2/zones/{zone_id}", "admin", headers={"X-Auth-All-Projects": "True"}
    )
    assert status == 200 and shown["project_id"] == "p1" and cloud.dns.last(GetZone).all_projects is True
    status, page = await cloud.call("GET", "/dns/v2/zones?all_projects=True", "admin")
    assert [z["id"] for z in page["zones"]] == [zone_id] and cloud.dns.last(ListZones).all_projects
    assert "all_projects" not in page["links"]["self"]
    await cloud.call("GET", "/dns/v2/zones", "admin", headers={"X-Auth-All-Projects": "False"})
    assert cloud.dns.last(ListZones).all_projects is False
    status, page = await cloud.call("GET", "/dns/v2/zones", "admin", headers={"X-Auth-Sudo-Project-ID": "p1"})
    assert [z["id"] for z in page["zones"]] == [zone_id] and cloud.dns.seen[-1][1].project_id == "p1"


# --- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "status", "kind"),
    [
        (NotFound("zone", MISSING), 404, "zone_not_found"),
        (NotFound("recordset", MISSING), 404, "recordset_not_found"),
        (NotFound("pool", MISSING), 404, "not_found"),
        (Conflict("zone", "example.org."), 409, "duplicate_zone"),
        (Conflict("recordset", "www.example.org. A"), 409, "duplicate_recordset"),
        (QuotaExceeded("zones", "10"), 413, "over_quota"),
        (Forbidden("create_zone"), 403, "forbidden"),
    ],
)
async def test_service_errors_take_designates_shape(
    cloud: Cloud, error: FabricError, status: int, kind: str
) -> None:
    cloud.dns.fail[CreateZone] = error
    got, body = await cloud.call("POST", "/dns/v2/zones", json={"name": "example.org.", "email": "a@b.c"})
    assert (got, body["code"], body["type"], body["message"]) == (status, status, kind, error.message)
    assert set(body) == {"code", "type", "message", "request_id"}


async def test_a_marker_the_service_does_not_know_is_designates_400(cloud: Cloud) -> None:
    cloud.dns.fail[ListZones] = Invalid("marker", f"marker {MISSING} could not be found")
    status, error = await cloud.call("GET", f"/dns/v2/zones?marker={MISSING}")
    assert (status, error["type"]) == (400, "marker_not_found") and MISSING in error["message"]


async def test_routes_and_methods_that_do_not_exist(cloud: Cloud) -> None:
    status, error = await cloud.call("GET", "/dns/v2/colours")
    assert (status, error["type"]) == (404, "not_found")
    status, error = await cloud.call("PUT", "/dns/v2/zones")
    assert (status, error["type"]) == (405, "method_not_allowed")


# --- quotas ------------------------------------------------------------------------------------


async def test_quotas_show_designates_five_resources(cloud: Cloud) -> None:
    expected = {"api_export_size": 1000, "recordset_records": 20, "zone_records": 500, "zone_recordsets": 500}
    status, own = await cloud.call("GET", "/dns/v2/quotas")
    assert (status, own) == (200, expected | {"zones": 10})
    assert list(own) == sorted(own)
    assert (await cloud.call("GET", "/dns/v2/quotas/p1"))[1] == own
    status, error = await cloud.call("GET", "/dns/v2/quotas/p2")
    assert (status, error["type"]) == (403, "forbidden")
    status, error = await cloud.call("GET", "/dns/v2/quotas/p2", "admin")
    assert status == 403  # another project's: the header too, as Designate's central wants
    status, theirs = await cloud.call(
        "GET", "/dns/v2/quotas/p2", "admin", headers={"X-Auth-All-Projects": "True"}
    )
    assert (status, theirs["zones"]) == (200, 10)


@needs_set_quotas
async def test_admins_set_and_reset_quotas(cloud: Cloud) -> None:
    admin = {"X-Auth-All-Projects": "True"}
    status, got = await cloud.call("PATCH", "/dns/v2/quotas/p2", "admin", headers=admin, json={"zones": 3})
    assert (status, got["zones"], got["zone_records"]) == (200, 3, 500)
    assert cloud.dns.last(SetDnsQuotas).limits == {"zones": 3}
    status, error = await cloud.call("PATCH", "/dns/v2/quotas/p1", json={"zones": 99})
    assert (status, error["type"]) == (403, "forbidden")
    async with cloud.http.delete("/dns/v2/quotas/p2", headers=cloud.h("admin", **admin)) as resp:
        assert resp.status == 204
    assert cloud.dns.last(SetDnsQuotas).limits == {
        "zones": 10,
        "zone_recordsets": 500,
        "recordset_records": 20,
    }


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"zone_records": 9}, "zone_records"),
        ({"colours": 3}, "colours"),
        ({"zones": "3"}, "zones"),
        ({"zones": None}, "zones"),
        ({"zones": -2}, "zones"),
    ],
)
async def test_a_bad_quota_is_a_400(cloud: Cloud, body: dict[str, Any], field: str) -> None:
    headers = {"X-Auth-All-Projects": "True"}
    status, error = await cloud.call("PATCH", "/dns/v2/quotas/p2", "admin", headers=headers, json=body)
    assert (status, error["type"]) == (400, "invalid_object") and error["errors"]["errors"][0]["path"] == [
        field
    ]


# --- the async client --------------------------------------------------------------------------


class TokenClient(Client):
    """The async client with a token given, its catalog naming the test gateway's `/dns`."""

    def __init__(self, token: str, dns_url: str) -> None:
        super().__init__("http://unused/identity/v3", username="u", password="p")
        self._token = Token(
            id=token, user_id="u", user_name="u", project_id="p1", domain_id=None, roles=("member",),
            expires_at="", audit_id="a",
            catalog=({"type": "dns", "endpoints": [{"interface": "public", "url": dns_url}]},),
        )  # fmt: skip

    async def authenticate(self) -> Token:
        self.token = self._token
        return self._token


async def test_the_async_client_through_the_gateway(cloud: Cloud) -> None:
    async with TokenClient(cloud.tokens["member"], str(cloud.http.make_url("/dns"))) as client:
        zone = await client.dns.create_zone("example.org.", "a@b.c", ttl=600, description="d")
        assert (zone.status, zone.action, zone.ttl) == ("PENDING", "CREATE", 600)
        active = await client.dns.wait_active(zone.id, timeout_s=5)
        assert active.status == "ACTIVE"
        for i in range(25):  # more than one page of Designate's default 20
            await client.dns.create_recordset(zone.id, f"h{i}.example.org.", "A", [f"192.0.2.{i}"])
        assert len(await client.dns.recordsets(zone.id)) == 27
        assert [r.type for r in await client.dns.recordsets(zone.id, type="SOA")] == ["SOA"]
        www = await client.dns.create_recordset(zone.id, "www.example.org.", "A", ["192.0.2.1"], ttl=60)
        assert (await client.dns.wait_active(zone.id, www.id, timeout_s=5)).status == "ACTIVE"
        changed = await client.dns.update_recordset(zone.id, www.id, records=["192.0.2.9"], ttl=None)
        assert (changed.records, changed.ttl) == (("192.0.2.9",), None)
        assert [z.name for z in await client.dns.zones(name="example.org.")] == ["example.org."]
        assert (await client.dns.update_zone(zone.id, email="b@b.c")).email == "b@b.c"
        assert (await client.dns.quotas())["zones"] == 10
        assert (await client.dns.delete_recordset(zone.id, www.id)).action == "DELETE"
        assert await client.dns.recordset(zone.id, www.id) is None
        assert (await client.dns.delete_zone(zone.id)).action == "DELETE"
        assert await client.dns.zone(zone.id) is None
        with pytest.raises(LookupError):
            await client.dns.wait_active(zone.id, timeout_s=1)
        cloud.dns.gets_until_active = 10**6
        pending = await client.dns.create_zone("slow.org.", "a@b.c")
        with pytest.raises(TimeoutError):
            await client.dns.wait_active(pending.id, timeout_s=0.2)
        cloud.dns.zones[pending.id] = dataclasses.replace(cloud.dns.zones[pending.id], status="ERROR")
        with pytest.raises(DnsFailed):
            await client.dns.wait_active(pending.id, timeout_s=1)
