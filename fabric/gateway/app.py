"""The gateway application: one middleware, the service routes, health and metrics.

The middleware gives every request an id (`x-openstack-request-id`, also the request id of
every message and log line it causes), turns typed errors into the owning service's error body,
and counts requests by route and status. Nothing else wraps a request.
"""

import asyncio
import logging
import time
import uuid
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from fabric import metrics
from fabric.blobs import FilesystemStore
from fabric.bus import Bus
from fabric.config import Settings
from fabric.dashboard import app as dashboard
from fabric.gateway import (
    compute,
    compute_project,
    dns,
    hypervisors,
    identity,
    image,
    microversion,
    network,
    network_l3,
    security_groups,
    servers,
    volume,
    volume_attachments,
    volume_project,
    volume_snapshots,
)
from fabric.gateway.auth import Auth, service_context
from fabric.gateway.context import AUTH, BLOBS, BUS, REQUEST_ID, SETTINGS
from fabric.gateway.dns_request import designate_errors
from fabric.gateway.errors import error_body, status_of
from fabric.gateway.http import Handler, json_response
from fabric.logs import request_id_var
from protocol.errors import FabricError, Internal
from protocol.identity import QUEUE
from protocol.system import Ping

log = logging.getLogger("fabric.gateway")

MAX_BODY_BYTES = 1024 * 1024
#: Methods counted by name in metrics; anything else a client invents is "OTHER".
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


@web.middleware
async def gateway_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    rid = f"req-{uuid.uuid4()}"
    request[REQUEST_ID] = rid
    request_id_var.set(rid)
    started = time.perf_counter()
    try:
        response = await handler(request)
    except FabricError as exc:
        response = _error(request, status_of(exc), exc.message)
    except web.HTTPException as exc:  # no route, wrong method, body too large
        response = _error(request, exc.status, exc.reason or exc.text or "")
        for header in ("Allow",):
            if header in exc.headers:
                response.headers[header] = exc.headers[header]
    except Exception:
        log.exception("request failed", extra={"method": request.method, "path": request.path})
        response = _error(request, 500, Internal(rid).message)
    if not response.prepared:
        response.headers["x-openstack-request-id"] = rid
        microversion.echo(request, response)
        volume.echo(request, response)
    route = request.match_info.route.resource.canonical if request.match_info.route.resource else "unmatched"
    elapsed = time.perf_counter() - started
    method = request.method if request.method in KNOWN_METHODS else "OTHER"
    counted, timed = _route_metrics(route, method, response.status)
    counted.inc()
    timed.observe(elapsed)
    level = (
        logging.ERROR if response.status >= 500 else logging.INFO if response.status >= 400 else logging.DEBUG
    )
    if log.isEnabledFor(level):
        log.log(
            level,
            "request",
            extra={
                "method": request.method,
                "route": route,
                "status": response.status,
                "ms": round(elapsed * 1000, 2),
            },
        )
    return response


_metric_children: dict[tuple[str, str, int], tuple[Any, Any]] = {}


def _route_metrics(route: str, method: str, status: int) -> tuple[Any, Any]:
    """The request counter and latency histogram of one route, method and status. Found once:
    `labels()` costs as much as a small handler. Routes are the app's own, so this is bounded."""
    key = (route, method, status)
    children = _metric_children.get(key)
    if children is None:
        children = _metric_children[key] = (
            metrics.HTTP_REQUESTS.labels(route, method, str(status)),
            metrics.HTTP_SECONDS.labels(route, method),
        )
    return children


def _error(request: web.Request, status: int, message: str) -> web.Response:
    headers = {"WWW-Authenticate": 'Keystone uri="/identity"'} if status == 401 else None
    return json_response(error_body(request.path, status, message), status=status, headers=headers)


async def healthz(request: web.Request) -> web.Response:
    """200 when the bus is up and the identity service answers with its database reachable."""
    bus = request.app[BUS]
    checks = {"bus": "ok" if bus.is_connected else "down"}
    try:
        pong = await bus.call(QUEUE, Ping(), service_context(request[REQUEST_ID]), timeout_s=3)
        checks["identity"] = "ok"
        checks["database"] = "ok" if pong.database_ok else "down"
    except FabricError as exc:
        checks["identity"] = f"down: {exc.message}"
        checks["database"] = "unknown"
    healthy = all(v == "ok" for v in checks.values())
    return json_response(
        {"status": "ok" if healthy else "degraded", "checks": checks}, status=200 if healthy else 503
    )


async def metrics_endpoint(request: web.Request) -> web.Response:
    return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})


def build_app(bus: Bus, auth: Auth, settings: Settings) -> web.Application:
    app = web.Application(
        middlewares=[gateway_middleware, microversion.negotiate, volume.negotiate, designate_errors],
        client_max_size=MAX_BODY_BYTES,
    )
    app[BUS] = bus
    app[AUTH] = auth
    app[SETTINGS] = settings
    app[BLOBS] = FilesystemStore(settings.image_path)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics_endpoint)
    identity.add_routes(app)
    image.add_routes(app)
    compute.add_routes(app)
    servers.add_routes(app)
    volume_attachments.add_routes(app)
    hypervisors.add_routes(app)
    compute_project.add_routes(app)
    network.add_routes(app)
    network_l3.add_routes(app)
    security_groups.add_routes(app)
    volume.add_routes(app)
    volume_snapshots.add_routes(app)
    volume_project.add_routes(app)
    dns.add_routes(app)
    # The web dashboard: a client of the routes above, served from the same port.
    app.add_subapp("/dashboard", dashboard.build(bus, settings))
    return app


class Gateway:
    """The gateway as a server: start it on the configured port, stop it cleanly."""

    def __init__(self, bus: Bus, settings: Settings, *, reuse_port: bool = False) -> None:
        self.bus, self.settings, self.reuse_port = bus, settings, reuse_port
        self.auth = Auth(bus)
        self.app = build_app(bus, self.auth, settings)
        self._runner: web.AppRunner | None = None
        self.port = settings.gateway_port

    async def start(self) -> None:
        await self.auth.start()
        self._runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(
            self._runner, self.settings.gateway_host, self.settings.gateway_port, reuse_port=self.reuse_port
        )
        await site.start()
        server = site._server
        if (
            isinstance(server, asyncio.base_events.Server) and server.sockets
        ):  # port 0: learn the one the kernel chose
            self.port = server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        await self.auth.stop()
