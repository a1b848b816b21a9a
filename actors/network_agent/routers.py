"""Routers: one namespace `qrouter-<router id>` each, routing between its legs.

    qr-<port>   a leg in each tenant subnet, holding the subnet's gateway address
    qg-<port>   the leg on the external network: the router's external address and, as /32s,
                its floating IPs (so that the router answers ARP for them)
    default     via `gateway_next_hop` (the external subnet's gateway, in the outside namespace)
    nftables    table ip fabric_router: DNAT of each floating IP to its fixed IP (prerouting),
                SNAT of that fixed IP to its floating IP, then of everything else to the
                gateway address (postrouting, out of qg- only; `snat` false: no such fallback)

IPv4 forwarding is on in the namespace (a namespace starts with it off).
"""

from actors.network_agent import links
from actors.network_agent.commands import PlumbingFailed
from actors.network_agent.links import Leg
from actors.network_agent.names import (
    ROUTER_TABLE,
    bridge_name,
    router_gateway_leg,
    router_interface_leg,
    router_namespace,
)
from actors.network_agent.nftables import Chain, Table, ensure_tables
from protocol.network_agent import NetworkPlumbing, RouterLeg, RouterPlumbing


def router_legs(router: RouterPlumbing, mtus: dict[str, int]) -> tuple[Leg, ...]:
    """The router's legs; `mtus` is each network's MTU by id. A leg on a network this host does
    not know is an error: there is no bridge to join."""
    namespace = router_namespace(router.router_id)

    def leg(plumbing: RouterLeg, name: str, extra: tuple[str, ...]) -> Leg:
        if plumbing.network_id not in mtus:
            raise PlumbingFailed(
                f"router {router.router_id}: network {plumbing.network_id} is not in the state"
            )
        return Leg(
            namespace=namespace,
            name=name,
            bridge=bridge_name(plumbing.network_id),
            mtu=mtus[plumbing.network_id],
            mac=plumbing.mac,
            addresses=(plumbing.address, *extra),
        )

    legs = [leg(i, router_interface_leg(i.port_id), ()) for i in router.interfaces]
    if router.gateway is not None:
        floating = tuple(f"{f.floating_ip}/32" for f in router.floating_ips)
        legs.append(leg(router.gateway, router_gateway_leg(router.gateway.port_id), floating))
    return tuple(legs)


def nat_table(router: RouterPlumbing) -> Table | None:
    """The router's NAT rules; None when it has nothing to translate. Pure."""
    if router.gateway is None or not (router.snat or router.floating_ips):
        return None
    qg = router_gateway_leg(router.gateway.port_id)
    gateway_ip = router.gateway.address.partition("/")[0]
    dnat = tuple(f"ip daddr {f.floating_ip} dnat to {f.fixed_ip}" for f in router.floating_ips)
    snat = [f'oifname "{qg}" ip saddr {f.fixed_ip} snat to {f.floating_ip}' for f in router.floating_ips]
    if router.snat:
        snat.append(f'oifname "{qg}" snat to {gateway_ip}')
    family, name = ROUTER_TABLE
    return Table(
        family,
        name,
        (
            Chain("prerouting", dnat, "type nat hook prerouting priority dstnat; policy accept;"),
            # Traffic the router itself sends to a floating IP (none today, but cheap to get right).
            Chain("output", dnat, "type nat hook output priority -100; policy accept;"),
            Chain("postrouting", tuple(snat), "type nat hook postrouting priority srcnat; policy accept;"),
        ),
    )


async def converge(router: RouterPlumbing, networks: tuple[NetworkPlumbing, ...]) -> list[str]:
    namespace = router_namespace(router.router_id)
    legs = router_legs(router, {n.network_id: n.mtu for n in networks})
    actions = await links.ensure_namespace(namespace, {"net/ipv4/ip_forward": "1"})
    actions += await links.ensure_legs(namespace, legs)
    next_hop = router.gateway_next_hop if router.gateway is not None else None
    actions += await links.ensure_default_route(namespace, next_hop)
    actions += await ensure_tables(namespace, {ROUTER_TABLE: nat_table(router)})
    return actions
