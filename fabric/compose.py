"""The composition root: the only module of `fabric` that knows the actors.

It assembles processes from a registry of actor names: `fabric up` runs every actor and the
gateway in one process; `fabric service NAME` runs one of them alone, as many times as wanted.
"""

import asyncio
import functools
import logging
import os
import shutil
import signal
import sys
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from actors.compute.actor import MIGRATIONS as COMPUTE_MIGRATIONS
from actors.compute.actor import Compute
from actors.compute_agent.agent import ComputeAgent, HostConfig
from actors.compute_agent.fake_driver import FakeDriver
from actors.dns.actor import MIGRATIONS as DNS_MIGRATIONS
from actors.dns.actor import Dns
from actors.identity.actor import MIGRATIONS as IDENTITY_MIGRATIONS
from actors.identity.actor import Identity
from actors.identity.bootstrap import Bootstrapped, bootstrap
from actors.image.actor import MIGRATIONS as IMAGE_MIGRATIONS
from actors.image.actor import Image
from actors.network.actor import MIGRATIONS as NETWORK_MIGRATIONS
from actors.network.actor import Network
from actors.network_agent.agent import NetworkAgent
from actors.scheduler.actor import MIGRATIONS as SCHEDULER_MIGRATIONS
from actors.scheduler.actor import Scheduler
from actors.volume.actor import MIGRATIONS as VOLUME_MIGRATIONS
from actors.volume.actor import Volume
from actors.volume_agent.agent import VolumeAgent
from actors.volume_agent.backend import VolumeBackend
from actors.volume_agent.fake_backend import FakeBackend
from actors.volume_agent.file_backend import FileBackend
from fabric import heap, seed
from fabric.actor import Actor, Supervisor
from fabric.blobs import FilesystemStore
from fabric.bus import Bus
from fabric.bus.amqp import AmqpTransport
from fabric.client import ApiError, Client, ServerFailed
from fabric.config import Settings
from fabric.gateway.app import Gateway
from fabric.gateway.http import json_response
from fabric.powerdns import PowerDns, why_no_powerdns, why_no_views
from fabric.store import Store, ensure_database, migrate
from fabric.virt import HostResources, VirtDriver
from fabric.volume_client import VolumeFailed
from protocol.compute_agent import host_queue

log = logging.getLogger("fabric")


@dataclass(frozen=True, slots=True)
class ActorSpec:
    make: Callable[[Bus, Store, Settings], Actor]
    schema: str
    migrations: Path


ACTORS: dict[str, ActorSpec] = {
    "identity": ActorSpec(Identity, "identity", IDENTITY_MIGRATIONS),
    "image": ActorSpec(Image, "image", IMAGE_MIGRATIONS),
    "compute": ActorSpec(Compute, "compute", COMPUTE_MIGRATIONS),
    "scheduler": ActorSpec(Scheduler, "scheduler", SCHEDULER_MIGRATIONS),
    "network": ActorSpec(Network, "network", NETWORK_MIGRATIONS),
    "volume": ActorSpec(Volume, "volume", VOLUME_MIGRATIONS),
    "dns": ActorSpec(Dns, "dns", DNS_MIGRATIONS),
}
SERVICES = (*ACTORS, "gateway", "compute-agent", "network-agent", "volume-agent", "powerdns")


def fake_fleet(bus: Bus, settings: Settings, *, hosts: int, prefix: str) -> ComputeAgent:
    """`hosts` simulated hosts named `<prefix>-00001`... behind one agent and one queue, sized
    by `fake_host_shapes` in turn."""
    shapes = [HostResources(vcpus=v, ram_mb=r, disk_gb=d) for v, r, d in settings.fake_shapes]
    configs = [
        HostConfig(
            name=f"{prefix}-{i:05d}",
            driver=_fake_driver(f"{prefix}-{i:05d}", shapes[(i - 1) % len(shapes)], settings),
            availability_zone=settings.availability_zone,
            simulated_network=True,
        )
        for i in range(1, hosts + 1)
    ]
    return ComputeAgent(
        bus, configs, queue=f"compute.fleet.{prefix}", report_interval_s=settings.capacity_report_interval_s
    )


def _fake_driver(host: str, resources: HostResources, settings: Settings) -> FakeDriver:
    return FakeDriver(
        host=host,
        resources=resources,
        spawn_latency_s=settings.fake_spawn_latency_s,
        failure_rate=settings.fake_failure_rate,
        seed=settings.fake_seed,
    )


def network_agent(bus: Bus, settings: Settings, nameserver: tuple[str, int] | None) -> NetworkAgent:
    """This machine's network agent (the kernel's bridges, namespaces, dnsmasq and nftables);
    with the cloud's `nameserver`, it relays DNS to it from the outside namespace."""
    return NetworkAgent(
        bus,
        host=settings.host_name,
        state_dir=settings.network_path / settings.host_name,
        report_interval_s=settings.capacity_report_interval_s,
        nameserver=nameserver,
    )


def volume_backend(settings: Settings) -> VolumeBackend:
    """This machine's volume backend, per `volume_backend`. Made once per process and kept
    across the agent's restarts (the fake one's volumes live only in it)."""
    if settings.volume_backend == "fake":
        if settings.volume_capacity_gb:
            return FakeBackend(capacity_gb=settings.volume_capacity_gb)
        return FakeBackend()
    return FileBackend(
        settings.volume_path / settings.volume_host_name,
        FilesystemStore(settings.image_path),
        capacity_gb=settings.volume_capacity_gb,
    )


def volume_agent(bus: Bus, settings: Settings, backend: VolumeBackend) -> VolumeAgent:
    """This machine's volume host (`volume_host`, else the host name) over `backend`."""
    return VolumeAgent(
        bus,
        host=settings.volume_host_name,
        backend=backend,
        availability_zone=settings.availability_zone,
        report_interval_s=settings.capacity_report_interval_s,
    )


def why_no_volume_agent(settings: Settings) -> str | None:
    """Why this machine cannot run its volume host, or None when it can."""
    if settings.volume_backend == "file" and shutil.which("qemu-img") is None:
        return "qemu-img is not installed (scripts/setup.sh installs it)"
    return None


def why_no_network_agent() -> str | None:
    """Why this machine cannot run a network agent (it needs root for namespaces), or None."""
    if os.geteuid() != 0:
        return "the network agent needs root (network namespaces, bridges, nftables)"
    return None


def why_no_libvirt(settings: Settings) -> str | None:
    """Why this machine cannot run a libvirt host, or None when it can."""
    try:
        import libvirt
    except ImportError:
        return "libvirt-python is not installed (scripts/setup.sh installs it)"
    try:
        conn = libvirt.open(settings.libvirt_uri)
    except libvirt.libvirtError as exc:
        return f"cannot connect to {settings.libvirt_uri}: {exc}"
    conn.close()
    return None


def this_host(bus: Bus, settings: Settings) -> ComputeAgent:
    """The agent of this machine's own compute host, per `compute_driver` (not `none`)."""
    host = settings.host_name
    driver: VirtDriver
    if settings.compute_driver == "fake":
        vcpus, ram_mb, disk_gb = settings.fake_shapes[0]
        driver = _fake_driver(host, HostResources(vcpus=vcpus, ram_mb=ram_mb, disk_gb=disk_gb), settings)
    else:
        from actors.compute_agent.libvirt_driver import LibvirtDriver

        driver = LibvirtDriver(
            uri=settings.libvirt_uri,
            virt_type=settings.virt_type,
            blobs=FilesystemStore(settings.image_path),
            state_dir=settings.compute_path / host,
            host=host,
        )
    return ComputeAgent(
        bus,
        [
            HostConfig(
                name=host,
                driver=driver,
                availability_zone=settings.availability_zone,
                simulated_network=settings.compute_driver == "fake",
            )
        ],
        queue=host_queue(host),
        report_interval_s=settings.capacity_report_interval_s,
    )


async def migrate_all(settings: Settings) -> list[str]:
    await ensure_database(settings.database_url)
    applied = []
    for spec in ACTORS.values():
        applied += await migrate(settings.database_url, spec.schema, spec.migrations)
    return applied


async def run_bootstrap(settings: Settings) -> Bootstrapped:
    await ensure_database(settings.database_url)
    store = await Store.connect(settings.database_url, max_size=2)
    try:
        return await bootstrap(store, settings)
    finally:
        await store.close()


def openrc(settings: Settings, nameserver: str | None = None) -> str:
    """The admin's OS_* variables; with `nameserver` (ADDRESS:PORT), where the cloud's DNS
    answers, as FABRIC_DNS_SERVER for scripts (no setting has that name, so fabric commands run
    from a shell that sourced this file ignore it)."""
    return "\n".join(
        [
            f"export OS_AUTH_URL={settings.gateway_url}/identity/v3",
            "export OS_IDENTITY_API_VERSION=3",
            f"export OS_USERNAME={settings.admin_user}",
            f"export OS_PASSWORD='{settings.admin_password}'",
            f"export OS_PROJECT_NAME={settings.admin_project}",
            "export OS_USER_DOMAIN_NAME=Default",
            "export OS_PROJECT_DOMAIN_NAME=Default",
            f"export OS_REGION_NAME={settings.region}",
            "export OS_INTERFACE=public",
            *([f"export FABRIC_DNS_SERVER={nameserver}"] if nameserver else []),
            "",
        ]
    )


def _stop_on_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    os.register_at_fork(after_in_child=_forget_signals)


def _forget_signals() -> None:
    """In a forked child (pyroute2 forks to work inside a network namespace): drop the loop's
    signal handlers and its wakeup fd, which the child shares with us. Otherwise the SIGTERM
    that ends the child is written to our wakeup fd, and this process stops as if told to."""
    signal.set_wakeup_fd(-1)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_DFL)


async def _connect_bus(settings: Settings, name: str) -> Bus:
    bus = Bus(AmqpTransport(settings.amqp_url, name=name))
    await bus.start()
    return bus


class Cloud:
    """Every actor and the gateway in this process, as an async context manager: what
    `fabric up` runs, and what integration tests start.

    Entering applies migrations, bootstraps (idempotent), and returns once the gateway can
    check tokens; leaving stops the gateway, drains the actors and disconnects.
    """

    def __init__(self, settings: Settings, *, services: Collection[str] = tuple(ACTORS)) -> None:
        """`services`: the actors to run here (all by default); tests run some of them as
        separate processes to kill them."""
        self.settings = settings.with_admin_password()
        self.services = services
        self.store: Store | None = None
        self.bus: Bus | None = None
        self.gateway: Gateway | None = None
        self.supervisors: list[Supervisor] = []
        self._tasks: list[asyncio.Task[None]] = []
        #: What `up` tells the operator about the compute hosts it runs.
        self.notes: list[str] = []
        #: A real host with a network agent runs here: guests' pages can be reached.
        self.plumbs_networks = False
        #: The cloud's nameserver, when `powerdns` and this machine has PowerDNS.
        self.powerdns: PowerDns | None = None

    @property
    def url(self) -> str:
        return self.settings.gateway_url

    @property
    def nameserver(self) -> str | None:
        """ADDRESS:PORT of the cloud's nameserver, when it runs one."""
        return f"{self.powerdns.address}:{self.powerdns.port}" if self.powerdns else None

    @property
    def nameserver_address(self) -> tuple[str, int] | None:
        """(address, port) of the cloud's nameserver, when it runs one."""
        return (self.powerdns.address, self.powerdns.port) if self.powerdns else None

    async def __aenter__(self) -> "Cloud":
        settings = self.settings
        await migrate_all(settings)
        await run_bootstrap(settings)
        self.store = store = await Store.connect(settings.database_url)
        try:
            await self._start_dns_server()
            self.bus = bus = await _connect_bus(settings, "fabric-up")
            for name, spec in ACTORS.items():
                if name in self.services:
                    self._supervise(name, functools.partial(spec.make, bus, store, settings))
            self._start_agents(bus)
            self.gateway = Gateway(bus, settings)
            await self.gateway.start()
            await asyncio.wait_for(self.gateway.auth.ready.wait(), timeout=30)
        except BaseException:
            await self.__aexit__()
            raise
        return self

    def _supervise(self, name: str, make: Callable[[], Actor]) -> None:
        sup = Supervisor(make, name=name)
        self.supervisors.append(sup)
        self._tasks.append(asyncio.create_task(sup.run(), name=f"actor:{name}"))

    async def _start_dns_server(self) -> None:
        """PowerDNS, answering from the DNS service's schema, before the actors that wait for it
        to serve their changes. A machine without it says so in the notes and runs none."""
        settings = self.settings
        if not settings.powerdns:
            return
        why = await asyncio.to_thread(why_no_powerdns, settings) or await why_no_views(settings.database_url)
        if why is not None:
            self.notes.append(f"no dns server: {why}")
            log.warning("no dns server", extra={"reason": why})
            return
        powerdns = PowerDns(settings)
        await powerdns.start()
        self.powerdns = powerdns
        version = powerdns.version or "?"
        self.notes.append(f"dns server {powerdns.address}:{powerdns.port} (PowerDNS {version})")

    def _start_agents(self, bus: Bus) -> None:
        settings = self.settings
        why = why_no_libvirt(settings) if settings.compute_driver == "libvirt" else None
        if why is not None:
            self.notes.append(f"no libvirt compute host: {why}")
            log.warning("no libvirt compute host", extra={"reason": why})
        elif settings.compute_driver != "none":
            self._supervise("compute-agent", lambda: this_host(bus, settings))
            self.notes.append(f"compute host {settings.host_name} ({settings.compute_driver})")
            if settings.compute_driver == "libvirt" and settings.network_agent:
                no_net = why_no_network_agent()
                if no_net is None:
                    nameserver = self.nameserver_address
                    self._supervise("network-agent", lambda: network_agent(bus, settings, nameserver))
                    relay = f"; names resolve in {settings.outside_namespace}" if nameserver else ""
                    self.notes.append(f"network agent on {settings.host_name}{relay}")
                    self.plumbs_networks = True
                else:
                    self.notes.append(f"no network agent: {no_net}")
        if settings.volume_agent:
            no_volumes = why_no_volume_agent(settings)
            if no_volumes is None:
                backend = volume_backend(settings)
                self._supervise("volume-agent", lambda: volume_agent(bus, settings, backend))
                self.notes.append(f"volume host {settings.volume_host_name} ({settings.volume_backend})")
            else:
                self.notes.append(f"no volume host: {no_volumes}")
                log.warning("no volume host", extra={"reason": no_volumes})
        if settings.fake_hosts:
            self._supervise(
                "fake-fleet", lambda: fake_fleet(bus, settings, hosts=settings.fake_hosts, prefix="fake")
            )
            self.notes.append(f"{settings.fake_hosts} simulated host(s) fake-00001... (fake driver)")

    async def __aexit__(self, *exc: object) -> None:
        if self.gateway is not None:
            await self.gateway.stop()
        for sup in self.supervisors:
            sup.stop()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.powerdns is not None:
            await self.powerdns.stop()
        if self.bus is not None:
            await self.bus.close()
        if self.store is not None:
            await self.store.close()


async def self_check(
    settings: Settings, *, demo: bool = False, nameserver: tuple[str, int] | None = None
) -> tuple[list[str], list[str]]:
    """Prove the cloud answers as a user would reach it: authenticate through the gateway with
    the admin credentials, read the catalog from the token, and seed the flavors and the test
    guest image (`fabric.seed`); with `demo`, boot the test guest behind a floating IP too (named
    in the cloud's `nameserver` when it runs one).
    Returns the catalog's services and what was seeded (the demo's curl command last)."""
    async with Client.for_admin(settings) as client:
        assert client.token is not None
        services = sorted(f"{s['type']} ({s['name']})" for s in client.token.catalog)
        seeded = [f"flavor {name}" for name in await seed.seed_flavors(client)]
        guest_dir = (
            Path(settings.test_guest_dir) if settings.test_guest_dir else seed.default_test_guest_dir()
        )
        image = await seed.seed_test_guest(client, guest_dir)
        seeded.append(
            f"image test-guest ({image})"
            if image
            else f"no test guest in {guest_dir} (scripts/build-test-guest.sh)"
        )
        if demo and image:
            try:
                command = await seed.seed_demo(
                    client, image, settings.outside_namespace, settings.host_name, nameserver
                )
                seeded.append(f"the demo VM's page: {command}")
                seeded.append("its volume demo-data: openstack console log show demo-vm | grep DISK")
            # The cloud is up; the demo is not.
            except (ApiError, ServerFailed, VolumeFailed, TimeoutError) as exc:
                seeded.append(f"no demo VM: {exc}")
        return services, seeded


def _write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read: the openrc holds the admin password."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    path.chmod(0o600)


async def run_up(settings: Settings, openrc_path: Path) -> None:
    """Everything in one process, in the foreground, until SIGINT or SIGTERM."""
    stop = asyncio.Event()
    _stop_on_signals(stop)
    async with Cloud(settings) as cloud:
        settings = cloud.settings
        _write_private(openrc_path, openrc(settings, cloud.nameserver))
        services, seeded = await self_check(
            settings, demo=cloud.plumbs_networks, nameserver=cloud.nameserver_address
        )
        heap.settle()
        print(f"fabric is up: {settings.gateway_url}", flush=True)
        print(f"  self-check: admin token issued; catalog: {', '.join(services)}", flush=True)
        for note in cloud.notes:
            print(f"  {note}", flush=True)
        print(f"  seeded: {', '.join(seeded)}", flush=True)
        # To the operator's terminal, as keystone-manage bootstrap takes it; never to the logs.
        print(f"  admin user: {settings.admin_user}  password: {settings.admin_password}", flush=True)
        print(f"  openrc: {openrc_path}  (source it, then: openstack token issue)", flush=True)
        await stop.wait()
        print("fabric: stopping", file=sys.stderr, flush=True)


async def _metrics_server(settings: Settings, bus: Bus, sup: Supervisor | None) -> web.AppRunner | None:
    if not settings.metrics_port:
        return None

    async def metrics(request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(request: web.Request) -> web.Response:
        database = await sup.actor.check_database() if sup and sup.actor else None
        healthy = bus.is_connected and database is not False
        checks = {
            "bus": "ok" if bus.is_connected else "down",
            "database": {True: "ok", False: "down", None: "n/a"}[database],
        }
        return json_response(
            {"status": "ok" if healthy else "degraded", "checks": checks}, status=200 if healthy else 503
        )

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", settings.metrics_port).start()
    return runner


async def run_service(name: str, settings: Settings, *, reuse_port: bool = True) -> None:
    """One actor, or the gateway, alone in this process until SIGINT/SIGTERM."""
    stop = asyncio.Event()
    _stop_on_signals(stop)
    if name == "gateway":
        bus = await _connect_bus(settings, "fabric-gateway")
        gateway = Gateway(bus, settings, reuse_port=reuse_port)
        try:
            await gateway.start()
            heap.settle()
            print(f"gateway listening on {settings.gateway_host}:{gateway.port}", flush=True)
            await stop.wait()
            await gateway.stop()
        finally:
            await bus.close()
        return
    if name == "compute-agent":
        await _run_agent(settings, stop)
        return
    if name == "volume-agent":
        no_volumes = why_no_volume_agent(settings)
        if no_volumes is not None:
            raise SystemExit(f"fabric: no volume host: {no_volumes}")
        bus = await _connect_bus(settings, f"fabric-volume-agent-{settings.volume_host_name}")
        backend = volume_backend(settings)
        ready = f"volume-agent serving {settings.volume_host_name} ({settings.volume_backend})"
        await _serve("volume-agent", lambda: volume_agent(bus, settings, backend), bus, settings, stop, ready)
        return
    if name == "powerdns":
        await _run_powerdns(settings, stop)
        return
    if name == "network-agent":
        bus = await _connect_bus(settings, f"fabric-network-agent-{settings.host_name}")
        ready = f"network-agent serving {settings.host_name}"
        # Split deployments run PowerDNS as its own service (`powerdns`) where the settings say.
        nameserver = (settings.dns_address, settings.dns_port) if settings.powerdns else None
        await _serve(
            "network-agent", lambda: network_agent(bus, settings, nameserver), bus, settings, stop, ready
        )
        return
    spec = ACTORS[name]
    await ensure_database(settings.database_url)
    await migrate(settings.database_url, spec.schema, spec.migrations)
    store = await Store.connect(settings.database_url)
    bus = await _connect_bus(settings, f"fabric-{name}")
    try:
        await _serve(name, lambda: spec.make(bus, store, settings), bus, settings, stop, f"{name} serving")
    finally:
        await store.close()


async def _serve(
    name: str, make: Callable[[], Actor], bus: Bus, settings: Settings, stop: asyncio.Event, ready: str
) -> None:
    """Supervise one actor until `stop`, with /metrics and /healthz when configured; closes the
    bus at the end."""
    sup = Supervisor(make, name=name)
    metrics_runner = await _metrics_server(settings, bus, sup)
    try:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(sup.run(), name=f"actor:{name}")
            heap.settle()
            print(ready, flush=True)
            await stop.wait()
            sup.stop()
    finally:
        if metrics_runner is not None:
            await metrics_runner.cleanup()
        await bus.close()


async def _run_agent(settings: Settings, stop: asyncio.Event) -> None:
    """This machine's compute host, or (with `fake_hosts`) a simulated fleet named after it."""
    bus = await _connect_bus(settings, f"fabric-compute-agent-{settings.host_name}")

    def make() -> Actor:
        if settings.fake_hosts:
            return fake_fleet(bus, settings, hosts=settings.fake_hosts, prefix=settings.host_name)
        return this_host(bus, settings)

    what = f"{settings.fake_hosts} fake hosts" if settings.fake_hosts else settings.compute_driver
    await _serve(
        "compute-agent", make, bus, settings, stop, f"compute-agent serving {settings.host_name} ({what})"
    )


async def _run_powerdns(settings: Settings, stop: asyncio.Event) -> None:
    """The cloud's nameserver alone (split deployments), on `dns_address`:`dns_port`; it needs
    the DNS service's views, which this process makes if they are missing."""
    no_dns = why_no_powerdns(settings)
    if no_dns is not None:
        raise SystemExit(f"fabric: no dns server: {no_dns}")
    spec = ACTORS["dns"]
    await ensure_database(settings.database_url)
    await migrate(settings.database_url, spec.schema, spec.migrations)
    server = PowerDns(settings)
    await server.start()
    try:
        version = server.version or "?"
        print(f"powerdns serving {server.address}:{server.port} (PowerDNS {version})", flush=True)
        await stop.wait()
    finally:
        await server.stop()
