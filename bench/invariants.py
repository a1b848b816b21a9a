"""What must hold once a benchmark run has finished and waited: nothing over-committed, nothing
left behind, nothing half-done. Each check is a count of offending rows (or servers), so a
report shows how bad it is, and 0 means clean; `violations()` sums them for a pass/fail.

`check()` reads the database of a fabric the harness started itself. The facts it relies on,
from the migrations and the code that writes the tables:

- A deleted server's row is removed (`compute.servers` keeps no deleted rows): the delete saga
  marks it `task_state = 'deleting'`, releases its allocation, gives back its ports, then
  deletes the row. So "the server is gone" is "no row", and a row in `deleting` is unfinished.
- A server is in flight while `task_state` is set (scheduling, spawning, powering-off/on,
  rebooting, rebooting_hard, deleting) or while `vm_state = 'building'`; after a run that
  waited, every one of those is stuck (the reaper fails builds and re-drives idle steps).
- `scheduler.allocations` has one row per placed server (`server_id`, its `host`), and each
  host's `used_*` and `allocations` columns are the sums of its rows, changed in the same
  statement. A server that failed to place (ERROR, no host) holds none; one that failed to
  spawn everywhere is given `host = NULL` before its allocation is released; one that went
  to ERROR on its host (the host reported the guest dead) keeps its allocation there.
- A port belongs to a server through `device_id` = the server's id and `device_owner`
  `compute:<zone>`; a port the user brought is released with both set to ''.
- Addresses are rows of `network.ip_allocations` whose `port_id` cascades on the port's
  delete, and `network.floating_ips.port_id` references `network.ports` (deleting a port
  first disassociates its floating IPs): so an address or an association whose port row is
  gone is impossible while those foreign keys exist. The checks still look for them, at the
  cost of one anti-join, so that a migration that drops a key cannot hide a leak.

`check_api()` is for a cloud the harness did not start, seen through the public API only.
"""

import asyncio
from collections.abc import Collection
from urllib.parse import urlencode

import asyncpg

from fabric.client import Client
from fabric.compute_client import Server

# Hosts whose usage exceeds a limit (capacity times the over-commit ratio): two claims raced
# past the conditional UPDATE, or a release was counted twice the other way round.
OVERCOMMITTED_HOSTS = """
SELECT count(*) FROM scheduler.hosts
 WHERE used_vcpus > vcpus_limit OR used_ram_mb > ram_mb_limit OR used_disk_gb > disk_gb_limit"""

# Hosts whose usage columns are not the sum of their allocation rows: a claim or release that
# changed one without the other. Over-commit hides behind this (usage counted too low).
HOST_USAGE_DRIFT = """
SELECT count(*) FROM scheduler.hosts h
  LEFT JOIN (SELECT host, sum(vcpus) AS v, sum(ram_mb) AS r, sum(disk_gb) AS d, count(*) AS n
               FROM scheduler.allocations GROUP BY host) a USING (host)
 WHERE (h.used_vcpus, h.used_ram_mb, h.used_disk_gb, h.allocations)
       IS DISTINCT FROM (coalesce(a.v, 0), coalesce(a.r, 0), coalesce(a.d, 0), coalesce(a.n, 0))"""

# Allocations holding room for nothing: their server's row is gone (deleted), or the server has
# settled (no task) somewhere else than the allocation's host, as one that failed to spawn
# (host NULL) whose release was lost. Servers still in a task are left to `stuck_servers`:
# mid-placement, an allocation exists before the server's host is recorded.
LEAKED_ALLOCATIONS = """
SELECT count(*) FROM scheduler.allocations a
  LEFT JOIN compute.servers s ON s.id = a.server_id
 WHERE s.id IS NULL OR (s.task_state IS NULL AND s.host IS DISTINCT FROM a.host)"""

# Settled ACTIVE or SHUTOFF servers with no allocation on their host: they use room the
# scheduler does not count, so it can over-commit that host without `overcommitted_hosts`
# seeing it. (ERROR servers are left out: a build that timed out keeps its host, not its room.)
UNALLOCATED_SERVERS = """
SELECT count(*) FROM compute.servers s
 WHERE s.task_state IS NULL AND s.vm_state IN ('active', 'stopped')
   AND NOT EXISTS (SELECT 1 FROM scheduler.allocations a WHERE a.server_id = s.id AND a.host = s.host)"""

# Projects whose counted usage is not what their servers add up to: the create and the delete
# of a server change its row and the usage in one transaction, so any difference is a bug
# (a project would lose, or gain, room in its quota for ever).
QUOTA_USAGE_DRIFT = """
SELECT count(*) FROM (SELECT project_id, count(*) AS n, sum(vcpus) AS c, sum(ram_mb) AS r
                        FROM compute.servers GROUP BY project_id) s
  FULL JOIN compute.quota_usage u USING (project_id)
 WHERE (coalesce(u.instances, 0), coalesce(u.cores, 0), coalesce(u.ram, 0))
       IS DISTINCT FROM (coalesce(s.n, 0), coalesce(s.c, 0), coalesce(s.r, 0))"""

# Ports a server owns (device_owner compute:<zone>) whose server is gone: the delete saga, or a
# failed create, did not give them back. They keep their addresses and count in the quota.
LEAKED_PORTS = """
SELECT count(*) FROM network.ports p
 WHERE p.device_owner LIKE 'compute:%'
   AND NOT EXISTS (SELECT 1 FROM compute.servers s WHERE s.id = p.device_id)"""

# Floating IPs still associated with something that is not there: a port whose row is gone
# (impossible while the foreign key stands), a compute port whose server is gone (so the
# address forwards to nothing and its port leaked too), or a fixed address its port no longer
# holds.
LEAKED_FLOATING_IP_ASSOCIATIONS = """
SELECT count(*) FROM network.floating_ips f
  LEFT JOIN network.ports p ON p.id = f.port_id
 WHERE f.port_id IS NOT NULL
   AND (p.id IS NULL
        OR (p.device_owner LIKE 'compute:%'
            AND NOT EXISTS (SELECT 1 FROM compute.servers s WHERE s.id = p.device_id))
        OR NOT EXISTS (SELECT 1 FROM network.ip_allocations i
                        WHERE i.port_id = f.port_id AND i.ip_address = f.fixed_ip_address))"""

# Addresses held for a port that is gone: the pool loses them for ever. 0 by construction
# while ip_allocations.port_id cascades on the port's delete; this catches a schema without it.
LEAKED_FIXED_IPS = """
SELECT count(*) FROM network.ip_allocations i
 WHERE NOT EXISTS (SELECT 1 FROM network.ports p WHERE p.id = i.port_id)"""

# Servers still in flight once the run is over: a saga step (or a power task, or a delete)
# that nothing drives any more, or a build that ended without leaving `building`.
STUCK_SERVERS = """
SELECT count(*) FROM compute.servers WHERE task_state IS NOT NULL OR vm_state = 'building'"""

#: Each check: its query and the tables it reads. A check whose tables are not all there (that
#: service never ran, so there is nothing of it to leak) counts 0.
CHECKS: dict[str, tuple[str, tuple[str, ...]]] = {
    "overcommitted_hosts": (OVERCOMMITTED_HOSTS, ("scheduler.hosts",)),
    "host_usage_drift": (HOST_USAGE_DRIFT, ("scheduler.hosts", "scheduler.allocations")),
    "leaked_allocations": (LEAKED_ALLOCATIONS, ("scheduler.allocations", "compute.servers")),
    "unallocated_servers": (UNALLOCATED_SERVERS, ("scheduler.allocations", "compute.servers")),
    "quota_usage_drift": (QUOTA_USAGE_DRIFT, ("compute.servers", "compute.quota_usage")),
    "leaked_ports": (LEAKED_PORTS, ("network.ports", "compute.servers")),
    "leaked_floating_ip_associations": (
        LEAKED_FLOATING_IP_ASSOCIATIONS,
        ("network.floating_ips", "network.ports", "network.ip_allocations", "compute.servers"),
    ),
    "leaked_fixed_ips": (LEAKED_FIXED_IPS, ("network.ip_allocations", "network.ports")),
    "stuck_servers": (STUCK_SERVERS, ("compute.servers",)),
}

PRESENT = "SELECT t FROM unnest($1::text[]) AS t WHERE to_regclass(t) IS NOT NULL"


async def check(database_url: str) -> dict[str, int]:
    """Every check of `CHECKS` against the fabric's database, by name (0 = clean).

    All of them read one snapshot (a read-only repeatable-read transaction): counts taken at
    different moments could disagree with each other about a row that moved in between."""
    conn: asyncpg.Connection = await asyncpg.connect(database_url)
    try:
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            wanted = sorted({t for _, tables in CHECKS.values() for t in tables})
            present = {r["t"] for r in await conn.fetch(PRESENT, wanted)}
            found: dict[str, int] = {}
            for name, (query, tables) in CHECKS.items():
                found[name] = int(await conn.fetchval(query)) if present.issuperset(tables) else 0
            return found
    finally:
        await conn.close()


def violations(found: dict[str, int]) -> int:
    """How many things are wrong in all: what a run must report as 0."""
    return sum(found.values())


#: Statuses a server rests in; any other (BUILD, REBOOT, ...) is a task under way.
SETTLED = frozenset({"ACTIVE", "ERROR", "SHUTOFF"})
#: Requests in flight at once: enough to be quick, few enough not to load the cloud measured.
API_CONCURRENCY = 16


async def check_api(
    client: Client, deleted_ids: Collection[str], *, kept_ids: Collection[str] = ()
) -> dict[str, int]:
    """The checks a client can make of a cloud it did not start, by name (0 = clean).

    `deleted_ids`: servers the run deleted (and waited for); `kept_ids`: servers it made and
    left in place. Each server is looked up by id, not in a listing, so that one of another
    project (seen by an admin) is not missed; the client must be an admin or of the servers'
    project, since to anyone else they are 404, which reads as gone. A server counts once:

    - `stuck_servers`: any of them still there in a task (a status not in SETTLED, or a
      task_state), a deleted one still `deleting` included;
    - `leaked_servers`: deleted ones still there and settled, as if the delete never happened;
    - `leaked_ports`: ports whose device_id is a deleted server. The gateway's port list takes
      one `device_id` filter (a repeated one would silently use the first), so it is one
      request per server. A cloud with no network endpoint has no ports to leak: 0.
    """
    gate = asyncio.Semaphore(API_CONCURRENCY)
    deleted = set(deleted_ids)
    everyone = sorted(deleted | set(kept_ids))

    async def server(server_id: str) -> Server | None:
        async with gate:
            return await client.compute.get_server(server_id)

    found = dict(zip(everyone, await asyncio.gather(*(server(i) for i in everyone)), strict=True))
    stuck = {i for i, s in found.items() if s is not None and not _settled(s)}
    leaked = {i for i in deleted if found[i] is not None and i not in stuck}
    return {
        "stuck_servers": len(stuck),
        "leaked_servers": len(leaked),
        "leaked_ports": await _ports_bound_to(client, sorted(deleted), gate),
    }


def _settled(server: Server) -> bool:
    return server.status in SETTLED and server.task_state is None


async def _ports_bound_to(client: Client, device_ids: list[str], gate: asyncio.Semaphore) -> int:
    """How many ports have one of these device ids (as far as the client may see ports)."""
    try:
        url = f"{client.endpoint('network')}/v2.0/ports"
    except LookupError:
        return 0

    async def count(device_id: str) -> int:
        query = urlencode([("device_id", device_id), ("fields", "id")])
        async with gate:
            _, _, body = await client.request("GET", f"{url}?{query}", expect=(200,))
        return len(body["ports"])

    return sum(await asyncio.gather(*(count(i) for i in device_ids)))
