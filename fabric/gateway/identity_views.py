"""Keystone v3's JSON shapes, built from identity's views. Pure functions of their inputs.

`base` is the public URL of the v3 API (`http://host:port/identity/v3`).
"""

import functools
from typing import Any

import orjson

from fabric.gateway import times
from protocol.identity import (
    AssignmentView,
    Catalog,
    DomainView,
    ProjectView,
    RoleView,
    TokenData,
    UserView,
)

VERSION_ID = "v3.14"
VERSION_UPDATED = "2020-04-07T00:00:00Z"


@functools.lru_cache(maxsize=4096)  # a token's two timestamps, formatted once, not per validation
def iso(ts: float) -> str:
    """Keystone's timestamp form: `2026-11-25T10:00:00.000000Z`."""
    return times.micros(ts) + "Z"


def version(base: str) -> dict[str, Any]:
    return {
        "id": VERSION_ID,
        "status": "stable",
        "updated": VERSION_UPDATED,
        "links": [{"rel": "self", "href": f"{base}/"}],
        "media-types": [{"base": "application/json", "type": "application/vnd.openstack.identity-v3+json"}],
    }


def list_links(url: str) -> dict[str, Any]:
    return {"self": url, "previous": None, "next": None}


def domain(base: str, d: DomainView) -> dict[str, Any]:
    return {
        "id": d.id,
        "name": d.name,
        "description": d.description,
        "enabled": d.enabled,
        "tags": [],
        "options": {},
        "links": {"self": f"{base}/domains/{d.id}"},
    }


def project(base: str, p: ProjectView) -> dict[str, Any]:
    return {
        "id": p.id,
        "name": p.name,
        "domain_id": p.domain_id,
        "description": p.description,
        "enabled": p.enabled,
        "is_domain": False,
        "parent_id": p.domain_id,
        "tags": list(p.tags),
        "options": {},
        "links": {"self": f"{base}/projects/{p.id}"},
    }


def user(base: str, u: UserView) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": u.id,
        "name": u.name,
        "domain_id": u.domain_id,
        "enabled": u.enabled,
        "password_expires_at": None,
        "options": {},
        "links": {"self": f"{base}/users/{u.id}"},
    }
    if u.default_project_id is not None:
        body["default_project_id"] = u.default_project_id
    if u.email is not None:
        body["email"] = u.email
    if u.description is not None:
        body["description"] = u.description
    return body


def role(base: str, r: RoleView) -> dict[str, Any]:
    return {
        "id": r.id,
        "name": r.name,
        "domain_id": None,
        "description": r.description,
        "options": {},
        "links": {"self": f"{base}/roles/{r.id}"},
    }


def assignment(base: str, a: AssignmentView, *, names: bool) -> dict[str, Any]:
    role_ref: dict[str, Any] = {"id": a.role_id}
    user_ref: dict[str, Any] = {"id": a.user_id}
    if a.project_id is not None:
        target: dict[str, Any] = {"id": a.project_id}
        scope = {"project": target}
        link = f"{base}/projects/{a.project_id}/users/{a.user_id}/roles/{a.role_id}"
        if names:
            target.update(
                name=a.project_name, domain={"id": a.project_domain_id, "name": a.project_domain_name}
            )
    else:
        target = {"id": a.domain_id}
        scope = {"domain": target}
        link = f"{base}/domains/{a.domain_id}/users/{a.user_id}/roles/{a.role_id}"
        if names:
            target["name"] = a.domain_name
    if names:
        role_ref["name"] = a.role_name
        user_ref.update(name=a.user_name, domain={"id": a.user_domain_id, "name": a.user_domain_name})
    return {"role": role_ref, "user": user_ref, "scope": scope, "links": {"assignment": link}}


def catalog(cat: Catalog, project_id: str | None) -> list[dict[str, Any]]:
    """The catalog as a token carries it; `$(project_id)s` in URLs names the token's project."""
    entries = []
    for service in cat.services:
        endpoints = []
        for e in service.endpoints:
            url = e.url
            if "$(project_id)s" in url or "%(project_id)s" in url:
                if project_id is None:
                    continue
                url = url.replace("$(project_id)s", project_id).replace("%(project_id)s", project_id)
            endpoints.append(
                {"id": e.id, "interface": e.interface, "region": e.region, "region_id": e.region, "url": url}
            )
        entries.append({"id": service.id, "type": service.type, "name": service.name, "endpoints": endpoints})
    return entries


class RenderedCatalogs:
    """The catalog as JSON, rendered once per project rather than on every token validation
    (it is most of a validation's response). Starts over when the catalog object changes."""

    MAX_PROJECTS = 4096

    def __init__(self) -> None:
        self._of: Catalog | None = None
        self._json: dict[str | None, orjson.Fragment] = {}

    def get(self, cat: Catalog, project_id: str | None) -> orjson.Fragment:
        if cat is not self._of or len(self._json) >= self.MAX_PROJECTS:
            self._of, self._json = cat, {}
        rendered = self._json.get(project_id)
        if rendered is None:
            rendered = self._json[project_id] = orjson.Fragment(orjson.dumps(catalog(cat, project_id)))
        return rendered


RENDERED = RenderedCatalogs()


def token(data: TokenData, cat: Catalog | None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "methods": list(data.methods),
        "user": {
            "id": data.user_id,
            "name": data.user_name,
            "domain": {"id": data.user_domain_id, "name": data.user_domain_name},
            "password_expires_at": None,
        },
        "audit_ids": [data.audit_id],
        "issued_at": iso(data.issued_at),
        "expires_at": iso(data.expires_at),
    }
    if data.project_id is not None:
        body["project"] = {
            "id": data.project_id,
            "name": data.project_name,
            "domain": {"id": data.project_domain_id, "name": data.project_domain_name},
        }
        body["is_domain"] = False
    elif data.domain_id is not None:
        body["domain"] = {"id": data.domain_id, "name": data.domain_name}
    if data.project_id is not None or data.domain_id is not None:
        body["roles"] = [{"id": r.id, "name": r.name} for r in data.roles]
        if cat is not None:
            body["catalog"] = RENDERED.get(cat, data.project_id)
    return {"token": body}
