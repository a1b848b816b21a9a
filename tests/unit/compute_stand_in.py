"""A stand-in for the compute service, as a compute agent sees it on the in-memory bus: it
answers the agent's start-up `SyncGuests` with an empty fleet and records every answer the
agent casts back (spawns and disks), in arrival order, as compute's sagas would consume them."""

import asyncio

from fabric.actor import Actor, handles
from fabric.bus import Bus
from protocol import compute_agent as wire
from protocol.compute import QUEUE as COMPUTE
from protocol.envelope import Context

Answer = (
    wire.GuestSpawned
    | wire.GuestSpawnFailed
    | wire.DiskAttached
    | wire.DiskAttachFailed
    | wire.DiskDetached
    | wire.DiskDetachFailed
)


class ComputeStandIn(Actor):
    service = "compute"

    def __init__(self, bus: Bus) -> None:
        super().__init__(bus, queue=COMPUTE)
        self.answers: asyncio.Queue[Answer] = asyncio.Queue()
        #: Set when the agent asked which guests it should have: it serves its queue by then.
        self.synced = asyncio.Event()

    @handles(wire.SyncGuests)
    async def sync(self, msg: wire.SyncGuests, ctx: Context) -> wire.ExpectedGuests:
        self.synced.set()
        return wire.ExpectedGuests(guests={})

    @handles(wire.GuestSpawned)
    async def spawned(self, msg: wire.GuestSpawned, ctx: Context) -> None:
        await self.answers.put(msg)

    @handles(wire.GuestSpawnFailed)
    async def spawn_failed(self, msg: wire.GuestSpawnFailed, ctx: Context) -> None:
        await self.answers.put(msg)

    @handles(wire.DiskAttached)
    async def attached(self, msg: wire.DiskAttached, ctx: Context) -> None:
        await self.answers.put(msg)

    @handles(wire.DiskAttachFailed)
    async def attach_failed(self, msg: wire.DiskAttachFailed, ctx: Context) -> None:
        await self.answers.put(msg)

    @handles(wire.DiskDetached)
    async def detached(self, msg: wire.DiskDetached, ctx: Context) -> None:
        await self.answers.put(msg)

    @handles(wire.DiskDetachFailed)
    async def detach_failed(self, msg: wire.DiskDetachFailed, ctx: Context) -> None:
        await self.answers.put(msg)
