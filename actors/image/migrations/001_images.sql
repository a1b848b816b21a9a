-- Images and their properties. The bytes are in the blob store at `location`.
CREATE TABLE image.images (
    id               text PRIMARY KEY,
    name             text,
    status           text NOT NULL DEFAULT 'queued',
    visibility       text NOT NULL,
    owner            text NOT NULL,
    disk_format      text,
    container_format text,
    size             bigint,
    checksum         text,
    os_hash_algo     text,
    os_hash_value    text,
    min_disk         integer NOT NULL DEFAULT 0,
    min_ram          integer NOT NULL DEFAULT 0,
    protected        boolean NOT NULL DEFAULT false,
    os_hidden        boolean NOT NULL DEFAULT false,
    tags             text[] NOT NULL DEFAULT '{}',
    properties       jsonb NOT NULL DEFAULT '{}',
    location         text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX images_owner ON image.images (owner);
CREATE INDEX images_listing ON image.images (created_at DESC, id DESC);
CREATE INDEX images_name ON image.images (name);
