"""A volume agent dies mid-create: after it comes back, every volume ends `available` (or `error`
with a reason), none stays `creating`, the files on its host are exactly the volumes the
database has (no orphan, no temporary file, no half-downloaded image in its cache), and the
quota usage is the sum of the sizes.

The agent runs as its own process on the real `file` backend (qemu-img), and is killed with
SIGKILL while some creates are done and others are still in flight: a burst of empty volumes
and volumes of an image of a few tens of MiB, whose first fetch into the host's image cache
takes a moment. The rest of the cloud (gateway, volume service with a 2 s step timeout, image
service) runs in this process, on its own database and RabbitMQ vhost.
"""

import asyncio
import hashlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import pytest

from fabric.client import Client
from fabric.compose import Cloud
from fabric.config import Settings
from protocol.volume import TRANSITIONAL
from tests.support import FABRIC, Processes, can_manage_rabbitmq, fabric_env, free_port, isolated

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.amqp,
    pytest.mark.timeout(300),
    pytest.mark.skipif(
        shutil.which("qemu-img") is None,
        reason="qemu-img is not installed (scripts/setup.sh installs qemu-utils)",
    ),
]

HOST = "fault-volume-host"
MiB, GiB = 2**20, 2**30
#: Big enough that fetching it into the cache outlasts the first empty creates.
IMAGE_BYTES = 64 * MiB
FROM_IMAGE, EMPTY = 12, 36
#: Every volume must have left `creating` this long after the agent is back.
SETTLED_WITHIN_S = 90.0


@dataclass
class Rig:
    cloud: Cloud
    client: Client
    settings: Settings
    processes: Processes
    db: asyncpg.Connection
    project_id: str

    @property
    def root(self) -> Path:
        """The agent's files: `volume_dir/<host>/{volumes,snapshots,images}`."""
        return Path(self.settings.volume_dir) / HOST

    def start_agent(self, name: str) -> subprocess.Popen[bytes]:
        env = fabric_env(self.settings, FABRIC_CAPACITY_REPORT_INTERVAL_S="0.5")
        args = [str(FABRIC), "service", "volume-agent", "--host", HOST, "--backend", "file"]
        return self.processes.start(name, args, env)

    async def statuses(self, *, by_source: bool = False) -> dict[str, int]:
        """How many volumes have each status (`by_source`: as `<status> image|empty`)."""
        rows = await self.db.fetch(
            """SELECT status || CASE WHEN $1 THEN CASE WHEN image IS NULL THEN ' empty' ELSE ' image' END
                                     ELSE '' END AS key, count(*) AS n
                 FROM volume.volumes GROUP BY key""",
            by_source,
        )
        return {r["key"]: r["n"] for r in rows}

    async def volumes(self) -> list[asyncpg.Record]:
        return await self.db.fetch(
            "SELECT id, status, error_reason, size_gb, image, host FROM volume.volumes ORDER BY id"
        )


@pytest.fixture
async def rig(settings: Settings, tmp_path: Path) -> AsyncIterator[Rig]:
    why = can_manage_rabbitmq()
    if why:
        pytest.skip(why)
    async with isolated(settings, "volume-faults", tmp_path / "state") as own:
        own = replace(
            own,
            gateway_port=free_port(),
            compute_driver="none",
            fake_hosts=0,
            # The storage host is the process this test kills; none runs in this one.
            volume_agent=False,
            volume_backend="file",
            volume_dir=str(tmp_path / "volumes"),
            volume_step_timeout_s=2.0,
            volume_step_deadline_s=60.0,
            capacity_report_interval_s=0.5,
            image_quota_bytes=GiB,
        )
        processes = Processes(tmp_path)
        async with Cloud(own) as cloud:
            try:
                async with Client.for_admin(own) as client:
                    assert client.token is not None and client.token.project_id is not None
                    db = await asyncpg.connect(own.database_url)
                    try:
                        yield Rig(cloud, client, own, processes, db, client.token.project_id)
                    finally:
                        await db.close()
            finally:
                processes.stop_all()


async def until(what: str, check: Any, timeout_s: float = 30.0, pause_s: float = 0.1) -> None:
    deadline = time.monotonic() + timeout_s
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(pause_s)


def listing(directory: Path) -> set[str]:
    return {p.name for p in directory.iterdir()} if directory.is_dir() else set()


def qemu_info(path: Path) -> dict[str, Any]:
    done = subprocess.run(
        ["qemu-img", "info", "-f", "qcow2", "--output=json", str(path)],
        check=True,
        capture_output=True,
        timeout=30,
    )
    found: dict[str, Any] = orjson.loads(done.stdout)
    return found


async def test_a_volume_agent_killed_mid_create_leaves_no_volume_stuck_and_no_stray_file(rig: Rig) -> None:
    client = rig.client
    await client.volume.set_quotas(rig.project_id, volumes=-1, gigabytes=-1)
    data = os.urandom(IMAGE_BYTES)  # random: nothing along the way can make it smaller
    image = await client.image.create("volume-faults", disk_format="raw", visibility="public")
    await client.image.upload(image["id"], data)

    agent = rig.start_agent("volume-agent-1")

    async def heard() -> bool:
        assert agent.poll() is None, rig.processes.log_of("volume-agent-1")
        return bool(await rig.db.fetchval("SELECT true FROM volume.hosts WHERE host = $1", HOST))

    await until("the volume service to hear the agent", heard)

    # Volumes of the image first (they wait for its fetch), then empty ones (done in
    # milliseconds each), all in flight at once; sizes vary so the usage check means something.
    asks = [{"imageRef": image["id"], "size": 1 + i % 3} for i in range(FROM_IMAGE)]
    asks += [{"size": 1 + i % 4} for i in range(EMPTY)]
    sent = asyncio.gather(
        *(client.volume.create_volume(a.pop("size"), name=f"vf-{i}", **a) for i, a in enumerate(asks))
    )

    async def mid_work() -> bool:
        counts = await rig.statuses()
        return counts.get("available", 0) >= 1 and counts.get("creating", 0) >= 1

    await until("some creates done while others are in flight", mid_work, pause_s=0.005)
    agent.send_signal(signal.SIGKILL)
    agent.wait()
    at_kill = await rig.statuses(by_source=True)
    cache_at_kill = listing(rig.root / "images")
    volumes_at_kill = listing(rig.root / "volumes")
    created = await sent
    assert len(created) == FROM_IMAGE + EMPTY
    # The kill landed mid-work (else this test would test nothing): some volumes were made and
    # others were not, among them volumes of the image, waiting for its fetch.
    assert at_kill.get("available empty", 0) + at_kill.get("available image", 0) >= 1, at_kill
    assert at_kill.get("creating image", 0) >= 1, at_kill
    print(
        f"\nat the kill: {at_kill}; image cache {sorted(cache_at_kill)}; "
        f"{len(volumes_at_kill)} entries in volumes/"
    )

    rig.start_agent("volume-agent-2")

    async def settled() -> bool:
        return not any(r["status"] in TRANSITIONAL for r in await rig.volumes())

    try:
        await until("every volume to leave its transitional status", settled, SETTLED_WITHIN_S, 0.2)
    except AssertionError:
        stuck = [dict(r) for r in await rig.volumes() if r["status"] in TRANSITIONAL]
        raise AssertionError(
            f"{len(stuck)} volume(s) still transitional after {SETTLED_WITHIN_S:.0f}s: {stuck[:5]}\n"
            f"agent log:\n{rig.processes.log_of('volume-agent-2')[-3000:]}"
        ) from None

    rows = await rig.volumes()
    assert {r["id"] for r in rows} == {v.id for v in created}
    for row in rows:
        assert row["status"] in ("available", "error"), dict(row)
        if row["status"] == "error":
            assert row["error_reason"], dict(row)
        assert row["host"] == HOST
    available = {r["id"]: r for r in rows if r["status"] == "available"}
    print(f"after the restart: {len(available)} available, {len(rows) - len(available)} in error")

    # The host holds a whole file for each volume made, nothing else: no orphan, no temporary
    # file, no partial download, and the cached image is the image, whole.
    files = listing(rig.root / "volumes")
    assert {f"{volume_id}.qcow2" for volume_id in available} <= files, "a volume's file is missing"
    assert files <= {f"{r['id']}.qcow2" for r in rows}, f"files no volume owns: {sorted(files)}"
    assert listing(rig.root / "snapshots") == set()
    assert listing(rig.root / "images") == {image["id"]}, "a partial download or a stray file"
    cached = (rig.root / "images" / image["id"]).read_bytes()
    assert hashlib.md5(cached).hexdigest() == hashlib.md5(data).hexdigest()
    for volume_id, row in available.items():
        info = await asyncio.to_thread(qemu_info, rig.root / "volumes" / f"{volume_id}.qcow2")
        assert info["virtual-size"] == row["size_gb"] * GiB, (volume_id, info)
        if row["image"] is not None:
            assert info.get("backing-filename") == str(rig.root / "images" / image["id"]), info
            assert info.get("backing-filename-format") == "raw", info
        else:
            assert "backing-filename" not in info, info

    # Quota usage: each volume counted once, whatever was sent twice.
    usage = await rig.db.fetchrow(
        "SELECT volumes, gigabytes FROM volume.usage WHERE project_id = $1", rig.project_id
    )
    assert usage is not None
    assert (usage["volumes"], usage["gigabytes"]) == (len(rows), sum(r["size_gb"] for r in rows))
    shown = await client.volume.quotas(rig.project_id, usage=True)
    assert shown["volumes"]["in_use"] == len(rows)
    assert shown["gigabytes"]["in_use"] == sum(r["size_gb"] for r in rows)

    # And all of it goes: no volume file is left, and nothing is counted.
    await asyncio.gather(*(client.volume.delete_volume(r["id"]) for r in rows))
    for row in rows:
        await client.volume.wait(row["id"], "deleted", timeout_s=60)
    assert listing(rig.root / "volumes") == set()
    assert listing(rig.root / "snapshots") == set()
    usage = await rig.db.fetchrow(
        "SELECT volumes, gigabytes FROM volume.usage WHERE project_id = $1", rig.project_id
    )
    assert usage is not None and (usage["volumes"], usage["gigabytes"]) == (0, 0)
