"""The network, image and DNS pages in a real browser (Debian's chromium through Playwright),
against the suite's cloud: make a network with a subnet, a router with a gateway and an
interface, launch a server on the network, give it a floating IP, add a security group rule,
look at the topology picture, upload an image through the progress-bar script, make a DNS zone
and a recordset. A screenshot of each page is saved (printed; `FABRIC_DASHBOARD_SCREENSHOTS=DIR`
chooses the directory).
"""

import os
from pathlib import Path

import pytest

from fabric.client import Client
from fabric.compose import Cloud
from tests.integration.dashboard_support import (
    browser_page,
    external_network,
    image_and_flavor,
    person,
    unique,
    why_no_browser,
)

pytestmark = [pytest.mark.postgres, pytest.mark.amqp, pytest.mark.timeout(300)]


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    chosen = os.environ.get("FABRIC_DASHBOARD_SCREENSHOTS")
    where = Path(chosen) if chosen else tmp_path / "screenshots"
    where.mkdir(parents=True, exist_ok=True)
    for old in where.glob("n*.png"):
        old.unlink()
    print(f"\ndashboard screenshots: {where}")
    return where


async def test_a_person_builds_a_network_gives_a_server_a_floating_ip_uploads_an_image_and_a_zone(
    cloud: Cloud, admin: Client, shots: Path
) -> None:
    why = why_no_browser()
    if why:
        pytest.skip(why)
    from playwright.async_api import FilePayload, expect

    someone, _ = await person(admin)
    image, flavor = await image_and_flavor(admin)
    ext_id, ext_name = await external_network(admin, "198.18.20.0/24")
    base = f"{cloud.url}/dashboard"
    zone = f"{unique('b')}.dash.test."

    async with browser_page() as (_, page, errors):
        await page.goto(f"{base}/login")
        await page.fill("#user", someone.name)
        await page.fill("#password", someone.password)
        await page.fill("#project", someone.project)
        await page.click("button[type=submit]")
        await expect(page).to_have_url(f"{base}/overview")

        await page.click("nav >> text=Networks")
        await page.fill("#net-name", "app-net")
        await page.fill("#net-cidr", "10.50.0.0/24")
        await page.click("#network-create")
        await expect(page.locator("tr", has_text="app-net")).to_contain_text("10.50.0.0/24")
        await page.screenshot(path=shots / "n1-networks.png", full_page=True)

        await page.click(".subnav >> text=Routers")
        await page.fill("#router-name", "app-router")
        await page.select_option("#router-gateway", ext_id)
        await page.click("#router-create")
        row = page.locator("tr", has_text="app-router")
        await expect(row).to_contain_text(ext_name)
        await row.locator("button[value=add_interface]").click()
        await expect(page.locator("tr", has_text="app-router")).to_contain_text("10.50.0.1")
        await page.screenshot(path=shots / "n2-routers.png", full_page=True)

        await page.click("nav >> text=Servers")
        await page.click("#launch")
        await page.fill("#name", "app-1")
        await page.select_option("#image", image)
        await page.select_option("#flavor", flavor)
        await page.select_option("#network", label="app-net")
        await page.click("#launch-submit")
        await expect(page.locator("#server-status")).to_have_text("ACTIVE", timeout=30_000)

        await page.click("nav >> text=Networks")
        await page.click(".subnav >> text=Floating IPs")
        await page.select_option("#fip-network", ext_id)
        await page.click("#fip-allocate")
        fip = page.locator("tr[data-fip]").first
        await expect(fip).to_contain_text("nothing")
        options = await fip.locator("select option").all_text_contents()
        assert any(o.startswith("app-1 (10.50.0.") for o in options), options
        await fip.locator("button[value=associate]").click()
        fip = page.locator("tr[data-fip]").first
        await expect(fip.locator("[data-field=port]")).to_contain_text("app-1 (10.50.0.")
        await page.screenshot(path=shots / "n3-floating-ips.png", full_page=True)

        await page.click(".subnav >> text=Security groups")
        await page.fill("#group-name", "ssh")
        await page.click("#group-create")
        group = page.locator("section.group", has_text="ssh")
        await group.locator("input[name=port_range_min]").fill("22")
        await group.locator("input[name=port_range_max]").fill("22")
        await group.locator("input[name=remote_ip_prefix]").fill("192.0.2.0/24")
        await group.locator("button", has_text="Add rule").click()
        await expect(page.locator("section.group", has_text="ssh")).to_contain_text("192.0.2.0/24")
        await page.screenshot(path=shots / "n4-security-groups.png", full_page=True)

        await page.click(".subnav >> text=Topology")
        picture = page.locator("svg.topology")
        await expect(picture.locator("[data-server]", has_text="app-1")).to_have_count(1)
        await expect(picture.locator("[data-router]", has_text="app-router")).to_have_count(1)
        await expect(picture.locator(f'[data-network="{ext_id}"]')).to_have_count(1)
        await page.screenshot(path=shots / "n5-topology.png", full_page=True)

        await page.click("nav >> text=Images")
        await page.fill("#image-name", "uploaded-by-browser")
        disk: FilePayload = {
            "name": "disk.raw",
            "mimeType": "application/octet-stream",
            "buffer": b"\3" * 3_000_000,
        }
        await page.set_input_files("#image-file", files=disk)
        # Slow the browser's uploads down (chromium's network emulation), so that the bar is seen moving.
        cdp = await page.context.new_cdp_session(page)
        slow = {"offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": 1_000_000}
        await cdp.send("Network.emulateNetworkConditions", slow)
        await page.click("#image-create")
        await expect(page.locator("#upload-progress")).to_be_visible()
        await expect(page.locator("#upload-percent")).not_to_have_text("0%")
        await page.screenshot(path=shots / "n6a-image-uploading.png", full_page=True)
        # The script's path: the streamed PUT leaves this message, the plain post another.
        await expect(page.locator(".flash")).to_contain_text("Uploaded the image's data.")
        await expect(page.locator("tr", has_text="uploaded-by-browser")).to_contain_text("active")
        await page.screenshot(path=shots / "n6-images.png", full_page=True)

        await page.click("nav >> text=DNS")
        await page.fill("#zone-name", zone)
        await page.fill("#zone-email", "hostmaster@dash.test")
        await page.click("#zone-create")
        await page.locator("tr[data-zone] a", has_text=zone).click()
        await page.fill("#rs-name", "www")
        await page.fill("#rs-records", "192.0.2.80")
        await page.click("#recordset-create")
        await expect(page.locator("tr", has_text=f"www.{zone}")).to_contain_text("192.0.2.80")
        await page.screenshot(path=shots / "n7-dns-zone.png", full_page=True)
        await page.click("text=DNS zones")
        await expect(page.locator("tr", has_text=zone)).to_have_count(1)
        await page.screenshot(path=shots / "n8-dns.png", full_page=True)

        await page.click("#logout")
        await expect(page).to_have_url(f"{base}/login")
        assert not errors, errors
    names = sorted(p.name for p in shots.glob("n*.png"))  # noqa: ASYNC240 - eight file names
    assert names == [
        "n1-networks.png",
        "n2-routers.png",
        "n3-floating-ips.png",
        "n4-security-groups.png",
        "n5-topology.png",
        "n6-images.png",
        "n6a-image-uploading.png",
        "n7-dns-zone.png",
        "n8-dns.png",
    ]
