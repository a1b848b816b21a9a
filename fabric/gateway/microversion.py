"""Compute microversions: which one a request asked for, and the echo every response carries.

We serve 2.1 to 2.37. 2.37 is the first at which `server create --nic none` works (the CLI
refuses it below), and every response shape from 2.2 to 2.37 is one we produce: keypair `type`
(2.2), the extended server attributes (2.3), `locked` (2.9), `host_status` (2.16),
`description` (2.19), `tags` (2.26), hypervisor `cpu_info` as an object (2.28), `networks`
required on create (2.37). A request without a version gets 2.1, as Nova gives; `latest` gets
2.37; anything outside the range gets 406, and a malformed version 400.
"""

import re

from aiohttp import web

from fabric.gateway.http import Handler
from protocol.errors import Invalid

Version = tuple[int, int]
MIN_VERSION: Version = (2, 1)
MAX_VERSION: Version = (2, 37)
COMPUTE_VERSION = web.RequestKey("fabric.compute_version", tuple)
VERSION_RE = re.compile(r"^(\d+)\.(\d+)$")


def text(v: Version) -> str:
    return f"{v[0]}.{v[1]}"


def asked(request: web.Request) -> Version:
    raw = request.headers.get("X-OpenStack-Nova-API-Version")
    header = request.headers.get("OpenStack-API-Version", "")
    if header.lower().startswith("compute "):
        raw = header.split(None, 1)[1].strip()
    if raw is None:
        return MIN_VERSION
    if raw.lower() == "latest":
        return MAX_VERSION
    match = VERSION_RE.match(raw.strip())
    if match is None:
        raise Invalid("OpenStack-API-Version", f"invalid API version request {raw[:20]!r}")
    version = (int(match[1]), int(match[2]))
    if version == (2, 0):
        return MIN_VERSION
    if not MIN_VERSION <= version <= MAX_VERSION:
        raise web.HTTPNotAcceptable(
            reason=f"Version {raw[:20]} is not supported by the API. "
            f"Minimum is {text(MIN_VERSION)} and maximum is {text(MAX_VERSION)}."
        )
    return version


@web.middleware
async def negotiate(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path.startswith("/compute/"):
        request[COMPUTE_VERSION] = asked(request)
    return await handler(request)


def version_of(request: web.Request) -> Version:
    v: Version = request.get(COMPUTE_VERSION, MIN_VERSION)
    return v


def echo(request: web.Request, response: web.StreamResponse) -> None:
    """Nova's headers on every compute response, errors included."""
    v = request.get(COMPUTE_VERSION)
    if v is not None and not response.prepared:
        response.headers["OpenStack-API-Version"] = f"compute {text(v)}"
        response.headers["X-OpenStack-Nova-API-Version"] = text(v)
        response.headers["Vary"] = "OpenStack-API-Version, X-OpenStack-Nova-API-Version"
