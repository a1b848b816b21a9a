"""Project B's user never sees project A's resources on any dashboard page: A makes one of each
kind through the APIs (named so that any trace shows), B signs in and reads every page, and A's
server's own page answers B as the API answers B (not found)."""

import uuid

import pytest

from fabric.client import Client
from fabric.compose import Cloud
from tests.integration.dashboard_support import WebUser, image_and_flavor, person

pytestmark = [pytest.mark.postgres, pytest.mark.amqp]

PAGES = (
    "/overview",
    "/servers",
    "/volumes",
    "/networks",
    "/routers",
    "/floating-ips",
    "/security-groups",
    "/network-topology",
    "/images",
    "/dns",
)


async def test_project_b_never_sees_project_as_resources(cloud: Cloud, admin: Client) -> None:
    a, _ = await person(admin)
    b, _ = await person(admin)
    mark = f"secret{uuid.uuid4().hex[:8]}"
    image_id, flavor_id = await image_and_flavor(admin)
    async with Client(admin.auth_url, username=a.name, password=a.password, project_name=a.project) as own:
        net = f"{own.endpoint('network')}/v2.0"
        _, _, made = await own.request("POST", f"{net}/networks", {"network": {"name": f"{mark}-net"}})
        network_id = made["network"]["id"]
        subnet = {"network_id": network_id, "cidr": "10.159.0.0/24", "name": f"{mark}-subnet"}
        await own.request("POST", f"{net}/subnets", {"subnet": subnet})
        await own.request("POST", f"{net}/routers", {"router": {"name": f"{mark}-router"}})
        await own.request("POST", f"{net}/security-groups", {"security_group": {"name": f"{mark}-sg"}})
        server = await own.compute.create_server(
            f"{mark}-vm", image=image_id, flavor=flavor_id, networks=[{"uuid": network_id}]
        )
        await own.compute.wait(server.id, "ACTIVE", timeout_s=30)
        volume = await own.volume.create_volume(1, name=f"{mark}-vol")
        private = await own.image.create(f"{mark}-img", visibility="private")
        zone = await own.dns.create_zone(f"{mark}.example.", email="a@example.org")
        ids = (network_id, server.id, volume.id, private["id"], zone.id)

    async with WebUser(cloud.url) as web:  # the pages do show them, to their own project
        await web.login(a.name, a.password, a.project)
        for path in ("/servers", "/volumes", "/networks", "/routers", "/security-groups", "/images", "/dns"):
            assert mark in (await web.get(path)).text, f"{path} does not show project A its own {mark}"

    async with WebUser(cloud.url) as web:
        await web.login(b.name, b.password, b.project)
        for path in PAGES:
            page = await web.get(path)
            assert page.status == 200, (path, page.status, page.text[:300])
            assert mark not in page.text, f"{path} shows project A's {mark}"
            assert not any(i in page.text for i in ids), f"{path} shows one of project A's ids"
        stolen = await web.get(f"/servers/{server.id}")
        assert mark not in stolen.text and stolen.status in (404, 303), (stolen.status, stolen.text[:300])
        zone_page = await web.get(f"/dns/{zone.id}")
        assert mark not in zone_page.text and zone_page.status in (404, 303), zone_page.status
