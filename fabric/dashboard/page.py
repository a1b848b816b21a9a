"""What every page handler starts from: typed keys, the viewer's session and cloud, rendering
and redirects.

Redirects are answered, never raised: the gateway's outer middleware turns raised HTTP
exceptions into OpenStack-shaped JSON errors, which is right for the APIs and wrong for a page.
"""

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import aiohttp_jinja2
import jinja2
from aiohttp import web

from fabric.dashboard.api import ApiError, Cloud, Identity
from fabric.dashboard.sessions import COOKIE, Session, SessionStore

PREFIX = "/dashboard"
#: How long a session shows flavor and image names without asking again.
NAMES_TTL_S = 10.0

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class Config:
    #: Where the dashboard reaches the gateway's APIs when the cloud has no public URL: the
    #: address the serving gateway listens on (learnt from the first request's socket).
    public_url: str


SESSIONS = web.AppKey("dashboard.sessions", SessionStore)
HTTP = web.AppKey("dashboard.http", aiohttp.ClientSession)
CONFIG = web.AppKey("dashboard.config", Config)
SESSION = web.RequestKey("dashboard.session", object)


_DICT_ATTRIBUTES = frozenset(dir(dict))


class Templates(jinja2.Environment):
    """The pages' Jinja environment: HTML escaped, templates read once.

    Pages hand templates the APIs' JSON as it came, dicts. Jinja's `s.name` tries the attribute
    first and the key only after an AttributeError, which under load was the largest single
    cost of rendering a list; here a dict's key is looked up first. The result is the same:
    a dict's own methods (`.items`, `.get`) still win over a key of that name.
    """

    def __init__(self, folder: str) -> None:
        super().__init__(
            loader=jinja2.FileSystemLoader(folder),
            autoescape=jinja2.select_autoescape(("html",), default=True),
            auto_reload=False,
        )

    def getattr(self, obj: Any, attribute: str) -> Any:
        if type(obj) is dict and attribute not in _DICT_ATTRIBUTES:
            try:
                return obj[attribute]
            except KeyError:
                return self.undefined(obj=obj, name=attribute)
        return super().getattr(obj, attribute)


def session_of(request: web.Request) -> Session | None:
    found = request.get(SESSION)
    return found if isinstance(found, Session) else None


def signed_in(request: web.Request) -> Session:
    """The signed-in session (the middleware lets no other reach a page that is not public)."""
    session = session_of(request)
    assert session is not None and session.token is not None
    return session


def gateway_url(request: web.Request) -> str:
    configured = request.app[CONFIG].public_url
    if configured:
        return configured
    sock = request.transport.get_extra_info("sockname") if request.transport else None
    if isinstance(sock, tuple) and len(sock) >= 2:
        host = "127.0.0.1" if sock[0] in ("0.0.0.0", "::") else sock[0]
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{sock[1]}"
    return f"{request.scheme}://{request.host}"


def identity_of(request: web.Request) -> Identity:
    return Identity(request.app[HTTP], f"{gateway_url(request)}/identity/v3")


def cloud_of(request: web.Request) -> Cloud:
    session = signed_in(request)
    assert session.token is not None
    return Cloud(request.app[HTTP], session.token)


async def display_names(request: web.Request, cloud: Cloud) -> tuple[dict[str, str], dict[str, str]]:
    """Flavor and image names by id, kept in the session for NAMES_TTL_S: a list page then
    costs one API call instead of three (the names are for display only, so a few seconds'
    staleness costs nothing)."""
    session = signed_in(request)
    if session.names is not None and session.names[0] > time.monotonic():
        return session.names[1], session.names[2]
    flavors, images = await asyncio.gather(
        cloud.get("compute", "/flavors/detail", is_public="None"),
        cloud.get("image", "/v2/images", limit="1000"),
    )
    names = (
        {f["id"]: f["name"] for f in flavors["flavors"]},
        {i["id"]: i.get("name") or i["id"] for i in images["images"]},
    )
    session.names = (time.monotonic() + NAMES_TTL_S, *names)
    return names


def render(
    request: web.Request, template: str, context: dict[str, Any], *, status: int = 200
) -> web.Response:
    """`template` with `context` and what every page shows: who, which project, the switcher,
    the CSRF token for its forms, the messages left by the previous request."""
    session = session_of(request)
    token = session.token if session else None
    common = {
        "base": PREFIX,
        "session": session,
        "token": token,
        "csrf": session.csrf if session else "",
        "flashes": session.take_flashes() if session else [],
        "is_admin": bool(token and token.is_admin),
        "can_write": bool(token and not token.is_reader),
        "path": request.path,
    }
    response = aiohttp_jinja2.render_template(template, request, common | context, status=status)
    response.headers["Cache-Control"] = "no-store"
    return response


def redirect(path: str) -> web.Response:
    """303 See Other to a dashboard path: after a POST, the browser GETs the next page."""
    return web.Response(status=303, headers={"Location": f"{PREFIX}{path}"})


def set_cookie(request: web.Request, response: web.StreamResponse, session: Session) -> None:
    response.set_cookie(
        COOKIE, session.id, path=PREFIX, httponly=True, samesite="Strict", secure=request.secure
    )


def error_page(request: web.Request, exc: ApiError) -> web.Response:
    """A refused call: a 4xx in the API's words; a 5xx with its request id, which is what an
    operator needs to find it in the logs."""
    return render(request, "error.html", {"error": exc}, status=exc.status if exc.status >= 400 else 502)


def form_str(form: Any, name: str, limit: int = 4096) -> str:
    value = form.get(name, "")
    return value.strip()[:limit] if isinstance(value, str) else ""
