CREATE TABLE identity.domains (
    id          text PRIMARY KEY,
    name        text NOT NULL UNIQUE,
    description text NOT NULL DEFAULT '',
    enabled     boolean NOT NULL DEFAULT true,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE identity.projects (
    id          text PRIMARY KEY,
    domain_id   text NOT NULL REFERENCES identity.domains (id) ON DELETE CASCADE,
    name        text NOT NULL,
    description text NOT NULL DEFAULT '',
    enabled     boolean NOT NULL DEFAULT true,
    tags        text[] NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (domain_id, name)
);

CREATE TABLE identity.users (
    id                 text PRIMARY KEY,
    domain_id          text NOT NULL REFERENCES identity.domains (id) ON DELETE CASCADE,
    name               text NOT NULL,
    password_hash      text,
    enabled            boolean NOT NULL DEFAULT true,
    default_project_id text,
    email              text,
    description        text,
    created_at         timestamptz NOT NULL DEFAULT now(),
    UNIQUE (domain_id, name)
);

CREATE TABLE identity.roles (
    id          text PRIMARY KEY,
    name        text NOT NULL UNIQUE,
    description text NOT NULL DEFAULT ''
);

-- admin implies member implies reader: a token carries the closure.
CREATE TABLE identity.role_implications (
    prior_role_id   text NOT NULL REFERENCES identity.roles (id) ON DELETE CASCADE,
    implied_role_id text NOT NULL REFERENCES identity.roles (id) ON DELETE CASCADE,
    PRIMARY KEY (prior_role_id, implied_role_id)
);

-- A role of a user on exactly one target, a project or a domain.
CREATE TABLE identity.assignments (
    user_id    text NOT NULL REFERENCES identity.users (id) ON DELETE CASCADE,
    role_id    text NOT NULL REFERENCES identity.roles (id) ON DELETE CASCADE,
    project_id text REFERENCES identity.projects (id) ON DELETE CASCADE,
    domain_id  text REFERENCES identity.domains (id) ON DELETE CASCADE,
    CHECK ((project_id IS NULL) <> (domain_id IS NULL))
);
CREATE UNIQUE INDEX assignments_on_project ON identity.assignments (user_id, project_id, role_id)
    WHERE project_id IS NOT NULL;
CREATE UNIQUE INDEX assignments_on_domain ON identity.assignments (user_id, domain_id, role_id)
    WHERE domain_id IS NOT NULL;
CREATE INDEX assignments_by_project ON identity.assignments (project_id);
CREATE INDEX assignments_by_role ON identity.assignments (role_id);

CREATE TABLE identity.services (
    id   text PRIMARY KEY,
    type text NOT NULL,
    name text NOT NULL,
    UNIQUE (type, name)
);

CREATE TABLE identity.endpoints (
    id         text PRIMARY KEY,
    service_id text NOT NULL REFERENCES identity.services (id) ON DELETE CASCADE,
    interface  text NOT NULL CHECK (interface IN ('public', 'internal', 'admin')),
    region     text NOT NULL,
    url        text NOT NULL,
    UNIQUE (service_id, interface, region)
);

-- The keys that seal tokens; the newest seals, all open.
CREATE TABLE identity.token_keys (
    id         serial PRIMARY KEY,
    key        text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Revocation rules (see protocol.identity.Revocation); times are seconds since the epoch.
CREATE TABLE identity.revocations (
    id            bigserial PRIMARY KEY,
    audit_id      text,
    user_id       text,
    project_id    text,
    domain_id     text,
    role_id       text,
    issued_before double precision NOT NULL,
    expires_at    double precision NOT NULL
);
CREATE INDEX revocations_by_expiry ON identity.revocations (expires_at);
