"""Network v2.0 (Neutron) under `/network`: networks, subnets and ports.

Bodies are wrapped in the singular key for one resource and the plural for lists; lists take
equality filters (`?name=`, `?network_id=`, `?router:external=True`, repeated `?id=`), repeated
`fields=` to trim each item, and `limit`/`marker` with a `<plural>_links` next link. Errors are
`{"NeutronError": {"type", "message", "detail"}}`.
"""

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from aiohttp import web

from fabric.gateway.context import BUS, SETTINGS, authenticated
from fabric.gateway.http import json_response, next_links, query_bool, read_json
from fabric.gateway.times import seconds as iso
from protocol.codec import MaxLen, MinLen, Range, decode
from protocol.errors import Invalid
from protocol.network import (
    NETWORK_QUOTA_DEFAULTS,
    QUEUE,
    CreateNetwork,
    CreatePort,
    CreateSubnet,
    DeleteNetwork,
    DeletePort,
    DeleteSubnet,
    FixedIpRequest,
    GetNetwork,
    GetNetworkQuotas,
    GetPort,
    GetSubnet,
    HostRoute,
    ListNetworks,
    ListPorts,
    ListSubnets,
    NetworkQuotas,
    NetworkView,
    Pool,
    PortView,
    SetNetworkQuotas,
    SubnetView,
    UpdateNetwork,
    UpdatePort,
    UpdateSubnet,
)

ROOT = "/network/v2.0"


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/network", versions)
    r.add_get("/network/", versions)
    r.add_get(ROOT, version)
    r.add_get(f"{ROOT}/", version)
    r.add_get(f"{ROOT}/extensions", extensions)
    r.add_get(f"{ROOT}/extensions/{{alias}}", extension)
    r.add_get(f"{ROOT}/quotas/{{project_id}}", show_quotas)
    r.add_get(f"{ROOT}/quotas/{{project_id}}/details", show_quota_details)
    r.add_get(f"{ROOT}/quotas/{{project_id}}/default", show_quota_defaults)
    r.add_put(f"{ROOT}/quotas/{{project_id}}", update_quotas)
    r.add_delete(f"{ROOT}/quotas/{{project_id}}", reset_quotas)
    for plural, handlers in RESOURCES.items():
        r.add_get(f"{ROOT}/{plural}", handlers["list"])
        r.add_post(f"{ROOT}/{plural}", handlers["create"])
        r.add_get(f"{ROOT}/{plural}/{{id}}", handlers["show"])
        r.add_put(f"{ROOT}/{plural}/{{id}}", handlers["update"])
        r.add_delete(f"{ROOT}/{plural}/{{id}}", handlers["delete"])


async def versions(request: web.Request) -> web.Response:
    base = request.app[SETTINGS].gateway_url
    doc = {"id": "v2.0", "status": "CURRENT", "links": [{"rel": "self", "href": f"{base}{ROOT}/"}]}
    return json_response({"versions": [doc]})


async def version(request: web.Request) -> web.Response:
    base = request.app[SETTINGS].gateway_url
    resources = [{"name": s[:-1], "collection": s, "links": [{"rel": "self", "href": f"{base}{ROOT}/{s}"}]}
                 for s in RESOURCES]  # fmt: skip
    return json_response({"resources": resources})


#: The API extensions whose attributes these bodies carry (the CLI looks some up).
EXTENSIONS = {
    "external-net": "Neutron external network",
    "port-security": "Port Security",
    "binding": "Port Binding",
    "standard-attr-description": "standard-attr-description",
    "standard-attr-timestamp": "Resource timestamps",
    "standard-attr-revisions": "Resource revision numbers",
    "network-mtu": "Network MTU",
    "router": "Neutron L3 Router",
    "security-group": "security-group",
    "quotas": "Quota management support",
    "quota_details": "Quota details extension",
    "ext-gw-mode": "Neutron L3 Configurable external gateway mode",
    "pagination": "Pagination support",
    "sorting": "Sorting support",
    "dns-integration": "DNS Integration",
    "dns-domain-ports": "dns_domain for ports",
}


def _extension(alias: str) -> dict[str, Any]:
    return {"alias": alias, "name": EXTENSIONS[alias], "description": EXTENSIONS[alias], "links": [],
            "updated": "2013-01-01T00:00:00-00:00"}  # fmt: skip


async def extensions(request: web.Request) -> web.Response:
    authenticated(request)
    return json_response({"extensions": [_extension(a) for a in EXTENSIONS]})


async def extension(request: web.Request) -> web.Response:
    authenticated(request)
    alias = request.match_info["alias"]
    if alias not in EXTENSIONS:
        raise web.HTTPNotFound(reason=f"Extension with alias {alias[:60]} does not exist")
    return json_response({"extension": _extension(alias)})


# --- bodies ------------------------------------------------------------------------------------


def network_body(n: NetworkView) -> dict[str, Any]:
    return {
        "id": n.id,
        "name": n.name,
        "description": n.description,
        "status": "ACTIVE",
        "admin_state_up": n.admin_state_up,
        "shared": n.shared,
        "router:external": n.external,
        "mtu": n.mtu,
        "port_security_enabled": n.port_security_enabled,
        "subnets": list(n.subnets),
        "dns_domain": n.dns_domain,
        "project_id": n.project_id,
        "tenant_id": n.project_id,
        "availability_zones": ["nova"],
        "availability_zone_hints": [],
        "ipv4_address_scope": None,
        "ipv6_address_scope": None,
        "tags": [],
        "created_at": iso(n.created_at),
        "updated_at": iso(n.updated_at),
        "revision_number": n.revision_number,
    }


def subnet_body(s: SubnetView) -> dict[str, Any]:
    return {
        "id": s.id,
        "name": s.name,
        "description": s.description,
        "network_id": s.network_id,
        "project_id": s.project_id,
        "tenant_id": s.project_id,
        "ip_version": 4,
        "cidr": s.cidr,
        "gateway_ip": s.gateway_ip,
        "allocation_pools": [{"start": p.start, "end": p.end} for p in s.allocation_pools],
        "enable_dhcp": s.enable_dhcp,
        "dns_nameservers": list(s.dns_nameservers),
        "host_routes": [{"destination": r.destination, "nexthop": r.nexthop} for r in s.host_routes],
        "ipv6_address_mode": None,
        "ipv6_ra_mode": None,
        "subnetpool_id": None,
        "service_types": [],
        "tags": [],
        "created_at": iso(s.created_at),
        "updated_at": iso(s.updated_at),
        "revision_number": s.revision_number,
    }


def port_body(p: PortView) -> dict[str, Any]:
    return {
        "id": p.id,
        "name": p.name,
        "description": p.description,
        "network_id": p.network_id,
        "project_id": p.project_id,
        "tenant_id": p.project_id,
        "mac_address": p.mac_address,
        "fixed_ips": [{"subnet_id": f.subnet_id, "ip_address": f.ip_address} for f in p.fixed_ips],
        "device_id": p.device_id,
        "device_owner": p.device_owner,
        "binding:host_id": p.binding_host_id,
        "binding:vif_type": "bridge" if p.binding_host_id else "unbound",
        "binding:vnic_type": "normal",
        "binding:profile": {},
        "binding:vif_details": {},
        "status": p.status,
        "admin_state_up": p.admin_state_up,
        "port_security_enabled": p.port_security_enabled,
        "security_groups": list(p.security_groups),
        "dns_name": p.dns_name,
        "dns_domain": p.dns_domain,
        "dns_assignment": [
            {"hostname": a.hostname, "ip_address": a.ip_address, "fqdn": a.fqdn} for a in p.dns_assignment
        ],
        "allowed_address_pairs": [],
        "extra_dhcp_opts": [],
        "tags": [],
        "created_at": iso(p.created_at),
        "updated_at": iso(p.updated_at),
        "revision_number": p.revision_number,
    }


# --- request bodies ----------------------------------------------------------------------------

Name = Annotated[str, MaxLen(255)]
Text = Annotated[str, MaxLen(1024)]
#: A dns_name or dns_domain: the network service checks the rest (and names the field).
Dns = Annotated[str, MaxLen(255)]


@dataclass(frozen=True, slots=True, kw_only=True)
class NetworkFields:
    name: Name | None = None
    description: Text | None = None
    admin_state_up: bool | None = None
    shared: bool | None = None
    external: bool | None = None
    mtu: Annotated[int, Range(68, 9000)] | None = None
    port_security_enabled: bool | None = None
    dns_domain: Dns | None = None
    project_id: Annotated[str, MinLen(1), MaxLen(64)] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class PoolFields:
    start: Annotated[str, MaxLen(15)]
    end: Annotated[str, MaxLen(15)]


@dataclass(frozen=True, slots=True, kw_only=True)
class RouteFields:
    destination: Annotated[str, MaxLen(18)]
    nexthop: Annotated[str, MaxLen(15)]


@dataclass(frozen=True, slots=True, kw_only=True)
class SubnetFields:
    network_id: Annotated[str, MinLen(1), MaxLen(64)] | None = None
    cidr: Annotated[str, MaxLen(18)] | None = None
    ip_version: int = 4
    name: Name | None = None
    description: Text | None = None
    gateway_ip: Annotated[str, MaxLen(15)] | None = None
    allocation_pools: tuple[PoolFields, ...] | None = None
    enable_dhcp: bool | None = None
    dns_nameservers: tuple[Annotated[str, MaxLen(15)], ...] | None = None
    host_routes: tuple[RouteFields, ...] | None = None
    project_id: Annotated[str, MaxLen(64)] | None = None
    subnetpool_id: None = None
    ipv6_address_mode: None = None
    ipv6_ra_mode: None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class FixedIpFields:
    subnet_id: Annotated[str, MinLen(1), MaxLen(64)] | None = None
    ip_address: Annotated[str, MaxLen(15)] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class PortFields:
    network_id: Annotated[str, MinLen(1), MaxLen(64)] | None = None
    name: Name | None = None
    description: Text | None = None
    fixed_ips: tuple[FixedIpFields, ...] | None = None
    mac_address: Annotated[str, MaxLen(17)] | None = None
    device_id: Annotated[str, MaxLen(255)] | None = None
    device_owner: Annotated[str, MaxLen(255)] | None = None
    binding_host_id: Annotated[str, MaxLen(255)] | None = None
    admin_state_up: bool | None = None
    port_security_enabled: bool | None = None
    project_id: Annotated[str, MaxLen(64)] | None = None
    security_groups: tuple[str, ...] | None = None
    dns_name: Dns | None = None
    dns_domain: Dns | None = None


#: Neutron's attribute names that are not Python names, and what the bodies call them here.
RENAMES = {"router:external": "external", "binding:host_id": "binding_host_id", "tenant_id": "project_id"}


async def read_fields(request: web.Request, key: str, cls: type[Any]) -> Any:
    body = await read_json(request, dict[str, Any])
    raw = body.get(key)
    if not isinstance(raw, dict) or len(body) != 1:
        raise Invalid(key, f"the body is {{{key!r}: {{...}}}}")
    renamed: dict[str, Any] = {RENAMES.get(str(k), str(k)): v for k, v in raw.items()}
    for k in list(renamed):
        if k.startswith(("provider:", "segments", "qos_policy_id")):
            raise Invalid(f"{key}.{k}", "not supported here")
    return decode(cls, renamed, path=key)


# --- lists -------------------------------------------------------------------------------------

#: List filters each resource takes: query name → message field.
FILTERS = {
    "networks": {"name": "name", "project_id": "project_id", "tenant_id": "project_id", "shared": "shared",
                 "router:external": "external"},
    "subnets": {"name": "name", "network_id": "network_id", "project_id": "project_id",
                "tenant_id": "project_id", "cidr": "cidr"},
    "ports": {"name": "name", "network_id": "network_id", "project_id": "project_id",
              "tenant_id": "project_id", "device_id": "device_id", "device_owner": "device_owner",
              "mac_address": "mac_address"},
}  # fmt: skip
BOOLEAN_FILTERS = {"shared", "external"}


def _list_message(request: web.Request, filters: dict[str, str], cls: type[Any]) -> Any:
    query: dict[str, Any] = {}
    for name, target in filters.items():
        if name != "id" and len(request.query.getall(name, [])) > 1:  # Neutron ORs them: never AND
            raise Invalid(name, "given more than once: one value per filter (and any number of id)")
        if name in request.query:
            query[target] = query_bool(request, name) if target in BOOLEAN_FILTERS else request.query[name]
    ids = request.query.getall("id", [])
    if ids:
        query["ids"] = ids  # a list, as in a JSON body
    if "limit" in request.query:
        limit = request.query["limit"]
        if not limit.isdigit() or int(limit) < 1:
            raise Invalid("limit", "a whole number, 1 or more")
        query["limit"] = min(int(limit), 1000)
    if "marker" in request.query:
        query["marker"] = request.query["marker"]
    return decode(cls, query, path="query")


def trim(body: dict[str, Any], fields: list[str]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k in fields} if fields else body


async def list_response(
    request: web.Request,
    plural: str,
    cls: type[Any],
    render: Callable[[Any], dict[str, Any]],
    filters: dict[str, str],
) -> web.Response:
    """A Neutron list: `filters` maps query names to the list message's fields."""
    ctx = authenticated(request)
    msg = _list_message(request, filters, cls)
    found = await request.app[BUS].call(QUEUE, msg, ctx)
    fields = request.query.getall("fields", [])
    out: dict[str, Any] = {plural: [trim(render(item), fields) for item in found.items]}
    if found.more:
        public_url = request.app[SETTINGS].gateway_url
        out[f"{plural}_links"] = next_links(request, public_url, msg.limit, found.items[-1].id)
    return json_response(out)


# --- networks ----------------------------------------------------------------------------------


async def create_network(request: web.Request) -> web.Response:
    ctx = authenticated(request)
    f: NetworkFields = await read_fields(request, "network", NetworkFields)
    msg = CreateNetwork(
        network_id=str(uuid.uuid4()),
        name=f.name or "",
        description=f.description or "",
        admin_state_up=True if f.admin_state_up is None else f.admin_state_up,
        shared=bool(f.shared),
        external=bool(f.external),
        mtu=f.mtu or 1500,
        port_security_enabled=True if f.port_security_enabled is None else f.port_security_enabled,
        dns_domain=f.dns_domain or "",
        project_id=f.project_id,
    )
    return json_response({"network": network_body(await request.app[BUS].call(QUEUE, msg, ctx))}, status=201)


async def list_networks(request: web.Request) -> web.Response:
    return await list_response(request, "networks", ListNetworks, network_body, FILTERS["networks"])


async def show_network(request: web.Request) -> web.Response:
    ctx = authenticated(request)
    found = await request.app[BUS].call(QUEUE, GetNetwork(network_id=request.match_info["id"]), ctx)
    return json_response({"network": trim(network_body(found), request.query.getall("fields", []))})


async def update_network(request: web.Request) -> web.Response:
    ctx = authenticated(request)
    f: NetworkFields = await read_fields(request, "network", NetworkFields)
    if f.project_id is not None:
        raise Invalid("network.project_id", "cannot be changed")
    msg = UpdateNetwork(
        network_id=request.match_info["id"], name=f.name, description=f.description,
        admin_state_up=f.admin_state_up, shared=f.shared, external=f.external, mtu=f.mtu,
        port_security_enabled=f.port_security_enabled, dns_domain=f.dns_domain,
    )  # fmt: skip
    return json_response({"network": network_body(await request.app[BUS].call(QUEUE, msg, ctx))})


async def delete_network(request: web.Request) -> web.Response:
    ctx = authenticated(request)
    await request.app[BUS].call(QUEUE, DeleteNetwork(network_id=request.match_info["id"]), ctx)
    return web.Response(status=204)


# --- subnets -----------------------------------------------------------------------------------


async def create_subnet(request: web.Request) -> web.Response:
    ctx = authenticated(request)
    body = await read_json(request, dict[str, Any])
    raw = body.get("subnet")
    if not isinstance(raw, dict):
        raise Invalid("subnet", "the body is {'subnet': {...}}")
    f: SubnetFields = decode(SubnetFields, {RENAMES.get(k, k): v for k, v in raw.items()}, path="subnet")
    if f.network_id is None:
        raise Invalid("subnet.network_id", "required")
    if f.cidr is None:
        raise Invalid("subnet.cidr", "required (subnet pools are not supported)")
    if f.ip_version != 4:
        raise Invalid("subnet.ip_version", "only 4 is supported")
    msg = CreateSubnet(
        subnet_id=str(uuid.uuid4()),
        network_id=f.network_id,
        cidr=f.cidr,
        name=f.name or "",
        description=f.description or "",
        gateway_ip=f.gateway_ip,
        no_gateway="gateway_ip" in raw and raw["gateway_ip"] is None,  # explicit null: no gateway
        allocation_pools=tuple(Pool(start=p.start, end=p.end) for p in f.allocation_pools)
        if f.allocation_pools is not None
        else None,
        enable_dhcp=True if f.enable_dhcp is None else f.enable_dhcp,
        dns_nameservers=f.dns_nameservers or (),
        host_routes=tuple(
            HostRoute(destination=r.destination, nexthop=r.nexthop) for r in f.host_routes or ()
        ),
    )
    return json_response({"subnet": subnet_body(await request.app[BUS].call(QUEUE, msg, ctx))}, status=201)


async def list_subnets(request: web.Request) -> web.Response:
    return await list_response(request, "subnets", ListSubnets, subnet_body, FILTERS["subnets"])


async def show_subnet(request: web.Request) -> web.Response:
    ctx = authenticated(request)
    found = await request.app[BUS].call(QUEUE, GetSubnet(subnet_id=request.match_info["id"]), ctx)
    return json_response({"subnet": trim(subnet_body(found), request.query.getall("fields", []))})


async def update_subnet(request: web.Request) -> web.Response:
    ctx = authenticated(request)
    f: SubnetFields = await read_fields(request, "subnet", SubnetFields)
    for fixed in ("network_id", "cidr", "allocation_pools", "gateway_ip"):
        if getattr(f, fixed) is not None:
            raise Invalid(f"subnet.{fixed}", "cannot be changed here")
    msg = UpdateSubnet(
        subnet_id=request.match_info["id"],
        name=f.name,
        description=f.description,
        enable_dhcp=f.enable_dhcp,
        dns_nameservers=f.dns_nameservers,
        host_routes=tuple(HostRoute(destination=r.destination, nexthop=r.nexthop) for r in f.host_routes)
        if f.host_routes is not None
        else None,
    )
    return json_response({"subnet": subnet_body(await request.app[BUS].call(QUEUE, msg, ctx))})


async def delete_subnet(request: web.Request) -> web.Response:
    ctx = authenticated(request)
    await request.app[BUS].call(QUEUE, DeleteSubnet(subnet_id=request.match_info["id"]), ctx)
    return web.Response(status=204)


# --- ports -------------------------------------------------------------------------------------


async def create_port(request: web.Request) -> web.Response:
    ctx = authenticated(request)
    f: PortFields = await read_fields(request, "port", PortFields)
    if f.network_id is None:
        raise Invalid("port.network_id", "required")
    msg = CreatePort(
        port_id=str(uuid.uuid4()),
        network_id=f.network_id,
        name=f.name or "",
        description=f.description or "",
        fixed_ips=tuple(FixedIpRequest(subnet_id=x.subnet_id, ip_address=x.ip_address) for x in f.fixed_ips)
        if f.fixed_ips is not None
        else None,
        mac_address=f.mac_address,
        device_id=f.device_id or "",
        device_owner=f.device_owner or "",
        binding_host_id=f.binding_host_id or "",
        admin_state_up=True if f.admin_state_up is None else f.admin_state_up,
        port_security_enabled=f.port_security_enabled,
        security_groups=f.security_groups,
        dns_name=f.dns_name or "",
        dns_domain=f.dns_domain or "",
        project_id=f.project_id,
    )
    return json_response({"port": port_body(await request.app[BUS].call(QUEUE, msg, ctx))}, status=201)


async def list_ports(request: web.Request) -> web.Response:
    return await list_response(request, "ports", ListPorts, port_body, FILTERS["ports"])


async def show_port(request: web.Request) -> web.Response:
    ctx = authenticated(request)
    found = await request.app[BUS].call(QUEUE, GetPort(port_id=request.match_info["id"]), ctx)
    return json_response({"port": trim(port_body(found), request.query.getall("fields", []))})


async def update_port(request: web.Request) -> web.Response:
    ctx = authenticated(request)
    f: PortFields = await read_fields(request, "port", PortFields)
    for fixed in ("network_id", "fixed_ips", "mac_address", "project_id"):
        if getattr(f, fixed) is not None:
            raise Invalid(f"port.{fixed}", "cannot be changed here")
    msg = UpdatePort(
        port_id=request.match_info["id"], name=f.name, description=f.description, device_id=f.device_id,
        device_owner=f.device_owner, binding_host_id=f.binding_host_id, admin_state_up=f.admin_state_up,
        port_security_enabled=f.port_security_enabled, security_groups=f.security_groups,
        dns_name=f.dns_name, dns_domain=f.dns_domain,
    )  # fmt: skip
    return json_response({"port": port_body(await request.app[BUS].call(QUEUE, msg, ctx))})


async def delete_port(request: web.Request) -> web.Response:
    ctx = authenticated(request)
    await request.app[BUS].call(QUEUE, DeletePort(port_id=request.match_info["id"]), ctx)
    return web.Response(status=204)


# --- quotas ------------------------------------------------------------------------------------


async def _quotas(request: web.Request) -> NetworkQuotas:
    ctx = authenticated(request)
    found: NetworkQuotas = await request.app[BUS].call(
        QUEUE, GetNetworkQuotas(project_id=request.match_info["project_id"]), ctx
    )
    return found


async def show_quotas(request: web.Request) -> web.Response:
    return json_response({"quota": (await _quotas(request)).limits})


async def show_quota_details(request: web.Request) -> web.Response:
    found = await _quotas(request)
    detail = {k: {"limit": v, "used": found.used.get(k, 0), "reserved": 0} for k, v in found.limits.items()}
    return json_response({"quota": detail})


async def show_quota_defaults(request: web.Request) -> web.Response:
    authenticated(request)
    return json_response({"quota": NETWORK_QUOTA_DEFAULTS})


async def update_quotas(request: web.Request) -> web.Response:
    ctx = authenticated(request)
    body = await read_json(request, dict[str, Any])
    raw = body.get("quota")
    if not isinstance(raw, dict):
        raise Invalid("quota", "the body is {'quota': {...}}")
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key in ("project_id", "tenant_id", "force", "check_limit"):
            continue
        if type(value) is not int or value < -1:
            raise Invalid(f"quota.{key[:64]}", "a whole number, -1 for unlimited")
        values[key] = value
    msg = decode(
        SetNetworkQuotas, {"project_id": request.match_info["project_id"], "limits": values}, path=""
    )
    found: NetworkQuotas = await request.app[BUS].call(QUEUE, msg, ctx)
    return json_response({"quota": found.limits})


async def reset_quotas(request: web.Request) -> web.Response:
    ctx = authenticated(request)
    msg = SetNetworkQuotas(project_id=request.match_info["project_id"], limits={}, reset=True)
    await request.app[BUS].call(QUEUE, msg, ctx)
    return web.Response(status=204)


RESOURCES: dict[str, dict[str, Callable[[web.Request], Any]]] = {
    "networks": {"list": list_networks, "create": create_network, "show": show_network,
                 "update": update_network, "delete": delete_network},
    "subnets": {"list": list_subnets, "create": create_subnet, "show": show_subnet,
                "update": update_subnet, "delete": delete_subnet},
    "ports": {"list": list_ports, "create": create_port, "show": show_port,
              "update": update_port, "delete": delete_port},
}  # fmt: skip
