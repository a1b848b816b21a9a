-- Sizes of server, and which projects may use the private ones.
CREATE TABLE compute.flavors (
    id          text PRIMARY KEY,
    name        text NOT NULL UNIQUE,
    vcpus       integer NOT NULL,
    ram         integer NOT NULL,
    disk        integer NOT NULL DEFAULT 0,
    swap        integer NOT NULL DEFAULT 0,
    ephemeral   integer NOT NULL DEFAULT 0,
    is_public   boolean NOT NULL DEFAULT true,
    rxtx_factor double precision NOT NULL DEFAULT 1.0,
    disabled    boolean NOT NULL DEFAULT false,
    description text,
    -- Free-form key/value hints to the scheduler and the hypervisor (Nova's extra specs).
    extra_specs jsonb NOT NULL DEFAULT '{}'
);
CREATE TABLE compute.flavor_access (
    flavor_id  text NOT NULL REFERENCES compute.flavors (id) ON DELETE CASCADE,
    project_id text NOT NULL,
    PRIMARY KEY (flavor_id, project_id)
);
