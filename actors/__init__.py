"""One package per service actor and node agent. Actors talk to each other only by message."""
