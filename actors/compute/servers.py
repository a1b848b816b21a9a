"""Servers: the API's handlers and the boot, power and delete sagas that follow them.

Each step reads the server's row, asks one other party (scheduler, agent), and records the
answer with a conditional update (`server_sql`); the next step is a cast, persisted by the
broker, so a crash between steps loses nothing. A reaper drives again any step that has not
moved for `saga_step_timeout_s`, and fails a build older than `build_timeout_s`: no server stays
in BUILD for ever, and every allocation is released on delete and on failure.

Every step that changes what the API shows as a server's status or task state returns the moved
row (`server_sql.MOVED`), and the handler announces it (`_announce`: `ServerStatusChanged`) once
the transaction has committed and before it sends the next step, so that nothing is announced
that could still roll back and one server's events go out in the order of its changes.
"""

import asyncio
import dataclasses
import logging
import time
from collections.abc import Awaitable, Iterable
from typing import Any

import asyncpg
import orjson

from actors.compute import boot, boot_images, nics, quota_sql, server_sql
from actors.compute.create_inputs import CreateInputs
from actors.compute.root_volumes import RootVolumeFailed, RootVolumes
from fabric.actor import handles, subscribes
from fabric.bus import Bus
from fabric.config import Settings
from fabric.service import require_admin, require_member, service_context
from fabric.store import Connection, Store
from protocol import compute_agent as agent
from protocol.compute import (
    CreateServer,
    DeleteServer,
    FlavorChanged,
    GetServer,
    GetServerConsole,
    ListServers,
    QuotaLimitsChanged,
    ScheduleServer,
    ServerFault,
    ServerList,
    ServerStatusChanged,
    ServerView,
    SetServerPower,
    hostname_of,
)
from protocol.envelope import Context
from protocol.errors import (
    Conflict,
    FabricError,
    Invalid,
    NotFound,
    NoValidHost,
    QuotaExceeded,
    Timeout,
    Unavailable,
)
from protocol.image import ImageView
from protocol.network import DeviceAddressesChanged
from protocol.scheduler import QUEUE as SCHEDULER
from protocol.scheduler import Placed, PlaceServer, ReleaseAllocation, Resources
from protocol.system import Done
from protocol.volume import VolumeStatusChanged

log = logging.getLogger("fabric.compute")

#: How long a saga step waits for the scheduler before leaving the step to the reaper.
PLACE_TIMEOUT_S = 30.0
#: How long a status event may wait for the broker: after this it is stale (readers have polled).
ANNOUNCE_TTL_S = 30.0
REAP_BATCH = 200
ZERO_USAGE = {"instances": 0, "cores": 0, "ram": 0}


async def _check_references(tx: Connection, msg: CreateServer, ctx: Context) -> None:
    """The key pair and server group a create names exist (the caller's own)."""
    if msg.key_name is not None and not await tx.fetchval(
        "SELECT true FROM compute.keypairs WHERE user_id = $1 AND name = $2", ctx.user_id, msg.key_name
    ):
        raise Invalid("key_name", f"keypair {msg.key_name} could not be found")
    if msg.group_id is not None and not await tx.fetchval(
        "SELECT true FROM compute.server_groups WHERE id = $1 AND project_id = $2",
        msg.group_id, ctx.project_id,
    ):  # fmt: skip
        raise Invalid("os:scheduler_hints.group", f"server group {msg.group_id} could not be found")


def _fault(message: str, *, code: int = 500, details: str = "") -> ServerFault:
    return ServerFault(code=code, message=message, details=details, created=time.time())


class Servers(RootVolumes):
    """The server handlers of the compute service (mixed into `actor.Compute`)."""

    def __init__(self, bus: Bus, store: Store, settings: Settings) -> None:
        super().__init__(bus, store, settings)
        #: The flavors and quota limits creates read, kept until a replica announces a change.
        self.create_inputs = CreateInputs()

    @subscribes(FlavorChanged)
    async def on_flavor_changed(self, event: FlavorChanged, ctx: Context) -> None:
        self.create_inputs.forget_flavor(event.flavor_id)

    @subscribes(QuotaLimitsChanged)
    async def on_quota_limits_changed(self, event: QuotaLimitsChanged, ctx: Context) -> None:
        self.create_inputs.forget_limits(event.project_id)

    # --- announcing ----------------------------------------------------------------------------

    async def _announce(
        self, rows: Iterable[asyncpg.Record | None], ctx: Context, *, confirm: bool = True
    ) -> None:
        """Publish the moved rows' new status, after commit. Best effort: the event only saves
        watchers a poll, so a broker that cannot take it must not fail (and replay) a step that
        is already done; the row stays the truth. `confirm=False`: do not wait for the broker."""
        for row in rows:
            if row is None:
                continue
            event = ServerStatusChanged(
                server_id=row["id"],
                project_id=row["project_id"],
                name=row["name"],
                status=boot.status(row["vm_state"], row["task_state"]),
                task_state=row["task_state"],
                host=row["host"],
            )
            try:
                await self.bus.publish(event, ctx, ttl_s=ANNOUNCE_TTL_S, confirm=confirm)
            except FabricError as exc:
                log.warning(
                    "server status not announced",
                    extra={"server_id": event.server_id, "status": event.status, "error": exc.message},
                )

    # --- create --------------------------------------------------------------------------------

    async def _spawn_spec(self, msg: CreateServer, ctx: Context) -> tuple[ImageView, dict[str, Any]]:
        image = await self.images.get(msg.image_id, "imageRef", ctx)
        parts = await self.images.kernel_boot(image.properties, "imageRef", ctx)
        return image, {"root": boot_images.image_file(image, "imageRef")} | parts

    @handles(CreateServer, key=lambda m: m.server_id)
    async def create_server(self, msg: CreateServer, ctx: Context) -> ServerView:
        require_member(ctx, "os_compute_api:servers:create")
        if msg.availability_zone and ":" in msg.availability_zone:
            # Nova's `zone:host` (or `zone::node`) picks the host: for admins only.
            require_admin(ctx, "os_compute_api:servers:create:forced_host")
        kept = self.create_inputs.get(msg.flavor_id, ctx)
        if kept is None:
            async with self.store.connection() as tx:
                exists, flavor, limits = await server_sql.create_inputs(
                    tx, msg.server_id, msg.flavor_id, project=ctx.project_id, admin=ctx.is_admin
                )
                if exists:
                    row = await server_sql.get(tx, msg.server_id)
                    if row is not None:
                        return server_sql.view(self._visible(row, ctx, msg.server_id))
                if flavor is None:
                    raise Invalid("flavorRef", f"flavor {msg.flavor_id} could not be found")
                self.create_inputs.keep(ctx, flavor, limits)
                await _check_references(tx, msg, ctx)
        else:
            # A retried create (its server exists) is found by the create's own statement.
            flavor, limits = kept
            if msg.key_name is not None or msg.group_id is not None:
                async with self.store.connection() as tx:
                    await _check_references(tx, msg, ctx)
        if limits["metadata_items"] >= 0 and len(msg.metadata) > limits["metadata_items"]:
            raise QuotaExceeded("metadata_items", str(limits["metadata_items"]))
        root: dict[str, Any] | None = None
        if msg.root_volume is not None:
            image_id, disk_gb = "", 0  # Nova shows no image, and the root disk is the volume's
            spawn, root = await self.root_volume_spec(msg, flavor, ctx)
        else:
            image, spawn = await self._spawn_spec(msg, ctx)
            if flavor.disk and image.size and image.size > flavor.disk * 1024**3:
                raise Invalid("flavorRef", f"flavor {flavor.id}'s disk is too small for image {image.id}")
            if flavor.ram < image.min_ram or (flavor.disk and flavor.disk < image.min_disk):
                raise Invalid("flavorRef", f"flavor {flavor.id} is smaller than image {image.id} requires")
            image_id, disk_gb = image.id, flavor.disk
        zone = (msg.availability_zone or "nova").split(":")[0] or "nova"
        try:
            requests = await nics.auto_network(self.bus, ctx) if msg.auto_network else list(msg.networks)
            ports = await nics.make_ports(
                self.bus, msg.server_id, hostname_of(msg.name), requests, zone, ctx, msg.security_groups
            )
        except BaseException:
            if root is not None:
                await self.give_back_root_volume(root, ctx)
            raise
        values = {
            "id": msg.server_id,
            "name": msg.name,
            "description": msg.description,
            "project_id": ctx.project_id,
            "user_id": ctx.user_id,
            "availability_zone": msg.availability_zone,
            "flavor": {f: getattr(flavor, f) for f in flavor.__slots__},
            "vcpus": flavor.vcpus,
            "ram_mb": flavor.ram,
            "disk_gb": disk_gb,
            "image_id": image_id,
            "spawn": spawn,
            "key_name": msg.key_name,
            "metadata": msg.metadata,
            "group_id": msg.group_id,
            "ports": ports,
            "addresses": nics.addresses(ports),
        }
        project = ctx.project_id or ""
        try:
            # Over a limit even as the project's first server (the count's upsert checks only
            # an existing row).
            quota_sql.refuse_server(ZERO_USAGE, flavor.vcpus, flavor.ram, limits)
            async with self.store.connection() as conn:
                row = await server_sql.create(conn, values, limits)
                if row is None:
                    used = await quota_sql.usage(conn, project)
                    quota_sql.refuse_server(used, flavor.vcpus, flavor.ram, limits)
                    raise QuotaExceeded("instances", "the last of the quota was taken by another create")
        except BaseException:
            await nics.release_ports(self.bus, ports, service_context(ctx.request_id))
            if root is not None:
                await self.give_back_root_volume(root, ctx)
            raise
        if not row["made"]:  # a retried create: the server and its ports are the first try's
            await nics.release_ports(self.bus, ports, service_context(ctx.request_id))
            if root is not None:
                await self.give_back_root_volume(root, ctx)
        else:  # after commit: never announce a row that could still roll back
            # The server exists from here, whatever the broker says: the 202 does not wait for
            # its confirms. A lost status event costs watchers a poll; a lost first step is
            # driven again by the reaper, as after a crash.
            await self._announce([row], ctx, confirm=False)
            await self.bus.cast(self.queue, ScheduleServer(server_id=msg.server_id), ctx, confirm=False)
        return server_sql.view(self._visible(row, ctx, msg.server_id))

    # --- the boot saga -------------------------------------------------------------------------

    @handles(ScheduleServer, key=lambda m: m.server_id)
    async def schedule_server(self, msg: ScheduleServer, ctx: Context) -> None:
        async with self.store.connection() as tx:
            row = await server_sql.to_place(tx, msg.server_id)
        if row is None or row["task_state"] != boot.Task.SCHEDULING:
            return  # placed already, or deleted: a replayed step
        try:
            placed, updated = await self._place(row, ctx)
        except NoValidHost as exc:
            async with self.store.transaction() as tx:
                failed = await server_sql.fail(
                    tx, row["id"], _fault(exc.message), tasks=(boot.Task.SCHEDULING,)
                )
            await self._announce([failed], ctx)
            return
        except (Timeout, Unavailable) as exc:
            log.warning(
                "placement did not answer; the reaper will retry",
                extra={"server_id": row["id"], "error": exc.message},
            )
            return
        if updated is None:  # deleted while we placed it: give the room back
            await self._release(row["id"], placed.host, ctx)
            return
        await self._announce([updated], ctx)  # `_place` has committed it
        await self._send_spawn(updated, ctx)

    async def _place(self, row: asyncpg.Record, ctx: Context) -> tuple[Placed, asyncpg.Record | None]:
        """Ask the scheduler for a host and record it. A member of a server group is placed
        under the group's lock, holding a connection across the call; others hold none."""
        zone, *hosts = (row["availability_zone"] or "").split(":")
        host = next((h for h in hosts if h), None)  # `zone:host` or `zone::node`
        request = PlaceServer(
            server_id=row["id"],
            project_id=row["project_id"],
            resources=Resources(vcpus=row["vcpus"], ram_mb=row["ram_mb"], disk_gb=row["disk_gb"]),
            availability_zone=zone or None,
            exclude_hosts=tuple(row["tried_hosts"]),
            force_host=host,
            needs_network=bool(orjson.loads(row["ports"])),
        )
        if row["group_id"] is None:
            placed: Placed = await self.bus.call(SCHEDULER, request, ctx, timeout_s=PLACE_TIMEOUT_S)
            async with self.store.connection() as tx:
                return placed, await server_sql.placed(tx, row["id"], placed)
        async with self.store.transaction(timeout_s=PLACE_TIMEOUT_S) as tx:
            policy = await tx.fetchval(
                "SELECT policy FROM compute.server_groups WHERE id = $1", row["group_id"]
            )
            hosts = await server_sql.group_hosts(tx, row["group_id"], row["id"])
            request = dataclasses.replace(request, group_policy=policy, group_hosts=tuple(hosts))
            placed = await self.bus.call(SCHEDULER, request, ctx, timeout_s=PLACE_TIMEOUT_S)
            return placed, await server_sql.placed(tx, row["id"], placed)

    async def _send_spawn(self, row: asyncpg.Record, ctx: Context) -> None:
        spawn = orjson.loads(row["spawn"])
        disks: tuple[agent.GuestDisk, ...] = ()
        if spawn.get("root_volume"):
            try:
                disk = await self.root_disk(row, spawn["root_volume"], ctx)
            except RootVolumeFailed as exc:
                await self._fail_build(row["id"], exc.message, ctx)
                return
            if disk is None:
                return  # not ready: its status change (or the reaper) drives this step again
            disks = (disk,)
        ports = orjson.loads(row["ports"])
        await nics.bind_ports(self.bus, ports, row["host"], ctx.request_id)
        msg = agent.SpawnGuest(
            host=row["host"],
            server_id=row["id"],
            name=hostname_of(row["name"]),
            vcpus=row["vcpus"],
            ram_mb=row["ram_mb"],
            disk_gb=row["disk_gb"],
            root_image=agent.ImageFile(**spawn["root"]) if spawn["root"] else None,
            kernel=agent.ImageFile(**spawn["kernel"]) if spawn["kernel"] else None,
            ramdisk=agent.ImageFile(**spawn["ramdisk"]) if spawn["ramdisk"] else None,
            cmdline=spawn["cmdline"],
            nics=nics.nics(ports),
            disks=disks,
        )
        await self.bus.cast(row["agent_queue"], msg, ctx)

    @subscribes(VolumeStatusChanged, group="compute.volumes")
    async def on_volume_status(self, event: VolumeStatusChanged, ctx: Context) -> None:
        """A root volume became ready (or failed): spawn the servers waiting for it."""
        if event.status not in ("available", "error") or not event.bootable:
            return  # compute waits only for volumes it made of an image
        async with self.store.connection() as conn:
            rows = await server_sql.waiting_for_root_volume(conn, event.volume_id)
        for row in rows:
            await self._send_spawn(row, ctx)

    async def _fail_build(self, server_id: str, message: str, ctx: Context) -> None:
        """A build that cannot go on (its root volume failed): ERROR, and its host's room back."""
        async with self.store.transaction() as tx:
            failed = await server_sql.fail(tx, server_id, _fault(message), tasks=(boot.Task.SPAWNING,))
        if failed is not None:
            await self._announce([failed], ctx)
            await self._release(server_id, None, service_context())

    async def _release(self, server_id: str, host: str | None, ctx: Context) -> None:
        await self.bus.call(SCHEDULER, ReleaseAllocation(server_id=server_id, host=host), ctx, timeout_s=30)

    @handles(agent.GuestSpawned, key=lambda m: m.server_id)
    async def on_spawned(self, msg: agent.GuestSpawned, ctx: Context) -> None:
        async with self.store.connection() as tx:
            active = await server_sql.spawned(tx, msg.server_id, msg.host)
        if active is None:
            log.info("spawn reported for a server not spawning there", extra={"server_id": msg.server_id})
            return
        await self._announce([active], ctx)
        if active["on_volume"]:
            await self.complete_root_attachments(msg.server_id, ctx)

    @handles(agent.GuestSpawnFailed, key=lambda m: m.server_id)
    async def on_spawn_failed(self, msg: agent.GuestSpawnFailed, ctx: Context) -> None:
        async with self.store.transaction() as tx:
            moved = after = await server_sql.spawn_failed(
                tx, msg.server_id, msg.host, self.settings.max_spawn_attempts
            )
            if moved is not None and moved["task_state"] is None:
                hosts = ", ".join(moved["tried_hosts"])
                fault = _fault(
                    f"Build of instance {msg.server_id} failed on {len(moved['tried_hosts'])} host(s).",
                    details=f"last error on {msg.host}: {msg.reason}; tried: {hosts}",
                )
                after = await server_sql.fail(tx, msg.server_id, fault, tasks=(None,))
        if moved is None:
            return
        await self._announce([after], ctx)  # back to scheduling, or ERROR
        await self.end_root_attachments(msg.server_id, ctx)
        # Before placing again: the scheduler would otherwise answer with this allocation.
        await self._release(msg.server_id, msg.host, ctx)
        if moved["task_state"] == boot.Task.SCHEDULING:
            await self.bus.cast(self.queue, ScheduleServer(server_id=msg.server_id), ctx)

    # --- read ----------------------------------------------------------------------------------

    @handles(GetServer)
    async def get_server(self, msg: GetServer, ctx: Context) -> ServerView:
        async with self.store.connection() as tx:
            row = await server_sql.get(tx, msg.server_id)
        return server_sql.view(self._visible(row, ctx, msg.server_id))

    @handles(ListServers)
    async def list_servers(self, msg: ListServers, ctx: Context) -> ServerList:
        if msg.all_projects or msg.project_id not in (None, ctx.project_id):
            if not ctx.is_admin:
                raise NotFound("servers of project", msg.project_id or "all")
            project = msg.project_id
        else:
            project = ctx.project_id
        status = None
        if msg.status is not None:
            status = boot.STATUS_FILTER.get(msg.status.upper())
            if status is None:
                return ServerList(items=(), more=False)  # Nova: an unknown status matches nothing
        async with self.store.connection() as tx:
            rows = await server_sql.list_servers(
                tx,
                project_id=project,
                name=msg.name,
                status=status,
                host=msg.host if ctx.is_admin else None,
                image_id=msg.image_id,
                flavor_id=msg.flavor_id,
                changes_since=msg.changes_since,
                marker=msg.marker,
                limit=msg.limit + 1,
            )
        items = tuple(server_sql.view(r) for r in rows[: msg.limit])
        return ServerList(items=items, more=len(rows) > msg.limit)

    @handles(GetServerConsole)
    async def get_console(self, msg: GetServerConsole, ctx: Context) -> agent.ConsoleOutput:
        async with self.store.connection() as tx:
            row = self._visible(await server_sql.get(tx, msg.server_id), ctx, msg.server_id)
        if row["host"] is None or row["vm_state"] == boot.VmState.BUILDING:
            raise Conflict("server", f"{msg.server_id} is not running on a host yet")
        out: agent.ConsoleOutput = await self.bus.call(
            row["agent_queue"],
            agent.GetConsoleOutput(host=row["host"], server_id=row["id"]),
            ctx,
            timeout_s=30,
        )
        if msg.lines is None:
            return out
        lines = out.output.splitlines(keepends=True)
        return agent.ConsoleOutput(output="".join(lines[-msg.lines :] if msg.lines else []))

    # --- power ---------------------------------------------------------------------------------

    @handles(SetServerPower, key=lambda m: m.server_id)
    async def set_power(self, msg: SetServerPower, ctx: Context) -> Done:
        require_member(ctx, f"os_compute_api:servers:{msg.action}")
        allowed, task = boot.POWER_ACTIONS[msg.action]
        async with self.store.transaction() as tx:
            row = self._visible(await server_sql.get(tx, msg.server_id), ctx, msg.server_id)
            started = await server_sql.start_task(tx, msg.server_id, task, allowed)
        if started is None:
            raise Conflict(
                "server",
                f"cannot '{msg.action}' instance {msg.server_id} while it is in vm_state {row['vm_state']}"
                + (f" and task_state {row['task_state']}" if row["task_state"] else ""),
            )
        await self._announce([started], ctx)
        await self.bus.cast(
            started["agent_queue"],
            agent.SetGuestPower(host=started["host"], server_id=msg.server_id, action=msg.action),
            ctx,
        )
        return Done()

    @handles(agent.GuestPowerChanged, key=lambda m: m.server_id)
    async def on_power_changed(self, msg: agent.GuestPowerChanged, ctx: Context) -> None:
        vm_state, power = boot.after_power_report(msg.power)
        async with self.store.transaction() as tx:
            changed = await server_sql.power_reported(
                tx, msg.server_id, msg.host, vm_state, power, boot_tasks=tuple(boot.BOOT_TASKS)
            )
            if changed is not None and vm_state == boot.VmState.ERROR:
                reason = msg.reason or f"the guest is {msg.power} on host {msg.host}"
                changed = await server_sql.fail(tx, msg.server_id, _fault(reason), tasks=(None,))
        await self._announce([changed], ctx)

    # --- delete --------------------------------------------------------------------------------

    @handles(DeleteServer, key=lambda m: m.server_id)
    async def delete_server(self, msg: DeleteServer, ctx: Context) -> Done:
        require_member(ctx, "os_compute_api:servers:delete")
        async with self.store.transaction() as tx:
            self._visible(await server_sql.get(tx, msg.server_id), ctx, msg.server_id)
            row = await server_sql.begin_delete(tx, msg.server_id)
        if row is None:
            return Done()  # deleted meanwhile
        await self._announce([row], ctx)
        if row["host"] is not None:
            await self.bus.cast(
                row["agent_queue"], agent.DestroyGuest(host=row["host"], server_id=msg.server_id), ctx
            )
        else:
            await self._finish_delete(msg.server_id, None, ctx)
        return Done()

    async def _finish_delete(self, server_id: str, host: str | None, ctx: Context) -> None:
        # Release first: a crash after it leaves a row in `deleting` that the reaper finishes;
        # the other order could leave an allocation nobody knows about.
        await self._release(server_id, host, ctx)
        async with self.store.connection() as conn:
            row = await server_sql.get(conn, server_id)
        root = None
        if row is not None:
            await nics.release_ports(self.bus, orjson.loads(row["ports"]), service_context(ctx.request_id))
            root = orjson.loads(row["spawn"]).get("root_volume")
        await self.release_volumes(server_id, root, ctx)
        async with self.store.transaction() as tx:
            gone = await server_sql.remove(tx, server_id)
            if gone is not None:
                await quota_sql.give_back_server(tx, gone["project_id"], gone["vcpus"], gone["ram_mb"])
        await self._announce([gone], ctx)  # DELETED

    @handles(agent.GuestDestroyed, key=lambda m: m.server_id)
    async def on_destroyed(self, msg: agent.GuestDestroyed, ctx: Context) -> None:
        async with self.store.connection() as tx:
            row = await server_sql.get(tx, msg.server_id)
        if row is not None and row["task_state"] == boot.Task.DELETING and row["host"] == msg.host:
            await self._finish_delete(msg.server_id, msg.host, ctx)

    @subscribes(DeviceAddressesChanged, group="compute.addresses")
    async def on_addresses_changed(self, event: DeviceAddressesChanged, ctx: Context) -> None:
        """A floating IP came or went: refresh what the servers show (one replica does it)."""
        for server_id in event.device_ids:
            async with self.store.connection() as conn:
                row = await server_sql.get(conn, server_id)
            if row is None:
                continue
            shown = await nics.current_addresses(self.bus, orjson.loads(row["ports"]), ctx.request_id)
            async with self.store.connection() as conn:
                await conn.execute(
                    "UPDATE compute.servers SET addresses = $2::jsonb, updated_at = now() WHERE id = $1",
                    server_id, orjson.dumps(shown).decode(),
                )  # fmt: skip

    # --- agents reconciling --------------------------------------------------------------------

    @handles(agent.SyncGuests)
    async def sync_guests(self, msg: agent.SyncGuests, ctx: Context) -> agent.ExpectedGuests:
        async with self.store.connection() as tx:
            rows = await server_sql.on_hosts(tx, list(msg.hosts))
        return agent.ExpectedGuests(
            guests={
                r["id"]: agent.ExpectedGuest(
                    host=r["host"],
                    running=r["vm_state"] != boot.VmState.STOPPED,
                    vcpus=r["vcpus"],
                    ram_mb=r["ram_mb"],
                    disk_gb=r["disk_gb"],
                )
                for r in rows
                if r["task_state"] not in boot.BOOT_TASKS
            }
        )

    # --- the reaper ----------------------------------------------------------------------------

    def saga_jobs(self) -> list[Awaitable[None]]:
        return [self._reap_forever()]

    async def _reap_forever(self) -> None:
        every = max(0.5, self.settings.saga_step_timeout_s / 4)
        while True:
            await asyncio.sleep(every)
            try:
                await self.reap()
            except (FabricError, OSError, asyncpg.PostgresError) as exc:
                log.warning("reaping failed; trying again later", extra={"error": str(exc)})

    async def reap(self) -> int:
        """Drive again every saga step that has not moved for the step timeout; forget deleted
        servers kept past their retention."""
        async with self.store.transaction() as tx:
            rows = await server_sql.stale(tx, self.settings.saga_step_timeout_s, REAP_BATCH)
            await server_sql.purge_deleted(tx, self.settings.deleted_server_retention_s)
        for row in rows:
            await self._redrive(row, service_context())
        return len(rows) + await self.reap_attachments(self.settings.saga_step_timeout_s, REAP_BATCH)

    async def _redrive(self, row: asyncpg.Record, ctx: Context) -> None:
        task, server_id = row["task_state"], row["id"]
        log.info("driving a stale step again", extra={"server_id": server_id, "task_state": task})
        if task in boot.BOOT_TASKS and float(row["age"]) > self.settings.build_timeout_s:
            async with self.store.transaction() as tx:
                failed = await server_sql.fail(
                    tx,
                    server_id,
                    _fault(f"Build timed out after {self.settings.build_timeout_s:.0f}s."),
                    tasks=(task,),
                )
            if failed is not None:
                await self._announce([failed], ctx)
                if row["host"] is not None:
                    await self.bus.cast(
                        row["agent_queue"], agent.DestroyGuest(host=row["host"], server_id=server_id), ctx
                    )
                await self._release(server_id, None, ctx)
            return
        if task == boot.Task.SCHEDULING:
            await self.bus.cast(self.queue, ScheduleServer(server_id=server_id), ctx)
        elif task == boot.Task.SPAWNING:
            await self._send_spawn(row, ctx)
        elif task == boot.Task.DELETING:
            if row["host"] is not None:
                await self.bus.cast(
                    row["agent_queue"], agent.DestroyGuest(host=row["host"], server_id=server_id), ctx
                )
            else:
                await self._finish_delete(server_id, None, ctx)
        else:
            action = boot.ACTION_OF_TASK[task]
            power = agent.SetGuestPower(host=row["host"], server_id=server_id, action=action)
            await self.bus.cast(row["agent_queue"], power, ctx)
