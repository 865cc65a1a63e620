"""Apply Alembic migrations programmatically (`rwa migrate`, embedded startup, tests)."""

from __future__ import annotations

import ast
import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.dsn import asyncpg_dsn

if TYPE_CHECKING:
    from alembic.config import Config

# alembic and sqlalchemy are imported inside the functions that run migrations: a process starting on a database
# already at head (every `rwa` command checks it) only reads alembic_version and the scripts' revision ids
# (`at_head`), ~0.5 s of imports and script loading less at start (issue 16: `rwa index backfill` from spawn).

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


def alembic_config() -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return cfg


MIGRATION_LOCK_ID = 7_261_001  # the advisory lock migrations/env.py holds while it migrates


class MigrationBusy(Exception):
    """Another session holds the migration lock (another `rwa migrate`, or a process migrating on start)."""

    def __init__(self, holder: dict[str, Any] | None) -> None:
        self.holder = holder or {}
        who = ", ".join(f"{k} {v}" for k, v in self.holder.items() if v not in (None, "")) or "unknown session"
        super().__init__(f"another migration is running ({who})")


async def _run(
    database_url: str,
    step: str,
    revision: str,
    *,
    exclusive: bool = False,
    lock_timeout_s: float = 0,
    statement_timeout_s: float = 0,
) -> None:
    """Run an alembic command (`upgrade` / `downgrade`) on an async connection (env.py takes the advisory lock:
    waiting for it, or with `exclusive` refusing with MigrationBusy when another session holds it). Timeouts in
    seconds (0: none) apply to every statement of the migration: a DDL waiting longer than lock_timeout for a table
    lock fails (the whole upgrade is one transaction: nothing is applied) instead of queueing every query on that
    table behind it."""
    from alembic import command
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(database_url, connect_args={"server_settings": {"application_name": "rwa-migrate"}})
    try:
        async with engine.connect() as conn:

            def _command(sync_conn):
                cfg = alembic_config()
                cfg.attributes.update(
                    connection=sync_conn,
                    try_lock=exclusive,
                    lock_timeout_ms=int(lock_timeout_s * 1000),
                    statement_timeout_ms=int(statement_timeout_s * 1000),
                )
                getattr(command, step)(cfg, revision)

            await conn.run_sync(_command)
            await conn.commit()
    finally:
        await engine.dispose()


async def upgrade(database_url: str, revision: str = "heads", **options: Any) -> None:
    await _run(database_url, "upgrade", revision, **options)


async def downgrade(database_url: str, revision: str = "base") -> None:
    await _run(database_url, "downgrade", revision)


def upgrade_sync(database_url: str, revision: str = "heads", **options: Any) -> None:
    asyncio.run(upgrade(database_url, revision, **options))


def head_revisions() -> set[str]:
    """The heads of this release's migration scripts."""
    from alembic.script import ScriptDirectory

    return set(ScriptDirectory.from_config(alembic_config()).get_heads())


def known_revisions() -> set[str]:
    from alembic.script import ScriptDirectory

    return {s.revision for s in ScriptDirectory.from_config(alembic_config()).walk_revisions()}


def script_heads(versions_dir: Path | None = None) -> set[str] | None:
    """The heads of the migration scripts read from their ``revision`` / ``down_revision`` assignments without
    importing alembic or the scripts (a revision no other script names as its down revision), as alembic's
    ``ScriptDirectory.get_heads()`` finds them; None when a script is out of this simple form (``depends_on``,
    ``branch_labels``, a value that is not a literal, a duplicate or unknown revision): ask alembic then."""
    downs: dict[str, tuple[str, ...]] = {}
    for path in sorted((versions_dir or MIGRATIONS_DIR / "versions").glob("*.py")):
        found: dict[str, Any] = {}
        try:
            tree = ast.parse(path.read_bytes(), str(path))
        except (OSError, SyntaxError, ValueError):
            return None
        for node in tree.body:
            targets = (
                node.targets
                if isinstance(node, ast.Assign)
                else [node.target]
                if isinstance(node, ast.AnnAssign)
                else []
            )
            value = node.value if isinstance(node, (ast.Assign, ast.AnnAssign)) else None
            for t in targets:
                if isinstance(t, ast.Name) and t.id in ("revision", "down_revision", "branch_labels", "depends_on"):
                    try:
                        found[t.id] = ast.literal_eval(value) if value is not None else None
                    except ValueError:
                        return None
        if "revision" not in found:
            if path.name == "__init__.py":
                continue
            return None  # alembic would refuse or skip it: let it say which
        rev, down = found["revision"], found.get("down_revision")
        if found.get("branch_labels") or found.get("depends_on") or not isinstance(rev, str) or rev in downs:
            return None
        if down is None:
            downs[rev] = ()
        elif isinstance(down, str):
            downs[rev] = (down,)
        elif isinstance(down, (tuple, list)) and all(isinstance(d, str) for d in down):
            downs[rev] = tuple(down)
        else:
            return None
    named = {d for ds in downs.values() for d in ds}
    if not downs or named - downs.keys():
        return None
    return set(downs) - named


async def at_head(database_url: str) -> bool:
    """The database is stamped with exactly this release's heads (read with asyncpg; alembic is not imported).
    False also when it cannot tell (scripts out of the simple form): the caller then takes alembic's path."""
    heads = script_heads()
    return heads is not None and await current_revisions(database_url) == heads


async def current_revisions(database_url: str) -> set[str]:
    """The revisions stamped in the database (empty: never migrated)."""
    import asyncpg

    conn = await asyncpg.connect(asyncpg_dsn(database_url), timeout=10)
    try:
        if not await conn.fetchval("SELECT to_regclass('alembic_version') IS NOT NULL"):
            return set()
        return {r[0] for r in await conn.fetch("SELECT version_num FROM alembic_version")}
    finally:
        await conn.close()


def schema_state(current: set[str]) -> str:
    """``at head`` | ``behind`` (migrations of this release not applied) | ``ahead`` (the database carries a
    revision this release does not know: a newer release migrated it, e.g. during a rollback)."""
    heads = head_revisions()
    if current == heads:
        return "at head"
    if current - known_revisions():
        return "ahead"
    return "behind"


async def autogenerate(message: str, rev_id: str, admin_url: str) -> None:
    """Developer tool: create a scratch database, upgrade it to head, autogenerate the next revision, drop it.

    python -m core.migrate "assets" 0003
    """
    import uuid

    import asyncpg
    from alembic import command
    from sqlalchemy.engine import make_url
    from sqlalchemy.ext.asyncio import create_async_engine

    name = f"rwa_autogen_{uuid.uuid4().hex[:8]}"
    dsn = make_url(admin_url).set(drivername="postgresql").render_as_string(hide_password=False)
    admin = await asyncpg.connect(dsn)
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    try:
        engine = create_async_engine(url)
        async with engine.connect() as conn:

            def _gen(sync_conn):
                cfg = alembic_config()
                cfg.attributes["connection"] = sync_conn
                command.upgrade(cfg, "heads")
                command.revision(cfg, message=message, autogenerate=True, rev_id=rev_id)

            await conn.run_sync(_gen)
            await conn.commit()
        await engine.dispose()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


if __name__ == "__main__":
    import os
    import sys

    asyncio.run(
        autogenerate(
            sys.argv[1],
            sys.argv[2],
            os.environ.get("TEST_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"),
        )
    )
