"""The stock `openstack` CLI with python-designateclient (both from PyPI) against `fabric up`:
zones, recordsets and DNS quotas as a user runs them, with the CLI's JSON output, and the names
answered by the cloud's nameserver once the API says ACTIVE."""

import asyncio
import importlib.util
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

from fabric.client import Client
from fabric.config import Settings
from fabric.powerdns import resolve, why_no_powerdns
from tests.compat.cli_forks import Forks
from tests.compat.test_openstack_cli import Cli, fabric_up, why_no_cli

pytestmark = [pytest.mark.compat, pytest.mark.postgres, pytest.mark.amqp]
#: How long a change may take to be served (PENDING to ACTIVE).
ACTIVE_TIMEOUT_S = 30.0


@dataclass
class DnsCloud:
    cli: Cli
    settings: Settings
    #: Why the cloud runs no nameserver here, or None when it answers on settings.dns_port.
    no_nameserver: str | None

    async def eventually(self, args: tuple[str, ...], done: Any, timeout_s: float = ACTIVE_TIMEOUT_S) -> Any:
        """Runs `openstack ARGS -f json` until `done(output)`; the last output."""
        deadline = time.monotonic() + timeout_s
        while True:
            got = await self.cli.json(*args)
            if done(got):
                return got
            assert time.monotonic() < deadline, f"openstack {' '.join(args)} still gives {got}"
            await asyncio.sleep(0.5)

    async def active(self, *args: str) -> Any:
        """`zone show` / `recordset show` until ACTIVE (served by the nameserver)."""
        shown = await self.eventually((*args,), lambda s: s["status"] != "PENDING")
        assert (shown["status"], shown["action"]) == ("ACTIVE", "NONE"), shown
        return shown


@pytest.fixture(scope="module")
async def cloud(
    settings: Settings, tmp_path_factory: pytest.TempPathFactory, openstack_forks: Forks
) -> AsyncIterator[DnsCloud]:
    if why := why_no_cli():
        pytest.skip(why)
    if importlib.util.find_spec("designateclient") is None:
        pytest.skip("python-designateclient is not installed in this venv (pip install -e '.[test]')")
    async with fabric_up(settings, tmp_path_factory.mktemp("compat-dns"), "compat-dns") as (own, user_env):
        made = DnsCloud(Cli(user_env, openstack_forks), own, why_no_powerdns(own))
        # The DNS service puts itself in the catalog as it starts, maybe after the gateway.
        await made.eventually(("catalog", "list"), lambda c: any(e["Type"] == "dns" for e in c), 60)
        yield made


def fresh_zone() -> str:
    return f"compat-{uuid.uuid4().hex[:8]}.example.org."


async def test_the_catalog_names_dns_under_the_gateway(cloud: DnsCloud) -> None:
    catalog = await cloud.cli.json("catalog", "list")
    (dns,) = [entry for entry in catalog if entry["Type"] == "dns"]
    public = [e for e in dns["Endpoints"] if e["interface"] == "public"]
    assert public and public[0]["url"].endswith("/dns"), dns


async def test_zone_create_list_show_set_delete(cloud: DnsCloud) -> None:
    cli, name = cloud.cli, fresh_zone()
    created = await cli.json("zone", "create", "--email", f"hostmaster@{name[:-1]}", name)
    assert (created["name"], created["type"], created["status"], created["action"]) == (
        name,
        "PRIMARY",
        "PENDING",
        "CREATE",
    )
    assert created["email"] == f"hostmaster@{name[:-1]}" and created["serial"] >= 1
    listed = {z["name"]: z for z in await cli.json("zone", "list")}
    assert listed[name]["id"] == created["id"]
    assert set(listed[name]) == {"id", "name", "type", "serial", "status", "action"}
    shown = await cloud.active("zone", "show", name)
    assert shown["id"] == created["id"] and shown["ttl"] > 0

    changed = await cli.json(
        "zone", "set", name, "--ttl", "600", "--email", f"dns@{name[:-1]}", "--description", "made by the CLI"
    )
    assert (changed["ttl"], changed["email"], changed["description"]) == (
        600,
        f"dns@{name[:-1]}",
        "made by the CLI",
    )
    assert changed["serial"] > shown["serial"] and changed["action"] in ("UPDATE", "NONE")
    assert (await cloud.active("zone", "show", name))["ttl"] == 600

    deleted = await cli.json("zone", "delete", name)
    assert (deleted["id"], deleted["action"]) == (created["id"], "DELETE")
    await cloud.eventually(("zone", "list"), lambda zones: name not in [z["name"] for z in zones])
    code, _, err = await cli.run("zone", "show", name, check=False)
    assert code != 0 and "resolve" in err.lower(), err


async def test_recordset_create_list_show_set_delete(cloud: DnsCloud) -> None:
    cli, zone = cloud.cli, fresh_zone()
    www = f"www.{zone}"
    await cli.json("zone", "create", "--email", f"hostmaster@{zone[:-1]}", zone)
    created = await cli.json("recordset", "create", "--type", "A", "--record", "203.0.113.10", zone, "www")
    assert (created["name"], created["type"], created["records"], created["zone_name"]) == (
        www,
        "A",
        "203.0.113.10",
        zone,
    )
    assert created["status"] in ("PENDING", "ACTIVE")
    listed = await cli.json("recordset", "list", zone)
    assert {r["type"] for r in listed if r["name"] == zone} >= {"SOA", "NS"}, listed
    assert [r["records"] for r in listed if r["name"] == www] == ["203.0.113.10"]
    shown = await cloud.active("recordset", "show", zone, www)
    assert shown["id"] == created["id"] and shown["ttl"] is None
    await cloud.active("zone", "show", zone)
    if cloud.no_nameserver is None:
        assert await resolve("127.0.0.1", cloud.settings.dns_port, www, "A") == ("NOERROR", ["203.0.113.10"])

    changed = await cli.json(
        "recordset", "set", zone, www, "--record", "203.0.113.11", "--record", "203.0.113.12", "--ttl", "120"
    )
    assert (sorted(changed["records"].split("\n")), changed["ttl"]) == (["203.0.113.11", "203.0.113.12"], 120)
    await cloud.active("recordset", "show", zone, www)
    if cloud.no_nameserver is None:
        rcode, answers = await resolve("127.0.0.1", cloud.settings.dns_port, www, "A")
        assert (rcode, sorted(answers)) == ("NOERROR", ["203.0.113.11", "203.0.113.12"])

    deleted = await cli.json("recordset", "delete", zone, www)
    assert (deleted["id"], deleted["action"]) == (created["id"], "DELETE")
    await cloud.eventually(("recordset", "list", zone), lambda rs: www not in [r["name"] for r in rs])
    if cloud.no_nameserver is None:
        assert (await resolve("127.0.0.1", cloud.settings.dns_port, www, "A"))[0] == "NXDOMAIN"
    await cli.run("zone", "delete", zone)


async def test_dns_quota_list_and_set(cloud: DnsCloud) -> None:
    cli = cloud.cli
    quotas = await cli.json("dns", "quota", "list")
    assert set(quotas) == {"api_export_size", "recordset_records", "zone_records", "zone_recordsets", "zones"}
    assert all(isinstance(v, int) for v in quotas.values())
    project = (await cli.json("token", "issue"))["project_id"]
    changed = await cli.json(
        "dns", "quota", "set", "--project-id", project, "--zones", str(quotas["zones"] + 5)
    )
    assert changed["zones"] == quotas["zones"] + 5
    assert (await cli.json("dns", "quota", "list"))["zones"] == quotas["zones"] + 5
    await cli.run("dns", "quota", "reset", "--project-id", project)
    assert (await cli.json("dns", "quota", "list"))["zones"] == quotas["zones"]


async def test_names_not_found_and_duplicates_fail_as_designate_fails_them(cloud: DnsCloud) -> None:
    cli, zone = cloud.cli, fresh_zone()
    code, _, err = await cli.run("zone", "show", zone, check=False)
    assert code != 0 and "didn't resolve" in err, err
    await cli.json("zone", "create", "--email", f"hostmaster@{zone[:-1]}", zone)
    code, _, err = await cli.run("zone", "create", "--email", f"hostmaster@{zone[:-1]}", zone, check=False)
    assert code != 0 and err, err
    code, _, err = await cli.run(
        "recordset", "create", "--type", "A", "--record", "not-an-address", zone, "bad", check=False
    )
    assert code != 0 and err, err
    await cli.run("zone", "delete", zone)


async def test_ptr_record_list_and_show(cloud: DnsCloud) -> None:
    """The network made over HTTP (quicker than the CLI), the PTR read with the CLI."""
    if cloud.no_nameserver:
        pytest.skip(cloud.no_nameserver)
    public = f"pub-{uuid.uuid4().hex[:6]}.example.org."
    async with Client.for_admin(cloud.settings) as client:
        net = f"{client.endpoint('network')}/v2.0"

        async def make(kind: str, **fields: Any) -> dict[str, Any]:
            _, _, body = await client.request("POST", f"{net}/{kind}s", {kind: fields}, expect=(201,))
            return dict(body[kind])

        await client.dns.create_zone(public, email="dns@example.org")
        ext = await make("network", name="ptr-ext", dns_domain=public, **{"router:external": True})
        await make("subnet", network_id=ext["id"], cidr="198.51.104.0/24", enable_dhcp=False)
        lan = await make("network", name="ptr-lan")
        sub = await make("subnet", network_id=lan["id"], cidr="10.158.0.0/24")
        router = await make("router", name="ptr-router", external_gateway_info={"network_id": ext["id"]})
        await client.request(
            "PUT", f"{net}/routers/{router['id']}/add_router_interface", {"subnet_id": sub["id"]}
        )
        port = await make("port", network_id=lan["id"], dns_name="mail")
        fip = await make("floatingip", floating_network_id=ext["id"], port_id=port["id"])
    key = f"{cloud.settings.region}:{fip['id']}"
    listed = await cloud.eventually(
        ("ptr", "record", "list"), lambda rows: any(r["id"] == key and r["ptrdname"] for r in rows)
    )
    (row,) = [r for r in listed if r["id"] == key]
    assert row["ptrdname"] == f"mail.{public}", row
    shown = await cloud.cli.json("ptr", "record", "show", key)
    assert shown["ptrdname"] == f"mail.{public}" and shown["address"] == fip["floating_ip_address"]
