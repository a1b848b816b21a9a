"""A server's NICs, as ports of the network service (what nova/network/neutron.py is to Nova).

Ports are made, or existing ones taken, when the server is accepted, so that a request the
network cannot meet (no such network, no free address) fails at once and leaves nothing behind;
they are bound to the host when the server is placed, and given back when it is deleted: the
ports compute made are deleted, the ones the user brought are only released.
"""

import logging
import uuid
from typing import Any

from fabric.bus import Bus
from fabric.service import service_context
from protocol.compute import NetworkRequest
from protocol.compute_agent import Nic
from protocol.envelope import Context
from protocol.errors import Conflict, FabricError, Invalid, NotFound
from protocol.network import QUEUE as NETWORK
from protocol.network import (
    CreatePort,
    DeletePort,
    FixedIpRequest,
    GetNetwork,
    GetPort,
    ListNetworks,
    NetworkList,
    NetworkView,
    PortView,
    UpdatePort,
)
from protocol.network_l3 import FloatingIpList, ListFloatingIps
from protocol.security_groups import ListSecurityGroups, SecurityGroupList

log = logging.getLogger("fabric.compute")

Port = dict[str, Any]


async def _network(bus: Bus, network_id: str, field: str, ctx: Context) -> NetworkView:
    try:
        network: NetworkView = await bus.call(NETWORK, GetNetwork(network_id=network_id), ctx)
    except NotFound:
        raise Invalid(field, f"network {network_id} could not be found") from None
    return network


async def auto_network(bus: Bus, ctx: Context) -> list[NetworkRequest]:
    """Nova's `auto`: the one network the project may boot on; none when it has none."""
    found: NetworkList = await bus.call(NETWORK, ListNetworks(), ctx)
    usable = [n for n in found.items if not n.external and (n.project_id == ctx.project_id or n.shared)]
    if len(usable) > 1:
        raise Conflict("server", "multiple possible networks found: give a network id (--nic net-id=...)")
    return [NetworkRequest(network_id=n.id) for n in usable]


def _port_record(port: PortView, network: NetworkView, *, made: bool) -> Port:
    return {
        "port_id": port.id,
        "network_id": network.id,
        "network_name": network.name or network.id,
        "mac": port.mac_address,
        "mtu": network.mtu,
        "ips": [f.ip_address for f in port.fixed_ips],
        "made": made,
    }


async def security_group_ids(bus: Bus, names: tuple[str, ...], ctx: Context) -> tuple[str, ...] | None:
    """Nova takes groups by name (or id); ports take ids. None: the project's default."""
    if not names:
        return None
    found: SecurityGroupList = await bus.call(NETWORK, ListSecurityGroups(project_id=ctx.project_id), ctx)
    ids = []
    for name in names:
        match = [g.id for g in found.items if name in (g.name, g.id)]
        if not match:
            raise Invalid("server.security_groups", f"security group {name} could not be found")
        if len(match) > 1:
            raise Conflict("server", f"more than one security group is named {name}: give its id")
        ids.append(match[0])
    return tuple(ids)


async def make_ports(
    bus: Bus,
    server_id: str,
    hostname: str,
    requests: list[NetworkRequest],
    zone: str,
    ctx: Context,
    groups: tuple[str, ...] = (),
) -> list[Port]:
    ports: list[Port] = []
    group_ids = await security_group_ids(bus, groups, ctx) if requests else None
    try:
        for i, req in enumerate(requests):
            field = f"server.networks[{i}]"
            if req.port_id is not None:
                try:
                    port: PortView = await bus.call(NETWORK, GetPort(port_id=req.port_id), ctx)
                except NotFound:
                    raise Invalid(f"{field}.port", f"port {req.port_id} could not be found") from None
                if port.device_id and port.device_id != server_id:
                    raise Conflict("port", f"{port.id} is in use by {port.device_id}")
                network = await _network(bus, port.network_id, f"{field}.port", ctx)
                taken = UpdatePort(port_id=port.id, device_id=server_id, device_owner=f"compute:{zone}")
                port = await bus.call(NETWORK, taken, ctx)
                ports.append(_port_record(port, network, made=False))
                continue
            if req.network_id is None:
                raise Invalid(field, "a network (uuid) or a port")
            network = await _network(bus, req.network_id, f"{field}.uuid", ctx)
            make = CreatePort(
                port_id=str(uuid.uuid4()),
                network_id=network.id,
                fixed_ips=(FixedIpRequest(ip_address=req.fixed_ip),) if req.fixed_ip else None,
                device_id=server_id,
                device_owner=f"compute:{zone}",
                dns_name=hostname,
                security_groups=group_ids,
            )
            port = await bus.call(NETWORK, make, ctx)
            ports.append(_port_record(port, network, made=True))
    except BaseException:
        await release_ports(bus, ports, service_context(ctx.request_id))
        raise
    return ports


def addresses(ports: list[Port]) -> dict[str, list[dict[str, str]]]:
    shown: dict[str, list[dict[str, str]]] = {}
    for port in ports:
        for ip in port["ips"]:
            shown.setdefault(port["network_name"], []).append(
                {"addr": ip, "mac": port["mac"], "type": "fixed"}
            )
    return shown


async def current_addresses(bus: Bus, ports: list[Port], request_id: str) -> dict[str, list[dict[str, str]]]:
    """The server's addresses as the network service has them now: each port's fixed ones, and
    the floating IPs associated with it (listed under the same network, as Nova shows them)."""
    ctx = service_context(request_id)
    shown: dict[str, list[dict[str, str]]] = {}
    for port in ports:
        try:
            live: PortView = await bus.call(NETWORK, GetPort(port_id=port["port_id"]), ctx)
        except NotFound:
            continue
        entries = shown.setdefault(port["network_name"], [])
        entries += [{"addr": f.ip_address, "mac": live.mac_address, "type": "fixed"} for f in live.fixed_ips]
        fips: FloatingIpList = await bus.call(NETWORK, ListFloatingIps(port_id=port["port_id"]), ctx)
        entries += [
            {"addr": f.floating_ip_address, "mac": live.mac_address, "type": "floating"} for f in fips.items
        ]
    return shown


def nics(ports: list[Port]) -> tuple[Nic, ...]:
    return tuple(
        Nic(port_id=p["port_id"], network_id=p["network_id"], mac=p["mac"], mtu=p["mtu"]) for p in ports
    )


async def bind_ports(bus: Bus, ports: list[Port], host: str, request_id: str) -> None:
    """The ports are on `host` now: the network service gives that host's agent their plumbing."""
    ctx = service_context(request_id)
    for port in ports:
        await bus.call(NETWORK, UpdatePort(port_id=port["port_id"], binding_host_id=host), ctx)


async def release_ports(bus: Bus, ports: list[Port], ctx: Context) -> None:
    """Delete the ports compute made and release the others. Ports gone already are fine."""
    for port in ports:
        try:
            if port["made"]:
                await bus.call(NETWORK, DeletePort(port_id=port["port_id"]), ctx)
            else:
                freed = UpdatePort(port_id=port["port_id"], device_id="", device_owner="", binding_host_id="")
                await bus.call(NETWORK, freed, ctx)
        except NotFound:
            pass
        except FabricError as exc:
            log.warning("a port was not given back", extra={"port_id": port["port_id"], "error": exc.message})
            raise
