"""Database URL forms (imports nothing heavy: the CLI's start-up path uses it before sqlalchemy is loaded)."""

from __future__ import annotations


def asyncpg_dsn(database_url: str) -> str:
    """The libpq form of a ``postgresql+asyncpg://`` URL (what asyncpg.connect takes): the same string without the
    driver; any other form through sqlalchemy's URL parser."""
    prefix = "postgresql+asyncpg://"
    if database_url.startswith(prefix):
        return "postgresql://" + database_url[len(prefix) :]
    from sqlalchemy.engine import make_url

    return make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)
