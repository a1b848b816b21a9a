-- Networks, subnets, ports and the addresses ports hold.
CREATE TABLE network.networks (
    id text PRIMARY KEY,
    name text NOT NULL DEFAULT '',
    description text NOT NULL DEFAULT '',
    project_id text NOT NULL,
    admin_state_up boolean NOT NULL DEFAULT true,
    shared boolean NOT NULL DEFAULT false,
    external boolean NOT NULL DEFAULT false,
    mtu integer NOT NULL DEFAULT 1500,
    port_security_enabled boolean NOT NULL DEFAULT true,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    revision_number integer NOT NULL DEFAULT 1
);
CREATE INDEX networks_project ON network.networks (project_id);

CREATE TABLE network.subnets (
    id text PRIMARY KEY,
    network_id text NOT NULL REFERENCES network.networks (id),
    name text NOT NULL DEFAULT '',
    description text NOT NULL DEFAULT '',
    project_id text NOT NULL,
    cidr cidr NOT NULL,
    gateway_ip inet,
    -- [[start, end], ...] as text, inclusive.
    allocation_pools jsonb NOT NULL,
    enable_dhcp boolean NOT NULL DEFAULT true,
    dns_nameservers jsonb NOT NULL DEFAULT '[]',
    host_routes jsonb NOT NULL DEFAULT '[]',
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    revision_number integer NOT NULL DEFAULT 1
);
CREATE INDEX subnets_network ON network.subnets (network_id);

CREATE TABLE network.ports (
    id text PRIMARY KEY,
    network_id text NOT NULL REFERENCES network.networks (id),
    name text NOT NULL DEFAULT '',
    description text NOT NULL DEFAULT '',
    project_id text NOT NULL,
    mac_address macaddr NOT NULL,
    device_id text NOT NULL DEFAULT '',
    device_owner text NOT NULL DEFAULT '',
    binding_host_id text NOT NULL DEFAULT '',
    status text NOT NULL DEFAULT 'DOWN',
    admin_state_up boolean NOT NULL DEFAULT true,
    port_security_enabled boolean NOT NULL DEFAULT true,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    revision_number integer NOT NULL DEFAULT 1,
    UNIQUE (network_id, mac_address)
);
CREATE INDEX ports_network ON network.ports (network_id);
CREATE INDEX ports_device ON network.ports (device_id) WHERE device_id <> '';
CREATE INDEX ports_project ON network.ports (project_id);

-- One row per address held: the primary key is what makes an address impossible to hand out
-- twice, whatever replicas do.
CREATE TABLE network.ip_allocations (
    subnet_id text NOT NULL REFERENCES network.subnets (id),
    ip_address inet NOT NULL,
    port_id text NOT NULL REFERENCES network.ports (id) ON DELETE CASCADE,
    PRIMARY KEY (subnet_id, ip_address)
);
CREATE INDEX ip_allocations_port ON network.ip_allocations (port_id);
