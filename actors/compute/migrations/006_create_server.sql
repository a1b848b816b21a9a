-- A server made and counted against its project's quota in one call, so that the project's
-- usage row is locked only while the server runs these statements, never across a round trip
-- to the service: concurrent creates in one project queue on that lock without waiting on each
-- other's network and event loop (in a transaction of three round trips, 64 creates of one
-- project at once spent most of their time there, holding pooled connections).
-- Returns the server's row and whether this call made it: the existing row (made false) when
-- the id is taken (a retried create); no row when a limit would be exceeded (nothing written).
-- Limits are -1 for none. A concurrent create of the same id fails on the primary key, rolling
-- the count back; the caller then reads the row the other made.
CREATE FUNCTION compute.create_server(
    p_id text, p_name text, p_project_id text, p_user_id text, p_availability_zone text,
    p_flavor jsonb, p_vcpus integer, p_ram_mb bigint, p_disk_gb integer, p_image_id text,
    p_spawn jsonb, p_key_name text, p_metadata jsonb, p_group_id text, p_description text,
    p_ports jsonb, p_addresses jsonb, p_max_instances integer, p_max_cores integer, p_max_ram bigint,
    OUT made boolean, OUT server compute.servers
) RETURNS SETOF record LANGUAGE plpgsql AS $$
BEGIN
    SELECT * INTO server FROM compute.servers WHERE id = p_id;
    IF FOUND THEN
        made := false;
        RETURN NEXT;
        RETURN;
    END IF;
    INSERT INTO compute.quota_usage AS u (project_id, instances, cores, ram)
    VALUES (p_project_id, 1, p_vcpus, p_ram_mb)
    ON CONFLICT (project_id) DO UPDATE
       SET instances = u.instances + 1, cores = u.cores + p_vcpus, ram = u.ram + p_ram_mb
     WHERE (p_max_instances < 0 OR u.instances + 1 <= p_max_instances)
       AND (p_max_cores < 0 OR u.cores + p_vcpus <= p_max_cores)
       AND (p_max_ram < 0 OR u.ram + p_ram_mb <= p_max_ram);
    IF NOT FOUND THEN
        RETURN;
    END IF;
    INSERT INTO compute.servers (id, name, project_id, user_id, vm_state, task_state,
            availability_zone, flavor, vcpus, ram_mb, disk_gb, image_id, spawn, key_name,
            metadata, group_id, description, ports, addresses)
    VALUES (p_id, p_name, p_project_id, p_user_id, 'building', 'scheduling', p_availability_zone,
            p_flavor, p_vcpus, p_ram_mb, p_disk_gb, p_image_id, p_spawn, p_key_name, p_metadata,
            p_group_id, p_description, p_ports, p_addresses)
    RETURNING * INTO server;
    made := true;
    RETURN NEXT;
END
$$;
