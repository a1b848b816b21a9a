"""One typed configuration: defaults that work on a fresh machine, then a TOML file, then
`FABRIC_*` environment variables (`FABRIC_GATEWAY_PORT=9000`), each overriding the one before.

The file is `--config PATH`, else `$FABRIC_CONFIG`, else `/etc/fabric/fabric.toml` if it
exists. Values are checked by the protocol codec, so a bad one is reported by name.
"""

import dataclasses
import os
import secrets
import socket
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, get_type_hints

from protocol.codec import MaxLen, MinLen, Pattern, Range, decode
from protocol.errors import Invalid

DEFAULT_FILE = Path("/etc/fabric/fabric.toml")
Port = Annotated[int, Range(0, 65535)]
#: How booleans are spelled in the environment.
_TRUE, _FALSE = {"true", "1", "yes", "on"}, {"false", "0", "no", "off"}


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    database_url: Annotated[str, MinLen(1)] = "postgresql://postgres@127.0.0.1:5432/fabric"
    amqp_url: Annotated[str, MinLen(1)] = "amqp://guest:guest@127.0.0.1:5672/"
    gateway_host: str = "127.0.0.1"
    gateway_port: Port = 8080
    #: Where clients reach the gateway (the catalog's URLs); derived from host and port if empty.
    public_url: str = ""
    region: str = "RegionOne"
    token_ttl_s: Annotated[int, Range(60, 7 * 24 * 3600)] = 3600
    #: "production" is argon2id at its recommended cost; "minimal" is for test suites only.
    password_hash_cost: Literal["production", "minimal"] = "production"
    admin_user: str = "admin"
    admin_project: str = "admin"
    #: Empty: generated on first bootstrap and kept in `state_dir/admin-password`.
    admin_password: str = ""
    state_dir: str = "~/.local/state/fabric"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    #: Where a single-service process serves /metrics and /healthz; 0: not served.
    metrics_port: Port = 0
    #: Where the filesystem blob store keeps image data; empty: `state_dir/images`.
    image_dir: str = ""
    #: Image bytes a project may store, all its images together.
    image_quota_bytes: Annotated[int, Range(0, 2**62)] = 100 * 1024**3
    #: Over-commit: a host takes guests up to its capacity times these (Nova's defaults).
    cpu_allocation_ratio: Annotated[float, Range(0.0, 1000.0)] = 4.0
    ram_allocation_ratio: Annotated[float, Range(0.0, 1000.0)] = 1.0
    disk_allocation_ratio: Annotated[float, Range(0.0, 1000.0)] = 1.0
    #: "spread" puts a server on the host with the most room left; "pack" on the fullest that fits.
    scheduler_weigher: Literal["spread", "pack"] = "spread"
    #: Hosts that pass the filters are looked for until this many are found, from a random place
    #: in the fleet, so that a placement does not scan every host.
    scheduler_sample: Annotated[int, Range(1, 100000)] = 16
    #: A host whose capacity reports stop for this long drops out of scheduling.
    host_ttl_s: Annotated[float, Range(1.0, 86400.0)] = 30.0
    #: How often agents report capacity when nothing changed.
    capacity_report_interval_s: Annotated[float, Range(0.05, 3600.0)] = 10.0
    #: A server whose spawn failed is tried on this many hosts in all before it goes to ERROR.
    max_spawn_attempts: Annotated[int, Range(1, 100)] = 3
    #: A boot or delete step with no progress for this long is driven again (or failed).
    saga_step_timeout_s: Annotated[float, Range(1.0, 86400.0)] = 60.0
    #: A server still building after this long goes to ERROR.
    build_timeout_s: Annotated[float, Range(1.0, 86400.0)] = 600.0
    #: How long a deleted server is still listed (as DELETED) by `changes-since`.
    deleted_server_retention_s: Annotated[float, Range(0.0, 365 * 86400.0)] = 86400.0
    #: This machine's compute host: its name, driver, and zone. `none`: `fabric up` runs no
    #: real host (simulated ones still, with `fake_hosts`).
    compute_host: str = ""
    compute_driver: Literal["libvirt", "fake", "none"] = "libvirt"
    availability_zone: Annotated[str, MinLen(1)] = "nova"
    libvirt_uri: str = "qemu:///system"
    #: `auto` boots a probe guest under KVM and falls back to TCG (`qemu`) if it does not run.
    virt_type: Literal["kvm", "qemu", "auto"] = "auto"
    #: Where compute agents keep instance disks and their image cache. qemu runs as its own user
    #: and must reach it, so the default is /var/lib/fabric/compute for root (whose home is
    #: private), and `state_dir/compute` for others.
    compute_dir: str = ""
    #: Simulated hosts `fabric up` runs beside the real one (fake driver), and their shape.
    fake_hosts: Annotated[int, Range(0, 100000)] = 0
    fake_host_vcpus: Annotated[int, Range(1, 100000)] = 32
    fake_host_ram_mb: Annotated[int, Range(1, 2**40)] = 131072
    fake_host_disk_gb: Annotated[int, Range(1, 2**31)] = 2000
    #: Mixed sizes instead: `VCPUS:RAM_MB:DISK_GB` shapes, comma-separated, given to the
    #: simulated hosts in turn (e.g. "4:8192:100,16:65536:400").
    fake_host_shapes: Annotated[str, Pattern(r"(\d+:\d+:\d+(,\d+:\d+:\d+)*)?")] = ""
    fake_spawn_latency_s: Annotated[float, Range(0.0, 3600.0)] = 0.0
    fake_failure_rate: Annotated[float, Range(0.0, 1.0)] = 0.0
    fake_seed: int = 0
    #: Whether `fabric up` runs this machine's network agent beside a libvirt host. One agent per
    #: machine: it removes every bridge and namespace of the fabric's naming that its state lacks.
    network_agent: bool = True
    #: The network namespace that plays the outside world for external networks.
    outside_namespace: Annotated[str, MinLen(1), MaxLen(64)] = "fabric-outside"
    #: Where a network agent keeps dnsmasq's files; empty: `state_dir/network`.
    network_dir: str = ""
    #: This machine's volume host (`fabric up` runs its agent when `volume_agent`): its backend
    #: (`file`: qcow2 files made with qemu-img; `fake`: in memory, for tests and benchmarks),
    #: where `file` keeps them (empty: /var/lib/fabric/volumes for root, which qemu's user must
    #: traverse, else `state_dir/volumes`), the capacity it announces (0: the filesystem's size;
    #: for `fake`, room for any benchmark), and its name (empty: this machine's host name).
    volume_agent: bool = True
    volume_backend: Literal["file", "fake"] = "file"
    volume_dir: str = ""
    volume_capacity_gb: Annotated[int, Range(0, 2**31)] = 0
    volume_host: Annotated[str, MaxLen(255)] = ""
    #: The volume service: a volume or snapshot step (create, extend, delete) its storage host
    #: has not answered for `volume_step_timeout_s` is sent again, and one still not done after
    #: `volume_step_deadline_s` fails (error, error_extending, error_deleting, with a reason).
    #: An attach or detach compute has not finished after `volume_attach_deadline_s` is undone
    #: (attaching → available, detaching → in-use). A storage host whose reports stop for
    #: `volume_host_ttl_s` gets no new volumes; one takes new volumes up to its free space
    #: times `volume_over_subscription_ratio` (files are thin: Cinder's max_over_subscription_ratio).
    volume_step_timeout_s: Annotated[float, Range(0.1, 86400.0)] = 30.0
    volume_step_deadline_s: Annotated[float, Range(0.1, 7 * 86400.0)] = 600.0
    volume_attach_deadline_s: Annotated[float, Range(0.1, 7 * 86400.0)] = 300.0
    volume_host_ttl_s: Annotated[float, Range(1.0, 86400.0)] = 30.0
    volume_over_subscription_ratio: Annotated[float, Range(1.0, 1000.0)] = 20.0
    #: The DNS service: the names of the nameservers every zone's NS recordset and SOA name
    #: (comma-separated, fully qualified), and a zone's TTL when its create gives none.
    dns_nameservers: Annotated[str, MinLen(1), MaxLen(1024)] = "ns1.fabric.test."
    dns_default_ttl: Annotated[int, Range(1, 2**31 - 1)] = 3600
    #: The cloud's authoritative nameserver: `fabric up` runs PowerDNS (`powerdns`; a machine
    #: without it says so and runs none) on `dns_address`:`dns_port`, not 53, so that it never
    #: fights a local resolver. It answers from the DNS service's schema.
    powerdns: bool = True
    dns_address: Annotated[str, MinLen(1)] = "127.0.0.1"
    dns_port: Annotated[int, Range(1, 65535)] = 5354
    #: Where `fabric up` finds the built test guest to register; empty: this checkout's
    #: `.cache/test-guest` (scripts/build-test-guest.sh).
    test_guest_dir: str = ""

    @property
    def gateway_url(self) -> str:
        return (self.public_url or f"http://{self.gateway_host}:{self.gateway_port}").rstrip("/")

    @property
    def state_path(self) -> Path:
        return Path(self.state_dir).expanduser()

    @property
    def image_path(self) -> Path:
        return Path(self.image_dir).expanduser() if self.image_dir else self.state_path / "images"

    @property
    def fake_shapes(self) -> list[tuple[int, int, int]]:
        """The simulated hosts' sizes, in turn: `fake_host_shapes`, else the one fake_host_* size."""
        if not self.fake_host_shapes:
            return [(self.fake_host_vcpus, self.fake_host_ram_mb, self.fake_host_disk_gb)]
        shapes = []
        for shape in self.fake_host_shapes.split(","):
            vcpus, ram, disk = (int(n) for n in shape.split(":"))
            shapes.append((vcpus, ram, disk))
        return shapes

    @property
    def compute_path(self) -> Path:
        if self.compute_dir:
            return Path(self.compute_dir).expanduser()
        return Path("/var/lib/fabric/compute") if os.geteuid() == 0 else self.state_path / "compute"

    @property
    def network_path(self) -> Path:
        return Path(self.network_dir).expanduser() if self.network_dir else self.state_path / "network"

    @property
    def host_name(self) -> str:
        return self.compute_host or socket.gethostname()

    @property
    def volume_path(self) -> Path:
        if self.volume_dir:
            return Path(self.volume_dir).expanduser()
        return Path("/var/lib/fabric/volumes") if os.geteuid() == 0 else self.state_path / "volumes"

    @property
    def volume_host_name(self) -> str:
        return self.volume_host or self.host_name

    def with_admin_password(self) -> "Settings":
        """The admin password: configured, or the one kept in the state dir (made once)."""
        if self.admin_password:
            return self
        path = self.state_path / "admin-password"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_urlsafe(18))
        return dataclasses.replace(self, admin_password=path.read_text().strip())


def load_settings(
    path: str | Path | None = None, env: Mapping[str, str] = os.environ, **overrides: Any
) -> Settings:
    raw: dict[str, Any] = {}
    file = Path(path) if path else Path(env["FABRIC_CONFIG"]) if "FABRIC_CONFIG" in env else None
    if file is None and DEFAULT_FILE.exists():
        file = DEFAULT_FILE
    if file is not None:
        try:
            raw.update(tomllib.loads(file.read_text()))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise Invalid(str(file), str(exc)) from None
    hints = get_type_hints(Settings)
    for field in dataclasses.fields(Settings):
        value = env.get(f"FABRIC_{field.name.upper()}")
        if value is not None:
            raw[field.name] = _from_env(field.name, value, hints[field.name])
    raw.update({k: v for k, v in overrides.items() if v is not None})
    return decode(Settings, raw)


def _from_env(name: str, value: str, hint: Any) -> Any:
    base = getattr(hint, "__origin__", hint)
    if base is bool:
        if value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise Invalid(f"FABRIC_{name.upper()}", "expected true or false")
    if base is int or base is float:
        try:
            return base(value)
        except ValueError:
            kind = "an integer" if base is int else "a number"
            raise Invalid(f"FABRIC_{name.upper()}", f"expected {kind}") from None
    return value
