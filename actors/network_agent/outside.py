"""The outside namespace: "the internet" as far as this host's networks can tell.

It has one leg, `og-<network id[:11]>`, on each external network's bridge, holding that network's
subnets' gateway addresses: it plays the upstream router that routers' gateway legs point their
default route at, and the place from which floating IPs are reached (tests, or an operator's
`ip netns exec <outside> curl …`). It routes nothing further (forwarding stays off) and has no
way off the machine, so nothing sent to it leaves the host.
"""

import ipaddress

from actors.network_agent import links
from actors.network_agent.links import Leg
from actors.network_agent.names import bridge_name, outside_leg
from protocol.network_agent import HostNetworking


def outside_legs(state: HostNetworking) -> tuple[Leg, ...]:
    return tuple(
        Leg(
            namespace=state.outside_namespace,
            name=outside_leg(network.network_id),
            bridge=bridge_name(network.network_id),
            mtu=network.mtu,
            mac=None,
            addresses=tuple(
                f"{subnet.gateway_ip}/{ipaddress.ip_network(subnet.cidr).prefixlen}"
                for subnet in network.subnets
                if subnet.gateway_ip
            ),
        )
        for network in state.networks
        if network.external
    )


def needs_outside(state: HostNetworking) -> bool:
    return any(network.external for network in state.networks)


async def converge(state: HostNetworking) -> list[str]:
    actions = await links.ensure_namespace(state.outside_namespace)
    actions += await links.ensure_legs(state.outside_namespace, outside_legs(state))
    return actions
