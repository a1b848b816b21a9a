"""The statements behind servers and their boot saga, beside the functions that run them.

Every saga step is one conditional UPDATE that names the task it expects the server to be in;
zero rows means the step was done already or the server moved on (deleted, say), and the
caller does nothing more.
"""

from typing import Any

import asyncpg
import orjson

from actors.compute import boot
from actors.compute.sql import FLAVOR_COLUMNS, usable
from fabric.store import Connection
from protocol.codec import decode
from protocol.compute import (
    QUOTA_DEFAULTS,
    AttachedVolume,
    FlavorView,
    ServerAddress,
    ServerFault,
    ServerView,
)
from protocol.scheduler import Placed

COLUMNS = """id, name, description, project_id, user_id, vm_state, task_state, power_state, host, agent_queue,
    availability_zone, flavor, vcpus, ram_mb, disk_gb, image_id, spawn, key_name, metadata, group_id,
    tried_hosts, fault, ports, addresses, spawn->'kernel'->>'image_id' AS kernel_id,
    spawn->'ramdisk'->>'image_id' AS ramdisk_id, extract(epoch FROM created_at) AS created,
    extract(epoch FROM updated_at) AS updated, extract(epoch FROM launched_at) AS launched, volumes"""

#: What a step returns of the server it moved: enough to announce the move
#: (`protocol.compute.ServerStatusChanged`) without reading the row again.
MOVED = "id, project_id, name, vm_state, task_state, host"
#: What the scheduling step reads of its server: what the placement request is made of.
TO_PLACE = """id, project_id, task_state, vcpus, ram_mb, disk_gb, availability_zone, tried_hosts, ports,
    group_id"""
#: What a placed server's row returns: the move to announce and the spawn to send.
PLACED = f"{MOVED}, agent_queue, vcpus, ram_mb, disk_gb, spawn, ports"


def with_deleted(project: str | None, since: str | None) -> str:
    """Live servers and, as vm_state `deleted` with their deletion as `updated_at`, the deleted
    ones still kept: what `changes-since` and the DELETED status filter read. `project` and
    `since` (SQL parameters, or None for any) pick the deleted rows by their own indexed columns
    before each is turned back into a row: filtered only outside, every poll of `changes-since`
    rebuilt every deleted server kept (10,000 of them 20 times a second in `bench run`)."""
    picked = [f"d.project_id = {project}"] if project else []
    picked += [f"d.deleted_at >= to_timestamp({since})"] if since else []
    where = f"WHERE {' AND '.join(picked)}" if picked else ""
    return f"""(SELECT * FROM compute.servers
    UNION ALL
    SELECT (jsonb_populate_record(NULL::compute.servers, d.row || jsonb_build_object(
               'vm_state', 'deleted', 'task_state', NULL, 'updated_at', d.deleted_at))).*
      FROM compute.deleted_servers d {where}) AS servers"""


def view(r: asyncpg.Record) -> ServerView:
    fault = orjson.loads(r["fault"]) if r["fault"] else None
    return ServerView(
        id=r["id"],
        name=r["name"],
        description=r["description"],
        project_id=r["project_id"],
        user_id=r["user_id"],
        status=boot.status(r["vm_state"], r["task_state"]),
        vm_state=r["vm_state"],
        task_state=r["task_state"],
        power_state=r["power_state"],
        host=r["host"],
        availability_zone=(r["availability_zone"] or "").split(":")[0] or None,
        flavor=FlavorView(**orjson.loads(r["flavor"])),
        image_id=r["image_id"],
        kernel_id=r["kernel_id"],
        ramdisk_id=r["ramdisk_id"],
        key_name=r["key_name"],
        metadata=orjson.loads(r["metadata"]),
        group_id=r["group_id"],
        created_at=float(r["created"]),
        updated_at=float(r["updated"]),
        launched_at=float(r["launched"]) if r["launched"] is not None else None,
        fault=ServerFault(**fault) if fault else None,
        addresses={
            name: tuple(ServerAddress(**a) for a in entries)
            for name, entries in orjson.loads(r["addresses"]).items()
        },
        volumes_attached=tuple(AttachedVolume(**v) for v in orjson.loads(r["volumes"] or "[]")),
    )


async def create_inputs(
    conn: Connection, server_id: str, flavor_id: str, *, project: str | None, admin: bool
) -> tuple[bool, FlavorView | None, dict[str, int]]:
    """What a create reads before it makes anything, in one round trip: whether a server with
    this id exists (a retried create), the flavor if the caller may use it, and the project's
    quota limits (Nova's defaults where none is set)."""
    r = await conn.fetchrow(
        f"""SELECT EXISTS (SELECT 1 FROM compute.servers WHERE id = $1) AS server_exists,
                   (SELECT coalesce(jsonb_object_agg(resource, hard_limit), '{{}}')
                      FROM compute.quota_limits WHERE project_id = $2) AS limits,
                   to_jsonb(f) AS flavor
              FROM (SELECT 1) AS one
              LEFT JOIN LATERAL (SELECT {FLAVOR_COLUMNS} FROM compute.flavors
                                  WHERE id = $3 AND ($4::bool OR {usable("$2")})) AS f ON true""",
        server_id, project, flavor_id, admin,
    )  # fmt: skip
    assert r is not None
    # Through the codec: JSON has no float type, so rxtx_factor 1.0 comes back as 1.
    flavor = decode(FlavorView, orjson.loads(r["flavor"])) if r["flavor"] else None
    return r["server_exists"], flavor, QUOTA_DEFAULTS | orjson.loads(r["limits"])


async def create(conn: Connection, values: dict[str, Any], limit: dict[str, int]) -> asyncpg.Record | None:
    """Make the server and count it against its project's `limit` (the project's quota limits)
    in one statement (migration 006): the row, with `made` false when a server with this id
    existed already (a retried create); None when a limit would be exceeded (nothing written)."""
    try:
        return await conn.fetchrow(
            f"""SELECT c.made, {COLUMNS}
                  FROM compute.create_server($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13,
                                             $14, $15, $16, $17, $18, $19, $20) AS c,
                       LATERAL (SELECT (c.server).*) AS servers""",
            values["id"], values["name"], values["project_id"], values["user_id"],
            values["availability_zone"], orjson.dumps(values["flavor"]).decode(), values["vcpus"],
            values["ram_mb"], values["disk_gb"], values["image_id"], orjson.dumps(values["spawn"]).decode(),
            values["key_name"], orjson.dumps(values["metadata"]).decode(), values["group_id"],
            values["description"], orjson.dumps(values["ports"]).decode(),
            orjson.dumps(values["addresses"]).decode(), limit["instances"], limit["cores"], limit["ram"],
        )  # fmt: skip
    except asyncpg.UniqueViolationError:
        # The same id made by a create running beside this one: its row, as a retry gets.
        row = await conn.fetchrow(
            f"SELECT false AS made, {COLUMNS} FROM compute.servers WHERE id = $1", values["id"]
        )
        assert row is not None
        return row


async def get(conn: Connection, server_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(f"SELECT {COLUMNS} FROM compute.servers WHERE id = $1", server_id)


async def to_place(conn: Connection, server_id: str) -> asyncpg.Record | None:
    """The server as the scheduling step needs it (`TO_PLACE`): a step per boot, so no more."""
    return await conn.fetchrow(f"SELECT {TO_PLACE} FROM compute.servers WHERE id = $1", server_id)


async def waiting_for_root_volume(conn: Connection, volume_id: str) -> list[asyncpg.Record]:
    """Servers whose spawn waits for this root volume (the partial index servers_root_volume)."""
    return await conn.fetch(
        f"""SELECT {COLUMNS} FROM compute.servers
             WHERE spawn ? 'root_volume' AND spawn->'root_volume'->>'volume_id' = $1
               AND task_state = 'spawning'""",
        volume_id,
    )


async def list_servers(
    conn: Connection,
    *,
    project_id: str | None,
    name: str | None,
    status: tuple[str, str | None] | None,
    host: str | None,
    image_id: str | None,
    flavor_id: str | None,
    changes_since: float | None,
    marker: str | None,
    limit: int,
) -> list[asyncpg.Record]:
    """Deleted servers are in only when asked for by `changes_since` or the deleted status."""
    where: list[str] = []
    args: list[Any] = []

    def arg(value: Any) -> str:
        args.append(value)
        return f"${len(args)}"

    project = arg(project_id) if project_id is not None else None
    since = arg(changes_since) if changes_since is not None else None
    deleted = since is not None or (status is not None and status[0] == "deleted")
    source = with_deleted(project, since) if deleted else "compute.servers"
    if project is not None:
        where.append(f"project_id = {project}")
    if name is not None:
        where.append(f"name = {arg(name)}")
    if status is not None:
        where.append(f"vm_state = {arg(status[0])}")
        if status[1] is not None:
            where.append(f"task_state = {arg(status[1])}")
    if host is not None:
        where.append(f"host = {arg(host)}")
    if image_id is not None:
        where.append(f"image_id = {arg(image_id)}")
    if flavor_id is not None:
        where.append(f"flavor->>'id' = {arg(flavor_id)}")
    if since is not None:
        where.append(f"updated_at >= to_timestamp({since})")
    if marker is not None:
        m = arg(marker)
        where.append(f"(created_at, id) < (SELECT created_at, id FROM {source} WHERE id = {m})")
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    order = f"ORDER BY created_at DESC, id DESC LIMIT {arg(limit)}"
    return await conn.fetch(f"SELECT {COLUMNS} FROM {source} {clause} {order}", *args)


async def exists(conn: Connection, server_id: str) -> bool:
    return bool(await conn.fetchval("SELECT true FROM compute.servers WHERE id = $1", server_id))


async def placed(tx: Connection, server_id: str, where: Placed) -> asyncpg.Record | None:
    """Scheduling → spawning on the host placed on, in that host's zone; None when the server
    is no longer scheduling."""
    return await tx.fetchrow(
        f"""UPDATE compute.servers SET host = $2, agent_queue = $3, availability_zone = $4,
                task_state = 'spawning', step_at = now(), updated_at = now()
            WHERE id = $1 AND task_state = 'scheduling' RETURNING {PLACED}""",
        server_id, where.host, where.queue, where.availability_zone,
    )  # fmt: skip


async def spawned(tx: Connection, server_id: str, host: str) -> asyncpg.Record | None:
    """Spawning → active; None when it was not spawning on `host`. `on_volume`: whether it
    boots from a volume (whose attachment then completes)."""
    return await tx.fetchrow(
        f"""UPDATE compute.servers SET vm_state = 'active', task_state = NULL, power_state = 1,
                launched_at = now(), updated_at = now(), step_at = now()
            WHERE id = $1 AND host = $2 AND task_state = 'spawning'
        RETURNING {MOVED}, spawn ? 'root_volume' AS on_volume""",
        server_id, host,
    )  # fmt: skip


async def spawn_failed(tx: Connection, server_id: str, host: str, max_attempts: int) -> asyncpg.Record | None:
    """Spawning on `host` → back to scheduling with `host` excluded, or (no attempts left)
    nowhere: the caller then fails the server. None when it was not spawning there."""
    return await tx.fetchrow(
        f"""UPDATE compute.servers
              SET host = NULL, agent_queue = NULL, tried_hosts = tried_hosts || $2::text,
                  task_state = CASE WHEN cardinality(tried_hosts) + 1 < $3 THEN 'scheduling' END,
                  step_at = now(), updated_at = now()
            WHERE id = $1 AND host = $2 AND task_state = 'spawning'
        RETURNING {MOVED}, tried_hosts""",
        server_id, host, max_attempts,
    )  # fmt: skip


async def fail(
    tx: Connection, server_id: str, fault: ServerFault, *, tasks: tuple[str | None, ...]
) -> asyncpg.Record | None:
    """→ ERROR with `fault`, from any of `tasks` (None: from no task); None when in none of them."""
    return await tx.fetchrow(
        f"""UPDATE compute.servers SET vm_state = 'error', task_state = NULL, power_state = 0,
                fault = $2::jsonb, updated_at = now(), step_at = now()
            WHERE id = $1 AND (task_state = ANY($3::text[]) OR ($4 AND task_state IS NULL))
            RETURNING {MOVED}""",
        server_id,
        orjson.dumps(
            {"code": fault.code, "message": fault.message, "details": fault.details, "created": fault.created}
        ).decode(),
        [t for t in tasks if t is not None],
        None in tasks,
    )


async def start_task(
    tx: Connection, server_id: str, task: str, vm_states: frozenset[str]
) -> asyncpg.Record | None:
    """Begin a power task from one of `vm_states` with no task running."""
    return await tx.fetchrow(
        f"""UPDATE compute.servers SET task_state = $2, step_at = now(), updated_at = now()
            WHERE id = $1 AND task_state IS NULL AND vm_state = ANY($3::text[]) RETURNING {COLUMNS}""",
        server_id, task, list(vm_states),
    )  # fmt: skip


async def power_reported(
    tx: Connection, server_id: str, host: str, vm_state: str, power: int, *, boot_tasks: tuple[str, ...]
) -> asyncpg.Record | None:
    """The host says what the guest's power is: end any power task and follow it. Servers still
    booting or being deleted are left alone (their own saga decides): None."""
    return await tx.fetchrow(
        f"""UPDATE compute.servers SET vm_state = $3, power_state = $4, task_state = NULL,
                updated_at = now(), step_at = now()
            WHERE id = $1 AND host = $2
              AND (task_state IS NULL OR NOT task_state = ANY($5::text[]))
            RETURNING {MOVED}""",
        server_id, host, vm_state, power, [*boot_tasks, "deleting"],
    )  # fmt: skip


async def begin_delete(tx: Connection, server_id: str) -> asyncpg.Record | None:
    return await tx.fetchrow(
        f"""UPDATE compute.servers SET task_state = 'deleting', step_at = now(), updated_at = now()
            WHERE id = $1 RETURNING {MOVED}, agent_queue""",
        server_id,
    )


async def remove(tx: Connection, server_id: str) -> asyncpg.Record | None:
    """Delete the row of a server being deleted, keeping it as deleted (`with_deleted`); its
    usage, for the quota, and what announces it gone."""
    return await tx.fetchrow(
        """WITH gone AS (DELETE FROM compute.servers WHERE id = $1 AND task_state = 'deleting'
                         RETURNING *),
                kept AS (INSERT INTO compute.deleted_servers (id, project_id, row)
                         SELECT id, project_id, to_jsonb(gone) FROM gone ON CONFLICT (id) DO NOTHING)
           SELECT id, project_id, name, 'deleted' AS vm_state, NULL::text AS task_state, host, vcpus, ram_mb
             FROM gone""",
        server_id,
    )


async def purge_deleted(tx: Connection, older_than_s: float) -> int:
    done: str = await tx.execute(
        "DELETE FROM compute.deleted_servers WHERE deleted_at < now() - make_interval(secs => $1)",
        older_than_s,
    )
    return int(done.split()[-1])


async def stale(tx: Connection, older_than_s: float, limit: int) -> list[asyncpg.Record]:
    """Servers whose saga step has not moved for `older_than_s`, claimed for this replica by
    touching their step time (SKIP LOCKED: replicas reaping at once take different rows)."""
    return await tx.fetch(
        f"""UPDATE compute.servers SET step_at = now()
            WHERE id IN (SELECT id FROM compute.servers
                          WHERE task_state IS NOT NULL AND step_at < now() - make_interval(secs => $1)
                          ORDER BY step_at LIMIT $2 FOR UPDATE SKIP LOCKED)
            RETURNING {COLUMNS}, extract(epoch FROM now() - created_at) AS age""",
        older_than_s, limit,
    )  # fmt: skip


async def on_hosts(conn: Connection, hosts: list[str]) -> list[asyncpg.Record]:
    return await conn.fetch(
        """SELECT id, host, vm_state, task_state, vcpus, ram_mb, disk_gb FROM compute.servers
            WHERE host = ANY($1::text[])""",
        hosts,
    )


async def group_hosts(tx: Connection, group_id: str, server_id: str) -> list[str]:
    """Hosts of the group's other members, under a lock that makes the group's placements one
    at a time (two members placed at once could both pick the same host)."""
    await tx.execute("SELECT pg_advisory_xact_lock(hashtext('compute.server_group:' || $1))", group_id)
    rows = await tx.fetch(
        """SELECT DISTINCT host FROM compute.servers
            WHERE group_id = $1 AND id <> $2 AND host IS NOT NULL""",
        group_id, server_id,
    )  # fmt: skip
    return [r["host"] for r in rows]
