"""Typed app keys and the per-request context every route starts from."""

from aiohttp import web

from fabric.blobs import BlobStore
from fabric.bus import Bus
from fabric.config import Settings
from fabric.gateway.auth import Auth, context_for
from protocol.envelope import Context
from protocol.errors import Unauthorized

BUS = web.AppKey("bus", Bus)
AUTH = web.AppKey("auth", Auth)
SETTINGS = web.AppKey("settings", Settings)
BLOBS = web.AppKey("blobs", BlobStore)
REQUEST_ID = web.RequestKey("fabric.request_id", str)


def request_id(request: web.Request) -> str:
    return str(request[REQUEST_ID])


def authenticated(request: web.Request) -> Context:
    """The caller's context from a valid X-Auth-Token; Unauthorized (401) otherwise."""
    token = request.headers.get("X-Auth-Token")
    if not token:
        raise Unauthorized("No X-Auth-Token was given.")
    data = request.app[AUTH].check(token)
    return context_for(data, request_id(request))
