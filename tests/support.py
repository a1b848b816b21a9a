"""Real things for tests, small and cleaned up by name or PID: a database, a RabbitMQ vhost,
fabric processes, and a TCP proxy whose connections a test can cut."""

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import orjson
import pytest

from fabric.config import Settings, load_settings

ROOT = Path(__file__).resolve().parent.parent
FABRIC = Path(sys.executable).parent / "fabric"
ADMIN_PASSWORD = "test-admin-password"
#: Each project's image bytes in the test cloud: small, so that a test can exceed it.
IMAGE_QUOTA_BYTES = 8 * 1024 * 1024


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def with_database(dsn: str, name: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path=f"/{name}"))


@contextlib.asynccontextmanager
async def scratch_database(prefix: str) -> AsyncIterator[str]:
    """A new, empty database of the test's own (`<prefix>_<pid>_<random>`), dropped afterwards;
    the test is skipped, saying why, when PostgreSQL cannot be reached."""
    import asyncpg

    from fabric.store import drop_database, ensure_database

    base = base_settings().database_url
    try:
        conn = await asyncpg.connect(with_database(base, "postgres"), timeout=3)
    except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
        parts = urlsplit(base)
        pytest.skip(f"PostgreSQL is unreachable at {parts.hostname}:{parts.port}: {exc!r}")
    await conn.close()
    dsn = with_database(base, f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:6]}")
    await ensure_database(dsn)
    try:
        yield dsn
    finally:
        await drop_database(dsn)


def with_vhost(url: str, vhost: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{vhost}"))


def rabbitmqctl(*args: str) -> None:
    exe = shutil.which("rabbitmqctl") or "/usr/sbin/rabbitmqctl"
    subprocess.run([exe, "-q", *args], check=True, capture_output=True, timeout=60)


def can_manage_rabbitmq() -> str | None:
    """None when this process can create vhosts; otherwise why not."""
    if not (shutil.which("rabbitmqctl") or Path("/usr/sbin/rabbitmqctl").exists()):
        return "rabbitmqctl is not installed (run the set-up: scripts/test.sh)"
    if os.geteuid() != 0:
        return "creating a RabbitMQ vhost for the tests needs root (rabbitmqctl)"
    return None


@contextlib.contextmanager
def rabbitmq_vhost(prefix: str = "fabric-test") -> Iterator[str]:
    vhost = f"{prefix}-{uuid.uuid4().hex[:8]}"
    rabbitmqctl("add_vhost", vhost)
    try:
        rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
        yield vhost
    finally:
        rabbitmqctl("delete_vhost", vhost)


def base_settings() -> Settings:
    return load_settings()


def fabric_env(settings: Settings, **extra: str) -> dict[str, str]:
    """Environment for a fabric subprocess that uses the test database and vhost."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FABRIC_", "OS_"))}
    env.update(
        FABRIC_DATABASE_URL=settings.database_url,
        FABRIC_AMQP_URL=settings.amqp_url,
        FABRIC_PASSWORD_HASH_COST=settings.password_hash_cost,
        FABRIC_ADMIN_PASSWORD=settings.admin_password,
        FABRIC_STATE_DIR=settings.state_dir,
        FABRIC_LOG_LEVEL="INFO",
        FABRIC_CONFIG="/dev/null",
        FABRIC_COMPUTE_DRIVER=settings.compute_driver,
        FABRIC_COMPUTE_HOST=settings.compute_host,
        FABRIC_FAKE_HOSTS=str(settings.fake_hosts),
        FABRIC_CAPACITY_REPORT_INTERVAL_S=str(settings.capacity_report_interval_s),
        # A volume agent removes the files its database does not know: never a shared directory.
        FABRIC_VOLUME_BACKEND=settings.volume_backend,
        FABRIC_VOLUME_DIR=settings.volume_dir or str(Path(settings.state_dir) / "volumes"),
        # Each cloud's nameserver on a port of its own (`isolated` gives one).
        FABRIC_POWERDNS=str(settings.powerdns).lower(),
        FABRIC_DNS_ADDRESS=settings.dns_address,
        FABRIC_DNS_PORT=str(settings.dns_port),
    )
    env.update(extra)
    return env


@contextlib.asynccontextmanager
async def isolated(settings: Settings, name: str, state_dir: Path) -> AsyncIterator[Settings]:
    """`settings` with a vhost and a database of their own, for fabric processes a test starts,
    so that they never share queues with the suite's in-process cloud. Both go afterwards."""
    from fabric.store import drop_database, ensure_database

    with rabbitmq_vhost(f"fabric-{name}") as vhost:
        db = f"{urlsplit(settings.database_url).path.lstrip('/')}_{name.replace('-', '_')}"
        own = replace(
            settings,
            amqp_url=with_vhost(settings.amqp_url, vhost),
            database_url=with_database(settings.database_url, db),
            state_dir=str(state_dir),
            # Its own nameserver: PowerDNS binds the port, and two clouds cannot share it.
            dns_port=free_port(),
        )
        await drop_database(own.database_url)
        await ensure_database(own.database_url)
        try:
            yield own
        finally:
            await drop_database(own.database_url)


@dataclass
class Processes:
    """Fabric processes started by a test, stopped by PID (TERM, then KILL) whatever happens."""

    logs: Path
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start(self, name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        log = open(self.logs / f"{name}.log", "wb")
        proc = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=self.logs)
        self.procs.append(proc)
        return proc

    def log_of(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        for proc in self.procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


async def api_call(
    method: str, url: str, token: str | None, *, headers: dict[str, str] | None = None, **kw: Any
) -> tuple[int, Any, dict[str, str]]:
    """One HTTP call as any client makes it: status, the body (parsed if JSON, else bytes) and
    the headers. `kw` goes to aiohttp (`json=`, `data=`)."""
    sent = {"X-Auth-Token": token} if token else {}
    sent.update(headers or {})
    async with aiohttp.ClientSession() as http, http.request(method, url, headers=sent, **kw) as resp:
        raw = await resp.read()
        body = orjson.loads(raw) if resp.content_type == "application/json" and raw else raw
        return resp.status, body, dict(resp.headers)


async def wait_http(url: str, *, timeout_s: float = 30.0, status: int = 200) -> None:
    deadline = time.monotonic() + timeout_s
    last: object = None
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            try:
                async with http.get(url) as resp:
                    if resp.status == status:
                        return
                    last = resp.status
            except aiohttp.ClientError as exc:
                last = exc
            await asyncio.sleep(0.1)
    raise TimeoutError(f"{url} did not answer {status} within {timeout_s}s (last: {last!r})")


class CuttableProxy:
    """A loopback TCP proxy to RabbitMQ whose connections `cut()` drops, as a network would."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._refusing = False

    async def __aenter__(self) -> "CuttableProxy":
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.cut()
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    def refuse(self) -> None:
        """From now on, accept no connection (the host is gone)."""
        self._refusing = True

    def cut(self) -> None:
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._refusing:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._writers.update((writer, up_writer))
        await asyncio.gather(
            self._pipe(reader, up_writer), self._pipe(up_reader, writer), return_exceptions=True
        )

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        finally:
            writer.transport.abort()
            self._writers.discard(writer)


@contextlib.asynccontextmanager
async def cuttable_amqp(url: str) -> AsyncIterator[tuple[str, CuttableProxy]]:
    parts = urlsplit(url)
    async with CuttableProxy(parts.hostname or "127.0.0.1", parts.port or 5672) as proxy:
        netloc = f"{parts.username}:{parts.password}@127.0.0.1:{proxy.port}"
        yield urlunsplit(parts._replace(netloc=netloc)), proxy


async def messages_handled(metrics_port: int, type_name: str) -> float:
    """How many `type_name` messages the process serving /metrics on this port has handled."""
    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{metrics_port}/metrics") as resp:
        text = await resp.text()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("fabric_messages_handled_total") and f'type="{type_name}"' in line
    )
