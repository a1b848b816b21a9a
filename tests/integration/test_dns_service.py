"""The DNS service on the real bus and database, served by the real PowerDNS the cloud runs.

Callers speak to the `dns` queue as the gateway does, each with a project of its own. After
every change the test asks PowerDNS itself (dnspython, on the cloud's nameserver address): the
new data must answer as soon as the reply came, the SOA serial must have grown, and a name
asked for before it existed must answer once it does (no cached negative answer).
"""

import asyncio
import dataclasses
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from fabric.compose import Cloud
from fabric.powerdns import resolve, soa_serial, why_no_powerdns
from protocol.dns import (
    QUEUE,
    CreateRecordset,
    CreateZone,
    DeleteRecordset,
    DeleteZone,
    GetRecordset,
    GetZone,
    ListRecordsets,
    ListZones,
    RecordsetView,
    SetDnsQuotas,
    UpdateRecordset,
    UpdateZone,
    ZoneView,
)
from protocol.envelope import Context
from protocol.errors import Conflict, Forbidden, Invalid, NotFound, QuotaExceeded
from tests.support import FABRIC, Processes, fabric_env, free_port, messages_handled

pytestmark = [pytest.mark.postgres, pytest.mark.amqp]


def new_id() -> str:
    return str(uuid.uuid4())


@pytest.fixture
def dns_cloud(cloud: Cloud) -> Cloud:
    why = why_no_powerdns(cloud.settings)
    if why:
        pytest.skip(why)
    return cloud


@dataclasses.dataclass
class Caller:
    """One member of one project (or an admin), calling the DNS service."""

    cloud: Cloud
    project_id: str = dataclasses.field(default_factory=new_id)
    roles: tuple[str, ...] = ("member",)

    def ctx(self) -> Context:
        return Context(
            request_id=f"req-{uuid.uuid4()}",
            user_id=new_id(),
            project_id=self.project_id,
            roles=self.roles,
            deadline=time.time() + 60,
        )

    async def __call__(self, msg: object) -> Any:
        assert self.cloud.bus is not None
        return await self.cloud.bus.call(QUEUE, msg, self.ctx())

    async def zone(self, name: str | None = None, **fields: Any) -> ZoneView:
        name = name or f"z{uuid.uuid4().hex[:10]}.example."
        zone: ZoneView = await self(
            CreateZone(zone_id=new_id(), name=name, email="admin@example.org", **fields)
        )
        return zone

    async def recordset(
        self, zone: ZoneView, label: str, kind: Any, *records: str, **fields: Any
    ) -> RecordsetView:
        name = f"{label}.{zone.name}" if label else zone.name
        msg = CreateRecordset(
            recordset_id=new_id(), zone_id=zone.id, name=name, type=kind, records=records, **fields
        )
        created: RecordsetView = await self(msg)
        return created


async def ask(cloud: Cloud, name: str, kind: str = "A") -> tuple[str, list[str]]:
    """The answer's code and records, sorted (PowerDNS may give them in any order)."""
    rcode, answer = await resolve(cloud.settings.dns_address, cloud.settings.dns_port, name, kind)
    return rcode, sorted(answer)


async def served_serial(cloud: Cloud, zone: str) -> int | None:
    return await soa_serial(cloud.settings.dns_address, cloud.settings.dns_port, zone)


async def until_active(caller: Caller, zone_id: str, recordset_id: str | None = None) -> None:
    deadline = time.monotonic() + 10
    while True:
        if recordset_id is None:
            seen = await caller(GetZone(zone_id=zone_id))
        else:
            seen = await caller(GetRecordset(zone_id=zone_id, recordset_id=recordset_id))
        if seen.status == "ACTIVE" and seen.action == "NONE":
            return
        assert time.monotonic() < deadline, seen
        await asyncio.sleep(0.02)


async def test_a_zone_answers_with_its_soa_and_ns_and_goes_active(dns_cloud: Cloud) -> None:
    user = Caller(dns_cloud)
    name = f"fresh{uuid.uuid4().hex[:8]}.example."
    assert (await ask(dns_cloud, name, "SOA"))[0] == "REFUSED"  # asked before it exists
    zone = await user.zone(name, ttl=600, description="mine")
    assert (zone.status, zone.action, zone.ttl) == ("PENDING", "CREATE", 600)
    assert await served_serial(dns_cloud, name) == zone.serial  # at once, no zone-cache wait
    rcode, ns = await ask(dns_cloud, name, "NS")
    assert (rcode, ns) == ("NOERROR", ["ns1.fabric.test."])
    await until_active(user, zone.id)
    listed = await user(ListRecordsets(zone_id=zone.id))
    assert sorted(r.type for r in listed.items) == ["NS", "SOA"] and listed.total_count == 2
    soa = next(r for r in listed.items if r.type == "SOA")
    assert soa.managed and soa.records[0].split()[2] == str(zone.serial)
    assert soa.records[0].startswith("ns1.fabric.test. admin.example.org. ")


async def test_records_answer_on_the_nameserver_the_moment_they_are_accepted(dns_cloud: Cloud) -> None:
    user = Caller(dns_cloud)
    zone = await user.zone()
    www = f"www.{zone.name}"
    assert (await ask(dns_cloud, www))[0] == "NXDOMAIN"  # asked before it exists: nothing cached
    created = await user.recordset(zone, "www", "A", "192.0.2.10", "192.0.2.11")
    assert (created.status, created.action) == ("PENDING", "CREATE")
    assert await ask(dns_cloud, www) == ("NOERROR", ["192.0.2.10", "192.0.2.11"])
    after_create = await served_serial(dns_cloud, zone.name)
    assert after_create is not None and after_create > zone.serial
    await until_active(user, zone.id, created.id)
    await until_active(user, zone.id)

    updated = await user(
        UpdateRecordset(zone_id=zone.id, recordset_id=created.id, records=("192.0.2.20",), ttl=60)
    )
    assert (updated.status, updated.action, updated.ttl) == ("PENDING", "UPDATE", 60)
    assert await ask(dns_cloud, www) == ("NOERROR", ["192.0.2.20"])
    after_update = await served_serial(dns_cloud, zone.name)
    assert after_update is not None and after_update > after_create

    await user(DeleteRecordset(zone_id=zone.id, recordset_id=created.id))
    assert (await ask(dns_cloud, www))[0] == "NXDOMAIN"
    after_delete = await served_serial(dns_cloud, zone.name)
    assert after_delete is not None and after_delete > after_update
    with pytest.raises(NotFound):
        await user(GetRecordset(zone_id=zone.id, recordset_id=created.id))


async def test_every_type_is_served_as_given(dns_cloud: Cloud) -> None:
    user = Caller(dns_cloud)
    zone = await user.zone()
    await user.recordset(zone, "v6", "AAAA", "2001:db8::1")
    await user.recordset(zone, "alias", "CNAME", f"v6.{zone.name}")
    await user.recordset(zone, "", "MX", f"10 mail.{zone.name}")
    await user.recordset(zone, "", "TXT", "hello world")
    await user.recordset(zone, "_sip._tcp", "SRV", f"10 5 5060 sip.{zone.name}")
    await user.recordset(zone, "sub", "NS", "ns.elsewhere.example.")
    assert await ask(dns_cloud, f"v6.{zone.name}", "AAAA") == ("NOERROR", ["2001:db8::1"])
    rcode, answer = await ask(dns_cloud, f"alias.{zone.name}", "CNAME")
    assert (rcode, answer) == ("NOERROR", [f"v6.{zone.name}"])
    assert await ask(dns_cloud, zone.name, "MX") == ("NOERROR", [f"10 mail.{zone.name}"])
    assert await ask(dns_cloud, zone.name, "TXT") == ("NOERROR", ['"hello world"'])
    assert await ask(dns_cloud, f"_sip._tcp.{zone.name}", "SRV") == (
        "NOERROR",
        [f"10 5 5060 sip.{zone.name}"],
    )
    reverse = await user.zone("2.0.192.in-addr.arpa.")
    try:
        await user.recordset(reverse, "10", "PTR", f"www.{zone.name}")
        assert await ask(dns_cloud, "10.2.0.192.in-addr.arpa.", "PTR") == ("NOERROR", [f"www.{zone.name}"])
    finally:
        await user(DeleteZone(zone_id=reverse.id))


async def test_a_deleted_zone_stops_answering_for_every_name(dns_cloud: Cloud) -> None:
    user = Caller(dns_cloud)
    zone = await user.zone()
    await user.recordset(zone, "www", "A", "192.0.2.1")
    await user.recordset(zone, "mail", "A", "192.0.2.2")
    gone = await user(DeleteZone(zone_id=zone.id))
    assert (gone.status, gone.action) == ("PENDING", "DELETE")
    for name in (zone.name, f"www.{zone.name}", f"mail.{zone.name}"):
        # No longer authoritative for it: PowerDNS refuses, it has nothing to say of the name.
        assert (await ask(dns_cloud, name))[0] == "REFUSED", name
    with pytest.raises(NotFound):
        await user(GetZone(zone_id=zone.id))
    assert (await user(ListZones(name=zone.name))).items == ()


async def test_bad_input_is_refused_and_changes_nothing(dns_cloud: Cloud) -> None:
    user, other = Caller(dns_cloud), Caller(dns_cloud)
    zone = await user.zone()
    await user.recordset(zone, "www", "A", "192.0.2.1")
    serial = await served_serial(dns_cloud, zone.name)
    bad: list[tuple[object, type[Exception], str]] = [
        (CreateZone(zone_id=new_id(), name="nodot.example", email="a@example.org"), Invalid, "name"),
        (CreateZone(zone_id=new_id(), name="tld.", email="a@example.org"), Invalid, "name"),
        (CreateZone(zone_id=new_id(), name="ok.example.", email="not-an-email"), Invalid, "email"),
        (CreateZone(zone_id=new_id(), name="ok2.example.", email="a@example.org", ttl=0), Invalid, "ttl"),
        (
            CreateRecordset(
                recordset_id=new_id(),
                zone_id=zone.id,
                name="www.elsewhere.example.",
                type="A",
                records=("192.0.2.1",),
            ),
            Invalid,
            "name",
        ),
        (
            CreateRecordset(
                recordset_id=new_id(),
                zone_id=zone.id,
                name=f"x.{zone.name}",
                type="A",
                records=("300.1.1.1",),
            ),
            Invalid,
            "records[0]",
        ),
        (
            CreateRecordset(
                recordset_id=new_id(),
                zone_id=zone.id,
                name=f"www.{zone.name}",
                type="CNAME",
                records=("other.example.",),
            ),
            Invalid,
            "type",
        ),
        (
            CreateRecordset(
                recordset_id=new_id(),
                zone_id=zone.id,
                name=f"t.{zone.name}",
                type="A",
                records=("192.0.2.1",),
                ttl=2**31,
            ),
            Invalid,
            "ttl",
        ),
        (
            CreateRecordset(
                recordset_id=new_id(),
                zone_id=zone.id,
                name=f"www.{zone.name}",
                type="A",
                records=("192.0.2.9",),
            ),
            Conflict,
            "",
        ),
    ]
    for msg, error, field in bad:
        with pytest.raises(error) as raised:
            await user(msg)
        if field:
            # Checked by the codec as a message arrives (`body.ttl`) or by the service (`ttl`).
            assert getattr(raised.value, "field", "").removeprefix("body.") == field, (msg, raised.value)
    with pytest.raises(Forbidden):  # under another project's zone
        await other.zone(f"sub.{zone.name}")
    listed = await user(ListRecordsets(zone_id=zone.id))
    assert sorted(r.type for r in listed.items) == ["A", "NS", "SOA"]
    assert await served_serial(dns_cloud, zone.name) == serial  # PowerDNS unchanged
    assert await ask(dns_cloud, f"www.{zone.name}") == ("NOERROR", ["192.0.2.1"])
    for name in ("ok.example.", "ok2.example.", f"sub.{zone.name}"):
        assert (await user(ListZones(name=name))).items == ()
        assert (await other(ListZones(name=name))).items == ()


async def test_another_project_neither_sees_nor_changes_a_zone(dns_cloud: Cloud) -> None:
    owner, stranger = Caller(dns_cloud), Caller(dns_cloud)
    admin = Caller(dns_cloud, roles=("admin", "member"))
    zone = await owner.zone()
    rs = await owner.recordset(zone, "www", "A", "192.0.2.1")
    for msg in (
        GetZone(zone_id=zone.id),
        UpdateZone(zone_id=zone.id, ttl=60),
        DeleteZone(zone_id=zone.id),
        GetRecordset(zone_id=zone.id, recordset_id=rs.id),
        ListRecordsets(zone_id=zone.id),
        DeleteRecordset(zone_id=zone.id, recordset_id=rs.id),
        CreateRecordset(
            recordset_id=new_id(), zone_id=zone.id, name=f"x.{zone.name}", type="A", records=("192.0.2.3",)
        ),
    ):
        with pytest.raises(NotFound):
            await stranger(msg)
    assert zone.id not in {z.id for z in (await stranger(ListZones())).items}
    with pytest.raises(NotFound):  # admins too, unless they ask across projects
        await admin(GetZone(zone_id=zone.id))
    assert (await admin(GetZone(zone_id=zone.id, all_projects=True))).id == zone.id
    assert await ask(dns_cloud, f"www.{zone.name}") == ("NOERROR", ["192.0.2.1"])


async def test_quotas_on_zones_recordsets_and_records(dns_cloud: Cloud) -> None:
    user = Caller(dns_cloud)
    admin = Caller(dns_cloud, roles=("admin", "member"))
    await admin(
        SetDnsQuotas(
            project_id=user.project_id, limits={"zones": 2, "zone_recordsets": 4, "recordset_records": 2}
        )
    )
    zone = await user.zone()
    await user.zone()
    with pytest.raises(QuotaExceeded):
        await user.zone()
    await user.recordset(zone, "a", "A", "192.0.2.1", "192.0.2.2")
    with pytest.raises(QuotaExceeded):
        await user.recordset(zone, "b", "A", "192.0.2.1", "192.0.2.2", "192.0.2.3")
    await user.recordset(zone, "c", "A", "192.0.2.1")  # SOA, NS, a, c: four
    with pytest.raises(QuotaExceeded):
        await user.recordset(zone, "d", "A", "192.0.2.1")
    await user(DeleteZone(zone_id=zone.id))
    await user.zone()  # a deleted zone gives its place back


async def test_two_projects_creating_one_zone_at_once_one_wins(dns_cloud: Cloud) -> None:
    name = f"race{uuid.uuid4().hex[:8]}.example."
    callers = [Caller(dns_cloud) for _ in range(8)]
    results = await asyncio.gather(*(c.zone(name) for c in callers), return_exceptions=True)
    won = [r for r in results if isinstance(r, ZoneView)]
    assert len(won) == 1, results
    assert all(isinstance(r, Conflict | Forbidden) for r in results if not isinstance(r, ZoneView)), results


async def test_500_recordsets_at_once_through_two_dns_processes(dns_cloud: Cloud, tmp_path: Path) -> None:
    """Concurrent creates in one zone, spread over this process's DNS actor and another
    process's: every one served, every serial its own, none lost."""
    processes = Processes(tmp_path)
    metrics_port = free_port()
    second = [str(FABRIC), "service", "dns", "--metrics-port", str(metrics_port)]
    env = fabric_env(
        dns_cloud.settings,
        FABRIC_DNS_ADDRESS=dns_cloud.settings.dns_address,
        FABRIC_DNS_PORT=str(dns_cloud.settings.dns_port),
    )
    processes.start("dns-2", second, env)
    try:
        admin = Caller(dns_cloud, roles=("admin", "member"))
        user = Caller(dns_cloud)
        await admin(SetDnsQuotas(project_id=user.project_id, limits={"zone_recordsets": 1000}))
        zone = await user.zone()
        await until_metrics(metrics_port)
        sem = asyncio.Semaphore(64)

        async def create(i: int) -> RecordsetView:
            async with sem:
                return await user.recordset(zone, f"h{i}", "A", f"10.1.{i // 256}.{i % 256}")

        created = await asyncio.gather(*(create(i) for i in range(500)))
        assert await messages_handled(metrics_port, "dns.CreateRecordset") > 0, processes.log_of("dns-2")
        db = await asyncpg.connect(dns_cloud.settings.database_url)
        try:
            serials = await db.fetch(
                "SELECT serial FROM dns.recordsets WHERE zone_id = $1 AND managed_by IS NULL", zone.id
            )
            zone_serial = await db.fetchval("SELECT serial FROM dns.zones WHERE id = $1", zone.id)
        finally:
            await db.close()
        assert len({row["serial"] for row in serials}) == 500  # each change its own serial
        assert zone_serial == zone.serial + 500
        assert await served_serial(dns_cloud, zone.name) == zone_serial
        answers = await asyncio.gather(*(ask(dns_cloud, r.name) for r in created))
        assert all(a == ("NOERROR", [r.records[0]]) for a, r in zip(answers, created))
        listed = await user(ListRecordsets(zone_id=zone.id, limit=10))
        assert listed.total_count == 502 and listed.more
    finally:
        processes.stop_all()


async def until_metrics(port: int) -> None:
    """Until the second process serves its metrics (it is consuming by then)."""
    deadline = time.monotonic() + 30
    while True:
        try:
            await messages_handled(port, "dns.GetZone")
            return
        except OSError:
            assert time.monotonic() < deadline, "the second DNS process did not come up"
            await asyncio.sleep(0.2)


async def test_a_retried_create_returns_the_same_recordset_and_counts_it_once(dns_cloud: Cloud) -> None:
    user = Caller(dns_cloud)
    zone = await user.zone()
    msg = CreateRecordset(
        recordset_id=new_id(), zone_id=zone.id, name=f"www.{zone.name}", type="A", records=("192.0.2.1",)
    )
    first, again = await user(msg), await user(msg)
    assert again.id == first.id and again.records == first.records
    db = await asyncpg.connect(dns_cloud.settings.database_url)
    try:
        count, serial = await db.fetchrow(
            "SELECT recordset_count, serial FROM dns.zones WHERE id = $1", zone.id
        )
    finally:
        await db.close()
    assert count == 3 and serial == zone.serial + 1  # SOA, NS, www; one change
