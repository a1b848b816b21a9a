"""Identity: the Keystone v3 core (domains, projects, users, roles, tokens, catalog)."""
