"""What the upstream services need in Keystone and Nova, made once; running it again changes
nothing. Standard library only (run by `up.sh` with the upstream venv's Python).

    register.py keystone   the `service` project, one user per service (admin and service roles
                           there), and the catalog's image, placement and compute endpoints
                           (public and internal; `keystone-manage bootstrap` made identity's);
                           exit status 3 when it changed any of them
    register.py hypervisors N [SECONDS]
                           waits until nova lists N hypervisors up (exit 1 if not in time)
    register.py nova       flavor m1.tiny, and no instance/core/RAM quota for the admin project
                           (`bench run` sets no quota on a cloud it did not start, and nova's
                           default of 10 instances would fail a run with more in flight)

Everything else comes from the environment `up.sh` sets: UPSTREAM_AUTH_URL (Keystone's /v3),
UPSTREAM_PASSWORD (the admin's), UPSTREAM_SERVICE_PASSWORD, UPSTREAM_IMAGE_URL,
UPSTREAM_PLACEMENT_URL, UPSTREAM_COMPUTE_URL.
"""

import json
import os
import sys
import time
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import quote

REGION = "RegionOne"
#: `register.py keystone`'s exit status when it changed something: each keystone worker caches
#: the catalog and assignments in its own memory, where another worker's change does not reach,
#: so up.sh restarts keystone then.
CHANGED = 3
SERVICES = (  # service name, type, the environment variable with its URL
    ("glance", "image", "UPSTREAM_IMAGE_URL"),
    ("placement", "placement", "UPSTREAM_PLACEMENT_URL"),
    ("nova", "compute", "UPSTREAM_COMPUTE_URL"),
)


class Api:
    def __init__(self) -> None:
        self.auth_url = os.environ["UPSTREAM_AUTH_URL"].rstrip("/")
        body = {
            "auth": {
                "identity": {
                    "methods": ["password"],
                    "password": {
                        "user": {
                            "name": "admin",
                            "domain": {"id": "default"},
                            "password": os.environ["UPSTREAM_PASSWORD"],
                        }
                    },
                },
                "scope": {"project": {"name": "admin", "domain": {"id": "default"}}},
            }
        }
        headers, got = self._send("POST", f"{self.auth_url}/auth/tokens", body, {})
        self.token = headers["X-Subject-Token"]
        self.project_id = got["token"]["project"]["id"]
        self.catalog = got["token"].get("catalog", [])
        self.writes = 0  # changes made to keystone

    def authenticates(self, username: str, password: str) -> bool:
        """Whether this user (of the default domain) can authenticate with this password."""
        auth = {
            "identity": {
                "methods": ["password"],
                "password": {"user": {"name": username, "domain": {"id": "default"}, "password": password}},
            }
        }
        request = urllib.request.Request(
            f"{self.auth_url}/auth/tokens", data=json.dumps({"auth": auth}).encode(), method="POST"
        )
        request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=60) as resp:
                return bool(resp.status == 201)
        except urllib.error.HTTPError as exc:
            if exc.code == 401:
                return False
            raise

    def _send(self, method: str, url: str, body: Any, headers: dict[str, str]) -> tuple[Any, Any]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(url, data=data, method=method)
        request.add_header("Content-Type", "application/json")
        request.add_header("Accept", "application/json")
        for k, v in headers.items():
            request.add_header(k, v)
        try:
            with urllib.request.urlopen(request, timeout=60) as resp:
                raw = resp.read()
                return resp.headers, (json.loads(raw) if raw else None)
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")[:500]
            raise SystemExit(f"register.py: {method} {url}: HTTP {exc.code}: {detail}") from None

    def call(self, method: str, url: str, body: Any = None) -> Any:
        return self._send(method, url, body, {"X-Auth-Token": self.token})[1]

    def identity(self, method: str, path: str, body: Any = None) -> Any:
        if method != "GET":
            self.writes += 1
        return self.call(method, f"{self.auth_url}{path}", body)

    def endpoint(self, service_type: str) -> str:
        for service in self.catalog:
            if service["type"] == service_type:
                for e in service["endpoints"]:
                    if e["interface"] == "public":
                        return str(e["url"]).rstrip("/")
        raise SystemExit(f"register.py: no public {service_type} endpoint in the catalog")


def one(found: list[dict[str, Any]]) -> dict[str, Any] | None:
    return found[0] if found else None


def keystone(api: Api) -> None:
    project = one(api.identity("GET", "/projects?name=service&domain_id=default")["projects"])
    if project is None:
        project = api.identity("POST", "/projects", {"project": {"name": "service", "domain_id": "default"}})[
            "project"
        ]
    roles = {}
    for name in ("admin", "service"):
        role = one(api.identity("GET", f"/roles?name={name}")["roles"])
        if role is None:
            role = api.identity("POST", "/roles", {"role": {"name": name}})["role"]
        roles[name] = role["id"]
    password = os.environ["UPSTREAM_SERVICE_PASSWORD"]
    for name, _, _ in SERVICES:
        user = one(api.identity("GET", f"/users?name={name}&domain_id=default")["users"])
        if user is None:
            body: dict[str, Any] = {"user": {"name": name, "domain_id": "default", "password": password}}
            user = api.identity("POST", "/users", body)["user"]
        elif not api.authenticates(name, password):
            # Only when it differs: a password change revokes the user's tokens, which the
            # running services would then find refused (nova-scheduler's placement calls fail).
            api.identity("PATCH", f"/users/{user['id']}", {"user": {"password": password}})
        grants = f"/projects/{project['id']}/users/{user['id']}/roles"
        held = {r["id"] for r in api.identity("GET", grants)["roles"]}
        for role_id in set(roles.values()) - held:
            api.identity("PUT", f"{grants}/{role_id}")
    for name, service_type, variable in SERVICES:
        url = os.environ[variable]
        service = one(api.identity("GET", f"/services?type={service_type}")["services"])
        if service is None:
            body = {"service": {"name": name, "type": service_type, "enabled": True}}
            service = api.identity("POST", "/services", body)["service"]
        for interface in ("public", "internal"):
            query = f"/endpoints?service_id={service['id']}&interface={interface}"
            endpoint = one(api.identity("GET", query)["endpoints"])
            if endpoint is None:
                body = {
                    "endpoint": {
                        "service_id": service["id"],
                        "interface": interface,
                        "url": url,
                        "region_id": REGION,
                        "enabled": True,
                    }
                }
                api.identity("POST", "/endpoints", body)
            elif endpoint["url"] != url:
                api.identity("PATCH", f"/endpoints/{endpoint['id']}", {"endpoint": {"url": url}})
    print(f"register.py: keystone has the service project, users and endpoints ({api.writes} changes)")


def hypervisors(api: Api, count: int, timeout_s: float) -> None:
    compute = api.endpoint("compute")
    deadline = time.monotonic() + timeout_s
    while True:
        listed = api.call("GET", f"{compute}/os-hypervisors/detail")["hypervisors"]
        up = sum(1 for h in listed if h.get("state") == "up" and h.get("status") == "enabled")
        if up >= count:
            print(f"register.py: {up} hypervisors up", flush=True)
            return
        if time.monotonic() > deadline:
            print(f"register.py: {up} of {count} hypervisors up", flush=True)
            raise SystemExit(1)
        time.sleep(2)


def nova(api: Api) -> None:
    compute = api.endpoint("compute")
    flavors = api.call("GET", f"{compute}/flavors/detail?is_public=None")["flavors"]
    if not any(f["name"] == "m1.tiny" for f in flavors):
        body = {"flavor": {"name": "m1.tiny", "id": "1", "ram": 512, "vcpus": 1, "disk": 1}}
        api.call("POST", f"{compute}/flavors", body)
    unlimited = {"quota_set": {"instances": -1, "cores": -1, "ram": -1}}
    api.call("PUT", f"{compute}/os-quota-sets/{quote(api.project_id)}", unlimited)
    print("register.py: nova has flavor m1.tiny; the admin project has no server quota", flush=True)


def main(argv: list[str]) -> None:
    if not argv or argv[0] not in ("keystone", "hypervisors", "nova"):
        raise SystemExit(__doc__)
    api = Api()
    if argv[0] == "keystone":
        keystone(api)
        if api.writes:
            raise SystemExit(CHANGED)
    elif argv[0] == "hypervisors":
        hypervisors(api, int(argv[1]), float(argv[2]) if len(argv) > 2 else 900.0)
    else:
        nova(api)


if __name__ == "__main__":
    main(sys.argv[1:])
