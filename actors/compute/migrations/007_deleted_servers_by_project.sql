-- `changes-since` reads a project's deleted servers from a time on (server_sql.with_deleted).
CREATE INDEX deleted_servers_project ON compute.deleted_servers (project_id, deleted_at);
