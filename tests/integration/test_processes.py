"""Two gateways and two identity services as separate processes sharing one bus and database:
what one issues the other honours, and a revocation on one holds on the other."""

import asyncio
import dataclasses
import subprocess
import time
from collections.abc import AsyncIterator, Callable

import aiohttp
import pytest

from fabric.client import password_auth
from fabric.config import Settings
from tests.support import (
    FABRIC,
    Processes,
    can_manage_rabbitmq,
    fabric_env,
    free_port,
    isolated,
    wait_http,
)

pytestmark = [pytest.mark.postgres, pytest.mark.amqp]


@dataclasses.dataclass
class Fleet:
    gateways: list[str]
    identity_metrics: list[str]
    settings: Settings
    processes: Processes


@pytest.fixture(scope="module")
async def fleet(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Fleet]:
    why = can_manage_rabbitmq()
    if why:
        pytest.skip(why)
    tmp_path = tmp_path_factory.mktemp("fleet")
    async with isolated(settings, "procs", tmp_path / "state") as own:
        ports = [free_port(), free_port()]
        metrics = [free_port(), free_port()]
        env = fabric_env(own, FABRIC_PUBLIC_URL=f"http://127.0.0.1:{ports[0]}")
        processes = Processes(tmp_path)
        try:
            boot = await asyncio.create_subprocess_exec(
                str(FABRIC), "bootstrap", env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
            )
            _, err = await asyncio.wait_for(boot.communicate(), 60)
            assert boot.returncode == 0, err.decode()
            for i in (0, 1):
                processes.start(
                    f"identity-{i}",
                    [str(FABRIC), "service", "identity", "--metrics-port", str(metrics[i])],
                    env,
                )
                processes.start(
                    f"gateway-{i}", [str(FABRIC), "service", "gateway", "--port", str(ports[i])], env
                )
            urls = [f"http://127.0.0.1:{p}" for p in ports]
            for url in urls:
                await wait_http(f"{url}/healthz")
            for port in metrics:
                await wait_http(f"http://127.0.0.1:{port}/healthz")
            yield Fleet(urls, [f"http://127.0.0.1:{p}" for p in metrics], own, processes)
        finally:
            processes.stop_all()


async def issue(http: aiohttp.ClientSession, gateway: str, body: dict[str, object]) -> tuple[int, str]:
    async with http.post(f"{gateway}/identity/v3/auth/tokens", json=body) as resp:
        return resp.status, resp.headers.get("X-Subject-Token", "")


async def status_of(http: aiohttp.ClientSession, gateway: str, token: str) -> int:
    async with http.get(f"{gateway}/identity/v3/auth/projects", headers={"X-Auth-Token": token}) as resp:
        return resp.status


async def eventually(check: Callable[[], "asyncio.Future[bool] | object"], timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


async def test_tokens_and_revocations_hold_across_processes(fleet: Fleet) -> None:
    s = fleet.settings
    admin_auth = password_auth(s.admin_user, s.admin_password, project=s.admin_project)
    a, b = fleet.gateways
    async with aiohttp.ClientSession() as http:
        status, token = await issue(http, a, admin_auth)
        assert status == 201
        assert await status_of(http, b, token) == 200
        async with http.get(
            f"{b}/identity/v3/auth/tokens", headers={"X-Auth-Token": token, "X-Subject-Token": token}
        ) as resp:
            assert resp.status == 200
            assert (await resp.json())["token"]["user"]["name"] == s.admin_user

        # Wrong password is refused by either gateway.
        for gateway in (a, b):
            wrong = password_auth(s.admin_user, "not-the-password", project=s.admin_project)
            assert (await issue(http, gateway, wrong))[0] == 401

        # Revoke on B (with a second token as the caller); A refuses the token promptly.
        status, other = await issue(http, b, admin_auth)
        assert status == 201
        async with http.delete(
            f"{b}/identity/v3/auth/tokens", headers={"X-Auth-Token": other, "X-Subject-Token": token}
        ) as resp:
            assert resp.status == 204
        await eventually(lambda: _refused(http, a, token))
        assert await status_of(http, b, token) == 401
        assert await status_of(http, a, other) == 200


async def _refused(http: aiohttp.ClientSession, gateway: str, token: str) -> bool:
    return await status_of(http, gateway, token) == 401


async def test_both_identity_processes_share_the_work(fleet: Fleet) -> None:
    s = fleet.settings
    admin_auth = password_auth(s.admin_user, s.admin_password, project=s.admin_project)
    async with aiohttp.ClientSession() as http:
        statuses = await asyncio.gather(*(issue(http, fleet.gateways[i % 2], admin_auth) for i in range(40)))
        assert {status for status, _ in statuses} == {201}
        handled = []
        for url in fleet.identity_metrics:
            async with http.get(f"{url}/metrics") as resp:
                text = await resp.text()
            handled.append(
                sum(
                    float(line.rsplit(" ", 1)[1])
                    for line in text.splitlines()
                    if line.startswith("fabric_messages_handled_total") and "identity.Authenticate" in line
                )
            )
        assert all(count > 0 for count in handled), handled
        assert sum(handled) >= 40
