"""`bench.invariants` against the real schemas: a database of its own with every actor's
migrations, a world that is clean (with the legitimate states that look like leaks: a server
that failed to place, one in ERROR on its host, a build that timed out, a released port), then
one fault at a time, each of which must show in its own count and in no other.

`check_api` is run against the suite's in-process cloud, with a real server and ports.
"""

import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from bench.invariants import CHECKS, check, check_api, violations
from fabric.client import Client
from fabric.compose import ACTORS
from fabric.store import migrate
from tests.support import scratch_database

#: The counts the harness relies on: none may disappear from the report.
REQUIRED = {
    "overcommitted_hosts",
    "leaked_allocations",
    "leaked_ports",
    "leaked_floating_ip_associations",
    "leaked_fixed_ips",
    "stuck_servers",
}

TABLES = """scheduler.allocations, scheduler.hosts, compute.servers, compute.quota_usage,
    network.floating_ips, network.routers, network.ip_allocations, network.ports, network.subnets,
    network.networks"""

# A host with three allocations (4 vcpus, 2048 MB, 20 GB of 16 / 12288 / 100), an idle one, and p1's
# five servers: ACTIVE and SHUTOFF ones that hold room, one in ERROR on its host that still
# does (its host said the guest died), one that never placed and one whose build timed out
# (host kept, room given back), neither of which holds any. Usage counts all five; project p0's
# servers are all gone, and its usage row is left at zeros.
# The network: the active server's port with an address and a floating IP through a router, a
# released user port that keeps its address, the router's own port, and an idle floating IP.
CLEAN_WORLD = """
INSERT INTO scheduler.hosts (host, queue, hypervisor_type, availability_zone, vcpus, ram_mb, disk_gb,
        vcpus_limit, ram_mb_limit, disk_gb_limit, used_vcpus, used_ram_mb, used_disk_gb, allocations)
    VALUES ('h1', 'compute.h1', 'fake', 'nova', 8, 8192, 100, 16, 12288, 100, 4, 2048, 20, 3),
           ('h2', 'compute.h2', 'fake', 'nova', 8, 8192, 100, 16, 12288, 100, 0, 0, 0, 0);
INSERT INTO compute.servers (id, name, project_id, user_id, vm_state, task_state, host, flavor, vcpus,
        ram_mb, disk_gb, image_id, spawn)
    VALUES ('active', 'a', 'p1', 'u1', 'active', NULL, 'h1', '{}', 2, 1024, 10, 'img', '{}'),
           ('stopped', 's', 'p1', 'u1', 'stopped', NULL, 'h1', '{}', 1, 512, 5, 'img', '{}'),
           ('error-on-host', 'e', 'p1', 'u1', 'error', NULL, 'h1', '{}', 1, 512, 5, 'img', '{}'),
           ('error-unplaced', 'n', 'p1', 'u1', 'error', NULL, NULL, '{}', 1, 512, 5, 'img', '{}'),
           ('timed-out', 't', 'p1', 'u1', 'error', NULL, 'h1', '{}', 1, 512, 5, 'img', '{}');
INSERT INTO scheduler.allocations (server_id, host, project_id, vcpus, ram_mb, disk_gb)
    VALUES ('active', 'h1', 'p1', 2, 1024, 10), ('stopped', 'h1', 'p1', 1, 512, 5),
           ('error-on-host', 'h1', 'p1', 1, 512, 5);
INSERT INTO compute.quota_usage (project_id, instances, cores, ram)
    VALUES ('p1', 5, 6, 3072), ('p0', 0, 0, 0);

INSERT INTO network.networks (id, project_id, external)
    VALUES ('tenant', 'p1', false), ('public', 'p1', true);
INSERT INTO network.subnets (id, network_id, project_id, cidr, allocation_pools)
    VALUES ('tenant-sub', 'tenant', 'p1', '10.0.0.0/24', '[]'),
           ('public-sub', 'public', 'p1', '203.0.113.0/24', '[]');
INSERT INTO network.ports (id, network_id, project_id, mac_address, device_id, device_owner)
    VALUES ('port-active', 'tenant', 'p1', 'fa:16:3e:00:00:01', 'active', 'compute:nova'),
           ('port-free', 'tenant', 'p1', 'fa:16:3e:00:00:02', '', ''),
           ('port-router', 'tenant', 'p1', 'fa:16:3e:00:00:03', 'router', 'network:router_interface'),
           ('port-fip', 'public', '', 'fa:16:3e:00:00:04', 'fip', 'network:floatingip'),
           ('port-fip-idle', 'public', '', 'fa:16:3e:00:00:05', 'fip-idle', 'network:floatingip');
INSERT INTO network.ip_allocations (subnet_id, ip_address, port_id)
    VALUES ('tenant-sub', '10.0.0.10', 'port-active'), ('tenant-sub', '10.0.0.11', 'port-free'),
           ('tenant-sub', '10.0.0.1', 'port-router'), ('public-sub', '203.0.113.10', 'port-fip'),
           ('public-sub', '203.0.113.11', 'port-fip-idle');
INSERT INTO network.routers (id, project_id, gw_network_id) VALUES ('router', 'p1', 'public');
INSERT INTO network.floating_ips (id, project_id, floating_network_id, floating_port_id,
        floating_ip_address, port_id, fixed_ip_address, router_id)
    VALUES ('fip', 'p1', 'public', 'port-fip', '203.0.113.10', 'port-active', '10.0.0.10', 'router'),
           ('fip-idle', 'p1', 'public', 'port-fip-idle', '203.0.113.11', NULL, NULL, NULL);
"""

#: Lets a statement break a foreign key, as a schema without it would allow (the transaction's
#: own setting; needs a superuser, which the test database's owner is).
WITHOUT_FOREIGN_KEYS = "SET LOCAL session_replication_role = replica"

# (what went wrong, the statements that do it to the clean world, the counts it must show)
FAULTS: list[tuple[str, list[str], dict[str, int]]] = [
    (
        "host over its limit",
        ["UPDATE scheduler.hosts SET vcpus_limit = 3 WHERE host = 'h1'"],
        {"overcommitted_hosts": 1},
    ),
    (
        "host usage not the sum of its allocations",
        ["UPDATE scheduler.hosts SET used_ram_mb = used_ram_mb + 512 WHERE host = 'h1'"],
        {"host_usage_drift": 1},
    ),
    (
        "host's count of allocations off",
        ["UPDATE scheduler.hosts SET allocations = allocations + 1 WHERE host = 'h1'"],
        {"host_usage_drift": 1},
    ),
    (
        "allocation of a deleted server",
        [
            "INSERT INTO scheduler.allocations VALUES ('gone', 'h1', 'p1', 1, 512, 5)",
            """UPDATE scheduler.hosts SET used_vcpus = used_vcpus + 1, used_ram_mb = used_ram_mb + 512,
                used_disk_gb = used_disk_gb + 5, allocations = allocations + 1
                WHERE host = 'h1'""",
        ],
        {"leaked_allocations": 1},
    ),
    (
        "allocation of a server that failed to spawn and lost its release",
        [
            "INSERT INTO scheduler.allocations VALUES ('error-unplaced', 'h1', 'p1', 1, 512, 5)",
            """UPDATE scheduler.hosts SET used_vcpus = used_vcpus + 1, used_ram_mb = used_ram_mb + 512,
                used_disk_gb = used_disk_gb + 5, allocations = allocations + 1
                WHERE host = 'h1'""",
        ],
        {"leaked_allocations": 1},
    ),
    (
        "stopped server holding no room",
        [
            "DELETE FROM scheduler.allocations WHERE server_id = 'stopped'",
            """UPDATE scheduler.hosts SET used_vcpus = used_vcpus - 1, used_ram_mb = used_ram_mb - 512,
                used_disk_gb = used_disk_gb - 5, allocations = allocations - 1
                WHERE host = 'h1'""",
        ],
        {"unallocated_servers": 1},
    ),
    (
        "stopped server whose allocation is on another host",
        [
            "UPDATE scheduler.allocations SET host = 'h2' WHERE server_id = 'stopped'",
            """UPDATE scheduler.hosts SET used_vcpus = used_vcpus + d, used_ram_mb = used_ram_mb + d * 512,
                used_disk_gb = used_disk_gb + d * 5, allocations = allocations + d
                FROM (VALUES ('h1', -1), ('h2', 1)) AS move(host, d) WHERE hosts.host = move.host""",
        ],
        {"leaked_allocations": 1, "unallocated_servers": 1},
    ),
    (
        "quota usage counted twice",
        ["UPDATE compute.quota_usage SET instances = instances + 1 WHERE project_id = 'p1'"],
        {"quota_usage_drift": 1},
    ),
    (
        "server row deleted without giving its quota back",
        ["DELETE FROM compute.servers WHERE id = 'error-unplaced'"],
        {"quota_usage_drift": 1},
    ),
    (
        "project's last server deleted without giving its quota back",
        ["UPDATE compute.quota_usage SET instances = 1, cores = 1, ram = 512 WHERE project_id = 'p0'"],
        {"quota_usage_drift": 1},
    ),
    (
        "server made without counting it in its project's usage",
        [
            """INSERT INTO compute.servers (id, name, project_id, user_id, vm_state, flavor, vcpus, ram_mb,
                    disk_gb, image_id, spawn)
                VALUES ('uncounted', 'u', 'p2', 'u2', 'error', '{}', 1, 512, 5, 'img', '{}')"""
        ],
        {"quota_usage_drift": 1},
    ),
    (
        "port of a deleted server",
        [
            """INSERT INTO network.ports (id, network_id, project_id, mac_address, device_id, device_owner)
                VALUES ('port-gone', 'tenant', 'p1', 'fa:16:3e:00:00:09', 'gone', 'compute:nova')"""
        ],
        {"leaked_ports": 1},
    ),
    (
        "port of a deleted server, with its address and the floating IP on it",
        [
            """INSERT INTO network.ports (id, network_id, project_id, mac_address, device_id, device_owner)
                VALUES ('port-gone', 'tenant', 'p1', 'fa:16:3e:00:00:09', 'gone', 'compute:nova')""",
            "INSERT INTO network.ip_allocations VALUES ('tenant-sub', '10.0.0.12', 'port-gone')",
            """UPDATE network.floating_ips SET port_id = 'port-gone', fixed_ip_address = '10.0.0.12'
                WHERE id = 'fip'""",
        ],
        {"leaked_ports": 1, "leaked_floating_ip_associations": 1},
    ),
    (
        "floating IP on an address its port does not hold",
        ["UPDATE network.floating_ips SET fixed_ip_address = '10.0.0.99' WHERE id = 'fip'"],
        {"leaked_floating_ip_associations": 1},
    ),
    (
        "floating IP on a port that is gone, its address left (no foreign keys)",
        [WITHOUT_FOREIGN_KEYS, "DELETE FROM network.ports WHERE id = 'port-active'"],
        {"leaked_floating_ip_associations": 1, "leaked_fixed_ips": 1},
    ),
    (
        "address of a port that is gone (no cascade)",
        [WITHOUT_FOREIGN_KEYS, "DELETE FROM network.ports WHERE id = 'port-free'"],
        {"leaked_fixed_ips": 1},
    ),
    (
        "server left deleting, its allocation and port still there",
        ["UPDATE compute.servers SET task_state = 'deleting' WHERE id = 'active'"],
        {"stuck_servers": 1},
    ),
    (
        "server left building with no task",
        ["UPDATE compute.servers SET vm_state = 'building' WHERE id = 'error-unplaced'"],
        {"stuck_servers": 1},
    ),
    (
        "server left mid-placement: claimed, host not yet recorded",
        [
            """UPDATE compute.servers SET vm_state = 'building', task_state = 'scheduling'
                WHERE id = 'error-unplaced'""",
            "INSERT INTO scheduler.allocations VALUES ('error-unplaced', 'h1', 'p1', 1, 512, 5)",
            """UPDATE scheduler.hosts SET used_vcpus = used_vcpus + 1, used_ram_mb = used_ram_mb + 512,
                used_disk_gb = used_disk_gb + 5, allocations = allocations + 1
                WHERE host = 'h1'""",
        ],
        {"stuck_servers": 1},
    ),
]


@pytest.fixture(scope="module")
async def database() -> AsyncIterator[str]:
    """A database of this module's own with every actor's schema, dropped at the end."""
    async with scratch_database("fabric_invariants") as dsn:
        for spec in ACTORS.values():
            await migrate(dsn, spec.schema, spec.migrations)
        yield dsn


async def build(dsn: str, faults: list[str]) -> None:
    """The clean world, then `faults`, committed (check() reads on a connection of its own)."""
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction():
            await conn.execute(f"TRUNCATE {TABLES} CASCADE")
            await conn.execute(CLEAN_WORLD)
            for statement in faults:
                await conn.execute(statement)
    finally:
        await conn.close()


@pytest.mark.postgres
async def test_a_clean_world_counts_nothing(database: str) -> None:
    await build(database, [])
    found = await check(database)
    assert REQUIRED <= set(found), f"missing {REQUIRED - set(found)}"
    assert set(found) == set(CHECKS)
    assert found == dict.fromkeys(CHECKS, 0)
    assert violations(found) == 0


@pytest.mark.postgres
@pytest.mark.parametrize(
    ("faults", "expected"), [(f, e) for _, f, e in FAULTS], ids=[n for n, _, _ in FAULTS]
)
async def test_each_fault_shows_in_its_own_count(
    database: str, faults: list[str], expected: dict[str, int]
) -> None:
    await build(database, faults)
    found = await check(database)
    assert found == dict.fromkeys(CHECKS, 0) | expected
    assert violations(found) == sum(expected.values())


@pytest.mark.postgres
def test_every_check_is_exercised_by_a_fault() -> None:
    shown = {name for _, _, expected in FAULTS for name in expected}
    assert shown == set(CHECKS)


@pytest.mark.postgres
async def test_absent_services_count_nothing_and_crash_nothing() -> None:
    """A fabric whose network (or compute) never ran has none of its tables: those checks are 0,
    the others still count."""
    async with scratch_database("fabric_invariants_part") as dsn:
        assert await check(dsn) == dict.fromkeys(CHECKS, 0)
        await migrate(dsn, "scheduler", ACTORS["scheduler"].migrations)
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute(
                """INSERT INTO scheduler.hosts (host, queue, hypervisor_type, availability_zone, vcpus,
                        ram_mb, disk_gb, vcpus_limit, ram_mb_limit, disk_gb_limit, used_vcpus)
                    VALUES ('h1', 'q', 'fake', 'nova', 1, 512, 1, 1, 512, 1, 2)"""
            )
        finally:
            await conn.close()
        # Over its limit, and its usage is not its (absent) allocations'.
        expected = {"overcommitted_hosts": 1, "host_usage_drift": 1}
        assert await check(dsn) == dict.fromkeys(CHECKS, 0) | expected


# --- the public API --------------------------------------------------------------------------


async def _neutron(admin: Client, method: str, path: str, body: Any = None) -> Any:
    _, _, answer = await admin.request(method, f"{admin.endpoint('network')}/v2.0{path}", body)
    return answer


@pytest.mark.postgres
@pytest.mark.amqp
async def test_api_checks_on_a_real_cloud(admin: Client) -> None:
    name = f"inv-{uuid.uuid4().hex[:6]}"
    network = (await _neutron(admin, "POST", "/networks", {"network": {"name": name}}))["network"]
    subnet = {"subnet": {"network_id": network["id"], "cidr": "10.98.0.0/29"}}
    await _neutron(admin, "POST", "/subnets", subnet)
    image = await admin.image.create(name, disk_format="raw", container_format="bare")
    await admin.image.upload(image["id"], b"\0" * 4096)
    flavor = await admin.compute.create_flavor(name, vcpus=1, ram=64, disk=1)
    created = await admin.compute.create_server(
        name, image=image["id"], flavor=flavor["id"], networks=[{"uuid": network["id"]}]
    )
    await admin.compute.wait(created.id, "ACTIVE", timeout_s=60)

    zero = {"stuck_servers": 0, "leaked_servers": 0, "leaked_ports": 0}
    assert await check_api(admin, [], kept_ids=[created.id]) == zero
    # Said to be deleted while it is not: the server and the port it owns are left behind.
    assert await check_api(admin, [created.id]) == zero | {"leaked_servers": 1, "leaked_ports": 1}

    await admin.compute.delete_server(created.id)
    await admin.compute.wait(created.id, "DELETED", timeout_s=60)
    assert await check_api(admin, [created.id]) == zero

    # A port still bound to a server that is gone.
    gone = str(uuid.uuid4())
    bound = {"network_id": network["id"], "device_id": gone, "device_owner": "compute:nova"}
    port = (await _neutron(admin, "POST", "/ports", {"port": bound}))["port"]
    try:
        assert await check_api(admin, [gone, created.id]) == zero | {"leaked_ports": 1}
    finally:
        await _neutron(admin, "DELETE", f"/ports/{port['id']}")
    assert await check_api(admin, [gone]) == zero


class _StubCompute:
    def __init__(self, servers: dict[str, Any]) -> None:
        self.servers = servers

    async def get_server(self, server_id: str) -> Any:
        return self.servers.get(server_id)


class _StubClient:
    """Only what check_api uses: servers by id, and no network endpoint in the catalog."""

    def __init__(self, servers: dict[str, Any]) -> None:
        self.compute = _StubCompute(servers)

    def endpoint(self, service_type: str) -> str:
        raise LookupError(service_type)


async def test_api_servers_in_a_task_are_stuck_once_not_leaked() -> None:
    from fabric.compute_client import Server

    def server(server_id: str, status: str, task_state: str | None) -> Server:
        return Server(
            id=server_id, name="", status=status, task_state=task_state, host=None, fault=None, raw={}
        )

    client: Any = _StubClient(
        {
            "deleting": server("deleting", "ACTIVE", "deleting"),
            "building": server("building", "BUILD", "spawning"),
            "rebooting": server("rebooting", "REBOOT", "rebooting"),
            "kept-fine": server("kept-fine", "SHUTOFF", None),
            "undeleted": server("undeleted", "ERROR", None),
        }
    )
    found = await check_api(
        client, ["deleting", "undeleted", "really-gone"], kept_ids=["building", "rebooting", "kept-fine"]
    )
    assert found == {"stuck_servers": 3, "leaked_servers": 1, "leaked_ports": 0}
