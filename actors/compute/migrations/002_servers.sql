-- Servers and the state of their boot saga, keypairs, server groups and quotas.
CREATE TABLE compute.server_groups (
    id text PRIMARY KEY,
    name text NOT NULL,
    policy text NOT NULL CHECK (policy IN ('affinity', 'anti-affinity')),
    project_id text NOT NULL,
    user_id text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX server_groups_project ON compute.server_groups (project_id);

CREATE TABLE compute.servers (
    id text PRIMARY KEY,
    name text NOT NULL,
    description text,
    project_id text NOT NULL,
    user_id text NOT NULL,
    vm_state text NOT NULL,
    task_state text,
    power_state smallint NOT NULL DEFAULT 0,
    host text,
    -- The queue of the host's agent, as the scheduler's placement named it.
    agent_queue text,
    availability_zone text,
    -- The flavor as it was at boot (FlavorView), and the image's facts the spawn needs.
    flavor jsonb NOT NULL,
    vcpus integer NOT NULL,
    ram_mb bigint NOT NULL,
    disk_gb integer NOT NULL,
    image_id text NOT NULL,
    spawn jsonb NOT NULL,
    key_name text,
    metadata jsonb NOT NULL DEFAULT '{}',
    group_id text REFERENCES compute.server_groups (id) ON DELETE SET NULL,
    -- Hosts where a spawn failed; the next placement avoids them.
    tried_hosts text[] NOT NULL DEFAULT '{}',
    fault jsonb,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    launched_at timestamptz,
    -- When the saga last moved: a step idle for too long is driven again by the reaper.
    step_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX servers_project ON compute.servers (project_id, created_at DESC, id DESC);
CREATE INDEX servers_in_flight ON compute.servers (step_at) WHERE task_state IS NOT NULL;
CREATE INDEX servers_host ON compute.servers (host);
CREATE INDEX servers_group ON compute.servers (group_id) WHERE group_id IS NOT NULL;

CREATE TABLE compute.keypairs (
    user_id text NOT NULL,
    name text NOT NULL,
    public_key text NOT NULL,
    fingerprint text NOT NULL,
    type text NOT NULL DEFAULT 'ssh',
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, name)
);

-- Limits per project (absent: the defaults) and usage, counted in the same transaction that
-- creates or deletes what is counted, under a row lock on the usage row.
CREATE TABLE compute.quota_limits (
    project_id text NOT NULL,
    resource text NOT NULL,
    hard_limit integer NOT NULL CHECK (hard_limit >= -1),
    PRIMARY KEY (project_id, resource)
);

CREATE TABLE compute.quota_usage (
    project_id text PRIMARY KEY,
    instances integer NOT NULL DEFAULT 0 CHECK (instances >= 0),
    cores integer NOT NULL DEFAULT 0 CHECK (cores >= 0),
    ram bigint NOT NULL DEFAULT 0 CHECK (ram >= 0)
);
