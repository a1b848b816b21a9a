-- Block storage: volume types, volumes, snapshots, attachments, the storage hosts heard from,
-- and quotas (limits and usage per project).

CREATE TABLE volume.volume_types (
    id text PRIMARY KEY,
    name text NOT NULL UNIQUE,
    description text,
    is_public boolean NOT NULL DEFAULT true,
    -- `volume_backend_name` picks the backend of the hosts that may hold the type's volumes.
    extra_specs jsonb NOT NULL DEFAULT '{}',
    is_default boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT now()
);
-- One default type at most; Cinder names its own `__DEFAULT__`.
CREATE UNIQUE INDEX volume_types_one_default ON volume.volume_types (is_default) WHERE is_default;
INSERT INTO volume.volume_types (id, name, description, is_default)
VALUES (gen_random_uuid()::text, '__DEFAULT__', 'Default Volume Type', true);

CREATE TABLE volume.volumes (
    id text PRIMARY KEY,
    name text NOT NULL DEFAULT '',
    description text,
    project_id text NOT NULL,
    user_id text NOT NULL,
    size_gb integer NOT NULL CHECK (size_gb > 0),
    -- While extending: the size asked for (its gigabytes are counted in the usage already).
    new_size_gb integer,
    status text NOT NULL,
    error_reason text,
    availability_zone text NOT NULL,
    -- Deleting a type that volumes use is refused by this reference.
    type_id text NOT NULL REFERENCES volume.volume_types (id),
    bootable boolean NOT NULL DEFAULT false,
    image_metadata jsonb NOT NULL DEFAULT '{}',
    -- What CreateVolumeFile needs to be sent again: the image's file (protocol.storage.ImageFile)
    -- or the source snapshot or volume.
    image jsonb,
    snapshot_id text,
    source_volume_id text,
    metadata jsonb NOT NULL DEFAULT '{}',
    -- The storage host and its agent's queue; NULL when no backend could take the volume.
    host text,
    agent_queue text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    -- When the status last changed: a transitional status older than its deadline is ended.
    status_at timestamptz NOT NULL DEFAULT now(),
    -- When the current step was last sent: one idle past the step timeout is sent again.
    step_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX volumes_project ON volume.volumes (project_id, created_at DESC, id DESC);
CREATE INDEX volumes_newest ON volume.volumes (created_at DESC, id DESC);
CREATE INDEX volumes_in_flight ON volume.volumes (step_at)
    WHERE status IN ('creating', 'attaching', 'detaching', 'extending', 'deleting');
CREATE INDEX volumes_host ON volume.volumes (host);
CREATE INDEX volumes_type ON volume.volumes (type_id);
CREATE INDEX volumes_snapshot ON volume.volumes (snapshot_id) WHERE snapshot_id IS NOT NULL;
CREATE INDEX volumes_source ON volume.volumes (source_volume_id) WHERE source_volume_id IS NOT NULL;

CREATE TABLE volume.snapshots (
    id text PRIMARY KEY,
    -- A volume cannot be deleted under its snapshots.
    volume_id text NOT NULL REFERENCES volume.volumes (id),
    project_id text NOT NULL,
    user_id text NOT NULL,
    name text NOT NULL DEFAULT '',
    description text,
    size_gb integer NOT NULL,
    status text NOT NULL,
    error_reason text,
    metadata jsonb NOT NULL DEFAULT '{}',
    -- The volume's host and queue, where the snapshot is kept.
    host text NOT NULL,
    agent_queue text NOT NULL,
    -- Taken of an attached volume (forced): the agent reads it without the writer's lock.
    in_use boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    status_at timestamptz NOT NULL DEFAULT now(),
    step_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX snapshots_project ON volume.snapshots (project_id, created_at DESC, id DESC);
CREATE INDEX snapshots_newest ON volume.snapshots (created_at DESC, id DESC);
CREATE INDEX snapshots_volume ON volume.snapshots (volume_id);
CREATE INDEX snapshots_in_flight ON volume.snapshots (step_at) WHERE status IN ('creating', 'deleting');
CREATE INDEX snapshots_host ON volume.snapshots (host);

CREATE TABLE volume.attachments (
    id text PRIMARY KEY,
    volume_id text NOT NULL REFERENCES volume.volumes (id),
    server_id text NOT NULL,
    -- The compute host the volume was exported to.
    host text NOT NULL,
    device text,
    -- The storage host's answer to ExportVolume (protocol.storage.Connection), once it came.
    connection jsonb,
    -- NULL while attaching: compute has not said the disk is in the guest yet.
    attached_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now()
);
-- No multi-attach: a volume is never attached read-write to two servers.
CREATE UNIQUE INDEX attachments_one_per_volume ON volume.attachments (volume_id);

-- The storage hosts as their last report described them, so that a replica that starts
-- places volumes at once instead of after a report interval.
CREATE TABLE volume.hosts (
    host text PRIMARY KEY,
    backend text NOT NULL,
    queue text NOT NULL,
    availability_zone text NOT NULL,
    total_gb bigint NOT NULL,
    free_gb bigint NOT NULL,
    reported_at timestamptz NOT NULL
);

-- Limits per project (absent: protocol.volume.DEFAULT_QUOTAS), and usage, changed in the same
-- transaction as the volume or snapshot it counts, under the usage row's lock.
CREATE TABLE volume.quotas (
    project_id text NOT NULL,
    resource text NOT NULL,
    hard_limit integer NOT NULL CHECK (hard_limit >= -1),
    PRIMARY KEY (project_id, resource)
);

CREATE TABLE volume.usage (
    project_id text PRIMARY KEY,
    volumes integer NOT NULL DEFAULT 0 CHECK (volumes >= 0),
    -- Volumes' and snapshots' sizes, as Cinder counts them.
    gigabytes bigint NOT NULL DEFAULT 0 CHECK (gigabytes >= 0),
    snapshots integer NOT NULL DEFAULT 0 CHECK (snapshots >= 0)
);
