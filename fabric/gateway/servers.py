"""Compute v2.1 servers under `/compute/v2.1/servers`: create, list, show, delete, actions.

Bodies follow Nova's 2.1 schema, which tempest checks strictly: `flavor` and `image` as
`{id, links}`, times without fractions, the `OS-EXT-*` attributes (host ones for admins only),
and a `fault` on servers in ERROR.
"""

import hashlib
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from aiohttp import web

from fabric.gateway import times
from fabric.gateway.compute import base_url
from fabric.gateway.context import BUS, SETTINGS, authenticated
from fabric.gateway.http import json_response, next_links, query_bool, query_str, read_json, read_json_value
from fabric.gateway.microversion import Version, version_of
from protocol.codec import MaxLen, MinLen, Range, decode
from protocol.compute import (
    QUEUE,
    CreateServer,
    DeleteServer,
    GetServer,
    GetServerConsole,
    ListServers,
    NetworkRequest,
    PowerAction,
    RootVolume,
    ServerView,
    SetServerPower,
    hostname_of,
)
from protocol.compute_agent import ConsoleOutput
from protocol.envelope import Context
from protocol.errors import Invalid

#: At most this many servers from one create request (`max_count`).
MAX_COUNT = 100


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/compute/v2.1/servers", list_servers)
    r.add_get("/compute/v2.1/servers/detail", list_servers_detail)
    r.add_post("/compute/v2.1/servers", create_server)
    r.add_get("/compute/v2.1/servers/{server_id}", show_server)
    r.add_delete("/compute/v2.1/servers/{server_id}", delete_server)
    r.add_post("/compute/v2.1/servers/{server_id}/action", server_action)


def server_body(
    base: str, s: ServerView, ctx: Context, version: Version, *, detail: bool = True
) -> dict[str, Any]:
    root = base.removesuffix("/v2.1")
    links = [
        {"rel": "self", "href": f"{base}/servers/{s.id}"},
        {"rel": "bookmark", "href": f"{root}/servers/{s.id}"},
    ]
    if not detail:
        return {"id": s.id, "name": s.name, "links": links}
    host_id = hashlib.sha224(f"{s.project_id}{s.host}".encode()).hexdigest() if s.host else ""
    body: dict[str, Any] = {
        "id": s.id,
        "name": s.name,
        "status": s.status,
        "tenant_id": s.project_id,
        "user_id": s.user_id,
        "metadata": s.metadata,
        "hostId": host_id,
        # Nova shows a server booted from a volume with the image "".
        "image": {"id": s.image_id, "links": [{"rel": "bookmark", "href": f"{root}/images/{s.image_id}"}]}
        if s.image_id
        else "",
        "flavor": {
            "id": s.flavor.id,
            "links": [{"rel": "bookmark", "href": f"{root}/flavors/{s.flavor.id}"}],
        },
        "created": times.seconds(s.created_at),
        "updated": times.seconds(s.updated_at),
        "addresses": {
            name: [
                {"addr": a.addr, "version": 4, "OS-EXT-IPS:type": a.type, "OS-EXT-IPS-MAC:mac_addr": a.mac}
                for a in entries
            ]
            for name, entries in s.addresses.items()
        },
        "accessIPv4": "",
        "accessIPv6": "",
        "links": links,
        "OS-DCF:diskConfig": "MANUAL",
        "progress": 0,
        "OS-EXT-AZ:availability_zone": s.availability_zone or "nova",
        "config_drive": "",
        "key_name": s.key_name,
        "OS-SRV-USG:launched_at": times.micros_or_none(s.launched_at),  # microseconds, no zone, as Nova
        "OS-SRV-USG:terminated_at": None,
        "OS-EXT-STS:task_state": s.task_state,
        "OS-EXT-STS:vm_state": s.vm_state,
        "OS-EXT-STS:power_state": s.power_state,
        "os-extended-volumes:volumes_attached": [
            {"id": v.id, "delete_on_termination": v.delete_on_termination}
            if version >= (2, 3)
            else {"id": v.id}
            for v in s.volumes_attached
        ],
    }
    if ctx.is_admin:
        body["OS-EXT-SRV-ATTR:host"] = s.host
        body["OS-EXT-SRV-ATTR:hypervisor_hostname"] = s.host
        body["OS-EXT-SRV-ATTR:instance_name"] = f"fabric-{s.id}"
        if version >= (2, 3):
            body["OS-EXT-SRV-ATTR:reservation_id"] = f"r-{s.id[:8]}"
            body["OS-EXT-SRV-ATTR:launch_index"] = 0
            body["OS-EXT-SRV-ATTR:hostname"] = hostname_of(s.name)
            body["OS-EXT-SRV-ATTR:kernel_id"] = s.kernel_id or ""
            body["OS-EXT-SRV-ATTR:ramdisk_id"] = s.ramdisk_id or ""
            body["OS-EXT-SRV-ATTR:root_device_name"] = "/dev/vda"
            body["OS-EXT-SRV-ATTR:user_data"] = None
        if version >= (2, 16):
            # Compute does not watch hosts' health (the scheduler does): say so, not "UP".
            body["host_status"] = "UNKNOWN" if s.host else ""
    if version >= (2, 9):
        body["locked"] = False
    if version >= (2, 19):
        body["description"] = s.description
    if version >= (2, 26):
        body["tags"] = []
    if s.fault is not None:
        fault: dict[str, Any] = {
            "code": s.fault.code,
            "message": s.fault.message,
            "created": times.seconds(s.fault.created),
        }
        if ctx.is_admin or s.fault.code != 500:
            fault["details"] = s.fault.details
        body["fault"] = fault
    return body


# --- create ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerFields:
    name: Annotated[str, MinLen(1), MaxLen(255)]
    flavorRef: Annotated[str, MinLen(1), MaxLen(255)]  # Nova's names
    description: Annotated[str, MaxLen(255)] | None = None
    imageRef: Annotated[str, MaxLen(255)] | None = None
    key_name: Annotated[str, MinLen(1), MaxLen(255)] | None = None
    availability_zone: Annotated[str, MinLen(1), MaxLen(255)] | None = None
    metadata: dict[str, Annotated[str, MaxLen(255)]] = field(default_factory=dict)
    min_count: Annotated[int, Range(1, MAX_COUNT)] = 1
    max_count: Annotated[int, Range(1, MAX_COUNT)] | None = None
    networks: Any = None
    block_device_mapping_v2: Any = None
    security_groups: Any = None
    user_data: Annotated[str, MaxLen(65535)] | None = None
    config_drive: Any = None
    adminPass: Annotated[str, MaxLen(255)] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class CreateRequest:
    server: dict[str, Any]
    hints: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class BlockDeviceMapping:
    """One entry of Nova's block_device_mapping_v2, as far as this cloud takes them."""

    source_type: Literal["image", "volume", "snapshot", "blank"]
    destination_type: Literal["local", "volume"] = "local"
    uuid: Annotated[str, MinLen(1), MaxLen(64)] | None = None
    boot_index: int | str | None = None
    volume_size: int | str | None = None
    delete_on_termination: bool = False


def _boot_source(fields: ServerFields) -> tuple[str, RootVolume | None]:
    """The image to boot from, or the root volume: imageRef, OSC's image→local mapping (it
    sends both), or a mapping with boot_index 0 onto a volume (an existing volume, or one made
    from an image: `--volume`, `--boot-from-volume`)."""
    mappings = fields.block_device_mapping_v2 or []
    if not isinstance(mappings, list):
        raise Invalid("server.block_device_mapping_v2", "a list of block device mappings")
    image_id = fields.imageRef.rstrip("/").rsplit("/", 1)[-1] if fields.imageRef else None  # a URL too
    root = None
    for i, raw in enumerate(mappings):
        at = f"server.block_device_mapping_v2[{i}]"
        m = decode(BlockDeviceMapping, raw, path=at, allow_extra=True)
        boot_index = _whole(m.boot_index, f"{at}.boot_index")
        if m.destination_type == "local":
            if m.source_type != "image" or boot_index not in (None, 0):
                raise Invalid(at, "only the image may be on local disk; other disks must be volumes")
            image_id = image_id or m.uuid
            continue
        if boot_index != 0:
            raise Invalid(f"{at}.boot_index", "only the root volume (boot_index 0) can be given at create")
        if m.source_type not in ("image", "volume") or m.uuid is None:
            raise Invalid(f"{at}.source_type", "boot from an existing volume, or an image made into one")
        size = _whole(m.volume_size, f"{at}.volume_size")
        if size is not None and size < 1:
            raise Invalid(f"{at}.volume_size", "at least 1 GiB")
        root = RootVolume(
            volume_id=m.uuid if m.source_type == "volume" else None,
            image_id=m.uuid if m.source_type == "image" else None,
            size_gb=size,
            delete_on_termination=m.delete_on_termination,
        )
    if root is not None:
        return "", root
    if not image_id:
        raise Invalid("server.imageRef", "an image to boot from is required")
    return image_id, None


def _whole(value: int | str | None, field: str) -> int | None:
    """Nova takes whole numbers as numbers or strings here."""
    if value is None or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    if isinstance(value, str) and value.lstrip("-").isdigit():
        return int(value)
    raise Invalid(field, "a whole number")


def _networks(networks: Any, version: Version) -> tuple[tuple[NetworkRequest, ...], bool]:
    """The NICs asked for, and whether `auto` was. From 2.37 `networks` is required: "none",
    "auto" or a list. Before it a missing `networks` means no NIC (Nova would take the one
    network available; here a server gets a NIC only when asked, which keeps boots predictable
    in projects with several networks)."""
    if version >= (2, 37):
        if networks is None:
            raise Invalid("server.networks", "required from microversion 2.37: none, auto or a list")
        if networks in ("none", "auto"):
            return (), networks == "auto"
    elif networks is None:
        return (), False
    elif isinstance(networks, str):
        raise Invalid("server.networks", f"{networks[:20]!r} needs microversion 2.37 or later")
    if not isinstance(networks, list):
        raise Invalid("server.networks", "a list of {uuid, port, fixed_ip}")
    requests = []
    for i, raw in enumerate(networks):
        if not isinstance(raw, dict):
            raise Invalid(f"server.networks[{i}]", "an object with uuid, port or fixed_ip")
        fields = {"network_id": raw.get("uuid"), "port_id": raw.get("port"), "fixed_ip": raw.get("fixed_ip")}
        request = decode(NetworkRequest, fields, path=f"server.networks[{i}]")
        if request.network_id is None and request.port_id is None:
            raise Invalid(f"server.networks[{i}]", "give uuid (a network) or port")
        requests.append(request)
    return tuple(requests), False


def _security_groups(raw: Any) -> tuple[str, ...]:
    """`[{"name": "web"}, ...]` as Nova takes them."""
    if raw is None:
        return ()
    if not isinstance(raw, list) or not all(
        isinstance(g, dict) and isinstance(g.get("name"), str) for g in raw
    ):
        raise Invalid("server.security_groups", "a list of {name}")
    return tuple(str(g["name"]) for g in raw)


async def create_server(request: web.Request) -> web.Response:
    ctx = authenticated(request)
    body = decode(CreateRequest, _rename_hints(await read_json_value(request)), path="")
    fields = decode(ServerFields, body.server, path="server")
    version = version_of(request)
    if fields.description is not None and version < (2, 19):
        raise Invalid("server.description", "needs microversion 2.19 or later")
    networks, auto = _networks(fields.networks, version)
    count = fields.max_count or fields.min_count
    if count < fields.min_count:
        raise Invalid("server.max_count", "must not be less than min_count")
    group = (body.hints or {}).get("group")
    if group is not None and not isinstance(group, str):
        raise Invalid("os:scheduler_hints.group", "a server group id")
    image_id, root_volume = _boot_source(fields)
    flavor_id = fields.flavorRef.rstrip("/").rsplit("/", 1)[-1]
    bus = request.app[BUS]
    first = None
    for i in range(count):
        msg = CreateServer(
            server_id=str(uuid.uuid4()),
            name=fields.name if count == 1 else f"{fields.name}-{i + 1}",
            description=fields.description,
            networks=networks,
            auto_network=auto,
            security_groups=_security_groups(fields.security_groups),
            image_id=image_id,
            flavor_id=flavor_id,
            key_name=fields.key_name,
            availability_zone=fields.availability_zone,
            metadata=fields.metadata,
            group_id=group,
            root_volume=root_volume,
        )
        created = await bus.call(QUEUE, msg, ctx)
        first = first or created
    assert first is not None
    base = base_url(request)
    out = server_body(base, first, ctx, version, detail=False)
    out |= {"OS-DCF:diskConfig": "MANUAL", "security_groups": [{"name": "default"}], "adminPass": ""}
    return json_response({"server": out}, status=202)


def _rename_hints(raw: Any) -> Any:
    if isinstance(raw, dict) and "os:scheduler_hints" in raw:
        raw = dict(raw)
        raw["hints"] = raw.pop("os:scheduler_hints")
    return raw


# --- read --------------------------------------------------------------------------------------


def _list_message(request: web.Request, ctx: Context) -> ListServers:
    query: dict[str, Any] = {}
    for name in ("name", "status", "host", "marker"):
        value = query_str(request, name)
        if value is not None:
            query[name] = value
    for name, key in (("image", "image_id"), ("flavor", "flavor_id")):
        value = query_str(request, name)
        if value is not None:
            query[key] = value.rstrip("/").rsplit("/", 1)[-1]
    since = query_str(request, "changes-since") or query_str(request, "changes_since")
    if since is not None:
        try:
            when = datetime.fromisoformat(since.replace("Z", "+00:00"))
            query["changes_since"] = (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()
        except ValueError:
            raise Invalid("changes-since", "an ISO 8601 time, e.g. 2026-11-26T03:40:00Z") from None
    limit = query_str(request, "limit")
    if limit is not None:
        if not limit.isdigit():
            raise Invalid("limit", "a whole number")
        query["limit"] = max(1, min(int(limit), 1000))
    all_projects = query_bool(request, "all_tenants")
    if all_projects is None and "all_tenants" in request.query:  # `?all_tenants` alone means yes
        all_projects = True
    project = query_str(request, "project_id") or query_str(request, "tenant_id")
    query["all_projects"] = bool(all_projects) and project is None
    if project is not None:
        query["project_id"] = project
    if query_bool(request, "deleted"):
        query["status"] = "DELETED"  # the deleted servers still kept (deleted_server_retention_s)
    return decode(ListServers, query, path="query")


async def _list(request: web.Request, *, detail: bool) -> web.Response:
    ctx = authenticated(request)
    msg = _list_message(request, ctx)
    found = await request.app[BUS].call(QUEUE, msg, ctx)
    base = base_url(request)
    version = version_of(request)
    body: dict[str, Any] = {
        "servers": [server_body(base, s, ctx, version, detail=detail) for s in found.items]
    }
    if found.more:
        body["servers_links"] = next_links(
            request, request.app[SETTINGS].gateway_url, msg.limit, found.items[-1].id
        )
    return json_response(body)


async def list_servers(request: web.Request) -> web.Response:
    return await _list(request, detail=False)


async def list_servers_detail(request: web.Request) -> web.Response:
    return await _list(request, detail=True)


async def show_server(request: web.Request) -> web.Response:
    ctx = authenticated(request)
    found = await request.app[BUS].call(QUEUE, GetServer(server_id=request.match_info["server_id"]), ctx)
    return json_response({"server": server_body(base_url(request), found, ctx, version_of(request))})


async def delete_server(request: web.Request) -> web.Response:
    ctx = authenticated(request)
    await request.app[BUS].call(QUEUE, DeleteServer(server_id=request.match_info["server_id"]), ctx)
    return web.Response(status=204)


# --- actions -----------------------------------------------------------------------------------

POWER: dict[str, PowerAction] = {"os-start": "start", "os-stop": "stop"}


async def server_action(request: web.Request) -> web.Response:
    """`{"os-start": null}`, `{"os-stop": null}`, `{"reboot": {"type": "SOFT"|"HARD"}}`,
    `{"os-getConsoleOutput": {"length": N}}` (the CLI sends `{}`)."""
    ctx = authenticated(request)
    server_id = request.match_info["server_id"]
    body = await read_json(request, dict[str, Any])
    if len(body) != 1:
        raise Invalid("body", "exactly one action")
    ((action, args),) = body.items()
    bus = request.app[BUS]
    if action in POWER:
        await bus.call(QUEUE, SetServerPower(server_id=server_id, action=POWER[action]), ctx)
        return web.Response(status=202)
    if action == "reboot":
        kind = args.get("type") if isinstance(args, dict) else None
        if not isinstance(kind, str) or kind.upper() not in ("SOFT", "HARD"):
            raise Invalid("reboot.type", "SOFT or HARD")
        power: PowerAction = "soft-reboot" if kind.upper() == "SOFT" else "hard-reboot"
        await bus.call(QUEUE, SetServerPower(server_id=server_id, action=power), ctx)
        return web.Response(status=202)
    if action == "os-getConsoleOutput":
        if not isinstance(args, dict):
            raise Invalid("os-getConsoleOutput", "an object, optionally with length")
        length = args.get("length")
        if isinstance(length, str) and length.lstrip("-").isdigit():
            length = int(length)
        if length is not None and (type(length) is not int or length < -1):
            raise Invalid("os-getConsoleOutput.length", "a whole number of lines, or -1 for all")
        lines = None if length in (None, -1) else length
        out: ConsoleOutput = await bus.call(QUEUE, GetServerConsole(server_id=server_id, lines=lines), ctx)
        return json_response({"output": out.output})
    raise Invalid("body", f"there is no such action: {action[:60]}")
