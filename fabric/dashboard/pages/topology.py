"""The network topology picture: the project's networks as horizontal lines, and each router
and server as a box in a column of its own, joined to every network it has a port on (a
router's interfaces and its gateway, a server's NICs).

Five calls made together (networks, subnets, routers, ports, servers), whatever the number of
things on the picture. The SVG is text built here; every name in it goes through `escape`, so
a server called `<script>` is drawn as that text and nothing else.
"""

import asyncio
from dataclasses import dataclass, field
from html import escape
from typing import Any

from aiohttp import web

from fabric.dashboard.page import cloud_of, render, signed_in

#: A picture of more than this many boxes says it left some out, rather than being unreadable.
MAX_NODES = 120
LEFT = 210
COLUMN = 130
TOP = 70
ROW = 110
BOX_W, BOX_H = 110, 36


@dataclass(slots=True)
class Node:
    kind: str  # "router" or "server"
    id: str
    name: str
    status: str = ""
    #: network id -> the addresses this node has on it.
    legs: dict[str, list[str]] = field(default_factory=dict)
    gateway: str | None = None
    #: A server's floating addresses (from its `addresses`, which name them).
    floating: list[str] = field(default_factory=list)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/network-topology", topology, name="network-topology")


def nodes_of(
    routers: list[dict[str, Any]], ports: list[dict[str, Any]], servers: list[dict[str, Any]]
) -> list[Node]:
    """The routers, then the servers, each with the networks it is on."""
    found: dict[str, Node] = {}
    for r in routers:
        node = found[r["id"]] = Node("router", r["id"], r.get("name") or r["id"][:8], r.get("status", ""))
        gw = r.get("external_gateway_info") or {}
        if gw.get("network_id"):
            node.gateway = gw["network_id"]
            node.legs[gw["network_id"]] = [ip["ip_address"] for ip in gw.get("external_fixed_ips", [])]
    for s in servers:
        node = found[s["id"]] = Node("server", s["id"], s.get("name") or s["id"][:8], s.get("status", ""))
        node.floating = [
            a["addr"]
            for entries in (s.get("addresses") or {}).values()
            for a in entries
            if a.get("OS-EXT-IPS:type") == "floating"
        ]
    for p in ports:
        holder = found.get(p.get("device_id", ""))
        if holder is None or p.get("device_owner") == "network:router_gateway":
            continue
        holder.legs.setdefault(p["network_id"], []).extend(ip["ip_address"] for ip in p.get("fixed_ips", []))
    return [n for n in found.values() if n.kind == "router"] + [
        n for n in found.values() if n.kind == "server"
    ]


def _text(x: float, y: float, content: str, cls: str, anchor: str = "start") -> str:
    return f'<text x="{x:.0f}" y="{y:.0f}" class="{cls}" text-anchor="{anchor}">{escape(content)}</text>'


def _short(text: str, length: int = 16) -> str:
    return text if len(text) <= length else text[: length - 1] + "…"


def draw(networks: list[dict[str, Any]], subnets: list[dict[str, Any]], nodes: list[Node]) -> str:
    """The picture as SVG text: external networks first, then the others by name."""
    order = sorted(networks, key=lambda n: (not n.get("router:external"), n.get("name") or n["id"]))
    row = {n["id"]: i for i, n in enumerate(order)}
    cidrs: dict[str, list[str]] = {}
    for s in subnets:
        cidrs.setdefault(s["network_id"], []).append(s["cidr"])
    shown = [n for n in nodes if any(net in row for net in n.legs)][:MAX_NODES]
    width = LEFT + max(len(shown), 1) * COLUMN + 80  # room for the last column's labels
    height = TOP + max(len(order), 1) * ROW
    routers = sum(n.kind == "router" for n in shown)
    title = f"Topology: {len(order)} networks, {routers} routers, {len(shown) - routers} servers"
    parts = [
        '<svg xmlns="http://www.w3.org/2000/svg" class="topology" role="img"',
        ' aria-labelledby="topology-title"',
        f' width="{width}" height="{height}" viewBox="0 0 {width} {height}">',
        f'<title id="topology-title">{escape(title)}</title>',
    ]
    for net in order:
        y = TOP + row[net["id"]] * ROW
        kind = "external" if net.get("router:external") else "network"
        parts.append(f'<g class="net {kind}" data-network="{escape(net["id"])}">')
        parts.append(f'<line x1="10" y1="{y}" x2="{width - 10}" y2="{y}"/>')
        parts.append(_text(12, y - 8, _short(net.get("name") or net["id"], 24), "label"))
        parts.append(_text(12, y + 18, ", ".join(cidrs.get(net["id"], [])) or "no subnet", "small"))
        parts.append("</g>")
    for col, node in enumerate(shown):
        x = LEFT + col * COLUMN + BOX_W / 2
        ys = sorted(TOP + row[network_id] * ROW for network_id in node.legs if network_id in row)
        top = ys[0] - BOX_H - 14
        parts.append(f'<g class="node {node.kind}" data-{node.kind}="{escape(node.id)}">')
        parts.append(f'<line x1="{x:.0f}" y1="{top + BOX_H}" x2="{x:.0f}" y2="{ys[-1]}"/>')
        for network_id, addresses in node.legs.items():
            if network_id not in row:
                continue
            y = TOP + row[network_id] * ROW
            parts.append(f'<circle cx="{x:.0f}" cy="{y}" r="4"/>')
            label = ("gateway " if network_id == node.gateway else "") + ", ".join(addresses[:2])
            parts.append(_text(x + 6, y + 16, _short(label, 22), "small"))
        corner = 10 if node.kind == "router" else 3
        parts.append(
            f'<rect x="{x - BOX_W / 2:.0f}" y="{top}" width="{BOX_W}" height="{BOX_H}" rx="{corner}"/>'
        )
        parts.append(_text(x, top + 15, _short(node.name), "name", "middle"))
        parts.append(_text(x, top + 29, f"{node.kind} {node.status}".strip(), "small", "middle"))
        if node.floating:
            parts.append(
                _text(x + 6, ys[-1] + 30, _short("floating " + ", ".join(node.floating), 22), "small")
            )
        parts.append("</g>")
    parts.append("</svg>")
    return "".join(parts)


async def topology(request: web.Request) -> web.Response:
    session = signed_in(request)
    assert session.token is not None
    cloud = cloud_of(request)
    networks, subnets, routers, ports, servers = await asyncio.gather(
        cloud.get("network", "/v2.0/networks"),
        cloud.get("network", "/v2.0/subnets"),
        cloud.get("network", "/v2.0/routers"),
        cloud.get("network", "/v2.0/ports", project_id=session.token.project.id),
        cloud.get("compute", "/servers/detail", limit="1000"),
    )
    nodes = nodes_of(routers["routers"], ports["ports"], servers["servers"])
    # The project's own networks, and of the shared and external ones (every project sees
    # them all) those something of the project is on.
    used = {network_id for n in nodes for network_id in n.legs}
    shown = [
        n for n in networks["networks"] if n.get("project_id") == session.token.project.id or n["id"] in used
    ]
    picture = draw(shown, subnets["subnets"], nodes)
    unplaced = [n for n in nodes if not n.legs]
    context = {"picture": picture, "unplaced": unplaced, "is_empty": not shown}
    return render(request, "topology.html", context)
