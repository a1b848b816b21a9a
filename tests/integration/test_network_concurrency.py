"""Two network-service processes allocate addresses on one /24 at once: 200 ports made
concurrently get 200 different addresses, and once the pool is spent every further port is a
clean 409, never a duplicate or a 500."""

import asyncio
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from fabric.client import Client
from fabric.compose import Cloud
from fabric.config import Settings
from tests.support import (
    FABRIC,
    Processes,
    can_manage_rabbitmq,
    fabric_env,
    free_port,
    isolated,
    messages_handled,
)

pytestmark = [pytest.mark.postgres, pytest.mark.amqp, pytest.mark.timeout(300)]


async def test_two_network_services_never_hand_out_an_address_twice(
    settings: Settings, tmp_path: Path
) -> None:
    why = can_manage_rabbitmq()
    if why:
        pytest.skip(why)
    async with isolated(settings, "ipam", tmp_path / "state") as own:
        own = replace(own, gateway_port=free_port(), compute_driver="none", fake_hosts=0)
        processes = Processes(tmp_path)
        async with Cloud(own) as cloud:
            metrics_port = free_port()
            second = [str(FABRIC), "service", "network", "--metrics-port", str(metrics_port)]
            processes.start("network-2", second, fabric_env(own))
            try:
                async with Client.for_admin(cloud.settings) as client:
                    assert client.token is not None
                    base = f"{cloud.url}/network/v2.0"
                    headers = {"X-Auth-Token": client.token.id, "Content-Type": "application/json"}
                    async with aiohttp.ClientSession(headers=headers) as http:

                        async def post(kind: str, body: dict[str, Any]) -> tuple[int, Any]:
                            async with http.post(f"{base}/{kind}", data=orjson.dumps(body)) as resp:
                                return resp.status, await resp.json()

                        status, net = await post("networks", {"network": {"name": "ipam"}})
                        assert status == 201
                        network_id = net["network"]["id"]
                        body = {
                            "subnet": {"network_id": network_id, "cidr": "10.70.0.0/24", "enable_dhcp": False}
                        }
                        assert (await post("subnets", body))[0] == 201
                        await asyncio.sleep(1)  # the second process is consuming by now
                        results = await asyncio.gather(
                            *(post("ports", {"port": {"network_id": network_id}}) for _ in range(260))
                        )
                    made = [b["port"]["fixed_ips"][0]["ip_address"] for s, b in results if s == 201]
                    refused = [b for s, b in results if s == 409]
                    assert len(made) == 253 and len(set(made)) == 253  # .1 is the gateway
                    assert len(refused) == 7
                    assert all("No more IP addresses" in b["NeutronError"]["message"] for b in refused)
                    assert await messages_handled(metrics_port, "network.CreatePort") > 20  # both allocated
                    assert "Traceback" not in processes.log_of("network-2")
            finally:
                processes.stop_all()
