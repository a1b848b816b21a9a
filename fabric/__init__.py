"""The runtime: bus, actors, store, config, gateway, client and CLI."""
