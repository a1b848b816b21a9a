"""The network agent's kernel plumbing: bridges, namespaces, veths (pyroute2), DHCP (dnsmasq),
router NAT and security groups (nftables), converged to a `protocol.network_agent.HostNetworking`.

    from actors.network_agent.converge import converge, teardown_all
    report = await converge(state, state_dir=Path("/var/lib/fabric/network"))

See converge.py for how, and docs/ARCHITECTURE.md ("Network agent plumbing") for the objects.
"""
