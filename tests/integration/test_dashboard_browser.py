"""The dashboard in a real browser: Debian's chromium driven by Playwright, against a cloud of
the test's own whose fake hosts take two seconds to spawn, so that a server is seen in BUILD and
then, without a reload, ACTIVE.

Log in, look at the overview, launch a server, watch it turn ACTIVE, make a volume and attach
it, delete the server, look at the fleet as an admin, log out. A screenshot of each main page is
saved in the test's output directory (printed; `FABRIC_DASHBOARD_SCREENSHOTS=DIR` chooses it).
"""

import os
import shutil
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from fabric.client import Client
from fabric.compose import Cloud
from fabric.config import Settings
from tests.integration.dashboard_support import browser_page, image_and_flavor, person, why_no_browser
from tests.support import free_port, isolated

pytestmark = [pytest.mark.postgres, pytest.mark.amqp, pytest.mark.timeout(300)]

SPAWN_S = 2.0


@pytest.fixture
async def slow_cloud(settings: Settings, tmp_path: Path) -> AsyncIterator[Cloud]:
    """A cloud of its own (database, vhost) whose fake hosts take SPAWN_S to boot a server."""
    async with isolated(settings, f"dash-{os.getpid()}", tmp_path / "state") as own:
        own = replace(
            own,
            gateway_port=free_port(),
            fake_spawn_latency_s=SPAWN_S,
            fake_hosts=2,
            powerdns=False,
        )
        async with Cloud(own) as running:
            yield running


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    chosen = os.environ.get("FABRIC_DASHBOARD_SCREENSHOTS")
    where = Path(chosen) if chosen else tmp_path / "screenshots"
    shutil.rmtree(where, ignore_errors=True)
    where.mkdir(parents=True)
    print(f"\ndashboard screenshots: {where}")
    return where


async def test_a_person_launches_watches_attaches_deletes_and_logs_out(
    slow_cloud: Cloud, shots: Path
) -> None:
    why = why_no_browser()
    if why:
        pytest.skip(why)
    from playwright.async_api import expect

    async with Client.for_admin(slow_cloud.settings) as admin:
        someone, _ = await person(admin)
        image, flavor = await image_and_flavor(admin)
    base = f"{slow_cloud.url}/dashboard"

    async with browser_page() as (_, page, errors):
        await page.goto(f"{base}/servers")
        await expect(page).to_have_url(f"{base}/login")
        await page.screenshot(path=shots / "1-login.png", full_page=True)
        await page.fill("#user", someone.name)
        await page.fill("#password", someone.password)
        await page.fill("#project", someone.project)
        await page.click("button[type=submit]")
        await expect(page).to_have_url(f"{base}/overview")
        await expect(page.locator("h1")).to_contain_text(someone.project)
        await expect(page.locator(".bars li")).to_have_count(6)
        await page.screenshot(path=shots / "2-overview.png", full_page=True)

        await page.click("text=Servers")
        await page.click("#launch")
        await page.fill("#name", "web-1")
        await page.select_option("#image", image)
        await page.select_option("#flavor", flavor)
        await page.screenshot(path=shots / "3-launch.png", full_page=True)
        await page.click("#launch-submit")
        status = page.locator("#server-status")
        await expect(status).to_have_text("BUILD")
        # Marks this document: a reload or a navigation would lose the mark.
        await page.evaluate("window.__notReloaded = true")
        await expect(status).to_have_text("ACTIVE", timeout=SPAWN_S * 1000 + 10_000)
        assert await page.evaluate("window.__notReloaded === true"), "the page was reloaded"
        await expect(page.locator("#action-stop")).to_be_visible()
        await expect(page.locator("#action-start")).to_have_count(0)
        await page.screenshot(path=shots / "4-server-active.png", full_page=True)
        server_url = page.url

        await page.click("nav >> text=Servers")
        row = page.locator("tr", has_text="web-1")
        await expect(row.locator("[data-field=status]")).to_have_text("ACTIVE")
        await page.screenshot(path=shots / "5-servers.png", full_page=True)

        await page.click("nav >> text=Volumes")
        await page.fill("#vol-name", "data-1")
        await page.fill("#vol-size", "1")
        await page.click("#volume-create")
        volume = page.locator("tr", has_text="data-1")
        await expect(volume.locator("[data-field=status]")).to_have_text("available")
        await volume.locator("button[value=attach]").click()
        volume = page.locator("tr", has_text="data-1")
        await expect(volume.locator("[data-field=status]")).to_have_text("in-use")
        await expect(volume).to_contain_text("web-1")
        await page.screenshot(path=shots / "6-volumes.png", full_page=True)
        await page.click("nav >> text=Overview")
        await expect(page.locator(".bars li", has_text="Instances")).to_contain_text("1 of")
        await page.screenshot(path=shots / "6b-overview-in-use.png", full_page=True)

        await page.goto(server_url)
        await expect(page.locator("main")).to_contain_text("data-1")
        await page.click("#action-delete")
        await expect(page).to_have_url(f"{base}/servers")
        await page.evaluate("window.__notReloaded = true")
        await expect(page.locator("tr", has_text="web-1")).to_have_count(0, timeout=20_000)
        assert await page.evaluate("window.__notReloaded === true")
        await page.screenshot(path=shots / "7-server-deleted.png", full_page=True)

        await page.click("#logout")
        await expect(page).to_have_url(f"{base}/login")
        await page.goto(f"{base}/overview")
        await expect(page).to_have_url(f"{base}/login")

        settings = slow_cloud.settings
        await page.fill("#user", settings.admin_user)
        await page.fill("#password", settings.admin_password)
        await page.fill("#project", settings.admin_project)
        await page.click("button[type=submit]")
        await page.click("nav >> text=Fleet")
        await expect(page.locator("tr[data-host]")).to_have_count(3)
        await page.screenshot(path=shots / "8-fleet.png", full_page=True)
        await page.click("#logout")
        await expect(page).to_have_url(f"{base}/login")
        assert not errors, errors
    assert sorted(p.name for p in shots.iterdir()) == [  # noqa: ASYNC240 - ten file names
        "1-login.png",
        "2-overview.png",
        "3-launch.png",
        "4-server-active.png",
        "5-servers.png",
        "6-volumes.png",
        "6b-overview-in-use.png",
        "7-server-deleted.png",
        "8-fleet.png",
    ]
