"""The async Python client: authenticate, read the catalog, call the APIs with typed results.

    async with Client.from_env() as cloud:              # OS_AUTH_URL, OS_USERNAME, ...
        project = await cloud.identity.create_project("demo")
        for p in await cloud.identity.list_projects():
            print(p.id, p.name)

It speaks the same OpenStack HTTP APIs as any other client (it is what the tests and the bench
harness use), follows the catalog to find each service, and raises `ApiError` with the status,
the service's message and the request id when a call fails. A token that expires or is revoked
mid-session is replaced once, transparently.
"""

import os
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

import aiohttp
import orjson

from fabric.api_error import ApiError as ApiError
from fabric.compute_client import ComputeApi, ImageApi
from fabric.compute_client import Server as Server
from fabric.compute_client import ServerFailed as ServerFailed
from fabric.config import Settings
from fabric.dns_client import DnsApi
from fabric.dns_client import DnsFailed as DnsFailed
from fabric.dns_client import Recordset as Recordset
from fabric.dns_client import Zone as Zone
from fabric.volume_client import Snapshot as Snapshot
from fabric.volume_client import Volume as Volume
from fabric.volume_client import VolumeApi
from fabric.volume_client import VolumeFailed as VolumeFailed


@dataclass(frozen=True, slots=True)
class Domain:
    id: str
    name: str
    description: str
    enabled: bool


@dataclass(frozen=True, slots=True)
class Project:
    id: str
    name: str
    domain_id: str
    description: str
    enabled: bool
    tags: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class User:
    id: str
    name: str
    domain_id: str
    enabled: bool
    default_project_id: str | None
    email: str | None


@dataclass(frozen=True, slots=True)
class Role:
    id: str
    name: str


@dataclass(frozen=True, slots=True)
class RoleAssignment:
    role_id: str
    user_id: str
    project_id: str | None
    domain_id: str | None
    role_name: str | None = None
    user_name: str | None = None
    project_name: str | None = None


@dataclass(frozen=True, slots=True)
class Token:
    id: str
    user_id: str
    user_name: str
    project_id: str | None
    domain_id: str | None
    roles: tuple[str, ...]
    expires_at: str
    audit_id: str
    catalog: tuple[dict[str, Any], ...]

    @classmethod
    def from_body(cls, token_id: str, body: dict[str, Any]) -> "Token":
        t = body["token"]
        return cls(
            id=token_id,
            user_id=t["user"]["id"],
            user_name=t["user"]["name"],
            project_id=t.get("project", {}).get("id"),
            domain_id=t.get("domain", {}).get("id"),
            roles=tuple(r["name"] for r in t.get("roles", ())),
            expires_at=t["expires_at"],
            audit_id=t["audit_ids"][0],
            catalog=tuple(t.get("catalog", ())),
        )


def _domain(d: dict[str, Any]) -> Domain:
    return Domain(id=d["id"], name=d["name"], description=d.get("description", ""), enabled=d["enabled"])


def _project(p: dict[str, Any]) -> Project:
    return Project(
        id=p["id"],
        name=p["name"],
        domain_id=p["domain_id"],
        description=p.get("description", ""),
        enabled=p["enabled"],
        tags=tuple(p.get("tags", ())),
    )


def _user(u: dict[str, Any]) -> User:
    return User(
        id=u["id"],
        name=u["name"],
        domain_id=u["domain_id"],
        enabled=u["enabled"],
        default_project_id=u.get("default_project_id"),
        email=u.get("email"),
    )


def _assignment(a: dict[str, Any]) -> RoleAssignment:
    scope = a["scope"]
    project = scope.get("project", {})
    return RoleAssignment(
        role_id=a["role"]["id"],
        user_id=a["user"]["id"],
        project_id=project.get("id"),
        domain_id=scope.get("domain", {}).get("id"),
        role_name=a["role"].get("name"),
        user_name=a["user"].get("name"),
        project_name=project.get("name"),
    )


def password_auth(
    username: str,
    password: str,
    *,
    user_domain: str = "Default",
    project: str | None = None,
    project_domain: str = "Default",
    domain: str | None = None,
) -> dict[str, Any]:
    """The Keystone v3 password authentication body, scoped to a project, a domain or nothing."""
    auth: dict[str, Any] = {
        "identity": {
            "methods": ["password"],
            "password": {"user": {"name": username, "domain": {"name": user_domain}, "password": password}},
        }
    }
    if project is not None:
        auth["scope"] = {"project": {"name": project, "domain": {"name": project_domain}}}
    elif domain is not None:
        auth["scope"] = {"domain": {"name": domain}}
    return {"auth": auth}


class Client:
    def __init__(
        self,
        auth_url: str,
        *,
        username: str,
        password: str,
        project_name: str | None = None,
        user_domain_name: str = "Default",
        project_domain_name: str = "Default",
        interface: str = "public",
        connections: int = 100,
    ) -> None:
        self.auth_url = auth_url.rstrip("/")
        self._auth_body = password_auth(
            username,
            password,
            user_domain=user_domain_name,
            project=project_name,
            project_domain=project_domain_name,
        )
        self.interface = interface
        self._connections = connections
        self._http: aiohttp.ClientSession | None = None
        self.token: Token | None = None
        self.identity = IdentityApi(self)
        self.compute = ComputeApi(self)
        self.image = ImageApi(self)
        self.volume = VolumeApi(self)
        self.dns = DnsApi(self)

    @classmethod
    def for_admin(cls, settings: Settings) -> "Client":
        """The bootstrap admin of the cloud these settings describe, through its gateway."""
        return cls(
            f"{settings.gateway_url}/identity/v3",
            username=settings.admin_user,
            password=settings.admin_password,
            project_name=settings.admin_project,
        )

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> "Client":
        """From the usual OS_* variables (an openrc file, sourced)."""
        return cls(
            env["OS_AUTH_URL"],
            username=env["OS_USERNAME"],
            password=env["OS_PASSWORD"],
            project_name=env.get("OS_PROJECT_NAME"),
            user_domain_name=env.get("OS_USER_DOMAIN_NAME", "Default"),
            project_domain_name=env.get("OS_PROJECT_DOMAIN_NAME", "Default"),
            interface=env.get("OS_INTERFACE", "public"),
        )

    async def __aenter__(self) -> Self:
        self._http = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self._connections),
            json_serialize=lambda o: orjson.dumps(o).decode(),
        )
        try:
            await self.authenticate()
        except BaseException:
            await self._http.close()
            raise
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._http is not None:
            await self._http.close()

    @property
    def http(self) -> aiohttp.ClientSession:
        assert self._http is not None, "use the client as `async with Client(...) as client`"
        return self._http

    async def authenticate(self) -> Token:
        status, headers, body = await self._send(
            "POST", f"{self.auth_url}/auth/tokens", self._auth_body, None
        )
        if status != 201:
            raise ApiError(status, _message(body), headers.get("x-openstack-request-id"))
        self.token = Token.from_body(headers["X-Subject-Token"], body)
        return self.token

    def endpoint(self, service_type: str) -> str:
        assert self.token is not None
        for service in self.token.catalog:
            if service["type"] == service_type:
                for e in service["endpoints"]:
                    if e["interface"] == self.interface:
                        return str(e["url"]).rstrip("/")
        raise LookupError(f"no {self.interface} endpoint for {service_type!r} in the catalog")

    async def request(
        self,
        method: str,
        url: str,
        json: Any = None,
        *,
        headers: dict[str, str] | None = None,
        expect: tuple[int, ...] = (200, 201, 202, 204),
    ) -> tuple[int, Mapping[str, str], Any]:
        """One authenticated call; re-authenticates once if the token is refused."""
        assert self.token is not None
        status, got, body = await self._send(
            method, url, json, {"X-Auth-Token": self.token.id, **(headers or {})}
        )
        if status == 401:
            await self.authenticate()
            status, got, body = await self._send(
                method, url, json, {"X-Auth-Token": self.token.id, **(headers or {})}
            )
        if status not in expect:
            raise ApiError(status, _message(body), got.get("x-openstack-request-id"))
        return status, got, body

    async def _send(
        self, method: str, url: str, json: Any, headers: dict[str, str] | None
    ) -> tuple[int, Mapping[str, str], Any]:
        data = orjson.dumps(json) if json is not None else None
        hdrs = {"Content-Type": "application/json", **(headers or {})} if data is not None else headers
        async with self.http.request(method, url, data=data, headers=hdrs) as resp:
            raw = await resp.read()
            body = orjson.loads(raw) if raw and resp.content_type == "application/json" else None
            return resp.status, resp.headers, body


def _message(body: Any) -> str:
    if isinstance(body, dict):
        for value in body.values():
            if isinstance(value, dict) and "message" in value:
                return str(value["message"])
        if "message" in body:
            return str(body["message"])
    return str(body)


class IdentityApi:
    """Keystone v3: the calls the tests, the harness and scripts need."""

    def __init__(self, client: Client) -> None:
        self.client = client

    @property
    def url(self) -> str:
        return self.client.auth_url

    async def _get(self, path: str, **params: str | None) -> Any:
        query = "&".join(f"{k.replace('__', '.')}={v}" for k, v in params.items() if v is not None)
        _, _, body = await self.client.request("GET", f"{self.url}{path}" + (f"?{query}" if query else ""))
        return body

    # domains
    async def list_domains(self, name: str | None = None) -> list[Domain]:
        return [_domain(d) for d in (await self._get("/domains", name=name))["domains"]]

    async def create_domain(self, name: str, description: str = "") -> Domain:
        _, _, body = await self.client.request(
            "POST", f"{self.url}/domains", {"domain": {"name": name, "description": description}}
        )
        return _domain(body["domain"])

    async def update_domain(self, domain_id: str, **fields: Any) -> Domain:
        _, _, body = await self.client.request("PATCH", f"{self.url}/domains/{domain_id}", {"domain": fields})
        return _domain(body["domain"])

    async def delete_domain(self, domain_id: str) -> None:
        await self.client.request("DELETE", f"{self.url}/domains/{domain_id}")

    # projects
    async def create_project(
        self, name: str, *, domain_id: str = "default", description: str = ""
    ) -> Project:
        _, _, body = await self.client.request(
            "POST",
            f"{self.url}/projects",
            {"project": {"name": name, "domain_id": domain_id, "description": description}},
        )
        return _project(body["project"])

    async def get_project(self, project_id: str) -> Project:
        return _project((await self._get(f"/projects/{project_id}"))["project"])

    async def list_projects(self, name: str | None = None) -> list[Project]:
        return [_project(p) for p in (await self._get("/projects", name=name))["projects"]]

    async def update_project(self, project_id: str, **fields: Any) -> Project:
        _, _, body = await self.client.request(
            "PATCH", f"{self.url}/projects/{project_id}", {"project": fields}
        )
        return _project(body["project"])

    async def delete_project(self, project_id: str) -> None:
        await self.client.request("DELETE", f"{self.url}/projects/{project_id}")

    # users
    async def create_user(
        self,
        name: str,
        *,
        password: str | None = None,
        domain_id: str = "default",
        default_project_id: str | None = None,
        email: str | None = None,
    ) -> User:
        user = {
            "name": name,
            "password": password,
            "domain_id": domain_id,
            "default_project_id": default_project_id,
            "email": email,
        }
        _, _, body = await self.client.request(
            "POST", f"{self.url}/users", {"user": {k: v for k, v in user.items() if v is not None}}
        )
        return _user(body["user"])

    async def get_user(self, user_id: str) -> User:
        return _user((await self._get(f"/users/{user_id}"))["user"])

    async def list_users(self, name: str | None = None) -> list[User]:
        return [_user(u) for u in (await self._get("/users", name=name))["users"]]

    async def update_user(self, user_id: str, **fields: Any) -> User:
        _, _, body = await self.client.request("PATCH", f"{self.url}/users/{user_id}", {"user": fields})
        return _user(body["user"])

    async def change_password(self, user_id: str, original: str, new: str) -> None:
        await self.client.request(
            "POST",
            f"{self.url}/users/{user_id}/password",
            {"user": {"original_password": original, "password": new}},
        )

    async def delete_user(self, user_id: str) -> None:
        await self.client.request("DELETE", f"{self.url}/users/{user_id}")

    # roles and assignments
    async def list_roles(self, name: str | None = None) -> list[Role]:
        return [Role(id=r["id"], name=r["name"]) for r in (await self._get("/roles", name=name))["roles"]]

    async def role(self, name: str) -> Role:
        found = await self.list_roles(name)
        if len(found) != 1:
            raise LookupError(f"no role named {name!r}")
        return found[0]

    async def create_role(self, name: str) -> Role:
        _, _, body = await self.client.request("POST", f"{self.url}/roles", {"role": {"name": name}})
        return Role(id=body["role"]["id"], name=body["role"]["name"])

    async def delete_role(self, role_id: str) -> None:
        await self.client.request("DELETE", f"{self.url}/roles/{role_id}")

    def _grant_url(self, role_id: str, user_id: str, project_id: str | None, domain_id: str | None) -> str:
        target = f"projects/{project_id}" if project_id else f"domains/{domain_id}"
        return f"{self.url}/{target}/users/{user_id}/roles/{role_id}"

    async def grant(
        self, role_id: str, user_id: str, *, project_id: str | None = None, domain_id: str | None = None
    ) -> None:
        await self.client.request("PUT", self._grant_url(role_id, user_id, project_id, domain_id))

    async def revoke(
        self, role_id: str, user_id: str, *, project_id: str | None = None, domain_id: str | None = None
    ) -> None:
        await self.client.request("DELETE", self._grant_url(role_id, user_id, project_id, domain_id))

    async def role_assignments(
        self,
        *,
        user_id: str | None = None,
        project_id: str | None = None,
        effective: bool = False,
        names: bool = False,
    ) -> list[RoleAssignment]:
        body = await self._get(
            "/role_assignments",
            user__id=user_id,
            scope__project__id=project_id,
            effective="true" if effective else None,
            include_names="true" if names else None,
        )
        return [_assignment(a) for a in body["role_assignments"]]

    # tokens
    async def issue_token(self, body: dict[str, Any]) -> Token:
        """Authenticate someone else (see `password_auth`); the client's own token is unchanged."""
        status, headers, got = await self.client._send("POST", f"{self.url}/auth/tokens", body, None)
        if status != 201:
            raise ApiError(status, _message(got), headers.get("x-openstack-request-id"))
        return Token.from_body(headers["X-Subject-Token"], got)

    async def validate_token(self, token_id: str) -> Token:
        _, _, body = await self.client.request(
            "GET", f"{self.url}/auth/tokens?nocatalog", headers={"X-Subject-Token": token_id}
        )
        return Token.from_body(token_id, body)

    async def revoke_token(self, token_id: str) -> None:
        await self.client.request("DELETE", f"{self.url}/auth/tokens", headers={"X-Subject-Token": token_id})
