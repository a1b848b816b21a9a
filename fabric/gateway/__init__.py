"""The HTTP gateway: OpenStack's APIs under per-service prefixes, on one aiohttp port."""
