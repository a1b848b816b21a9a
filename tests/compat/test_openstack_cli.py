"""The stock `openstack` CLI (python-openstackclient from PyPI) against `fabric up`, run as a
user would run it: the all-in-one process, the openrc it writes, and the CLI's JSON output."""

import asyncio
import json
import os
import shlex
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from fabric.config import Settings
from tests.compat.cli_forks import OPENSTACK, Forks
from tests.support import (
    FABRIC,
    ROOT,
    Processes,
    can_manage_rabbitmq,
    fabric_env,
    free_port,
    isolated,
    wait_http,
)

pytestmark = [pytest.mark.compat, pytest.mark.postgres, pytest.mark.amqp]


def read_openrc(path: Path) -> dict[str, str]:
    env = {}
    for line in path.read_text().splitlines():
        if line.startswith("export "):
            key, _, value = line.removeprefix("export ").partition("=")
            env[key] = shlex.split(value)[0] if value else ""
    return env


class Cli:
    """`openstack ARGS` as a user with `env` runs it (see `cli_forks` for how it starts fast)."""

    def __init__(self, env: dict[str, str], forks: Forks) -> None:
        self.env, self.forks = env, forks

    async def run(self, *args: str, check: bool = True) -> tuple[int, str, str]:
        code, out, err = await self.forks.run(args, self.env, timeout_s=60)
        if check:
            assert code == 0, f"openstack {' '.join(args)} -> {code}: {err}"
        return code, out, err

    async def json(self, *args: str) -> Any:
        _, out, _ = await self.run(*args, "-f", "json")
        return json.loads(out)


@asynccontextmanager
async def fabric_up(
    settings: Settings, tmp: Path, name: str
) -> AsyncIterator[tuple[Settings, dict[str, str]]]:
    """`fabric up` as a user starts it, on a database and vhost of its own (named `name`): the
    settings it runs with (its gateway's port) and the environment of a user who sourced the
    openrc it wrote. Stopped by PID afterwards, whatever happened."""
    async with isolated(settings, name, tmp / "state") as own:
        port = free_port()
        processes = Processes(tmp)
        openrc = tmp / "admin-openrc"
        env = fabric_env(
            own,
            FABRIC_GATEWAY_PORT=str(port),
            FABRIC_PUBLIC_URL="",
            FABRIC_COMPUTE_HOST=f"{name}-host",
            FABRIC_TEST_GUEST_DIR=str(tmp / "no-test-guest"),
        )
        try:
            processes.start("fabric-up", [str(FABRIC), "up", "--openrc", str(openrc)], env)
            await wait_http(f"http://127.0.0.1:{port}/healthz", timeout_s=60)
            for _ in range(100):
                if openrc.exists():
                    break
                await asyncio.sleep(0.1)
            user_env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
            user_env.update(read_openrc(openrc))
            yield replace(own, gateway_port=port), user_env
        finally:
            processes.stop_all()


def why_no_cli() -> str | None:
    if why := can_manage_rabbitmq():
        return why
    if not OPENSTACK.exists():
        return "python-openstackclient is not installed in this venv (pip install -e '.[test]')"
    return None


@pytest.fixture(scope="module")
async def cli(
    settings: Settings, tmp_path_factory: pytest.TempPathFactory, openstack_forks: Forks
) -> AsyncIterator[Cli]:
    if why := why_no_cli():
        pytest.skip(why)
    async with fabric_up(settings, tmp_path_factory.mktemp("compat"), "compat") as (_, user_env):
        yield Cli(user_env, openstack_forks)


async def test_token_issue(cli: Cli) -> None:
    token = await cli.json("token", "issue")
    assert token["id"] and token["project_id"] and token["user_id"]


async def test_catalog_list_names_identity(cli: Cli) -> None:
    catalog = await cli.json("catalog", "list")
    identity = [entry for entry in catalog if entry["Type"] == "identity"]
    assert len(identity) == 1, catalog
    endpoints = identity[0]["Endpoints"]
    public = [e for e in endpoints if e["interface"] == "public"]
    assert public and public[0]["url"] == cli.env["OS_AUTH_URL"].removesuffix("/v3"), endpoints


async def test_project_create_list_show_delete(cli: Cli) -> None:
    name = f"compat-{uuid.uuid4().hex[:8]}"
    created = await cli.json("project", "create", name, "--description", "made by the CLI")
    assert created["name"] == name
    assert name in [p["Name"] for p in await cli.json("project", "list")]
    shown = await cli.json("project", "show", name)
    assert (shown["id"], shown["description"]) == (created["id"], "made by the CLI")
    await cli.run("project", "delete", name)
    code, _, err = await cli.run("project", "show", name, check=False)
    assert code != 0 and "no project found" in err.lower()


async def test_user_create_list_delete_and_role_add(cli: Cli) -> None:
    suffix = uuid.uuid4().hex[:8]
    project = await cli.json("project", "create", f"compat-p-{suffix}")
    user = await cli.json(
        "user", "create", f"compat-u-{suffix}", "--password", "pw-" + suffix, "--project", project["id"]
    )
    assert user["name"] == f"compat-u-{suffix}"
    assert user["name"] in [u["Name"] for u in await cli.json("user", "list")]
    await cli.run("role", "add", "--user", user["name"], "--project", project["name"], "member")
    assignments = await cli.json("role", "assignment", "list", "--user", user["id"], "--names")
    assert [(a["Role"], a["Project"].split("@")[0]) for a in assignments] == [("member", project["name"])]
    # The new user can now authenticate to that project with the CLI too.
    member_env = dict(
        cli.env, OS_USERNAME=user["name"], OS_PASSWORD="pw-" + suffix, OS_PROJECT_NAME=project["name"]
    )
    token = await Cli(member_env, cli.forks).json("token", "issue")
    assert token["project_id"] == project["id"]
    await cli.run("user", "delete", user["id"])
    assert user["name"] not in [u["Name"] for u in await cli.json("user", "list")]
    await cli.run("project", "delete", project["id"])


async def test_token_revoke(cli: Cli) -> None:
    token = (await cli.json("token", "issue"))["id"]
    await cli.run("token", "revoke", token)
    # The revoked token no longer works for the CLI either.
    env = {
        k: v
        for k, v in cli.env.items()
        if k
        not in {
            "OS_USERNAME",
            "OS_PASSWORD",
            "OS_USER_DOMAIN_NAME",
            "OS_PROJECT_DOMAIN_NAME",
            "OS_PROJECT_NAME",
        }
    }
    env.update(OS_AUTH_TYPE="token", OS_TOKEN=token)
    code, _, err = await Cli(env, cli.forks).run("project", "list", check=False)
    assert code != 0 and ("401" in err or "authenticat" in err.lower()), err


async def test_image_create_list_show_delete(cli: Cli, tmp_path: Path) -> None:
    import hashlib

    name = f"compat-img-{uuid.uuid4().hex[:8]}"
    data = os.urandom(1024 * 1024 + 3)
    path = tmp_path / "disk.raw"
    path.write_bytes(data)
    created = await cli.json(
        "image", "create", "--file", str(path), "--disk-format", "raw", "--container-format", "bare", name
    )
    assert created["name"] == name
    shown = await cli.json("image", "show", name)
    assert (shown["status"], shown["size"]) == ("active", len(data))
    assert shown["checksum"] == hashlib.md5(data).hexdigest()
    assert name in [i["Name"] for i in await cli.json("image", "list")]
    await cli.run("image", "delete", name)
    assert name not in [i["Name"] for i in await cli.json("image", "list")]


async def test_image_shared_with_a_project(cli: Cli, tmp_path: Path) -> None:
    suffix = uuid.uuid4().hex[:8]
    project = await cli.json("project", "create", f"compat-share-{suffix}")
    # --file, because without it the CLI uploads its stdin, and an empty upload is refused.
    disk = tmp_path / "disk.raw"
    disk.write_bytes(b"shared bytes")
    image = await cli.json(
        "image", "create", "--shared", "--file", str(disk), "--disk-format", "raw",
        "--container-format", "bare", f"compat-sh-{suffix}",
    )  # fmt: skip
    await cli.run("image", "add", "project", image["id"], project["id"])
    members = await cli.json("image", "member", "list", image["id"])
    assert [(m["Member ID"], m["Status"]) for m in members] == [(project["id"], "pending")]
    await cli.run("image", "remove", "project", image["id"], project["id"])
    assert await cli.json("image", "member", "list", image["id"]) == []
    await cli.run("image", "delete", image["id"])
    await cli.run("project", "delete", project["id"])


async def test_flavor_create_list_show_delete(cli: Cli) -> None:
    name = f"compat-flv-{uuid.uuid4().hex[:8]}"
    created = await cli.json("flavor", "create", "--ram", "512", "--disk", "1", "--vcpus", "1", name)
    assert (created["name"], created["ram"], created["vcpus"], created["disk"]) == (name, 512, 1, 1)
    assert name in [f["Name"] for f in await cli.json("flavor", "list")]
    assert (await cli.json("flavor", "show", name))["id"] == created["id"]
    private = await cli.json("flavor", "create", "--ram", "256", "--vcpus", "1", "--private", name + "-p")
    assert private["os-flavor-access:is_public"] is False
    assert name + "-p" in [f["Name"] for f in await cli.json("flavor", "list", "--all")]
    await cli.run("flavor", "delete", name, name + "-p")
    assert name not in [f["Name"] for f in await cli.json("flavor", "list")]


async def test_up_seeds_the_usual_flavors(cli: Cli) -> None:
    flavors = {f["Name"]: f for f in await cli.json("flavor", "list")}
    assert {"m1.tiny", "m1.small", "m1.medium", "m1.large"} <= set(flavors)
    assert (flavors["m1.tiny"]["VCPUs"], flavors["m1.tiny"]["RAM"], flavors["m1.tiny"]["Disk"]) == (1, 512, 1)


async def test_keypair_create_list_delete(cli: Cli, tmp_path: Path) -> None:
    name = f"compat-kp-{uuid.uuid4().hex[:8]}"
    # The CLI makes the key, sends its public half, and writes the private one here.
    created = await cli.json("keypair", "create", "--private-key", str(tmp_path / "key"), name)
    assert created["name"] == name and created["fingerprint"]
    assert (tmp_path / "key").read_text().startswith("-----BEGIN OPENSSH PRIVATE KEY-----")
    assert name in [k["Name"] for k in await cli.json("keypair", "list")]
    await cli.run("keypair", "delete", name)
    assert name not in [k["Name"] for k in await cli.json("keypair", "list")]


async def test_server_lifecycle_on_a_fake_host(cli: Cli, tmp_path: Path) -> None:
    suffix = uuid.uuid4().hex[:8]
    disk = tmp_path / "disk.raw"
    disk.write_bytes(b"\0" * 65536)
    await cli.json(
        "image", "create", "--file", str(disk), "--disk-format", "raw", "--container-format", "bare",
        f"compat-img-{suffix}",
    )  # fmt: skip
    keypair = f"compat-kp-{suffix}"
    await cli.json("keypair", "create", "--private-key", str(tmp_path / "key"), keypair)
    name = f"compat-vm-{suffix}"
    server = await cli.json(
        "server", "create", "--image", f"compat-img-{suffix}", "--flavor", "m1.tiny", "--nic", "none",
        "--key-name", keypair, "--wait", name,
    )  # fmt: skip
    assert server["status"] == "ACTIVE" and server["name"] == name
    listed = await cli.json("server", "list")
    assert [s["Status"] for s in listed if s["Name"] == name] == ["ACTIVE"]
    shown = await cli.json("server", "show", name)
    assert shown["id"] == server["id"] and shown["key_name"] == keypair
    await cli.run("server", "stop", name)
    await wait_status(cli, name, "SHUTOFF")
    await cli.run("server", "start", name)
    await wait_status(cli, name, "ACTIVE")
    await cli.run("server", "reboot", "--wait", name)
    _, log, _ = await cli.run("console", "log", "show", name)
    assert "FABRIC-GUEST-BOOTED" in log
    await cli.run("server", "delete", "--wait", name)
    code, _, err = await cli.run("server", "show", name, check=False)
    assert code != 0 and "no server" in err.lower()


async def wait_status(cli: Cli, name: str, status: str) -> None:
    for _ in range(100):
        if (await cli.json("server", "show", name))["status"] == status:
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"{name} never reached {status}")


async def test_hypervisor_list_show_and_server_group_create(cli: Cli) -> None:
    hypervisors = await cli.json("hypervisor", "list")
    names = [h["Hypervisor Hostname"] for h in hypervisors]
    assert "compat-host" in names, hypervisors
    shown = await cli.json("hypervisor", "show", "compat-host")
    assert shown["hypervisor_type"] == "fake" and shown["state"] == "up"
    group = await cli.json(
        "server", "group", "create", "--policy", "anti-affinity", f"compat-grp-{uuid.uuid4().hex[:6]}"
    )
    assert "anti-affinity" in str(group.get("policies") or group.get("policy")), group
    await cli.run("server", "group", "delete", group["id"])


async def test_network_subnet_and_port_commands(cli: Cli) -> None:
    suffix = uuid.uuid4().hex[:6]
    net = await cli.json("network", "create", f"compat-net-{suffix}")
    assert net["status"] == "ACTIVE" and net["router:external"] is False
    ext = await cli.json("network", "create", "--external", f"compat-ext-{suffix}")
    assert ext["router:external"] is True
    sub = await cli.json(
        "subnet",
        "create",
        "--network",
        f"compat-net-{suffix}",
        "--subnet-range",
        "10.90.0.0/24",
        f"compat-sub-{suffix}",
    )
    assert sub["gateway_ip"] == "10.90.0.1" and sub["enable_dhcp"] is True
    port = await cli.json("port", "create", "--network", f"compat-net-{suffix}", f"compat-port-{suffix}")
    assert port["fixed_ips"][0]["ip_address"].startswith("10.90.0.")
    listed = await cli.json("port", "list", "--network", f"compat-net-{suffix}")
    assert f"compat-port-{suffix}" in [p["Name"] for p in listed]
    shown = await cli.json("port", "show", f"compat-port-{suffix}")
    assert shown["id"] == port["id"]
    assert f"compat-net-{suffix}" in [n["Name"] for n in await cli.json("network", "list")]
    await cli.run("port", "delete", f"compat-port-{suffix}")
    await cli.run("subnet", "delete", f"compat-sub-{suffix}")
    await cli.run("network", "delete", f"compat-net-{suffix}", f"compat-ext-{suffix}")
    code, _, err = await cli.run("network", "show", f"compat-net-{suffix}", check=False)
    assert code != 0 and "no network" in err.lower()


async def test_router_and_floating_ip_commands(cli: Cli) -> None:
    s = uuid.uuid4().hex[:6]
    await cli.json("network", "create", "--external", f"compat-public-{s}")
    public = ["--network", f"compat-public-{s}", "--subnet-range", "203.0.113.0/24", "--no-dhcp"]
    await cli.json("subnet", "create", *public, f"compat-public-sub-{s}")
    await cli.json("network", "create", f"compat-lan-{s}")
    await cli.json(
        "subnet",
        "create",
        "--network",
        f"compat-lan-{s}",
        "--subnet-range",
        "10.91.0.0/24",
        f"compat-lan-sub-{s}",
    )
    router = await cli.json("router", "create", f"compat-router-{s}")
    assert router["status"] == "ACTIVE"
    await cli.run("router", "add", "subnet", f"compat-router-{s}", f"compat-lan-sub-{s}")
    await cli.run("router", "set", "--external-gateway", f"compat-public-{s}", f"compat-router-{s}")
    shown = await cli.json("router", "show", f"compat-router-{s}")
    assert "203.0.113." in json.dumps(shown["external_gateway_info"])
    ports = await cli.json("port", "list", "--router", f"compat-router-{s}")
    assert any("10.91.0.1" in json.dumps(p["Fixed IP Addresses"]) for p in ports), ports
    fip = await cli.json("floating", "ip", "create", f"compat-public-{s}")
    assert fip["floating_ip_address"].startswith("203.0.113.")
    assert fip["floating_ip_address"] in [
        f["Floating IP Address"] for f in await cli.json("floating", "ip", "list")
    ]
    await cli.run("floating", "ip", "delete", fip["floating_ip_address"])
    await cli.run("router", "unset", "--external-gateway", f"compat-router-{s}")
    await cli.run("router", "remove", "subnet", f"compat-router-{s}", f"compat-lan-sub-{s}")
    await cli.run("router", "delete", f"compat-router-{s}")
    await cli.run("network", "delete", f"compat-lan-{s}", f"compat-public-{s}")


async def test_security_group_commands(cli: Cli) -> None:
    name = f"compat-sg-{uuid.uuid4().hex[:6]}"
    group = await cli.json("security", "group", "create", name)
    assert group["name"] == name
    rule = await cli.json(
        "security", "group", "rule", "create", *("--protocol", "tcp", "--dst-port", "80"), name
    )
    assert (rule["protocol"], rule["port_range_min"], rule["port_range_max"]) == ("tcp", 80, 80)
    rules = await cli.json("security", "group", "rule", "list", name)
    assert any(r["ID"] == rule["id"] for r in rules)
    assert name in [g["Name"] for g in await cli.json("security", "group", "list")]
    await cli.run("security", "group", "rule", "delete", rule["id"])
    await cli.run("security", "group", "delete", name)


async def test_server_on_a_network_with_a_floating_ip(cli: Cli, tmp_path: Path) -> None:
    s = uuid.uuid4().hex[:6]
    await cli.json("network", "create", "--external", f"compat-fip-ext-{s}")
    ext = ["--network", f"compat-fip-ext-{s}", "--subnet-range", "198.51.100.0/24", "--no-dhcp"]
    await cli.json("subnet", "create", *ext, f"compat-fip-ext-sub-{s}")
    await cli.json("network", "create", f"compat-fip-lan-{s}")
    lan = ["--network", f"compat-fip-lan-{s}", "--subnet-range", "10.92.0.0/24"]
    await cli.json("subnet", "create", *lan, f"compat-fip-lan-sub-{s}")
    await cli.json("router", "create", f"compat-fip-router-{s}")
    await cli.run("router", "add", "subnet", f"compat-fip-router-{s}", f"compat-fip-lan-sub-{s}")
    await cli.run("router", "set", "--external-gateway", f"compat-fip-ext-{s}", f"compat-fip-router-{s}")
    disk = tmp_path / "disk.raw"
    disk.write_bytes(b"\0" * 4096)
    image = ["--file", str(disk), "--disk-format", "raw", "--container-format", "bare"]
    await cli.json("image", "create", *image, f"compat-fip-img-{s}")
    server = await cli.json(
        "server", "create", "--image", f"compat-fip-img-{s}", "--flavor", "m1.tiny",
        "--network", f"compat-fip-lan-{s}", "--wait", f"compat-fip-vm-{s}",
    )  # fmt: skip
    assert server["status"] == "ACTIVE" and "10.92.0." in json.dumps(server["addresses"])
    fip = await cli.json("floating", "ip", "create", f"compat-fip-ext-{s}")
    await cli.run("server", "add", "floating", "ip", f"compat-fip-vm-{s}", fip["floating_ip_address"])
    shown = await cli.json("floating", "ip", "show", fip["floating_ip_address"])
    assert shown["fixed_ip_address"].startswith("10.92.0.") and shown["port_id"]
    for _ in range(50):  # the server shows it once compute heard it moved
        if fip["floating_ip_address"] in json.dumps(
            (await cli.json("server", "show", f"compat-fip-vm-{s}"))["addresses"]
        ):
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError("the floating IP never showed on the server")
    await cli.run("server", "remove", "floating", "ip", f"compat-fip-vm-{s}", fip["floating_ip_address"])
    assert (await cli.json("floating", "ip", "show", fip["floating_ip_address"]))["port_id"] is None
    await cli.run("server", "delete", "--wait", f"compat-fip-vm-{s}")
    await cli.run("floating", "ip", "delete", fip["floating_ip_address"])
    await cli.run("router", "remove", "subnet", f"compat-fip-router-{s}", f"compat-fip-lan-sub-{s}")
    await cli.run("router", "delete", f"compat-fip-router-{s}")
    await cli.run("network", "delete", f"compat-fip-lan-{s}", f"compat-fip-ext-{s}")


async def test_the_bench_harness_measures_this_cloud_like_any_other(cli: Cli) -> None:
    """`bench run --target env` takes the openrc's OS_* variables, as it would for any OpenStack
    cloud: boots and deletes through the public APIs only, then checks through them that
    nothing of its servers stayed."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench", "run", "boot-and-delete", "--target", "env", "--iterations", "4",
        "--concurrency", "2", "--flavor", "m1.tiny", "--json", "--quiet",
        env=cli.env, cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 180)
    assert proc.returncode == 0, err.decode()[-3000:]
    result = json.loads(out)
    assert (result["target"], result["iterations_done"], result["errors"]) == ("env", 4, 0), result
    assert result["invariants"] == {"stuck_servers": 0, "leaked_servers": 0, "leaked_ports": 0}
    assert result["processes"] == {} and "fleet" not in result  # nothing of its own to sample


async def test_server_volume_commands(cli: Cli, tmp_path: Path) -> None:
    """`server add/remove volume`, and `server create --volume` / `--boot-from-volume`, on a fake
    compute host and this machine's file volume host."""
    suffix = uuid.uuid4().hex[:8]
    disk = tmp_path / "disk.raw"
    disk.write_bytes(b"\0" * 65536)
    image = f"compat-img-{suffix}"
    await cli.json(
        "image", "create", "--file", str(disk), "--disk-format", "raw", "--container-format", "bare", image
    )  # fmt: skip
    name = f"compat-vm-{suffix}"
    await cli.json(
        "server", "create", "--image", image, "--flavor", "m1.tiny", "--nic", "none", "--wait", name
    )  # fmt: skip
    volume = f"compat-vol-{suffix}"
    await cli.json("volume", "create", "--size", "1", volume)
    await wait_volume(cli, volume, "available")
    await cli.run("server", "add", "volume", name, volume)
    attached = await wait_volume(cli, volume, "in-use")
    assert attached["attachments"][0]["device"] == "/dev/vdb"
    # The table names the server (the CLI looks it up in Nova) and the device.
    _, table, _ = await cli.run("volume", "list", "-f", "table", "-c", "Name", "-c", "Attached to")
    (row,) = [line for line in table.splitlines() if volume in line]
    assert f"Attached to {name} on /dev/vdb" in row, table
    shown = await cli.json("server", "show", name)
    assert volume in str(shown["volumes_attached"]) or attached["id"] in str(shown["volumes_attached"])
    await cli.run("server", "remove", "volume", name, volume)
    await wait_volume(cli, volume, "available")

    # Boot from that volume, and from a new volume made of the image.
    from_volume = f"compat-bfv-{suffix}"
    await cli.json(
        "server", "create", "--volume", volume, "--flavor", "m1.tiny", "--nic", "none", "--wait", from_volume
    )  # fmt: skip
    await wait_volume(cli, volume, "in-use")
    made = f"compat-bfv2-{suffix}"
    server = await cli.json(
        "server", "create", "--image", image, "--boot-from-volume", "1", "--flavor", "m1.tiny",
        "--nic", "none", "--wait", made,
    )  # fmt: skip
    assert server["status"] == "ACTIVE"
    root = (await cli.json("server", "show", made))["volumes_attached"]
    assert root, "a server booted from a volume shows it attached"
    for server_name in (name, from_volume, made):
        await cli.run("server", "delete", "--wait", server_name)
    await wait_volume(cli, volume, "available")  # not deleted on termination
    await cli.run("volume", "delete", volume)


async def wait_volume(cli: Cli, name: str, status: str) -> Any:
    for _ in range(150):
        shown = await cli.json("volume", "show", name)
        if shown["status"] == status:
            return shown
        await asyncio.sleep(0.2)
    raise AssertionError(f"volume {name} never reached {status}")


async def test_volume_create_list_show_extend_delete(cli: Cli) -> None:
    """The volume commands alone: the CLI finds by name (`GET /volumes/NAME`, 404, then a list)."""
    name = f"compat-vol-{uuid.uuid4().hex[:8]}"
    created = await cli.json(
        "volume", "create", "--size", "1", "--description", "made by the CLI", "--property", "tier=gold", name
    )  # fmt: skip
    assert (created["name"], created["size"]) == (name, 1), created
    shown = await wait_volume(cli, name, "available")
    assert (shown["id"], shown["bootable"], shown["description"]) == (created["id"], False, "made by the CLI")
    assert shown["properties"] == {"tier": "gold"} and shown["type"], shown
    listed = await cli.json("volume", "list")
    assert [(v["ID"], v["Status"], v["Size"]) for v in listed if v["Name"] == name] == [
        (created["id"], "available", 1)
    ]
    await cli.run("volume", "set", "--size", "2", "--property", "zone=b", name)
    for _ in range(100):
        shown = await cli.json("volume", "show", name)
        if shown["size"] == 2 and shown["status"] == "available":
            break
        await asyncio.sleep(0.2)
    assert (shown["size"], shown["properties"]) == (2, {"tier": "gold", "zone": "b"}), shown
    await cli.run("volume", "set", "--name", f"{name}-2", name)
    await cli.run("volume", "delete", f"{name}-2")
    for _ in range(100):
        code, _, err = await cli.run("volume", "show", f"{name}-2", check=False)
        if code != 0:
            break
        await asyncio.sleep(0.2)
    assert code != 0 and "no volume" in err.lower(), err


async def test_volume_snapshot_commands(cli: Cli) -> None:
    suffix = uuid.uuid4().hex[:8]
    volume, snapshot, copy = f"compat-sv-{suffix}", f"compat-snap-{suffix}", f"compat-copy-{suffix}"
    await cli.json("volume", "create", "--size", "1", volume)
    await wait_volume(cli, volume, "available")
    made = await cli.json("volume", "snapshot", "create", "--volume", volume, snapshot)
    assert made["name"] == snapshot
    for _ in range(100):
        shown = await cli.json("volume", "snapshot", "show", snapshot)
        if shown["status"] == "available":
            break
        await asyncio.sleep(0.2)
    assert (shown["status"], shown["size"], shown["volume_id"]) == ("available", 1, made["volume_id"]), shown
    listed = await cli.json("volume", "snapshot", "list")
    assert [(s["ID"], s["Status"]) for s in listed if s["Name"] == snapshot] == [(made["id"], "available")]
    # A volume made from the snapshot, and the snapshot keeps its volume from being deleted.
    await cli.json("volume", "create", "--snapshot", snapshot, copy)
    assert (await wait_volume(cli, copy, "available"))["size"] == 1
    code, _, err = await cli.run("volume", "delete", volume, check=False)
    assert code != 0 and "snapshot" in err.lower(), err
    await cli.run("volume", "delete", copy)
    await wait_gone(cli, "volume", copy)
    await cli.run("volume", "snapshot", "delete", snapshot)
    await wait_gone(cli, "volume snapshot", snapshot)
    assert snapshot not in [s["Name"] for s in await cli.json("volume", "snapshot", "list")]
    await cli.run("volume", "delete", volume)
    await wait_gone(cli, "volume", volume)


async def wait_gone(cli: Cli, kind: str, name: str) -> None:
    for _ in range(150):
        code, _, _ = await cli.run(*kind.split(), "show", name, check=False)
        if code != 0:
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"{kind} {name} is still there")


async def test_bootable_volume_from_an_image(cli: Cli, tmp_path: Path) -> None:
    """`volume create --image --bootable`: the CLI creates, waits for `available`, then sets
    bootable; the volume carries the image's metadata, as boot from volume reads it."""
    suffix = uuid.uuid4().hex[:8]
    disk = tmp_path / "disk.raw"
    disk.write_bytes(b"\0" * (1024 * 1024))
    image = await cli.json(
        "image", "create", "--file", str(disk), "--disk-format", "raw", "--container-format", "bare",
        f"compat-vimg-{suffix}",
    )  # fmt: skip
    name = f"compat-boot-{suffix}"
    await cli.json("volume", "create", "--image", image["name"], "--size", "1", "--bootable", name)
    shown = await wait_volume(cli, name, "available")
    assert shown["bootable"] is True, shown
    assert shown["volume_image_metadata"]["image_id"] == image["id"], shown
    await cli.run("volume", "delete", name)
    await wait_gone(cli, "volume", name)
    await cli.run("image", "delete", image["id"])


async def test_volume_types_quotas_and_limits(cli: Cli) -> None:
    types = await cli.json("volume", "type", "list")
    assert types and all(t["Is Public"] for t in types), types
    name = f"compat-type-{uuid.uuid4().hex[:6]}"
    made = await cli.json("volume", "type", "create", "--description", "by the CLI", name)
    assert made["name"] == name
    assert name in [t["Name"] for t in await cli.json("volume", "type", "list")]
    await cli.run("volume", "type", "delete", name)
    assert name not in [t["Name"] for t in await cli.json("volume", "type", "list")]

    quotas = json.dumps(await cli.json("quota", "show"))
    assert "volumes" in quotas and "gigabytes" in quotas and "snapshots" in quotas, quotas
    # The SDK's names for Cinder's maxTotalVolumes, totalVolumesUsed...
    absolute = {row["Name"]: row["Value"] for row in await cli.json("limits", "show", "--absolute")}
    for key in (
        "max_total_volumes",
        "total_volumes_used",
        "max_total_volume_gigabytes",
        "max_total_snapshots",
    ):
        assert isinstance(absolute.get(key), int), absolute
