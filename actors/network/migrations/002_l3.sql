-- Routers and floating IPs. A router's interfaces and its gateway are ports (device_id = the
-- router, device_owner network:router_interface / network:router_gateway); a floating IP holds
-- its address through a port of its own on the external network (network:floatingip).
CREATE TABLE network.routers (
    id text PRIMARY KEY,
    name text NOT NULL DEFAULT '',
    description text NOT NULL DEFAULT '',
    project_id text NOT NULL,
    admin_state_up boolean NOT NULL DEFAULT true,
    gw_network_id text REFERENCES network.networks (id),
    gw_port_id text REFERENCES network.ports (id),
    enable_snat boolean NOT NULL DEFAULT true,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    revision_number integer NOT NULL DEFAULT 1
);
CREATE INDEX routers_project ON network.routers (project_id);

CREATE TABLE network.floating_ips (
    id text PRIMARY KEY,
    project_id text NOT NULL,
    description text NOT NULL DEFAULT '',
    floating_network_id text NOT NULL REFERENCES network.networks (id),
    floating_port_id text NOT NULL REFERENCES network.ports (id),
    floating_ip_address inet NOT NULL,
    port_id text REFERENCES network.ports (id),
    fixed_ip_address inet,
    router_id text REFERENCES network.routers (id),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    revision_number integer NOT NULL DEFAULT 1,
    UNIQUE (floating_network_id, floating_ip_address)
);
CREATE INDEX floating_ips_port ON network.floating_ips (port_id) WHERE port_id IS NOT NULL;
CREATE INDEX floating_ips_router ON network.floating_ips (router_id) WHERE router_id IS NOT NULL;
