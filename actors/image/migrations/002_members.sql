-- Projects an owner shares a `shared` image with, and whether each accepted it.
CREATE TABLE image.members (
    image_id   text NOT NULL REFERENCES image.images (id) ON DELETE CASCADE,
    member_id  text NOT NULL,
    status     text NOT NULL DEFAULT 'pending',
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (image_id, member_id)
);
CREATE INDEX members_by_member ON image.members (member_id);
