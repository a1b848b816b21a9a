-- Deleted servers, kept for `deleted_server_retention_s` so that a client catching up with
-- `changes-since` sees them go (Nova lists them as DELETED there); the row as it was, as jsonb,
-- so that this table never has to follow compute.servers' columns.
CREATE TABLE compute.deleted_servers (
    id text PRIMARY KEY,
    project_id text NOT NULL,
    deleted_at timestamptz NOT NULL DEFAULT now(),
    row jsonb NOT NULL
);
CREATE INDEX deleted_servers_deleted_at ON compute.deleted_servers (deleted_at);
