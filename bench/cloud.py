"""A fabric of the benchmark's own, on a database, a RabbitMQ vhost and a state directory made
for this run and removed after it.

Started through the same CLI a user runs (not in-process), so the gateway gets its own
interpreter and core as it would in a deployment, and its figures are not muddled by the load
generator sharing its event loop. With one gateway it is `fabric up` (everything in one
process); with more, it is the scale-out layout: `fabric bootstrap`, then `fabric service
identity` and N `fabric service gateway` processes sharing one port (SO_REUSEPORT), which is
how a gateway uses more than one core.
"""

import asyncio
import logging
import os
import secrets
import socket
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AsyncExitStack, ExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from bench.child import ChildFailed, child, open_log, stop, tail
from bench.rabbit import private_vhost, why_no_vhost
from fabric.client import Client
from fabric.config import Settings
from fabric.store import drop_database

log = logging.getLogger("bench")

READY = "fabric is up"


@dataclass(frozen=True, slots=True)
class Credentials:
    """Where a gateway is and how to log in to it as a user with a project."""

    url: str  # the gateway root, e.g. http://127.0.0.1:8080
    username: str
    password: str
    project: str
    user_domain: str = "Default"
    project_domain: str = "Default"
    #: The processes serving `url` by role, when the bench started them (for CPU accounting).
    pids: dict[str, int] = field(default_factory=dict)
    #: The fabric's database, when the bench started it (for its invariant checks).
    database_url: str = ""
    #: When each process in `pids` was started (time.perf_counter()).
    started: dict[str, float] = field(default_factory=dict)

    def client(self, *, connections: int = 100) -> Client:
        """A client logged in as this user (enter it with `async with`)."""
        return Client(
            f"{self.url}/identity/v3",
            username=self.username,
            password=self.password,
            project_name=self.project,
            user_domain_name=self.user_domain,
            project_domain_name=self.project_domain,
            connections=connections,
        )


@dataclass(frozen=True, slots=True)
class Service:
    """One more fabric process beside `fabric up`: `fabric <args>`, ready once its stdout says
    `ready` (e.g. a simulated fleet: `service compute-agent --fake-hosts N`)."""

    name: str
    args: list[str]
    ready: str


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def with_database(dsn: str, name: str) -> str:
    return urlunsplit(urlsplit(dsn)._replace(path=f"/{name}"))


def fabric_command() -> list[str]:
    script = Path(sys.executable).parent / "fabric"
    return [str(script)] if script.exists() else [sys.executable, "-m", "fabric.cli"]


@asynccontextmanager
async def own_fabric(
    settings: Settings,
    *,
    hash_cost: str,
    gateways: int = 1,
    extra_env: Mapping[str, str] | None = None,
    services: Sequence[Service] = (),
    split: Sequence[str] = (),
) -> AsyncIterator[Credentials]:
    """A fabric on private resources until the block ends; yields the admin's credentials.
    `extra_env`: more FABRIC_* settings (e.g. the simulated fleet's size); `services`: more
    processes, started in turn once the fabric is up; `split`: the actors to run each in a
    process of its own (with `gateways` gateway processes) instead of `fabric up`."""
    why = why_no_vhost(settings.amqp_url)
    if why is not None:
        # The fabric's queues have fixed names (`identity`): on a shared vhost they would mix
        # with those of any cloud already running there.
        raise RuntimeError(f"cannot make a private RabbitMQ vhost for the bench fabric: {why}")
    database_url = with_database(settings.database_url, f"fabric_bench_{os.getpid()}")
    password = secrets.token_urlsafe(18)
    port = free_port()
    with ExitStack() as stack:
        amqp_url = stack.enter_context(private_vhost(settings.amqp_url))
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-fabric-")))
        env = {k: v for k, v in os.environ.items() if not k.startswith(("FABRIC_", "OS_"))}
        env.update(
            FABRIC_CONFIG="/dev/null",  # everything it needs is below; no /etc/fabric surprises
            FABRIC_DATABASE_URL=database_url,
            FABRIC_AMQP_URL=amqp_url,
            FABRIC_PASSWORD_HASH_COST=hash_cost,
            FABRIC_ADMIN_USER=settings.admin_user,
            FABRIC_ADMIN_PROJECT=settings.admin_project,
            FABRIC_ADMIN_PASSWORD=password,
            FABRIC_STATE_DIR=str(work / "state"),
            FABRIC_GATEWAY_HOST="127.0.0.1",
            FABRIC_GATEWAY_PORT=str(port),  # the catalog bootstrap writes points here
            FABRIC_PUBLIC_URL="",
            FABRIC_LOG_LEVEL="INFO",
            FABRIC_COMPUTE_DRIVER="none",  # a benchmark never boots real guests unless asked
            FABRIC_VOLUME_BACKEND="fake",  # nor writes volume files
            FABRIC_VOLUME_DIR=str(work / "volumes"),  # and never shares a volume host's directory
            FABRIC_DNS_PORT=str(free_port()),  # its PowerDNS beside any other cloud's
        )
        env.update(extra_env or {})
        await drop_database(database_url)  # a leftover of a killed run with our PID
        creds = Credentials(
            url=f"http://127.0.0.1:{port}",
            username=settings.admin_user,
            password=password,
            project=settings.admin_project,
            database_url=database_url,
        )
        logs = work / "fabric.log"
        try:
            async with AsyncExitStack() as procs:
                if gateways == 1 and not split:
                    creds.pids.update(await _start_one(procs, env, port, work, logs))
                else:
                    actors = tuple(split) or ("identity",)
                    creds.pids.update(await _start_scaled_out(procs, env, port, gateways, actors, logs))
                for service in services:
                    creds.started[service.name] = time.perf_counter()
                    proc = await procs.enter_async_context(
                        child(service.name, [*fabric_command(), *service.args], ready=service.ready,
                              env=env, log_path=logs)
                    )  # fmt: skip
                    creds.pids[service.name] = proc.pid
                yield creds
        except ChildFailed:
            log.error("the bench fabric failed; its log:\n%s", tail(logs))
            raise
        except Exception:
            # A run that failed inside the cloud (a server in ERROR, say) says why only in the
            # fabric's log, which goes with the run's directory: show its end.
            log.error("the run failed; the bench fabric's warnings:\n%s", warnings(logs))
            raise
        finally:
            await drop_database(database_url)
            log.info("dropped database %s", urlsplit(database_url).path.lstrip("/"))


def warnings(path: Path, most: int = 40) -> str:
    """The last `most` warning and error lines of a fabric's JSON log."""
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    found = [line for line in lines if '"level":"warning"' in line or '"level":"error"' in line]
    return "\n".join(found[-most:]) or "(none)"


async def _start_one(
    procs: AsyncExitStack, env: dict[str, str], port: int, work: Path, logs: Path
) -> dict[str, int]:
    """`fabric up`: identity and the gateway in one process."""
    up = [*fabric_command(), "up", "--openrc", str(work / "admin-openrc"), "--port", str(port)]
    proc = await procs.enter_async_context(child("fabric up", up, ready=READY, env=env, log_path=logs))
    return {"fabric": proc.pid}


async def _start_scaled_out(
    procs: AsyncExitStack, env: dict[str, str], port: int, gateways: int, actors: Sequence[str], logs: Path
) -> dict[str, int]:
    """Each of `actors` in a process of its own, and `gateways` gateway processes sharing
    `port`: the deployment layout, where a process's one event loop is not shared by all."""
    fabric = fabric_command()
    await _run_once([*fabric, "bootstrap"], env, logs)
    pids = {}
    for actor in actors:
        proc = await procs.enter_async_context(
            child(actor, [*fabric, "service", actor], ready=f"{actor} serving", env=env, log_path=logs)
        )
        pids[actor] = proc.pid
    for i in range(1, gateways + 1):
        gateway = [*fabric, "service", "gateway", "--port", str(port)]
        proc = await procs.enter_async_context(
            child(f"gateway #{i}", gateway, ready="gateway listening", env=env, log_path=logs)
        )
        pids[f"gateway{i}"] = proc.pid
    return pids


async def _run_once(args: list[str], env: dict[str, str], log_path: Path) -> None:
    with open_log(log_path) as log_file:
        proc = await asyncio.create_subprocess_exec(*args, stdout=log_file, stderr=log_file, env=env)
        try:
            async with asyncio.timeout(120):
                code = await proc.wait()
        finally:
            await stop(proc)
    if code != 0:
        raise ChildFailed(f"{' '.join(args[-2:])} exited with status {code}")
