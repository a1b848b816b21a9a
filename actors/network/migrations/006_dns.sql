-- Neutron's DNS integration: a network's domain (dns-integration), a port's own domain that
-- overrides it (dns-domain-ports), and a floating IP's own name and domain (set at create only).
-- '' is Neutron's "not set" for each. Ports already have dns_name (005).
ALTER TABLE network.networks ADD COLUMN dns_domain text NOT NULL DEFAULT '';
ALTER TABLE network.ports ADD COLUMN dns_domain text NOT NULL DEFAULT '';
ALTER TABLE network.floating_ips
    ADD COLUMN dns_name text NOT NULL DEFAULT '',
    ADD COLUMN dns_domain text NOT NULL DEFAULT '';
-- The DNS service reconciles every named port at once (ListDnsBindings with no ids): few ports
-- have names, so it reads this index rather than the whole table.
CREATE INDEX ports_named ON network.ports (network_id) WHERE dns_name <> '';
