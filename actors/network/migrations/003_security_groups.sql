-- Security groups, their rules, and which groups each port is in.
CREATE TABLE network.security_groups (
    id text PRIMARY KEY,
    name text NOT NULL,
    description text NOT NULL DEFAULT '',
    project_id text NOT NULL,
    is_default boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    revision_number integer NOT NULL DEFAULT 1
);
CREATE INDEX security_groups_project ON network.security_groups (project_id);
-- One `default` group per project, however many replicas make it at once.
CREATE UNIQUE INDEX security_groups_default ON network.security_groups (project_id) WHERE is_default;

CREATE TABLE network.security_group_rules (
    id text PRIMARY KEY,
    security_group_id text NOT NULL REFERENCES network.security_groups (id) ON DELETE CASCADE,
    project_id text NOT NULL,
    direction text NOT NULL CHECK (direction IN ('ingress', 'egress')),
    ethertype text NOT NULL DEFAULT 'IPv4',
    protocol text,
    port_range_min integer,
    port_range_max integer,
    remote_ip_prefix cidr,
    remote_group_id text REFERENCES network.security_groups (id) ON DELETE CASCADE,
    description text NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    revision_number integer NOT NULL DEFAULT 1
);
-- A rule a group has already is a 409, as in Neutron.
CREATE UNIQUE INDEX security_group_rules_unique ON network.security_group_rules (
    security_group_id, direction, ethertype, coalesce(protocol, ''), coalesce(port_range_min, -1),
    coalesce(port_range_max, -1), coalesce(remote_ip_prefix::text, ''), coalesce(remote_group_id, ''));

CREATE TABLE network.port_security_groups (
    port_id text NOT NULL REFERENCES network.ports (id) ON DELETE CASCADE,
    security_group_id text NOT NULL REFERENCES network.security_groups (id),
    PRIMARY KEY (port_id, security_group_id)
);
CREATE INDEX port_security_groups_group ON network.port_security_groups (security_group_id);
