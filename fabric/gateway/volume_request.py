"""What every Block Storage route uses: the project in the path, ids, and numbers, booleans and
pages as Cinder takes them. Every refusal is an `Invalid` naming the field (400) or, for an id
in the path that cannot exist, a `NotFound` (404)."""

import re
from typing import Any

from aiohttp import web

from fabric.gateway.context import SETTINGS, authenticated
from fabric.gateway.http import query_bool, query_str
from fabric.gateway.volume_views import Links
from protocol.envelope import Context
from protocol.errors import Invalid, NotFound

ROOT = "/volume/v3/{project_id}"
UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$")
#: The largest volume this API takes, in GiB (the service's own bound, `SizeGb`).
MAX_SIZE_GB = 2**20
#: Cinder's `osapi_max_limit`: a page never holds more.
MAX_PAGE = 1000
TRUE_WORDS = frozenset({"1", "t", "true", "on", "y", "yes"})
FALSE_WORDS = frozenset({"0", "f", "false", "off", "n", "no"})


def scoped(request: web.Request) -> Context:
    """The caller's context, once the project in the path is the token's (400 otherwise)."""
    ctx = authenticated(request)
    if request.match_info["project_id"] != ctx.project_id:
        raise Invalid("project_id", "Malformed request url: the project in the path is not the token's")
    return ctx


def links_of(request: web.Request, ctx: Context) -> Links:
    return Links(request.app[SETTINGS].gateway_url, str(ctx.project_id))


def path_id(request: web.Request, name: str, kind: str) -> str:
    """An id from the path. Every id here is a UUID, so anything else cannot exist: 404 without
    asking the service (the CLI finds by name this way: `GET /volumes/NAME`, 404, then a list)."""
    value = request.match_info[name]
    if not UUID_RE.match(value):
        raise NotFound(kind, value[:64])
    return value


def body_uuid(value: str | None, field: str) -> str | None:
    if value is not None and not UUID_RE.match(value):
        raise Invalid(field, f"{value[:40]!r} is not a valid UUID")
    return value


def whole_number(value: Any, field: str, *, lo: int = 1, hi: int = MAX_SIZE_GB) -> int:
    """Cinder takes sizes as integers or strings of digits."""
    if type(value) is int:
        n = value
    elif isinstance(value, str) and re.fullmatch(r"[0-9]{1,12}", value):
        n = int(value)
    else:
        raise Invalid(field, f"must be a whole number, got {str(value)[:40]!r}")
    if not lo <= n <= hi:
        raise Invalid(field, f"must be a whole number from {lo} to {hi}, got {n}")
    return n


def strict_bool(value: Any, field: str) -> bool:
    """Cinder's strict booleans: true/false, or one of its words for them."""
    if type(value) is bool:
        return value
    if isinstance(value, str) and value.lower() in TRUE_WORDS | FALSE_WORDS:
        return value.lower() in TRUE_WORDS
    raise Invalid(field, f"expected a boolean, got {str(value)[:40]!r}")


def cleaned(value: str | None) -> str | None:
    """Cinder strips the spaces around names and descriptions."""
    return None if value is None else value.strip()


def wrapped(body: Any, key: str, *, also: frozenset[str] = frozenset()) -> dict[str, Any]:
    """`body[key]`, an object, from a body holding only it (and the optional keys `also`)."""
    if not isinstance(body, dict) or not isinstance(body.get(key), dict):
        raise Invalid(key, f"the body is {{{key!r}: {{...}}}}")
    for other in body:
        if other != key and other not in also:
            raise Invalid(str(other)[:64], "unknown field")
    return dict(body[key])


def page_query(request: web.Request, query: dict[str, Any]) -> bool:
    """Adds `limit` and `marker` to a list message's fields. False: `limit=0`, an empty page."""
    limit = query_str(request, "limit")
    if limit is not None:
        if not re.fullmatch(r"[0-9]{1,12}", limit):
            raise Invalid("limit", "a whole number, 0 or more")
        if int(limit) == 0:
            return False
        query["limit"] = min(int(limit), MAX_PAGE)
    marker = query_str(request, "marker")
    if marker is not None:
        query["marker"] = marker
    for unsupported in ("offset", "sort", "sort_key", "sort_dir"):
        if query_str(request, unsupported) not in (None, "", "0"):
            raise Invalid(unsupported, "not supported here: lists are newest first, paged with marker")
    return True


def all_tenants(request: web.Request, ctx: Context, query: dict[str, Any]) -> None:
    """Admins may list every project's (`all_tenants`) or one's (`project_id`); Cinder drops both
    from others' requests, and so do we."""
    if not ctx.is_admin:
        return
    wanted = query_bool(request, "all_tenants")
    if wanted is None and "all_tenants" in request.query:  # `?all_tenants` alone means yes
        wanted = True
    project = query_str(request, "project_id")
    if project is not None:
        query["project_id"] = project
    elif wanted:
        query["all_projects"] = True


def metadata_keys(value: dict[str, str] | None, field: str) -> dict[str, str] | None:
    """Cinder's metadata keys have 1 to 255 characters."""
    for key in value or {}:
        if not 1 <= len(key) <= 255:
            raise Invalid(f"{field}.{key[:64]}", "a metadata key has 1 to 255 characters")
    return value
