-- A user's recordset made in one call, so that the zone's row lock is held only while the
-- server runs these few statements, never across a round trip to the service: concurrent
-- creates in one zone queue on that lock (serials strictly increase, none is lost) without
-- waiting on each other's network and event loop. Each statement after the UPDATE sees what
-- others committed before we had the lock (PL/pgSQL takes a new snapshot per statement).
-- Outcomes: `created`, `exists` (the id is taken: a retried create), `gone` (no zone), `quota`
-- (zone_recordsets); a name taken raises `duplicate` or `cname`, rolling the bump back.
CREATE FUNCTION dns.create_recordset(
    p_id text, p_zone_id text, p_project_id text, p_name text, p_pdns_name text, p_type text,
    p_records text[], p_ttl integer, p_description text, p_limit integer,
    OUT outcome text, OUT serial bigint, OUT created float8
) LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM dns.recordsets WHERE id = p_id) THEN
        outcome := 'exists';
        RETURN;
    END IF;
    UPDATE dns.zones z
       SET serial = z.serial + 1, recordset_count = z.recordset_count + 1, status = 'PENDING',
           action = CASE WHEN z.action = 'CREATE' THEN 'CREATE' ELSE 'UPDATE' END, updated_at = now()
     WHERE z.id = p_zone_id AND (p_limit < 0 OR z.recordset_count + 1 <= p_limit)
    RETURNING z.serial INTO serial;
    IF NOT FOUND THEN
        outcome := CASE WHEN EXISTS (SELECT 1 FROM dns.zones WHERE id = p_zone_id) THEN 'quota' ELSE 'gone' END;
        RETURN;
    END IF;
    IF EXISTS (SELECT 1 FROM dns.recordsets o
                WHERE o.zone_id = p_zone_id AND o.name = p_name AND o.type = p_type) THEN
        RAISE EXCEPTION 'duplicate';
    END IF;
    IF EXISTS (SELECT 1 FROM dns.recordsets o
                WHERE o.zone_id = p_zone_id AND o.name = p_name AND (o.type = 'CNAME' OR p_type = 'CNAME')) THEN
        RAISE EXCEPTION 'cname';
    END IF;
    INSERT INTO dns.recordsets (id, zone_id, project_id, name, pdns_name, type, records, ttl,
                                description, serial, managed_by, status, action)
    VALUES (p_id, p_zone_id, p_project_id, p_name, p_pdns_name, p_type, p_records, p_ttl,
            p_description, serial, NULL, 'PENDING', 'CREATE');
    outcome := 'created';
    created := extract(epoch FROM now());
END
$$;
