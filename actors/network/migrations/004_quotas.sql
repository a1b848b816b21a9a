-- Per-project limits that differ from the defaults; usage is counted from the tables themselves.
CREATE TABLE network.quotas (
    project_id text NOT NULL,
    resource text NOT NULL,
    hard_limit integer NOT NULL CHECK (hard_limit >= -1),
    PRIMARY KEY (project_id, resource)
);
