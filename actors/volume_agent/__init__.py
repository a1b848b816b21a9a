"""Volume agents: one per storage host, each over one storage backend (`backend.py`)."""
