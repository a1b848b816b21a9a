"""The cloud's authoritative nameserver: one PowerDNS Authoritative server, a child process the
fabric supervises, answering from the DNS service's schema through the `pdns` views.

PowerDNS reads the database on every query, so what the DNS service commits is served at once:
every cache that could answer from before a commit is off (`pdns_config`). Measured with the
defaults (issue 9): a zone made after start was REFUSED until the zone cache refreshed (300 s),
and a name asked for before it existed stayed NXDOMAIN for up to 60 s.

`soa_serial` is how the DNS service learns that a change is served; `resolve` is for tests and
benchmarks.
"""

import asyncio
import collections
import ctypes
import logging
import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlsplit

import asyncpg
import dns.asyncquery
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.rdtypes.ANY.SOA

from fabric.config import Settings

log = logging.getLogger("fabric.powerdns")

PR_SET_PDEATHSIG = 1
#: Where Debian and most builds put pdns_server, which is not on a non-root user's PATH.
SBIN = ("/usr/sbin", "/usr/local/sbin")
#: Answers that show the server and its database working (an unknown zone is REFUSED after a
#: database lookup; a database error is SERVFAIL).
HEALTHY_RCODES = {dns.rcode.NOERROR, dns.rcode.NXDOMAIN, dns.rcode.REFUSED}


class PowerDnsFailed(RuntimeError):
    """pdns_server did not start, or did not answer in time; the message ends with its output."""


def pdns_server_path() -> str | None:
    return shutil.which("pdns_server") or next(
        (f"{d}/pdns_server" for d in SBIN if os.access(f"{d}/pdns_server", os.X_OK)), None
    )


def why_no_powerdns(settings: Settings) -> str | None:
    """Why this machine cannot run the cloud's nameserver, or None when it can."""
    exe = pdns_server_path()
    if exe is None:
        return "pdns_server is not installed (scripts/setup.sh installs pdns-server)"
    try:
        defaults = subprocess.run(
            [exe, "--no-config", "--config=default"], capture_output=True, text=True, timeout=10
        ).stdout
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"cannot run {exe}: {exc}"
    module_dir = next(
        (line.split("=", 1)[1] for line in defaults.splitlines() if line.startswith("# module-dir=")), ""
    )
    if not Path(module_dir, "libgpgsqlbackend.so").exists():
        return f"PowerDNS's PostgreSQL backend is not in {module_dir!r} (scripts/setup.sh installs it)"
    return None


async def why_no_views(database_url: str) -> str | None:
    """Why PowerDNS would find nothing to read in this database (the DNS service's migration,
    which makes the `pdns` views, has not run), or None."""
    conn = await asyncpg.connect(database_url, timeout=10)
    try:
        if await conn.fetchval("SELECT to_regclass('pdns.records') IS NOT NULL"):
            return None
        return "the database has no pdns views yet (the dns service's migrations have not run)"
    finally:
        await conn.close()


def _libpq_value(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def control_dir(settings: Settings, directory: Path) -> Path:
    """Where the server's control socket goes: its own directory, unless that path is too long
    for a UNIX socket (108 bytes, and PowerDNS refuses to start), then a short one of ours."""
    if len(str(directory / "pdns.controlsocket").encode()) < 100:
        return directory
    return Path(tempfile.gettempdir()) / f"fabric-pdns-{os.getuid()}-{settings.dns_port}"


def pdns_config(settings: Settings, directory: Path) -> str:
    """pdns.conf for the cloud's server. Every line's reason is beside it."""
    db = urlsplit(settings.database_url)
    params = dict(parse_qsl(db.query))
    host = db.hostname or params.pop("host", "")
    # The views live in schema `pdns`, PowerDNS asks for `records`, `domains`...: every one of
    # its connections gets that search_path (libpq's `options`), so no role or database
    # setting is needed and the fabric's own connections are left as they are.
    extra = {**params, "options": "-c search_path=pdns"}
    lines = [
        "launch=gpgsql",
        f"gpgsql-host={host}" if host else "",
        f"gpgsql-port={db.port}" if db.port else "",
        f"gpgsql-dbname={unquote(db.path.lstrip('/'))}",
        f"gpgsql-user={unquote(db.username)}" if db.username else "",
        f"gpgsql-password={unquote(db.password)}" if db.password else "",
        "gpgsql-extra-connection-parameters=" + " ".join(f"{k}={_libpq_value(v)}" for k, v in extra.items()),
        f"local-address={settings.dns_address}",
        f"local-port={settings.dns_port}",
        # pdns_control --config-dir DIR (or --socket-dir DIR) reaches this server, and no other.
        f"socket-dir={control_dir(settings, directory)}",
        # The fabric is the supervisor: in the foreground, one process, its PID the server's.
        "daemon=no",
        "guardian=no",
        "write-pid=no",
        "disable-syslog=yes",
        "log-timestamp=no",
        # Never a stale answer: no packet cache, no query cache (positive or negative), and no
        # zone cache (0 disables it: a zone is looked up in the database at each query).
        "cache-ttl=0",
        "query-cache-ttl=0",
        "negquery-cache-ttl=0",
        "zone-cache-refresh-interval=0",
        # No REST API or web server; no security-status lookups to the internet.
        "webserver=no",
        "api=no",
        "security-poll-suffix=",
    ]
    return "\n".join(line for line in lines if line) + "\n"


def write_config(settings: Settings, directory: Path) -> Path:
    """Write `directory/pdns.conf`, readable only by us (it may hold the database password)."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    control = control_dir(settings, directory)
    if control != directory:
        control.mkdir(mode=0o700, exist_ok=True)
        # A shared temporary directory: use only one that is ours.
        if control.is_symlink() or control.stat().st_uid != os.getuid():
            raise PowerDnsFailed(f"{control} is not a directory of ours")
    path = directory / "pdns.conf"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(pdns_config(settings, directory))
    return path


_LIBC = ctypes.CDLL(None, use_errno=True)


def _die_with_us() -> None:
    """In the child before exec: a fabric killed outright (SIGKILL runs no cleanup) takes its
    pdns_server with it, so none is left holding the port for the next start."""
    _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


class PowerDns:
    """One pdns_server for a cloud: started healthy or not at all, restarted (with bounded
    backoff) whenever it exits without being asked, stopped by its PID."""

    def __init__(
        self,
        settings: Settings,
        *,
        directory: Path | None = None,
        start_timeout_s: float = 10.0,
        min_backoff_s: float = 0.2,
        max_backoff_s: float = 10.0,
        stable_s: float = 60.0,
    ) -> None:
        self.settings = settings
        self.address = settings.dns_address
        self.port = settings.dns_port
        self.directory = directory or settings.state_path / "powerdns"
        self.start_timeout_s = start_timeout_s
        self.min_backoff_s, self.max_backoff_s, self.stable_s = min_backoff_s, max_backoff_s, stable_s
        #: "4.7.3", from the server's banner once it has started.
        self.version = ""
        self.restarts = 0
        self._proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._output: collections.deque[str] = collections.deque(maxlen=30)

    @property
    def pid(self) -> int | None:
        """The running server's PID (None before start, after stop, or between restarts)."""
        proc = self._proc
        return proc.pid if proc is not None and proc.returncode is None else None

    async def start(self) -> None:
        """Write the config and start the server; returns once it answers a real query.
        Raises `PowerDnsFailed` (with the tail of its output) when it exits or stays silent
        for `start_timeout_s`."""
        write_config(self.settings, self.directory)
        await self._start_healthy()
        self._watcher = asyncio.create_task(self._watch(), name="powerdns:watch")

    async def stop(self) -> None:
        """Stop supervising (first, so that the exit is not taken for a crash), then the server:
        TERM, and KILL if it is still there after 5 s."""
        if self._watcher is not None:
            self._watcher.cancel()
            await asyncio.wait({self._watcher})
            self._watcher = None
        await self._terminate()
        control = control_dir(self.settings, self.directory)
        if control != self.directory:
            shutil.rmtree(control, ignore_errors=True)

    async def healthy(self, timeout_s: float = 0.5) -> bool:
        """Whether the server answers an SOA query from its database (any answer but SERVFAIL)."""
        try:
            response = await _ask(self.address, self.port, ".", dns.rdatatype.SOA, timeout_s=timeout_s)
        except (TimeoutError, OSError, dns.exception.DNSException):
            return False
        return response.rcode() in HEALTHY_RCODES

    async def _start_healthy(self) -> None:
        exe = pdns_server_path()
        if exe is None:
            raise PowerDnsFailed("pdns_server is not installed")
        self._output.clear()
        self._proc = proc = await asyncio.create_subprocess_exec(
            exe,
            f"--config-dir={self.directory}",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            cwd=self.directory,
            # Its own session: a Ctrl-C at `fabric up`'s terminal is ours to act on, not its.
            start_new_session=True,
            preexec_fn=_die_with_us,
        )
        assert proc.stdout is not None
        self._reader = asyncio.create_task(self._read(proc.pid, proc.stdout), name="powerdns:output")
        try:
            await self._wait_healthy(proc)
        except BaseException:
            await self._terminate()
            raise
        log.info("pdns_server answering", extra={"pid": proc.pid, "address": f"{self.address}:{self.port}"})

    async def _wait_healthy(self, proc: asyncio.subprocess.Process) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.start_timeout_s
        while True:
            if proc.returncode is not None:
                await asyncio.wait({self._reader} if self._reader else set(), timeout=1)
                raise PowerDnsFailed(f"pdns_server exited with status {proc.returncode}:\n{self.tail()}")
            # Short: a question sent before the server has bound its port is lost, not refused.
            if await self.healthy(timeout_s=0.1):
                return
            if loop.time() > deadline:
                raise PowerDnsFailed(
                    f"pdns_server did not answer on {self.address}:{self.port} within "
                    f"{self.start_timeout_s:.0f}s:\n{self.tail()}"
                )
            await asyncio.sleep(0.05)

    def tail(self) -> str:
        """The server's last lines of output."""
        return "\n".join(self._output) or "(no output)"

    async def _read(self, pid: int, stream: asyncio.StreamReader) -> None:
        """Keep the server's output: its tail for errors, every line in our log (PowerDNS at its
        default level is quiet unless something is wrong)."""
        while line := await stream.readline():
            text = line.decode(errors="replace").rstrip()
            self._output.append(text)
            if not self.version and "PowerDNS Authoritative Server " in text:
                self.version = text.split("PowerDNS Authoritative Server ", 1)[1].split(" ", 1)[0]
            log.info("pdns_server: %s", text, extra={"pid": pid})

    async def _terminate(self) -> None:
        proc, reader = self._proc, self._reader
        self._proc = self._reader = None
        if proc is not None and proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), timeout=5)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        if reader is not None:
            # Its output ends when it exits; the wait only bounds a pipe held open elsewhere.
            await asyncio.wait({reader}, timeout=2)
            reader.cancel()

    async def _watch(self) -> None:
        """Restart the server whenever it exits unasked; backoff doubles up to `max_backoff_s`
        and starts again from `min_backoff_s` once a server has run for `stable_s`."""
        loop = asyncio.get_running_loop()
        backoff = self.min_backoff_s
        while True:
            proc = self._proc
            assert proc is not None
            began = loop.time()
            status = await proc.wait()
            await self._terminate()  # nothing left to end but its output's reader
            if loop.time() - began > self.stable_s:
                backoff = self.min_backoff_s
            log.warning(
                "pdns_server exited; restarting",
                extra={"pid": proc.pid, "status": status, "backoff_s": backoff, "output": self.tail()},
            )
            while True:
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.max_backoff_s)
                try:
                    await self._start_healthy()
                except PowerDnsFailed as exc:
                    log.warning(
                        "pdns_server did not come back", extra={"reason": str(exc), "backoff_s": backoff}
                    )
                    continue
                self.restarts += 1
                break


async def _ask(
    address: str, port: int, name: str, rdtype: dns.rdatatype.RdataType, *, timeout_s: float
) -> dns.message.Message:
    """One UDP question, without recursion desired (we ask the authority itself)."""
    query = dns.message.make_query(name, rdtype)
    query.flags &= ~dns.flags.RD
    try:
        return await dns.asyncquery.udp(query, address, port=port, timeout=timeout_s)
    except dns.exception.Timeout as exc:
        raise TimeoutError(f"no answer from {address}:{port} within {timeout_s}s") from exc


async def soa_serial(address: str, port: int, zone: str, timeout_s: float = 1.0) -> int | None:
    """The serial the nameserver at `address`:`port` answers for `zone` (fully qualified), or
    None when it does not answer it authoritatively (REFUSED, NXDOMAIN, SERVFAIL, no answer)."""
    try:
        response = await _ask(address, port, zone, dns.rdatatype.SOA, timeout_s=timeout_s)
    except (TimeoutError, OSError, dns.exception.DNSException):
        return None
    if response.rcode() != dns.rcode.NOERROR or not response.flags & dns.flags.AA:
        return None
    owner = dns.name.from_text(zone)
    for rrset in response.answer:
        if rrset.rdtype == dns.rdatatype.SOA and rrset.name == owner:
            for rdata in rrset:
                assert isinstance(rdata, dns.rdtypes.ANY.SOA.SOA)
                return int(rdata.serial)
    return None


async def resolve(
    address: str, port: int, name: str, rdtype: str, timeout_s: float = 1.0
) -> tuple[str, list[str]]:
    """The rcode's name ("NOERROR", "NXDOMAIN", "REFUSED"...) and the answer section's records
    as text, in order (a CNAME before what it points to). Raises TimeoutError with no answer."""
    response = await _ask(address, port, name, dns.rdatatype.from_text(rdtype), timeout_s=timeout_s)
    texts = [rdata.to_text() for rrset in response.answer for rdata in rrset]
    return dns.rcode.to_text(response.rcode()), texts
