"""The dashboard's way into the cloud: the gateway's public HTTP APIs, with the viewer's token.

Every page goes through here, so the dashboard sees and does exactly what the user's roles
allow any client to. A refused call raises `ApiError` carrying the status, the service's own
message, the request id and, when the message names one, the field it is about, so that a page
can show the message beside that field (4xx) or the request id (5xx).
"""

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import aiohttp
import orjson

#: The compute microversion the dashboard speaks: the newest the gateway knows (`networks` is
#: required on create, as the launch form always sends it).
COMPUTE_VERSION = "compute 2.37"
#: The field an `Invalid` names in its message ("Invalid input for field 'server.name': ...").
_FIELD = re.compile(r"field '([^']+)'")


class ApiError(Exception):
    """A call the API refused: its status, its message, its request id, the field it names."""

    def __init__(self, status: int, message: str, request_id: str | None) -> None:
        super().__init__(f"HTTP {status}: {message} (request {request_id})")
        self.status, self.message, self.request_id = status, message, request_id
        found = _FIELD.search(message)
        self.field: str | None = found.group(1) if found else None

    @property
    def is_client_error(self) -> bool:
        return 400 <= self.status < 500


def error_message(body: Any) -> str:
    """The message out of any OpenStack service's error body (Keystone, Nova, Neutron, Cinder,
    Glance, Designate each wrap it differently)."""
    if isinstance(body, dict):
        for value in body.values():
            if isinstance(value, dict) and "message" in value:
                return str(value["message"])
        if "message" in body:
            return str(body["message"])
    if isinstance(body, bytes | str):
        text = body.decode(errors="replace") if isinstance(body, bytes) else body
        return text.strip()[:500] or "no message"
    return str(body)


@dataclass(frozen=True, slots=True)
class Project:
    id: str
    name: str


@dataclass(frozen=True, slots=True)
class Token:
    """A token as Identity issued it. Kept only in the server-side session: the id never goes
    into a page, a cookie or a script."""

    id: str
    user_id: str
    user_name: str
    domain_name: str
    project: Project
    roles: tuple[str, ...]
    expires_at: float
    catalog: tuple[dict[str, Any], ...] = field(repr=False)

    @property
    def is_admin(self) -> bool:
        return "admin" in self.roles

    @property
    def is_reader(self) -> bool:
        """Reads only: `reader` and nothing that may write."""
        return not (set(self.roles) - {"reader"})

    @classmethod
    def from_body(cls, token_id: str, body: dict[str, Any]) -> "Token":
        t = body["token"]
        project = t.get("project") or {}
        expires = datetime.fromisoformat(t["expires_at"].replace("Z", "+00:00")).timestamp()
        return cls(
            id=token_id,
            user_id=t["user"]["id"],
            user_name=t["user"]["name"],
            domain_name=(t["user"].get("domain") or {}).get("name", ""),
            project=Project(id=project.get("id", ""), name=project.get("name", "")),
            roles=tuple(r["name"] for r in t.get("roles", ())),
            expires_at=expires,
            catalog=tuple(t.get("catalog", ())),
        )


class Identity:
    """Keystone v3's token calls, which need no token of the dashboard's own."""

    def __init__(self, http: aiohttp.ClientSession, url: str) -> None:
        self.http, self.url = http, url.rstrip("/")

    async def password(self, user: str, password: str, project: str, domain: str) -> Token:
        """A token scoped to `project` (by name, in `domain`) for `user` of `domain`."""
        auth = {
            "identity": {
                "methods": ["password"],
                "password": {"user": {"name": user, "domain": {"name": domain}, "password": password}},
            },
            "scope": {"project": {"name": project, "domain": {"name": domain}}},
        }
        return await self._issue({"auth": auth})

    async def rescope(self, token: str, project_id: str) -> Token:
        """A new token for another of the user's projects, from the current one."""
        auth = {
            "identity": {"methods": ["token"], "token": {"id": token}},
            "scope": {"project": {"id": project_id}},
        }
        return await self._issue({"auth": auth})

    async def projects(self, token: str) -> list[Project]:
        body = await _call(self.http, "GET", f"{self.url}/auth/projects", token)
        found = [Project(id=p["id"], name=p["name"]) for p in body["projects"] if p.get("enabled", True)]
        return sorted(found, key=lambda p: p.name)

    async def revoke(self, token: str) -> None:
        """Revoke `token` with itself: Keystone lets a token revoke itself."""
        await _call(self.http, "DELETE", f"{self.url}/auth/tokens", token, headers={"X-Subject-Token": token})

    async def _issue(self, body: dict[str, Any]) -> Token:
        async with self.http.post(f"{self.url}/auth/tokens", data=orjson.dumps(body), headers=_JSON) as resp:
            got = await _body(resp)
            if resp.status != 201:
                raise ApiError(resp.status, error_message(got), resp.headers.get("x-openstack-request-id"))
            return Token.from_body(resp.headers["X-Subject-Token"], got)


_JSON = {"Content-Type": "application/json"}


class Cloud:
    """The APIs, as the signed-in user, found through the catalog of their token."""

    def __init__(self, http: aiohttp.ClientSession, token: Token) -> None:
        self.http, self.token = http, token

    def endpoint(self, service_type: str) -> str:
        for service in self.token.catalog:
            if service["type"] == service_type:
                for e in service["endpoints"]:
                    if e["interface"] == "public":
                        return str(e["url"]).rstrip("/")
        raise ApiError(503, f"the catalog has no public {service_type} endpoint", None)

    def has(self, service_type: str) -> bool:
        return any(s["type"] == service_type for s in self.token.catalog)

    async def call(
        self,
        method: str,
        service_type: str,
        path: str,
        json: Any = None,
        *,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Any:
        """The parsed body of one call; ApiError for any status of 400 or more."""
        url = self.endpoint(service_type) + path
        sent = dict(headers or {})
        if service_type == "compute":
            sent.setdefault("OpenStack-API-Version", COMPUTE_VERSION)
        return await _call(self.http, method, url, self.token.id, json=json, params=params, headers=sent)

    async def get(self, service_type: str, path: str, **params: str) -> Any:
        return await self.call("GET", service_type, path, params=params or None)

    async def compute(self, method: str, path: str, json: Any = None) -> Any:
        return await self.call(method, "compute", path, json)


async def _call(
    http: aiohttp.ClientSession,
    method: str,
    url: str,
    token: str,
    *,
    json: Any = None,
    params: Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
) -> Any:
    sent = {"X-Auth-Token": token, **(headers or {})}
    data = None
    if json is not None:
        data = orjson.dumps(json)
        sent["Content-Type"] = "application/json"
    async with http.request(method, url, data=data, params=params, headers=sent) as resp:
        body = await _body(resp)
        if resp.status >= 400:
            raise ApiError(resp.status, error_message(body), resp.headers.get("x-openstack-request-id"))
        return body


async def _body(resp: aiohttp.ClientResponse) -> Any:
    raw = await resp.read()
    if raw and resp.content_type == "application/json":
        return orjson.loads(raw)
    return raw


def iso(epoch_s: float) -> str:
    """A `changes-since` time as Nova takes it."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch_s)) + f".{int(epoch_s % 1 * 1e6):06d}Z"
