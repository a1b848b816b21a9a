"""What every DNS v2 route uses: Designate's error bodies, the caller with Designate's request
headers, ids in the path, JSON bodies, and list queries (filters and pages) as Designate takes
them.

Designate names every error by a `type` (`zone_not_found`, `invalid_uuid`, ...). Refusals made
here carry theirs (`DnsRefused`); errors from the service get one from their class and kind.
"""

import logging
import re
from dataclasses import dataclass, replace
from typing import Any, get_args, get_type_hints

import orjson
from aiohttp import web

from fabric.gateway.context import REQUEST_ID, SETTINGS, authenticated
from fabric.gateway.dns_views import Urls
from fabric.gateway.errors import status_of
from fabric.gateway.http import Handler, json_response
from protocol.envelope import Context
from protocol.errors import (
    Conflict,
    FabricError,
    Forbidden,
    Internal,
    Invalid,
    NotFound,
    QuotaExceeded,
    Timeout,
    Unauthorized,
    Unavailable,
)

log = logging.getLogger("fabric.gateway")

UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$")
#: `designate/conf/api.py`: `default_limit_v2` and `max_limit_v2`.
DEFAULT_LIMIT, MAX_LIMIT = 20, 1000
#: oslo's `bool_from_string`: these are true, anything else false.
TRUE_WORDS = frozenset({"1", "t", "true", "on", "y", "yes"})
#: Query parameters Designate reads into the request context before it looks at filters.
CONTEXT_PARAMS = frozenset({"all_projects", "all_tenants", "edit_managed_records"})
PAGING_PARAMS = frozenset({"limit", "marker", "sort_key", "sort_dir"})
HTTP_TYPES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    406: "unsupported_accept",
    413: "request_entity_too_large",
    415: "unsupported_content_type",
}


class DnsRefused(Invalid):
    """A 400 made by the gateway, with Designate's type for it (`invalid_uuid`, `bad_request`,
    `invalid_limit`...). It never crosses the bus."""

    def __init__(self, field: str, reason: str, error_type: str) -> None:
        super().__init__(field, reason)
        self.message = reason
        self.error_type = error_type


# --- errors ------------------------------------------------------------------------------------


def error_type(exc: FabricError) -> str:
    if isinstance(exc, DnsRefused):
        return exc.error_type
    kind = getattr(exc, "kind", "").lower().replace(" ", "_")
    if isinstance(exc, NotFound):
        return f"{kind}_not_found" if kind in ("zone", "recordset") else "not_found"
    if isinstance(exc, Conflict):
        return f"duplicate_{kind}" if kind in ("zone", "recordset") else "duplicate"
    if isinstance(exc, Invalid):
        return "marker_not_found" if exc.field == "marker" else "invalid_object"
    if isinstance(exc, QuotaExceeded):
        return "over_quota"
    if isinstance(exc, Forbidden):
        return "forbidden"
    if isinstance(exc, Timeout):
        return "timeout"
    if isinstance(exc, Unavailable):
        return "service_unavailable"
    return "unknown"


def error_response(request: web.Request, status: int, kind: str, message: str, **extra: Any) -> web.Response:
    body = {"code": status, "type": kind, "message": message, **extra, "request_id": request[REQUEST_ID]}
    return json_response(body, status=status)


@web.middleware
async def designate_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Errors under `/dns` in Designate's body. A 401 stays Keystone's (with its
    WWW-Authenticate), as keystonemiddleware answers it in front of Designate."""
    if request.path != "/dns" and not request.path.startswith("/dns/"):
        return await handler(request)
    try:
        return await handler(request)
    except Unauthorized:
        raise
    except FabricError as exc:
        extra: dict[str, Any] = {}
        if isinstance(exc, Invalid) and not isinstance(exc, DnsRefused):
            # Designate's schema errors list each bad field by its path; the client prints these.
            extra["errors"] = {"errors": [{"path": exc.field.split("."), "message": exc.reason}]}
        return error_response(request, status_of(exc), error_type(exc), exc.message, **extra)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return error_response(
            request, exc.status, HTTP_TYPES.get(exc.status, "unknown"), exc.reason or exc.text or ""
        )
    except Exception:
        log.exception("request failed", extra={"method": request.method, "path": request.path})
        rid = request[REQUEST_ID]
        return error_response(request, 500, "unknown", Internal(rid).message)


# --- the caller --------------------------------------------------------------------------------


def header_bool(request: web.Request, name: str) -> bool:
    value = request.headers.get(name)
    return value is not None and value.strip().lower() in TRUE_WORDS


@dataclass(frozen=True, slots=True)
class Caller:
    ctx: Context
    #: `X-Auth-All-Projects: True` (or `?all_projects=`, `?all_tenants=`), admins only.
    all_projects: bool


def caller(request: web.Request) -> Caller:
    """The token's context with Designate's headers applied. Each of them is an admin's (its
    policy rule in Designate is `admin`), so anyone else asking for one gets a 403.
    `X-Auth-Sudo-Project-ID` acts as that project; edit-managed and hard-delete are accepted
    from admins and change nothing (managed records stay the service's, a delete is complete)."""
    ctx = authenticated(request)
    sudo = request.headers.get("X-Auth-Sudo-Project-ID") or request.headers.get("X-Auth-Sudo-Tenant-ID")
    if sudo:
        if not ctx.is_admin:
            raise Forbidden("use_sudo")
        if len(sudo) > 64:
            raise DnsRefused(
                "X-Auth-Sudo-Project-ID", "a project id has at most 64 characters", "bad_request"
            )
        ctx = replace(ctx, project_id=sudo)
    all_projects = header_bool(request, "X-Auth-All-Projects")
    for name in ("all_projects", "all_tenants"):
        if name in request.query:
            all_projects = request.query[name].strip().lower() in TRUE_WORDS
    for wanted, rule in (
        (all_projects, "all_tenants"),
        (
            header_bool(request, "X-Designate-Edit-Managed-Records")
            or request.query.get("edit_managed_records", "").lower() in TRUE_WORDS,
            "edit_managed_records",
        ),
        (header_bool(request, "X-Designate-Hard-Delete"), "hard_delete"),
    ):
        if wanted and not ctx.is_admin:
            raise Forbidden(rule)
    return Caller(ctx, all_projects)


def urls_of(request: web.Request) -> Urls:
    return Urls(request.app[SETTINGS].gateway_url)


def path_uuid(request: web.Request, name: str) -> str:
    """Designate checks ids in the path are UUIDs before anything else (400 `invalid_uuid`)."""
    value = request.match_info[name]
    if not UUID_RE.match(value):
        raise DnsRefused(name, f"Invalid UUID {name}: {value[:64]}", "invalid_uuid")
    return value


async def read_object(request: web.Request) -> dict[str, Any]:
    """The JSON object in the body (413 beyond the gateway's body limit, raised by aiohttp)."""
    raw = await request.read()
    if not raw.strip():
        raise DnsRefused("body", "Request body is empty", "empty_request_body")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise DnsRefused("body", f"Invalid JSON body: {exc}", "invalid_json") from None
    if not isinstance(body, dict):
        raise Invalid("body", "expected an object")
    return body


def fixed_fields(body: dict[str, Any], fixed: frozenset[str]) -> None:
    """A field Designate shows but will not take in this request: 400 naming it."""
    for key in body:
        if key in fixed:
            raise Invalid(key, "cannot be changed")


# --- list queries ------------------------------------------------------------------------------


def sort_keys(message: type) -> tuple[str, ...]:
    """The sort keys a list message takes, from its `sort_key` Literal."""
    return tuple(get_args(get_type_hints(message)["sort_key"]))


def list_query(request: web.Request, accepted: frozenset[str], message: type) -> dict[str, str | int]:
    """The filters given (as strings) and the page (`limit`, `marker`, `sort_key`, `sort_dir`),
    checked as Designate checks them: a filter it does not know or one given twice is a 400."""
    query = request.query
    duplicate = sorted({k for k in query if len(query.getall(k)) > 1} - CONTEXT_PARAMS)
    if duplicate:
        raise DnsRefused(duplicate[0], f"Duplicate filters {', '.join(duplicate)}", "bad_request")
    invalid = sorted(k for k in query if k not in accepted | PAGING_PARAMS | CONTEXT_PARAMS)
    if invalid:
        raise DnsRefused(invalid[0], f"Invalid filters {', '.join(invalid)}", "bad_request")
    for name in query:
        if "\x00" in query[name]:
            raise DnsRefused(name, "NUL characters are not allowed", "bad_request")
    fields: dict[str, str | int] = {k: query[k] for k in accepted if k in query}
    limit = query.get("limit")
    if limit is None:
        fields["limit"] = DEFAULT_LIMIT
    elif limit.lower() == "max":
        fields["limit"] = MAX_LIMIT
    elif re.fullmatch(r"[0-9]{1,18}", limit) and int(limit) > 0:
        fields["limit"] = min(int(limit), MAX_LIMIT)
    else:
        raise DnsRefused("limit", f"limit should be an integer between 1 and {MAX_LIMIT}", "invalid_limit")
    if "marker" in query:
        fields["marker"] = query["marker"]
    sort_dir = query.get("sort_dir")
    if sort_dir is not None:
        if sort_dir not in ("asc", "desc"):
            raise DnsRefused(
                "sort_dir", "Unknown sort direction, must be 'desc' or 'asc'", "invalid_sort_dir"
            )
        fields["sort_dir"] = sort_dir
    sort_key = query.get("sort_key")
    if sort_key is not None:
        keys = sort_keys(message)
        if sort_key not in keys:
            raise DnsRefused("sort_key", f"sort key must be one of {list(keys)}", "invalid_sort_key")
        fields["sort_key"] = sort_key
    return fields


def ttl_filter(fields: dict[str, Any]) -> None:
    value = fields.get("ttl")
    if isinstance(value, str):
        if not re.fullmatch(r"[0-9]{1,10}", value):
            raise DnsRefused("ttl", "ttl is a whole number of seconds", "bad_request")
        fields["ttl"] = int(value)


def self_and_next(
    request: web.Request, urls: Urls, last_id: str | None, more: bool
) -> tuple[str, str | None]:
    """The page's own URL and, when there is more, the next one (the same query from after the
    last item). The context parameters are the caller's, not the page's, and are left out."""
    query = [(k, v) for k, v in request.query.items() if k not in CONTEXT_PARAMS]
    self_url = urls.page(request.path, query)
    if not more or last_id is None:
        return self_url, None
    rest = [(k, v) for k, v in query if k != "marker"] + [("marker", last_id)]
    return self_url, urls.page(request.path, rest)
