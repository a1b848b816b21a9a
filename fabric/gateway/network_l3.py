"""Network v2.0 routers and floating IPs under `/network/v2.0` (Neutron's L3 API)."""

import uuid
from dataclasses import dataclass
from typing import Annotated, Any

from aiohttp import web

from fabric.gateway.context import BUS, authenticated
from fabric.gateway.http import json_response, read_json
from fabric.gateway.network import ROOT, Dns, Name, Text, list_response, read_fields, trim
from fabric.gateway.times import seconds as iso
from protocol.codec import MaxLen, MinLen, decode
from protocol.errors import Invalid
from protocol.network import QUEUE
from protocol.network_l3 import (
    AddRouterInterface,
    AssociateFloatingIp,
    CreateFloatingIp,
    CreateRouter,
    DeleteFloatingIp,
    DeleteRouter,
    FloatingIpView,
    GatewayRequest,
    GetFloatingIp,
    GetRouter,
    ListFloatingIps,
    ListRouters,
    RemoveRouterInterface,
    RouterInterface,
    RouterView,
    UpdateRouter,
)

Id = Annotated[str, MinLen(1), MaxLen(64)]


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get(f"{ROOT}/routers", list_routers)
    r.add_post(f"{ROOT}/routers", create_router)
    r.add_get(f"{ROOT}/routers/{{id}}", show_router)
    r.add_put(f"{ROOT}/routers/{{id}}", update_router)
    r.add_delete(f"{ROOT}/routers/{{id}}", delete_router)
    r.add_put(f"{ROOT}/routers/{{id}}/add_router_interface", add_interface)
    r.add_put(f"{ROOT}/routers/{{id}}/remove_router_interface", remove_interface)
    r.add_get(f"{ROOT}/floatingips", list_floating_ips)
    r.add_post(f"{ROOT}/floatingips", create_floating_ip)
    r.add_get(f"{ROOT}/floatingips/{{id}}", show_floating_ip)
    r.add_put(f"{ROOT}/floatingips/{{id}}", update_floating_ip)
    r.add_delete(f"{ROOT}/floatingips/{{id}}", delete_floating_ip)


def router_body(r: RouterView) -> dict[str, Any]:
    gateway = None
    if r.external_gateway is not None:
        g = r.external_gateway
        gateway = {
            "network_id": g.network_id,
            "enable_snat": g.enable_snat,
            "external_fixed_ips": [
                {"subnet_id": f.subnet_id, "ip_address": f.ip_address} for f in g.external_fixed_ips
            ],
        }
    return {
        "id": r.id,
        "name": r.name,
        "description": r.description,
        "status": "ACTIVE",
        "admin_state_up": r.admin_state_up,
        "external_gateway_info": gateway,
        "routes": [],
        "project_id": r.project_id,
        "tenant_id": r.project_id,
        "distributed": False,
        "ha": False,
        "availability_zones": ["nova"],
        "availability_zone_hints": [],
        "flavor_id": None,
        "tags": [],
        "created_at": iso(r.created_at),
        "updated_at": iso(r.updated_at),
        "revision_number": r.revision_number,
    }


def interface_body(i: RouterInterface) -> dict[str, Any]:
    return {
        "id": i.router_id,
        "subnet_id": i.subnet_id,
        "subnet_ids": [i.subnet_id],
        "port_id": i.port_id,
        "network_id": i.network_id,
        "project_id": i.project_id,
        "tenant_id": i.project_id,
    }


def floating_ip_body(f: FloatingIpView) -> dict[str, Any]:
    return {
        "id": f.id,
        "floating_ip_address": f.floating_ip_address,
        "floating_network_id": f.floating_network_id,
        "fixed_ip_address": f.fixed_ip_address,
        "port_id": f.port_id,
        "router_id": f.router_id,
        "status": f.status,
        "description": f.description,
        "project_id": f.project_id,
        "tenant_id": f.project_id,
        "port_details": None,
        "dns_domain": f.dns_domain,
        "dns_name": f.dns_name,
        "qos_policy_id": None,
        "tags": [],
        "created_at": iso(f.created_at),
        "updated_at": iso(f.updated_at),
        "revision_number": f.revision_number,
    }


# --- routers -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class RouterFields:
    name: Name | None = None
    description: Text | None = None
    admin_state_up: bool | None = None
    external_gateway_info: dict[str, Any] | None = None
    project_id: Id | None = None


def _gateway(raw: dict[str, Any]) -> GatewayRequest | None:
    """None for `{}` (no gateway); Invalid for what we cannot do."""
    if not raw:
        return None
    if raw.get("external_fixed_ips"):
        raise Invalid(
            "router.external_gateway_info.external_fixed_ips", "choosing the address is not supported"
        )
    network_id = raw.get("network_id")
    if not isinstance(network_id, str) or not network_id:
        raise Invalid("router.external_gateway_info.network_id", "required")
    snat = raw.get("enable_snat", True)
    if not isinstance(snat, bool):
        raise Invalid("router.external_gateway_info.enable_snat", "true or false")
    return GatewayRequest(network_id=network_id, enable_snat=snat)


async def create_router(request: web.Request) -> web.Response:
    ctx = authenticated(request)
    f: RouterFields = await read_fields(request, "router", RouterFields)
    msg = CreateRouter(
        router_id=str(uuid.uuid4()),
        name=f.name or "",
        description=f.description or "",
        admin_state_up=True if f.admin_state_up is None else f.admin_state_up,
        gateway=_gateway(f.external_gateway_info or {}),
        project_id=f.project_id,
    )
    return json_response({"router": router_body(await request.app[BUS].call(QUEUE, msg, ctx))}, status=201)


async def list_routers(request: web.Request) -> web.Response:
    filters = {"name": "name", "project_id": "project_id", "tenant_id": "project_id"}
    return await list_response(request, "routers", ListRouters, router_body, filters)


async def show_router(request: web.Request) -> web.Response:
    ctx = authenticated(request)
    found = await request.app[BUS].call(QUEUE, GetRouter(router_id=request.match_info["id"]), ctx)
    return json_response({"router": trim(router_body(found), request.query.getall("fields", []))})


async def update_router(request: web.Request) -> web.Response:
    ctx = authenticated(request)
    body = await read_json(request, dict[str, Any])
    raw = body.get("router")
    if not isinstance(raw, dict):
        raise Invalid("router", "the body is {'router': {...}}")
    f = decode(RouterFields, raw, path="router")
    if f.project_id is not None:
        raise Invalid("router.project_id", "cannot be changed")
    gateway_given = "external_gateway_info" in raw
    gateway = _gateway(f.external_gateway_info or {}) if gateway_given else None
    msg = UpdateRouter(
        router_id=request.match_info["id"],
        name=f.name,
        description=f.description,
        admin_state_up=f.admin_state_up,
        gateway=gateway,
        clear_gateway=gateway_given and gateway is None,
    )
    return json_response({"router": router_body(await request.app[BUS].call(QUEUE, msg, ctx))})


async def delete_router(request: web.Request) -> web.Response:
    ctx = authenticated(request)
    await request.app[BUS].call(QUEUE, DeleteRouter(router_id=request.match_info["id"]), ctx)
    return web.Response(status=204)


@dataclass(frozen=True, slots=True, kw_only=True)
class InterfaceFields:
    subnet_id: Id | None = None
    port_id: Id | None = None


async def add_interface(request: web.Request) -> web.Response:
    ctx = authenticated(request)
    f = await read_json(request, InterfaceFields)
    msg = AddRouterInterface(router_id=request.match_info["id"], subnet_id=f.subnet_id, port_id=f.port_id)
    return json_response(interface_body(await request.app[BUS].call(QUEUE, msg, ctx)))


async def remove_interface(request: web.Request) -> web.Response:
    ctx = authenticated(request)
    f = await read_json(request, InterfaceFields)
    msg = RemoveRouterInterface(router_id=request.match_info["id"], subnet_id=f.subnet_id, port_id=f.port_id)
    return json_response(interface_body(await request.app[BUS].call(QUEUE, msg, ctx)))


# --- floating IPs ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class FloatingIpFields:
    floating_network_id: Id | None = None
    floating_ip_address: Annotated[str, MaxLen(15)] | None = None
    port_id: Id | None = None
    fixed_ip_address: Annotated[str, MaxLen(15)] | None = None
    description: Text | None = None
    dns_name: Dns | None = None
    dns_domain: Dns | None = None
    project_id: Id | None = None


async def create_floating_ip(request: web.Request) -> web.Response:
    ctx = authenticated(request)
    f: FloatingIpFields = await read_fields(request, "floatingip", FloatingIpFields)
    if f.floating_network_id is None:
        raise Invalid("floatingip.floating_network_id", "required")
    msg = CreateFloatingIp(
        floatingip_id=str(uuid.uuid4()),
        floating_network_id=f.floating_network_id,
        floating_ip_address=f.floating_ip_address,
        port_id=f.port_id,
        fixed_ip_address=f.fixed_ip_address,
        description=f.description or "",
        dns_name=f.dns_name or "",
        dns_domain=f.dns_domain or "",
        project_id=f.project_id,
    )
    created = await request.app[BUS].call(QUEUE, msg, ctx)
    return json_response({"floatingip": floating_ip_body(created)}, status=201)


async def list_floating_ips(request: web.Request) -> web.Response:
    filters = {
        "floating_network_id": "floating_network_id",
        "port_id": "port_id",
        "router_id": "router_id",
        "floating_ip_address": "floating_ip_address",
        "project_id": "project_id",
        "tenant_id": "project_id",
    }
    return await list_response(request, "floatingips", ListFloatingIps, floating_ip_body, filters)


async def show_floating_ip(request: web.Request) -> web.Response:
    ctx = authenticated(request)
    found = await request.app[BUS].call(QUEUE, GetFloatingIp(floatingip_id=request.match_info["id"]), ctx)
    return json_response({"floatingip": trim(floating_ip_body(found), request.query.getall("fields", []))})


async def update_floating_ip(request: web.Request) -> web.Response:
    """`{"floatingip": {"port_id": PORT}}` associates; `{"port_id": null}` disassociates."""
    ctx = authenticated(request)
    body = await read_json(request, dict[str, Any])
    raw = body.get("floatingip")
    if not isinstance(raw, dict):
        raise Invalid("floatingip", "the body is {'floatingip': {...}}")
    f = decode(FloatingIpFields, raw, path="floatingip")
    for fixed in ("dns_name", "dns_domain"):  # Neutron: set at create, never changed
        if getattr(f, fixed) is not None:
            raise Invalid(f"floatingip.{fixed}", "cannot be changed after the floating IP is created")
    if "port_id" not in raw:
        raise Invalid("floatingip.port_id", "required: a port to associate, or null to disassociate")
    msg = AssociateFloatingIp(
        floatingip_id=request.match_info["id"],
        port_id=f.port_id,
        fixed_ip_address=f.fixed_ip_address,
        description=f.description,
    )
    return json_response({"floatingip": floating_ip_body(await request.app[BUS].call(QUEUE, msg, ctx))})


async def delete_floating_ip(request: web.Request) -> web.Response:
    ctx = authenticated(request)
    await request.app[BUS].call(QUEUE, DeleteFloatingIp(floatingip_id=request.match_info["id"]), ctx)
    return web.Response(status=204)
