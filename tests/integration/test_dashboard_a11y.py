"""Accessibility of the dashboard in a real browser (Debian's chromium through Playwright).

Every page the dashboard serves is checked with axe-core, injected into the page: no violation
of impact `serious` or `critical` (the others are printed). The pages are found from the
dashboard's own routes, so a page added later is checked without touching this file; a route
with an id in its path is filled with a resource the test made (a server, a volume, ...), and
one whose id it cannot make is printed as unchecked. A member sees every page it may; a page
that refuses a member (the fleet) is checked as the admin.

And the keyboard alone: the login form and the launch form are reached with Tab, filled by
typing, and submitted with Enter, and every element that takes the focus on the way shows it
(an outline, or a shadow, of at least 3:1 against what surrounds it).

axe-core is an npm package; `scripts/setup.sh` installs it into `.cache/axe-core` (ignored by
git). Without it, or without chromium or Playwright, these tests are skipped and say why.
"""

import re
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from fabric.client import Client
from fabric.compose import Cloud
from tests.integration.dashboard_support import (
    CHROMIUM,
    Person,
    image_and_flavor,
    person,
    unique,
    why_no_browser,
)
from tests.support import ROOT

pytestmark = [pytest.mark.postgres, pytest.mark.amqp, pytest.mark.timeout(300)]

AXE = ROOT / ".cache" / "axe-core" / "node_modules" / "axe-core" / "axe.min.js"
#: The impacts that fail the test; `minor` and `moderate` ones are printed.
BLOCKING = frozenset({"serious", "critical"})
#: Routes that are not pages: the live stream, static files, redirects to the overview.
NOT_PAGES = frozenset({"events", "static", "home", "home-slash", "login"})
#: How many Tab presses may separate a form's first field from the top of its page.
MAX_TABS = 40


def _why_not() -> str | None:
    if why := why_no_browser():
        return why
    if not AXE.exists():
        return f"axe-core is missing at {AXE.relative_to(ROOT)} (scripts/setup.sh installs it with npm)"
    return None


def dashboard_pages(cloud: Cloud) -> list[tuple[str, str]]:
    """(route name, path template) of every GET page of the dashboard, e.g.
    ("server", "/dashboard/servers/{server_id}")."""
    assert cloud.gateway is not None
    for resource in cloud.gateway.app.router.resources():
        sub = getattr(resource, "_app", None)
        if sub is None or "dashboard" not in str(getattr(resource, "canonical", "")):
            continue
        found = {}
        for route in sub.router.routes():
            name = route.name or ""
            if route.method != "GET" or name in NOT_PAGES:
                continue
            info = route.resource.get_info() if route.resource is not None else {}
            template = info.get("path") or info.get("formatter")
            if isinstance(template, str):
                found[name] = template
        return sorted(found.items(), key=lambda item: item[1])
    raise LookupError("no dashboard mounted")


class Resources:
    """Ids for the `{...}` parts of page paths, made the first time a page needs one."""

    def __init__(self, client: Client, image: str, flavor: str) -> None:
        self.client, self.image, self.flavor = client, image, flavor
        self.ids: dict[str, str] = {"image_id": image}
        self.makers: dict[str, Callable[[], Awaitable[str]]] = {
            "server_id": self._server,
            "volume_id": self._volume,
            "zone_id": self._zone,
            "network_id": self._network,
        }

    async def fill(self, template: str) -> str | None:
        """`template` with its ids filled, or None when one of them is not known here."""
        for name in re.findall(r"\{(\w+)\}", template):
            if name not in self.ids:
                maker = self.makers.get(name)
                if maker is None:
                    return None
                self.ids[name] = await maker()
            template = template.replace("{" + name + "}", self.ids[name])
        return template

    async def _server(self) -> str:
        server = await self.client.compute.create_server("a11y-web", image=self.image, flavor=self.flavor)
        await self.client.compute.wait(server.id, "ACTIVE", timeout_s=60)
        return server.id

    async def _volume(self) -> str:
        volume = await self.client.volume.create_volume(1, name="a11y-data")
        await self.client.volume.wait(volume.id, "available")
        return volume.id

    async def _zone(self) -> str:
        zone = await self.client.dns.create_zone(f"{unique('a11y')}.example.", email="a11y@example.org")
        return zone.id

    async def _network(self) -> str:
        url = f"{self.client.endpoint('network')}/v2.0/networks"
        _, _, body = await self.client.request("POST", url, {"network": {"name": unique("a11y-net")}})
        return str(body["network"]["id"])


async def axe_violations(page: Any, label: str) -> list[dict[str, Any]]:
    """axe-core's violations on the page as it is now; prints the ones that do not block."""
    await page.add_script_tag(path=str(AXE))
    result = await page.evaluate("axe.run()")
    assert result["passes"], f"{label}: axe-core ran no rule"
    violations: list[dict[str, Any]] = result["violations"]
    for v in violations:
        if v.get("impact") not in BLOCKING:
            targets = [", ".join(node["target"]) for node in v["nodes"][:3]]
            print(f"{label}: {v['impact']} {v['id']}: {v['help']} at {targets}")
    return [v for v in violations if v.get("impact") in BLOCKING]


def describe(label: str, violations: list[dict[str, Any]]) -> list[str]:
    lines = []
    for v in violations:
        for node in v["nodes"][:5]:
            lines.append(
                f"{label}: {v['impact']} {v['id']} ({v['help']}) at {node['target']}: {node['html'][:160]}"
            )
    return lines


async def sign_in_by_mouse(page: Any, base: str, user: str, password: str, project: str) -> None:
    await page.goto(f"{base}/login")
    await page.fill("#user", user)
    await page.fill("#password", password)
    await page.fill("#project", project)
    await page.click("button[type=submit]")
    await page.wait_for_url(f"{base}/overview")


async def test_every_page_has_no_serious_or_critical_violations(cloud: Cloud, admin: Client) -> None:
    why = _why_not()
    if why:
        pytest.skip(why)
    from playwright.async_api import async_playwright

    someone, _ = await person(admin)
    image, flavor = await image_and_flavor(admin)
    pages = dashboard_pages(cloud)
    base = f"{cloud.url}/dashboard"
    problems: list[str] = []
    checked: list[str] = []
    unchecked: list[str] = []

    async with (
        _client_of(cloud, someone) as member,
        async_playwright() as pw,
    ):
        resources = Resources(member, image, flavor)
        # A server and a volume beside it, so that the lists show rows and their forms.
        await resources.fill("{server_id}/{volume_id}")
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            anonymous = await browser.new_page()
            await anonymous.goto(f"{base}/login")
            problems += describe("login", await axe_violations(anonymous, "login"))
            checked.append("login")
            # The form again, refused, with the message and what was typed.
            await anonymous.fill("#user", someone.name)
            await anonymous.fill("#password", "wrong")
            await anonymous.fill("#project", someone.project)
            await anonymous.click("button[type=submit]")
            await anonymous.wait_for_selector("#login-error")
            problems += describe("login (refused)", await axe_violations(anonymous, "login (refused)"))
            checked.append("login (refused)")
            await anonymous.close()

            page = await browser.new_page(viewport={"width": 1280, "height": 860})
            page.set_default_timeout(15_000)
            await sign_in_by_mouse(page, base, someone.name, someone.password, someone.project)
            refused: list[tuple[str, str]] = []
            for name, template in pages:
                path = await resources.fill(template.removeprefix("/dashboard"))
                if path is None:
                    unchecked.append(f"{name} ({template}): no id to fill it with")
                    continue
                answer = await page.goto(f"{base}{path}")
                assert answer is not None
                if answer.status == 403:
                    refused.append((name, path))
                    continue
                assert answer.status == 200, (name, path, answer.status)
                problems += describe(name, await axe_violations(page, name))
                checked.append(name)

            # The launch form refused: the API's message beside the field it names.
            await page.goto(f"{base}/servers/new")
            await page.fill("#name", "")  # the API says a name is needed
            await page.click("#launch-submit")
            await page.wait_for_selector("[aria-invalid=true], #form-error")
            problems += describe("launch (refused)", await axe_violations(page, "launch (refused)"))
            checked.append("launch (refused)")

            if refused:
                settings = cloud.settings
                admin_page = await browser.new_page(viewport={"width": 1280, "height": 860})
                admin_page.set_default_timeout(15_000)
                await sign_in_by_mouse(
                    admin_page, base, settings.admin_user, settings.admin_password, settings.admin_project
                )
                for name, path in refused:
                    answer = await admin_page.goto(f"{base}{path}")
                    assert answer is not None and answer.status == 200, (name, path)
                    problems += describe(f"{name} (admin)", await axe_violations(admin_page, name))
                    checked.append(f"{name} (admin)")
        finally:
            await browser.close()
    print(f"\naxe-core checked: {', '.join(checked)}")
    if unchecked:
        print(f"not checked: {'; '.join(unchecked)}")
    assert {"login", "overview", "servers", "launch", "server", "volumes", "fleet (admin)"} <= set(checked)
    assert not problems, "\n".join(problems)


def _client_of(cloud: Cloud, someone: Person) -> Client:
    return Client(
        f"{cloud.settings.gateway_url}/identity/v3",
        username=someone.name,
        password=someone.password,
        project_name=someone.project,
    )


#: The focused element's indicator: the outline's or the box-shadow's colour and width, and the
#: colour behind the element (the first opaque background among it and its ancestors).
FOCUS_STYLE = """() => {
  const el = document.activeElement;
  if (!el || el === document.body) return null;
  const style = getComputedStyle(el);
  let behind = "rgb(255, 255, 255)";
  for (let node = el.parentElement; node; node = node.parentElement) {
    const bg = getComputedStyle(node).backgroundColor;
    if (bg && bg !== "transparent" && !bg.startsWith("rgba(0, 0, 0, 0")) { behind = bg; break; }
  }
  const box = el.getBoundingClientRect();
  return {
    tag: el.tagName.toLowerCase(), id: el.id,
    name: el.getAttribute("name") || el.textContent.trim().slice(0, 30),
    outlineStyle: style.outlineStyle, outlineWidth: parseFloat(style.outlineWidth) || 0,
    outlineColor: style.outlineColor, boxShadow: style.boxShadow, behind: behind,
    visible: box.width > 0 && box.height > 0 && box.right > 0 && box.bottom > 0
      && box.left < innerWidth && box.top < innerHeight,
  };
}"""


def _rgb(text: str) -> tuple[float, float, float]:
    parts = [float(x) for x in re.findall(r"[\d.]+", text)[:3]]
    assert len(parts) == 3, text
    return parts[0], parts[1], parts[2]


def contrast(a: str, b: str) -> float:
    """WCAG's contrast ratio of two CSS rgb() colours."""

    def luminance(rgb: tuple[float, float, float]) -> float:
        linear = [c / 255 / 12.92 if c / 255 <= 0.04045 else ((c / 255 + 0.055) / 1.055) ** 2.4 for c in rgb]
        return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]

    high, low = sorted((luminance(_rgb(a)), luminance(_rgb(b))), reverse=True)
    return (high + 0.05) / (low + 0.05)


def focus_problem(style: dict[str, Any]) -> str | None:
    """Why the focus on this element is not visible enough, or None."""
    who = f"<{style['tag']} id={style['id']!r} {style['name']!r}>"
    if not style["visible"]:
        return f"{who} has the focus but is off screen"
    if style["outlineStyle"] != "none" and style["outlineWidth"] >= 2:
        ratio = contrast(style["outlineColor"], style["behind"])
        return None if ratio >= 3 else f"{who}: focus outline contrast {ratio:.2f}:1 (< 3:1)"
    if style["boxShadow"] not in ("", "none"):
        return None
    return f"{who} shows no focus indicator"


async def tab_to(page: Any, selector: str, problems: list[str]) -> None:
    """Press Tab until `selector` has the focus, checking each focus stop on the way."""
    for _ in range(MAX_TABS):
        await page.keyboard.press("Tab")
        style = await page.evaluate(FOCUS_STYLE)
        if style is not None:
            problem = focus_problem(style)
            if problem:
                problems.append(problem)
        if await page.evaluate("(s) => document.activeElement.matches(s)", selector):
            return
    raise AssertionError(f"{selector} not reached with {MAX_TABS} Tabs")


async def test_login_and_launch_forms_work_with_the_keyboard_alone(cloud: Cloud, admin: Client) -> None:
    why = _why_not()
    if why:
        pytest.skip(why)
    from playwright.async_api import async_playwright, expect

    someone, _ = await person(admin)
    image, flavor = await image_and_flavor(admin)
    base = f"{cloud.url}/dashboard"
    problems: list[str] = []
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = await browser.new_page(viewport={"width": 1280, "height": 860})
            page.set_default_timeout(15_000)
            expect.set_options(timeout=15_000)

            await page.goto(f"{base}/login")
            await tab_to(page, "#user", problems)
            await page.keyboard.type(someone.name)
            await tab_to(page, "#password", problems)
            await page.keyboard.type(someone.password)
            await tab_to(page, "#project", problems)
            await page.keyboard.type(someone.project)
            await page.keyboard.press("Enter")
            await expect(page).to_have_url(f"{base}/overview")

            # From the overview to the launch form by links alone.
            await tab_to(page, "nav a[href$='/servers']", problems)
            await page.keyboard.press("Enter")
            await expect(page).to_have_url(f"{base}/servers")
            await tab_to(page, "#launch", problems)
            await page.keyboard.press("Enter")
            await expect(page).to_have_url(f"{base}/servers/new")

            await tab_to(page, "#name", problems)
            await page.keyboard.type("typed-1")
            for field, wanted in (("#image", image), ("#flavor", flavor)):
                await tab_to(page, field, problems)
                await _choose_by_keys(page, field, wanted)
            await tab_to(page, "#launch-submit", problems)
            await page.keyboard.press("Enter")
            await expect(page.locator("h1")).to_have_text("typed-1")
            await expect(page.locator("#server-status")).to_have_text("ACTIVE", timeout=20_000)
        finally:
            await browser.close()
    assert not problems, "\n".join(dict.fromkeys(problems))


async def _choose_by_keys(page: Any, selector: str, value: str) -> None:
    """Move a focused <select> to `value` with ArrowDown/ArrowUp, as a keyboard user does."""
    options: list[str] = await page.evaluate(
        "(s) => [...document.querySelector(s).options].map((o) => o.value)", selector
    )
    assert value in options, (selector, value, options)
    current = options.index(await page.evaluate("(s) => document.querySelector(s).value", selector))
    target = options.index(value)
    key = "ArrowDown" if target > current else "ArrowUp"
    for _ in range(abs(target - current)):
        await page.keyboard.press(key)
    assert await page.evaluate("(s) => document.querySelector(s).value", selector) == value
