-- A server's volumes, one row per volume attached or on its way there: `attaching` (reserved
-- with the volume service, the host's agent asked to plug it), `attached`, `detaching`. The
-- volume id is unique: a volume is attached read-write to one server at most (the volume
-- service enforces it as well, this makes it true of compute's own rows).
CREATE TABLE compute.volume_attachments (
    server_id text NOT NULL,
    volume_id text NOT NULL UNIQUE,
    attachment_id text NOT NULL UNIQUE,
    device text,
    status text NOT NULL,
    -- The volume service's Connection: how the host reaches the volume.
    connection jsonb NOT NULL,
    is_root boolean NOT NULL DEFAULT false,
    delete_on_termination boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT now(),
    step_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (server_id, volume_id)
);

-- What the server shows as `os-extended-volumes:volumes_attached` ([{id, delete_on_termination}]),
-- kept beside the row so that a list of servers reads no other table.
ALTER TABLE compute.servers ADD COLUMN volumes jsonb NOT NULL DEFAULT '[]';

-- Servers waiting for their root volume, found by the volume's id when its status changes.
CREATE INDEX servers_root_volume ON compute.servers ((spawn->'root_volume'->>'volume_id'))
    WHERE spawn ? 'root_volume';
