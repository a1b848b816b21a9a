"""Which cloud a run measures: one the harness starts itself, or any OpenStack cloud named the way
the `openstack` CLI names it, so that the same scenario compares like for like.

`--target own` (the default) starts an all-in-one fabric on private resources (`bench.cloud`).
`--target env` takes the usual OS_* variables (an openrc, sourced). Any other name is a cloud in
clouds.yaml, looked up where openstacksdk looks (`OS_CLIENT_CONFIG_FILE`, ./clouds.yaml,
~/.config/openstack/clouds.yaml, /etc/openstack/clouds.yaml), with a secure.yaml beside it
merged in, as openstacksdk does, for passwords kept apart.
"""

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from fabric.client import Client


class BadTarget(ValueError):
    """A target that cannot be used: the message says what is missing and where it looked."""


@dataclass(frozen=True, slots=True)
class Target:
    name: str
    auth_url: str
    username: str
    password: str
    project_name: str
    user_domain_name: str = "Default"
    project_domain_name: str = "Default"
    interface: str = "public"

    def client(self, connections: int = 100) -> Client:
        return Client(
            self.auth_url,
            username=self.username,
            password=self.password,
            project_name=self.project_name,
            user_domain_name=self.user_domain_name,
            project_domain_name=self.project_domain_name,
            interface=self.interface,
            connections=connections,
        )


def from_env(env: Mapping[str, str] = os.environ) -> Target:
    missing = [v for v in ("OS_AUTH_URL", "OS_USERNAME", "OS_PASSWORD", "OS_PROJECT_NAME") if not env.get(v)]
    if missing:
        raise BadTarget(f"--target env needs {', '.join(missing)} (source an openrc)")
    return Target(
        name="env",
        auth_url=_v3(env["OS_AUTH_URL"]),
        username=env["OS_USERNAME"],
        password=env["OS_PASSWORD"],
        project_name=env["OS_PROJECT_NAME"],
        user_domain_name=env.get("OS_USER_DOMAIN_NAME", "Default"),
        project_domain_name=env.get("OS_PROJECT_DOMAIN_NAME", "Default"),
        interface=env.get("OS_INTERFACE", "public"),
    )


def config_paths(env: Mapping[str, str] = os.environ) -> list[Path]:
    paths = [Path(env["OS_CLIENT_CONFIG_FILE"])] if env.get("OS_CLIENT_CONFIG_FILE") else []
    return [
        *paths,
        Path.cwd() / "clouds.yaml",
        Path.home() / ".config" / "openstack" / "clouds.yaml",
        Path("/etc/openstack/clouds.yaml"),
    ]


def from_clouds_yaml(name: str, paths: list[Path] | None = None) -> Target:
    """The cloud `name` from the first clouds.yaml that has it."""
    looked = paths if paths is not None else config_paths()
    for path in looked:
        if not path.is_file():
            continue
        try:
            clouds = (yaml.safe_load(path.read_text()) or {}).get("clouds", {})
        except yaml.YAMLError as exc:
            raise BadTarget(f"{path}: not valid YAML: {exc}") from None
        if name not in clouds:
            continue
        cloud: dict[str, Any] = dict(clouds[name])
        secure = path.with_name("secure.yaml")
        if secure.is_file():
            extra = ((yaml.safe_load(secure.read_text()) or {}).get("clouds", {})).get(name, {})
            cloud["auth"] = {**cloud.get("auth", {}), **extra.get("auth", {})}
        return _target(name, cloud, path)
    raise BadTarget(f"no cloud {name!r} in {', '.join(str(p) for p in looked)}")


def _target(name: str, cloud: dict[str, Any], path: Path) -> Target:
    auth = cloud.get("auth", {})
    missing = [k for k in ("auth_url", "username", "password", "project_name") if not auth.get(k)]
    if missing:
        raise BadTarget(f"{path}: cloud {name!r} has no auth.{', auth.'.join(missing)}")
    domain = auth.get("domain_name") or "Default"  # both domains', unless each is given
    return Target(
        name=name,
        auth_url=_v3(str(auth["auth_url"])),
        username=str(auth["username"]),
        password=str(auth["password"]),
        project_name=str(auth["project_name"]),
        user_domain_name=str(auth.get("user_domain_name") or domain),
        project_domain_name=str(auth.get("project_domain_name") or domain),
        interface=str(cloud.get("interface", "public")),
    )


def _v3(auth_url: str) -> str:
    """Keystone's v3 root: clouds.yaml and openrc files often give the unversioned one."""
    url = auth_url.rstrip("/")
    return url if url.endswith("/v3") else f"{url}/v3"


def resolve(name: str) -> Target | None:
    """None for `own` (the harness starts the fabric), else the named cloud."""
    if name == "own":
        return None
    if name == "env":
        return from_env()
    return from_clouds_yaml(name)
