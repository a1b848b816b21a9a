"""The web dashboard: server-rendered pages at `/dashboard` on the gateway.

It is a client of the gateway's public APIs like any other, with the signed-in user's token,
never of the bus or the database; only its live-update stream listens to bus events, and what
it forwards of them is filtered by the viewer's project and roles (`live.py`).
"""
