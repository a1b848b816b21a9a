"""Network v2.0 security groups and rules under `/network/v2.0`."""

import uuid
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from aiohttp import web

from fabric.gateway.context import BUS, authenticated
from fabric.gateway.http import json_response
from fabric.gateway.network import ROOT, Name, Text, list_response, read_fields, trim
from fabric.gateway.times import seconds as iso
from protocol.codec import MaxLen, MinLen, Range
from protocol.errors import Invalid
from protocol.network import QUEUE
from protocol.security_groups import (
    CreateSecurityGroup,
    CreateSecurityGroupRule,
    DeleteSecurityGroup,
    DeleteSecurityGroupRule,
    GetSecurityGroup,
    GetSecurityGroupRule,
    ListSecurityGroupRules,
    ListSecurityGroups,
    RuleView,
    SecurityGroupView,
    UpdateSecurityGroup,
)

Id = Annotated[str, MinLen(1), MaxLen(64)]
#: Protocols by the names and numbers clients send; None: any.
PROTOCOLS: dict[str, str | None] = {
    "tcp": "tcp", "6": "tcp", "udp": "udp", "17": "udp", "icmp": "icmp", "1": "icmp", "any": None,
}  # fmt: skip


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get(f"{ROOT}/security-groups", list_groups)
    r.add_post(f"{ROOT}/security-groups", create_group)
    r.add_get(f"{ROOT}/security-groups/{{id}}", show_group)
    r.add_put(f"{ROOT}/security-groups/{{id}}", update_group)
    r.add_delete(f"{ROOT}/security-groups/{{id}}", delete_group)
    r.add_get(f"{ROOT}/security-group-rules", list_rules)
    r.add_post(f"{ROOT}/security-group-rules", create_rule)
    r.add_get(f"{ROOT}/security-group-rules/{{id}}", show_rule)
    r.add_delete(f"{ROOT}/security-group-rules/{{id}}", delete_rule)


def rule_body(r: RuleView) -> dict[str, Any]:
    return {
        "id": r.id,
        "security_group_id": r.security_group_id,
        "direction": r.direction,
        "ethertype": r.ethertype,
        "protocol": r.protocol,
        "port_range_min": r.port_range_min,
        "port_range_max": r.port_range_max,
        "remote_ip_prefix": r.remote_ip_prefix,
        "normalized_cidr": r.remote_ip_prefix,
        "remote_group_id": r.remote_group_id,
        "remote_address_group_id": None,
        "description": r.description,
        "project_id": r.project_id,
        "tenant_id": r.project_id,
        "tags": [],
        "created_at": iso(r.created_at),
        "updated_at": iso(r.updated_at),
        "revision_number": r.revision_number,
    }


def group_body(g: SecurityGroupView) -> dict[str, Any]:
    return {
        "id": g.id,
        "name": g.name,
        "description": g.description,
        "project_id": g.project_id,
        "tenant_id": g.project_id,
        "security_group_rules": [rule_body(r) for r in g.rules],
        "stateful": True,
        "shared": False,
        "tags": [],
        "created_at": iso(g.created_at),
        "updated_at": iso(g.updated_at),
        "revision_number": g.revision_number,
    }


@dataclass(frozen=True, slots=True, kw_only=True)
class GroupFields:
    name: Name | None = None
    description: Text | None = None
    project_id: Id | None = None
    stateful: bool = True


async def create_group(request: web.Request) -> web.Response:
    ctx = authenticated(request)
    f: GroupFields = await read_fields(request, "security_group", GroupFields)
    if not f.name:
        raise Invalid("security_group.name", "required")
    if not f.stateful:
        raise Invalid("security_group.stateful", "only stateful groups are supported")
    msg = CreateSecurityGroup(group_id=str(uuid.uuid4()), name=f.name, description=f.description or "",
                              project_id=f.project_id)  # fmt: skip
    created = await request.app[BUS].call(QUEUE, msg, ctx)
    return json_response({"security_group": group_body(created)}, status=201)


async def list_groups(request: web.Request) -> web.Response:
    filters = {"name": "name", "project_id": "project_id", "tenant_id": "project_id"}
    return await list_response(request, "security_groups", ListSecurityGroups, group_body, filters)


async def show_group(request: web.Request) -> web.Response:
    ctx = authenticated(request)
    found = await request.app[BUS].call(QUEUE, GetSecurityGroup(group_id=request.match_info["id"]), ctx)
    return json_response({"security_group": trim(group_body(found), request.query.getall("fields", []))})


async def update_group(request: web.Request) -> web.Response:
    ctx = authenticated(request)
    f: GroupFields = await read_fields(request, "security_group", GroupFields)
    msg = UpdateSecurityGroup(group_id=request.match_info["id"], name=f.name, description=f.description)
    return json_response({"security_group": group_body(await request.app[BUS].call(QUEUE, msg, ctx))})


async def delete_group(request: web.Request) -> web.Response:
    ctx = authenticated(request)
    await request.app[BUS].call(QUEUE, DeleteSecurityGroup(group_id=request.match_info["id"]), ctx)
    return web.Response(status=204)


@dataclass(frozen=True, slots=True, kw_only=True)
class RuleFields:
    security_group_id: Id | None = None
    direction: Literal["ingress", "egress"] | None = None
    ethertype: Annotated[str, MaxLen(8)] = "IPv4"
    protocol: Annotated[str, MaxLen(16)] | int | None = None
    port_range_min: Annotated[int, Range(0, 65535)] | None = None
    port_range_max: Annotated[int, Range(0, 65535)] | None = None
    remote_ip_prefix: Annotated[str, MaxLen(43)] | None = None
    remote_group_id: Id | None = None
    description: Text | None = None


async def create_rule(request: web.Request) -> web.Response:
    ctx = authenticated(request)
    f: RuleFields = await read_fields(request, "security_group_rule", RuleFields)
    if f.security_group_id is None:
        raise Invalid("security_group_rule.security_group_id", "required")
    if f.direction is None:
        raise Invalid("security_group_rule.direction", "required: ingress or egress")
    if f.ethertype != "IPv4":
        raise Invalid("security_group_rule.ethertype", "only IPv4 is supported")
    protocol = None if f.protocol is None else str(f.protocol).lower()
    if protocol is not None and protocol not in PROTOCOLS:
        raise Invalid("security_group_rule.protocol", "tcp, udp, icmp (or 6, 17, 1), or any")
    msg = CreateSecurityGroupRule(
        rule_id=str(uuid.uuid4()),
        security_group_id=f.security_group_id,
        direction=f.direction,
        protocol=PROTOCOLS[protocol] if protocol is not None else None,  # type: ignore[arg-type]
        port_range_min=f.port_range_min,
        port_range_max=f.port_range_max,
        remote_ip_prefix=f.remote_ip_prefix,
        remote_group_id=f.remote_group_id,
        description=f.description or "",
    )
    created = await request.app[BUS].call(QUEUE, msg, ctx)
    return json_response({"security_group_rule": rule_body(created)}, status=201)


async def list_rules(request: web.Request) -> web.Response:
    filters = {
        "security_group_id": "security_group_id",
        "direction": "direction",
        "protocol": "protocol",
        "project_id": "project_id",
        "tenant_id": "project_id",
    }
    return await list_response(request, "security_group_rules", ListSecurityGroupRules, rule_body, filters)


async def show_rule(request: web.Request) -> web.Response:
    ctx = authenticated(request)
    found = await request.app[BUS].call(QUEUE, GetSecurityGroupRule(rule_id=request.match_info["id"]), ctx)
    return json_response({"security_group_rule": trim(rule_body(found), request.query.getall("fields", []))})


async def delete_rule(request: web.Request) -> web.Response:
    ctx = authenticated(request)
    await request.app[BUS].call(QUEUE, DeleteSecurityGroupRule(rule_id=request.match_info["id"]), ctx)
    return web.Response(status=204)
