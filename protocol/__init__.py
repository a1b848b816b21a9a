"""The wire contract: typed messages, the envelope, errors and the codec. Pure data, no I/O.

Nothing in this package imports the rest of the project; every side of the fabric reads it.
"""
