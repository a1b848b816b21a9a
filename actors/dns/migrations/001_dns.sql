-- DNS: zones, recordsets, quotas; and, in schema `pdns`, the read-only views PowerDNS's gpgsql
-- backend reads in place of its own tables (its role's search_path is `pdns`).
--
-- Names are kept twice: as the API shows them (lowercase, trailing dot) and as PowerDNS asks
-- for them (no trailing dot), indexed, so that a query is one index lookup.

CREATE TABLE dns.zones (
    id text PRIMARY KEY,
    -- PowerDNS's domains.id is an integer.
    pdns_id serial UNIQUE,
    name text NOT NULL UNIQUE,
    pdns_name text NOT NULL UNIQUE,
    project_id text NOT NULL,
    email text NOT NULL,
    ttl integer NOT NULL CHECK (ttl > 0),
    -- Bumped by one with every change to the zone's data, under the zone's row lock.
    serial bigint NOT NULL CHECK (serial > 0),
    -- The SOA's MNAME and RNAME (the email with its @ made a dot), fully qualified.
    soa_mname text NOT NULL,
    soa_rname text NOT NULL,
    description text,
    status text NOT NULL,
    action text NOT NULL,
    version integer NOT NULL DEFAULT 1,
    -- Made by the service (reverse zones for floating IPs), not by a user.
    managed boolean NOT NULL DEFAULT false,
    -- Recordsets in the zone, SOA and NS included (the `zone_recordsets` quota).
    recordset_count integer NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX zones_project ON dns.zones (project_id, created_at, id);
CREATE INDEX zones_pending ON dns.zones (updated_at) WHERE status = 'PENDING';

CREATE TABLE dns.recordsets (
    id text PRIMARY KEY,
    zone_id text NOT NULL REFERENCES dns.zones (id) ON DELETE CASCADE,
    project_id text NOT NULL,
    name text NOT NULL,
    pdns_name text NOT NULL,
    type text NOT NULL,
    -- The SOA's are rendered from its zone (`pdns.records`), so its serial is always the zone's.
    records text[] NOT NULL,
    -- NULL: the zone's TTL.
    ttl integer CHECK (ttl > 0),
    description text,
    status text NOT NULL,
    action text NOT NULL,
    version integer NOT NULL DEFAULT 1,
    -- The zone's serial that carried this recordset's last change: ACTIVE once served.
    serial bigint NOT NULL,
    -- NULL for a user's; 'zone' for the SOA and apex NS; 'port:<id>' or 'floatingip:<id>' (and
    -- 'ptr:<id>') for the names the service keeps for ports and floating IPs.
    managed_by text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (zone_id, name, type)
);
CREATE INDEX recordsets_lookup ON dns.recordsets (pdns_name, type);
CREATE INDEX recordsets_zone ON dns.recordsets (zone_id, created_at, id);
CREATE INDEX recordsets_managed_by ON dns.recordsets (managed_by) WHERE managed_by IS NOT NULL;
CREATE INDEX recordsets_pending ON dns.recordsets (zone_id, serial) WHERE status = 'PENDING';

CREATE TABLE dns.quotas (
    project_id text NOT NULL,
    resource text NOT NULL,
    hard_limit integer NOT NULL,
    PRIMARY KEY (project_id, resource)
);

-- Zones per project, counted where creates and deletes change it (the `zones` quota, checked
-- with a conditional UPDATE so that concurrent creates cannot pass it).
CREATE TABLE dns.zone_usage (
    project_id text PRIMARY KEY,
    zones integer NOT NULL DEFAULT 0 CHECK (zones >= 0)
);

-- What PowerDNS reads: the tables of its gpgsql schema, as views. Empty ones for what the
-- fabric does not use (DNSSEC keys, TSIG, metadata, comments, autoprimaries).
CREATE SCHEMA IF NOT EXISTS pdns;

CREATE VIEW pdns.domains AS
SELECT z.pdns_id AS id, z.pdns_name AS name, NULL::text AS master,
       NULL::integer AS last_check, 'NATIVE'::text AS type, NULL::bigint AS notified_serial,
       NULL::text AS account, NULL::text AS options, NULL::text AS catalog
FROM dns.zones z;

CREATE VIEW pdns.records AS
SELECT 0::bigint AS id, z.pdns_id AS domain_id, r.pdns_name AS name, r.type,
       -- PowerDNS builds an MX or SRV as `prio || ' ' || content`: the API's first number
       -- (preference, priority) goes in `prio`.
       CASE WHEN r.type IN ('MX', 'SRV') THEN substr(d.content, strpos(d.content, ' ') + 1)
            ELSE d.content END AS content,
       COALESCE(r.ttl, z.ttl) AS ttl,
       CASE WHEN r.type IN ('MX', 'SRV') THEN split_part(d.content, ' ', 1)::integer ELSE 0 END AS prio,
       false AS disabled, NULL::text AS ordername, true AS auth
FROM dns.recordsets r
JOIN dns.zones z ON z.id = r.zone_id
CROSS JOIN LATERAL unnest(r.records) AS d(content)
WHERE r.type <> 'SOA'
UNION ALL
SELECT 0::bigint, z.pdns_id, z.pdns_name, 'SOA'::text,
       (z.soa_mname || ' ' || z.soa_rname || ' ' || z.serial || ' 3600 600 86400 ' || z.ttl)::text,
       z.ttl, 0, false, NULL::text, true
FROM dns.zones z;

CREATE VIEW pdns.domainmetadata AS
SELECT 0 AS id, 0 AS domain_id, ''::text AS kind, ''::text AS content WHERE false;
CREATE VIEW pdns.cryptokeys AS
SELECT 0 AS id, 0 AS domain_id, 0 AS flags, false AS active, false AS published, ''::text AS content
WHERE false;
CREATE VIEW pdns.tsigkeys AS
SELECT 0 AS id, ''::text AS name, ''::text AS algorithm, ''::text AS secret
WHERE false;
CREATE VIEW pdns.comments AS
SELECT 0 AS id, 0 AS domain_id, ''::text AS name, ''::text AS type,
       0 AS modified_at, ''::text AS account, ''::text AS comment
WHERE false;
CREATE VIEW pdns.supermasters AS
SELECT NULL::inet AS ip, ''::text AS nameserver, ''::text AS account WHERE false;
