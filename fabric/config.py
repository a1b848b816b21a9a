"""One typed configuration: defaults that work on a fresh machine, then a TOML file, then
`FABRIC_*` environment variables (`FABRIC_GATEWAY_PORT=9000`), each overriding the one before.

The file is `--config PATH`, else `$FABRIC_CONFIG`, else `/etc/fabric/fabric.toml` if it
exists. Values are checked by the protocol codec, so a bad one is reported by name.
"""

import dataclasses
import os
import secrets
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, get_type_hints

from protocol.codec import MinLen, Range, decode
from protocol.errors import Invalid

DEFAULT_FILE = Path("/etc/fabric/fabric.toml")
Port = Annotated[int, Range(0, 65535)]


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

    @property
    def gateway_url(self) -> str:
        return (self.public_url or f"http://{self.gateway_host}:{self.gateway_port}").rstrip("/")

    @property
    def state_path(self) -> Path:
        return Path(self.state_dir).expanduser()

    @property
    def image_path(self) -> Path:
        return Path(self.image_dir).expanduser() if self.image_dir else self.state_path / "images"

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
    if base is int:
        try:
            return int(value)
        except ValueError:
            raise Invalid(f"FABRIC_{name.upper()}", "expected an integer") from None
    return value
