"""Small pieces every route uses: JSON in and out, query parameters, typed app keys."""

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from urllib.parse import urlencode

import orjson
from aiohttp import web

from protocol.codec import decode
from protocol.errors import Invalid

T = TypeVar("T")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

TRUE = {"true", "1", "yes", "on"}
FALSE = {"false", "0", "no", "off"}


def json_response(data: Any, *, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        body=orjson.dumps(data), status=status, content_type="application/json", headers=headers
    )


def no_content(headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=204, headers=headers)


async def read_json(request: web.Request, cls: type[T], *, allow_extra: bool = True) -> T:
    """The body as `cls`; Invalid (400) names what is wrong."""
    return decode(cls, await read_json_value(request), allow_extra=allow_extra)


async def read_json_value(request: web.Request) -> Any:
    """The body as parsed JSON, for bodies whose keys are free-form (Glance's images). Size is
    bounded by the app's client_max_size (413 beyond it)."""
    raw = await request.read()
    if not raw:
        raise Invalid("body", "a JSON body is required")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise Invalid("body", f"malformed JSON: {exc}") from None


def next_links(request: web.Request, public_url: str, limit: int, marker: str) -> list[dict[str, str]]:
    """The `<plural>_links` of a page Nova and Neutron return: this request again, its filters
    kept (repeated ones too: `id=`, `fields=`), from after `marker`."""
    query = [(k, v) for k, v in request.query.items() if k not in ("limit", "marker")]
    query += [("limit", str(limit)), ("marker", marker)]
    return [{"rel": "next", "href": f"{public_url}{request.path}?{urlencode(query)}"}]


def query_bool(request: web.Request, name: str) -> bool | None:
    value = request.query.get(name)
    if value is None or value == "":
        return None
    lowered = value.lower()
    if lowered in TRUE:
        return True
    if lowered in FALSE:
        return False
    raise Invalid(name, f"expected a boolean, got {value[:40]!r}")


def query_str(request: web.Request, name: str) -> str | None:
    value = request.query.get(name)
    if value is not None and "\x00" in value:
        raise Invalid(name, "NUL characters are not allowed")
    return value
