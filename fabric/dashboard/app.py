"""The dashboard as an aiohttp sub-application, mounted by the gateway at `/dashboard`.

One middleware does what every request needs: find the session from its cookie, refuse a
state-changing request without the session's CSRF token (403), send a visitor who is not
signed in to the login page, and turn a refused API call into a page: a 401 (the token expired
or was revoked elsewhere) ends the session, anything else shows the API's message.
"""

import logging
from pathlib import Path

import aiohttp
import aiohttp_jinja2
from aiohttp import web

from fabric.bus import Bus
from fabric.config import Settings
from fabric.dashboard import csrf
from fabric.dashboard.api import ApiError
from fabric.dashboard.live import LIVE, LiveHub, events
from fabric.dashboard.page import (
    CONFIG,
    HTTP,
    PREFIX,
    SESSION,
    SESSIONS,
    Config,
    Handler,
    Templates,
    error_page,
    redirect,
    render,
    session_of,
)
from fabric.dashboard.pages import (
    auth,
    dns,
    fleet,
    floating_ips,
    images,
    networks,
    overview,
    routers,
    security_groups,
    servers,
    topology,
    volumes,
)
from fabric.dashboard.sessions import SessionStore

log = logging.getLogger("fabric.dashboard")

HERE = Path(__file__).parent
#: Routes a visitor who is not signed in may reach.
PUBLIC = frozenset({"login", "login-post", "static"})
#: Calls to the gateway from a page: a page that waits longer than this shows an error.
API_TIMEOUT_S = 30.0


@web.middleware
async def dashboard_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    session = request.app[SESSIONS].get(request.cookies.get("fabric_dashboard"))
    if session is not None:
        request[SESSION] = session
    route = request.match_info.route.name or ""
    try:
        await csrf.check(request, session)
    except csrf.CsrfRefused:
        return render(request, "forbidden.html", {}, status=403)
    if route not in PUBLIC and (session is None or not session.is_signed_in):
        if route == "events":
            return web.Response(status=401, text="sign in first")
        return redirect("/login")
    try:
        return await handler(request)
    except ApiError as exc:
        current = session_of(request)
        if exc.status == 401 and current is not None and current.token is not None:
            request.app[SESSIONS].drop(current.id)
            request.app[LIVE].session_ended(current.id)
            return redirect("/login?expired=1")
        return error_page(request, exc)
    except web.HTTPException as exc:  # answered here: the gateway's middleware would make it JSON
        return web.Response(status=exc.status, text=exc.text or exc.reason, headers=exc.headers)


async def _start(app: web.Application) -> None:
    timeout = aiohttp.ClientTimeout(total=API_TIMEOUT_S)
    app[HTTP] = aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=200))
    await app[LIVE].start(app[HTTP])


async def _shutdown(app: web.Application) -> None:
    """Before the server waits for open requests: end the live streams, which never end alone."""
    app[LIVE].close_all()


async def _cleanup(app: web.Application) -> None:
    await app[LIVE].stop()
    await app[HTTP].close()


async def home(request: web.Request) -> web.Response:
    return redirect("/overview")


def build(bus: Bus | None, settings: Settings) -> web.Application:
    """The dashboard app; `bus` feeds its live updates (None: pages only, nothing live)."""
    app = web.Application(middlewares=[dashboard_middleware])
    app[SESSIONS] = SessionStore()
    app[CONFIG] = Config(public_url=settings.public_url.rstrip("/"))
    app[LIVE] = LiveHub(bus, app[SESSIONS])
    templates = Templates(str(HERE / "templates"))
    templates.globals["prefix"] = PREFIX
    app[aiohttp_jinja2.APP_KEY] = templates
    app.on_startup.append(_start)
    app.on_shutdown.append(_shutdown)
    app.on_cleanup.append(_cleanup)
    app.router.add_static("/static", HERE / "static", name="static")
    app.router.add_get("", home, name="home")
    app.router.add_get("/", home, name="home-slash")
    app.router.add_get("/events", events, name="events")
    auth.add_routes(app)
    overview.add_routes(app)
    servers.add_routes(app)
    volumes.add_routes(app)
    networks.add_routes(app)
    routers.add_routes(app)
    floating_ips.add_routes(app)
    security_groups.add_routes(app)
    topology.add_routes(app)
    images.add_routes(app)
    dns.add_routes(app)
    fleet.add_routes(app)
    return app
