"""Background jobs on dramatiq. Actors take ids (never objects) and are idempotent: a retry or a duplicate
message must leave the same state as one delivery. `rwa worker` runs every actor listed in jobs/actors.py.

Import `jobs.broker` before declaring actors: it installs the broker chosen by settings.
"""
