-- The hostname DHCP gives a port's guest (Neutron's dns_name), and a counter bumped on every
-- change of what agents plumb, so that an agent can tell a stale state from a new one.
ALTER TABLE network.ports ADD COLUMN dns_name text NOT NULL DEFAULT '';
CREATE SEQUENCE network.generation;
