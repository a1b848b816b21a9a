"""A browser without a browser for the dashboard's tests: an aiohttp session with a cookie jar
that follows no redirect by itself, reads the CSRF token out of each page's forms, and signs in
through the login form like a person would."""

import asyncio
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from fabric.client import Client
from fabric.compose import Cloud
from fabric.dashboard.page import SESSIONS
from fabric.dashboard.sessions import SessionStore

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
#: Debian's chromium, which the browser tests drive through Playwright (whose own browser
#: downloads are not used).
CHROMIUM = "/usr/bin/chromium"
TIMEOUT_MS = 15_000


def why_no_browser() -> str | None:
    """Why the browser tests cannot run here, or None."""
    if not Path(CHROMIUM).exists():
        return f"{CHROMIUM} is missing (scripts/setup.sh installs Debian's chromium)"
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        return "the playwright package is missing (pip install -e '.[test]')"
    return None


@asynccontextmanager
async def browser_page() -> AsyncIterator[tuple[Any, Any, list[str]]]:
    """(the browser, a page of the tests' size and time limits, the script errors the page
    reports), closed afterwards whatever happened."""
    from playwright.async_api import async_playwright, expect

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = await browser.new_page(viewport={"width": 1280, "height": 860})
            page.set_default_timeout(TIMEOUT_MS)
            expect.set_options(timeout=TIMEOUT_MS)
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            yield browser, page, errors
        finally:
            await browser.close()


@dataclass
class Page:
    status: int
    text: str
    location: str | None
    headers: Any

    @property
    def csrf(self) -> str:
        found = CSRF.search(self.text)
        assert found, f"no CSRF token in the page: {self.text[:300]}"
        return found.group(1)


class WebUser:
    """One person's browser session against the dashboard of `url`."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")
        self.http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        self.csrf = ""

    async def close(self) -> None:
        await self.http.close()

    async def __aenter__(self) -> "WebUser":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def get(self, path: str) -> Page:
        async with self.http.get(f"{self.url}/dashboard{path}", allow_redirects=False) as resp:
            page = Page(resp.status, await resp.text(), resp.headers.get("Location"), resp.headers)
        if page.status == 200 and CSRF.search(page.text):
            self.csrf = page.csrf
        return page

    async def post(
        self, path: str, data: dict[str, Any] | list[tuple[str, str]], *, csrf: bool = True
    ) -> Page:
        fields = list(data.items()) if isinstance(data, dict) else list(data)
        if csrf:
            fields.append(("csrf_token", self.csrf))
        async with self.http.post(f"{self.url}/dashboard{path}", data=fields, allow_redirects=False) as resp:
            page = Page(resp.status, await resp.text(), resp.headers.get("Location"), resp.headers)
        if page.status == 200 and CSRF.search(page.text):
            self.csrf = page.csrf
        return page

    async def login(self, user: str, password: str, project: str) -> Page:
        await self.get("/login")
        page = await self.post("/login", {"user": user, "password": password, "project": project})
        assert page.status == 303 and page.location == "/dashboard/overview", (page.status, page.text[:500])
        await self.get("/overview")
        return page

    def cookie(self) -> str | None:
        for cookie in self.http.cookie_jar:
            if cookie.key == "fabric_dashboard":
                return cookie.value
        return None


def sessions_of(cloud: Cloud) -> SessionStore:
    """The dashboard's session store in the cloud's gateway (tests look at tokens in it)."""
    assert cloud.gateway is not None
    for resource in cloud.gateway.app.router.resources():
        sub = getattr(resource, "_app", None)
        if sub is not None and SESSIONS in sub:
            store: SessionStore = sub[SESSIONS]
            return store
    raise LookupError("no dashboard mounted")


async def eventually(check: Callable[[], bool], *, timeout_s: float = 15.0) -> bool:
    """Whether `check()` came true within `timeout_s` (asked every 50 ms)."""
    deadline = time.monotonic() + timeout_s
    while True:
        if check():
            return True
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.05)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@dataclass
class Person:
    user_id: str
    name: str
    password: str
    project_id: str
    project: str


async def person(admin: Client, role: str = "member", *, projects: int = 1) -> tuple[Person, list[str]]:
    """A fresh user with `role` on `projects` fresh projects; also the ids of those projects."""
    made = [await admin.identity.create_project(unique("dash")) for _ in range(projects)]
    password = uuid.uuid4().hex
    user = await admin.identity.create_user(unique("dash-user"), password=password)
    granted = await admin.identity.role(role)
    for project in made:
        await admin.identity.grant(granted.id, user.id, project_id=project.id)
    return Person(user.id, user.name, password, made[0].id, made[0].name), [p.id for p in made]


async def image_and_flavor(admin: Client, *, vcpus: int = 1, ram: int = 256) -> tuple[str, str]:
    """A small public image with bytes and a public flavor, made by the admin."""
    image = await admin.image.create(unique("dash-img"), visibility="public")
    await admin.image.upload(image["id"], b"\0" * 4096)
    flavor = await admin.compute.create_flavor(unique("dash-flv"), vcpus=vcpus, ram=ram, disk=1)
    return str(image["id"]), str(flavor["id"])


async def external_network(admin: Client, cidr: str) -> tuple[str, str]:
    """An external network with a subnet of `cidr`, made by the admin: (its id, its name)."""
    url = admin.endpoint("network")
    name = unique("dash-ext")
    _, _, made = await admin.request(
        "POST", f"{url}/v2.0/networks", {"network": {"name": name, "router:external": True}}
    )
    network_id = str(made["network"]["id"])
    subnet = {"network_id": network_id, "cidr": cidr, "ip_version": 4, "enable_dhcp": False}
    await admin.request("POST", f"{url}/v2.0/subnets", {"subnet": subnet})
    return network_id, name
