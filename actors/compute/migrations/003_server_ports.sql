-- A server's NICs: the ports it holds ({port_id, network_id, mac, mtu, made}: `made` when the
-- compute service created the port, so deleting the server deletes it; otherwise it is only
-- given back), and the addresses shown on the server, by network name.
ALTER TABLE compute.servers ADD COLUMN ports jsonb NOT NULL DEFAULT '[]';
ALTER TABLE compute.servers ADD COLUMN addresses jsonb NOT NULL DEFAULT '{}';
