"""The cloud's PowerDNS on the real PostgreSQL, reading the DNS service's `pdns` views.

Rows are written here as the DNS service writes them (plain SQL into dns.zones and
dns.recordsets), then PowerDNS is asked at once, with no retry: each of its caches, left at its
default, would make one of these tests fail (a new zone REFUSED for 300 s, a name asked before
it existed NXDOMAIN for 60 s, an old serial or a deleted record for 20 s).
"""

import asyncio
import dataclasses
import os
import signal
import socket
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from fabric.config import Settings
from fabric.powerdns import PowerDns, PowerDnsFailed, resolve, soa_serial, why_no_powerdns
from fabric.store import migrate
from tests.support import ROOT, base_settings, free_port, scratch_database

pytestmark = pytest.mark.postgres

MIGRATIONS = ROOT / "actors" / "dns" / "migrations"
NAMESERVER = "ns1.fabric.test."


def powerdns_settings(database_url: str, state_dir: Path) -> Settings:
    return dataclasses.replace(
        base_settings(), database_url=database_url, state_dir=str(state_dir), dns_port=free_port()
    )


@pytest.fixture(scope="module")
def installed() -> None:
    why = why_no_powerdns(base_settings())
    if why:
        pytest.skip(why)


@pytest.fixture(scope="module")
async def database(installed: None) -> AsyncIterator[str]:
    async with scratch_database("fabric_powerdns") as dsn:
        await migrate(dsn, "dns", MIGRATIONS)
        yield dsn


@pytest.fixture(scope="module")
async def server(database: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[PowerDns]:
    powerdns = PowerDns(powerdns_settings(database, tmp_path_factory.mktemp("powerdns")))
    await powerdns.start()
    try:
        yield powerdns
    finally:
        await powerdns.stop()


@pytest.fixture
async def db(database: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(database)
    try:
        yield conn
    finally:
        await conn.close()


def new_zone_name() -> str:
    return f"z{uuid.uuid4().hex[:10]}.example.org."


async def add_zone(db: asyncpg.Connection, name: str, *, serial: int = 1) -> str:
    """A zone with its SOA and apex NS recordsets, as the DNS service makes it."""
    zone_id = str(uuid.uuid4())
    await db.execute(
        """
        INSERT INTO dns.zones (id, name, pdns_name, project_id, email, ttl, serial, soa_mname,
                               soa_rname, status, action, recordset_count)
        VALUES ($1, $2, $3, 'p1', 'hostmaster@example.org', 3600, $4, $5,
                'hostmaster.example.org.', 'PENDING', 'CREATE', 2)
        """,
        zone_id,
        name,
        name.rstrip("."),
        serial,
        NAMESERVER,
    )
    soa = f"{NAMESERVER} hostmaster.example.org. {serial} 3600 600 86400 3600"
    await add_recordset(db, zone_id, name, "SOA", soa, managed_by="zone")
    await add_recordset(db, zone_id, name, "NS", NAMESERVER, managed_by="zone")
    return zone_id


async def add_recordset(
    db: asyncpg.Connection, zone_id: str, name: str, kind: str, *records: str, managed_by: str | None = None
) -> str:
    recordset_id = str(uuid.uuid4())
    await db.execute(
        """
        INSERT INTO dns.recordsets (id, zone_id, project_id, name, pdns_name, type, records,
                                    serial, managed_by, status, action)
        VALUES ($1, $2, 'p1', $3, $4, $5, $6,
                (SELECT serial FROM dns.zones WHERE id = $2), $7, 'PENDING', 'CREATE')
        """,
        recordset_id,
        zone_id,
        name,
        name.rstrip("."),
        kind,
        list(records),
        managed_by,
    )
    return recordset_id


async def ask(server: PowerDns, name: str, kind: str = "A") -> tuple[str, list[str]]:
    return await resolve(server.address, server.port, name, kind)


async def test_a_zone_answers_the_moment_it_is_inserted(server: PowerDns, db: asyncpg.Connection) -> None:
    zone = new_zone_name()
    www = f"www.{zone}"
    assert await ask(server, www) == ("REFUSED", [])  # no zone: not ours to answer
    assert await soa_serial(server.address, server.port, zone) is None
    zone_id = await add_zone(db, zone, serial=2024010101)
    await add_recordset(db, zone_id, www, "A", "192.0.2.1")
    assert await soa_serial(server.address, server.port, zone) == 2024010101
    assert await ask(server, www) == ("NOERROR", ["192.0.2.1"])
    assert await ask(server, zone, "SOA") == (
        "NOERROR",
        [f"{NAMESERVER} hostmaster.example.org. 2024010101 3600 600 86400 3600"],
    )


async def test_a_name_asked_before_it_existed_answers_once_inserted(
    server: PowerDns, db: asyncpg.Connection
) -> None:
    zone = new_zone_name()
    zone_id = await add_zone(db, zone)
    late = f"late.{zone}"
    assert await ask(server, late) == ("NXDOMAIN", [])
    await add_recordset(db, zone_id, late, "A", "192.0.2.7", "192.0.2.8")
    rcode, answer = await ask(server, late)
    assert (rcode, sorted(answer)) == ("NOERROR", ["192.0.2.7", "192.0.2.8"])


async def test_a_new_serial_is_answered_at_once(server: PowerDns, db: asyncpg.Connection) -> None:
    zone = new_zone_name()
    zone_id = await add_zone(db, zone, serial=5)
    assert await soa_serial(server.address, server.port, zone) == 5
    await db.execute("UPDATE dns.zones SET serial = serial + 1 WHERE id = $1", zone_id)
    assert await soa_serial(server.address, server.port, zone) == 6


async def test_deleted_records_and_zones_are_gone_at_once(server: PowerDns, db: asyncpg.Connection) -> None:
    zone = new_zone_name()
    www = f"www.{zone}"
    zone_id = await add_zone(db, zone)
    recordset_id = await add_recordset(db, zone_id, www, "A", "192.0.2.1")
    assert await ask(server, www) == ("NOERROR", ["192.0.2.1"])
    await db.execute("DELETE FROM dns.recordsets WHERE id = $1", recordset_id)
    assert await ask(server, www) == ("NXDOMAIN", [])
    await db.execute("DELETE FROM dns.zones WHERE id = $1", zone_id)
    assert await ask(server, www) == ("REFUSED", [])
    assert await soa_serial(server.address, server.port, zone) is None


#: (owner label, type, content as the API stores it, the answer expected). Each at a name of
#: its own, so that one that PowerDNS cannot read fails only its own case.
CONTENT = [
    ("alias", "CNAME", "www.example.org.", ["www.example.org."]),
    ("mx", "MX", "10 mail.example.org.", ["10 mail.example.org."]),
    ("text", "TXT", '"hello world"', ['"hello world"']),
    ("_sip._tcp", "SRV", "10 20 5060 sip.example.org.", ["10 20 5060 sip.example.org."]),
    ("v6", "AAAA", "2001:db8::1", ["2001:db8::1"]),
]


@pytest.mark.parametrize(("label", "kind", "content", "expected"), CONTENT, ids=[c[1] for c in CONTENT])
async def test_content_is_served_as_the_api_stores_it(
    server: PowerDns, db: asyncpg.Connection, label: str, kind: str, content: str, expected: list[str]
) -> None:
    zone = new_zone_name()
    zone_id = await add_zone(db, zone)
    owner = f"{label}.{zone}"
    await add_recordset(db, zone_id, owner, kind, content)
    assert await ask(server, owner, kind) == ("NOERROR", expected)


async def test_the_apex_ns_and_a_reverse_zone_answer(server: PowerDns, db: asyncpg.Connection) -> None:
    zone = new_zone_name()
    await add_zone(db, zone)
    assert await ask(server, zone, "NS") == ("NOERROR", [NAMESERVER])
    reverse = "2.0.192.in-addr.arpa."
    reverse_id = await add_zone(db, reverse)
    try:
        await add_recordset(db, reverse_id, f"10.{reverse}", "PTR", f"www.{zone}")
        assert await ask(server, f"10.{reverse}", "PTR") == ("NOERROR", [f"www.{zone}"])
    finally:
        await db.execute("DELETE FROM dns.zones WHERE id = $1", reverse_id)


@pytest.fixture
async def own_server(database: str, tmp_path: Path) -> AsyncIterator[PowerDns]:
    """A server of the test's own, for tests that kill or stop it."""
    powerdns = PowerDns(powerdns_settings(database, tmp_path), min_backoff_s=0.05)
    await powerdns.start()
    try:
        yield powerdns
    finally:
        await powerdns.stop()


def _alive(pid: int) -> bool:
    """Whether `pid` is a process that has not exited (a zombie has)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


async def test_a_killed_server_is_restarted(own_server: PowerDns, db: asyncpg.Connection) -> None:
    zone = new_zone_name()
    zone_id = await add_zone(db, zone)
    await add_recordset(db, zone_id, f"www.{zone}", "A", "192.0.2.1")
    first = own_server.pid
    assert first is not None
    os.kill(first, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while own_server.restarts == 0:
        assert time.monotonic() < deadline, f"not restarted:\n{own_server.tail()}"
        await asyncio.sleep(0.02)
    assert own_server.pid not in (None, first)
    assert await ask(own_server, f"www.{zone}") == ("NOERROR", ["192.0.2.1"])


async def test_stop_leaves_no_process(own_server: PowerDns) -> None:
    pid = own_server.pid
    assert pid is not None and _alive(pid)
    await own_server.stop()
    assert own_server.pid is None
    assert not _alive(pid)
    assert not await own_server.healthy()


async def test_a_server_that_cannot_start_says_why(database: str, tmp_path: Path) -> None:
    settings = powerdns_settings(database, tmp_path)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind((settings.dns_address, settings.dns_port))
        powerdns = PowerDns(settings)
        with pytest.raises(PowerDnsFailed, match="exited with status"):
            await powerdns.start()
    assert powerdns.pid is None
    assert f"{settings.dns_port}" in powerdns.tail()


async def test_a_database_without_the_views_is_reported(tmp_path: Path, installed: None) -> None:
    async with scratch_database("fabric_powerdns_empty") as empty:
        powerdns = PowerDns(powerdns_settings(empty, tmp_path), start_timeout_s=1.0)
        with pytest.raises(PowerDnsFailed, match='relation "records" does not exist'):
            await powerdns.start()
        assert powerdns.pid is None


# The owner of PowerDns dies without cleaning up (SIGKILL): its pdns_server must not outlive it.
OWNER = """
import asyncio, dataclasses, sys
from pathlib import Path
from fabric.config import load_settings
from fabric.powerdns import PowerDns

async def main():
    settings = dataclasses.replace(
        load_settings(), database_url=sys.argv[1], state_dir=sys.argv[2], dns_port=int(sys.argv[3])
    )
    server = PowerDns(settings)
    await server.start()
    print(server.pid, flush=True)
    await asyncio.sleep(3600)

asyncio.run(main())
"""


async def test_the_server_dies_with_its_owner(database: str, tmp_path: Path) -> None:
    owner = await asyncio.create_subprocess_exec(
        sys.executable, "-c", OWNER, database, str(tmp_path), str(free_port()),
        stdout=asyncio.subprocess.PIPE, cwd=ROOT,
    )  # fmt: skip
    try:
        assert owner.stdout is not None
        pid = int(await asyncio.wait_for(owner.stdout.readline(), timeout=30))
        assert _alive(pid)
    finally:
        owner.kill()
        await owner.wait()
    deadline = time.monotonic() + 5
    while _alive(pid):
        assert time.monotonic() < deadline, f"pdns_server {pid} outlived its owner"
        await asyncio.sleep(0.02)
