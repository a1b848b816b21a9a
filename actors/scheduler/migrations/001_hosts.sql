-- Hosts as their agents report them, and the allocations that claim their capacity.
-- A host's used_* columns are the sum of its allocations, kept in the same statement that
-- inserts or deletes an allocation, so a claim is one conditional UPDATE: it fails when the
-- host would overflow its limits (capacity times the over-commit ratios).
CREATE TABLE scheduler.hosts (
    host text PRIMARY KEY,
    id bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    queue text NOT NULL,
    hypervisor_type text NOT NULL,
    availability_zone text NOT NULL,
    enabled boolean NOT NULL DEFAULT true,
    vcpus integer NOT NULL,
    ram_mb bigint NOT NULL,
    disk_gb integer NOT NULL,
    vcpus_limit integer NOT NULL,
    ram_mb_limit bigint NOT NULL,
    disk_gb_limit integer NOT NULL,
    used_vcpus integer NOT NULL DEFAULT 0 CHECK (used_vcpus >= 0),
    used_ram_mb bigint NOT NULL DEFAULT 0 CHECK (used_ram_mb >= 0),
    used_disk_gb integer NOT NULL DEFAULT 0 CHECK (used_disk_gb >= 0),
    allocations integer NOT NULL DEFAULT 0 CHECK (allocations >= 0),
    running integer NOT NULL DEFAULT 0,
    last_report_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE scheduler.allocations (
    server_id text PRIMARY KEY,
    host text NOT NULL REFERENCES scheduler.hosts (host),
    project_id text NOT NULL,
    vcpus integer NOT NULL,
    ram_mb bigint NOT NULL,
    disk_gb integer NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX allocations_host ON scheduler.allocations (host);
