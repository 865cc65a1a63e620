"""Process bootstrap shared by every `rwa` command: settings, logging, and the embedded services when
DATABASE_URL / REDIS_URL are not set (started in the data dir, migrated, stopped on exit or signal)."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator

import typer
from rich.console import Console

from core.logging import configure_logging
from core.settings import ConfigError, Settings, get_settings

err = Console(stderr=True)
log = logging.getLogger("rwa.cli")


def fail(message: str, code: int = 1) -> typer.Exit:
    err.print(f"[bold red]error:[/] {message}")
    return typer.Exit(code)


def load_settings() -> Settings:
    try:
        settings = get_settings()
        settings.check_production()
    except ConfigError as exc:
        raise fail(str(exc), 2)
    except ValueError as exc:  # pydantic validation of env values
        raise fail(f"invalid configuration: {exc}", 2)
    return settings


@contextlib.contextmanager
def runtime(*, migrate: bool = True, quiet_logs: bool = False) -> Iterator[Settings]:
    """Yield settings whose database_url / redis_url point at live services (embedded where not configured).

    The resolved URLs are exported to the environment so that child processes (uvicorn workers, dramatiq
    workers) use the same services.
    """
    settings = load_settings()
    try:
        configure_logging("WARNING" if quiet_logs else settings.log_level, settings.log_json)
    except ValueError as exc:  # logging's "Unknown level: 'BOGUS'"
        raise fail(f"invalid configuration: LOG_LEVEL: {exc}", 2)
    from core import tracing

    tracing.setup(settings)  # OTEL_EXPORTER_OTLP_ENDPOINT set: spans of RPC calls, SQL, Redis, jobs (core/tracing.py)
    stack = contextlib.ExitStack()
    with stack:
        if settings.embedded:
            from core.embedded import EmbeddedError, EmbeddedServices, install_signal_handlers, resolve_data_dir

            try:
                data_dir = resolve_data_dir(settings.data_dir)
                install_signal_handlers()
                endpoints = stack.enter_context(
                    EmbeddedServices(data_dir, postgres=settings.database_url is None, redis=settings.redis_url is None)
                )
            except EmbeddedError as exc:
                raise fail(str(exc), 3)
            except OSError as exc:  # e.g. RWA_DATA_DIR that cannot be created
                raise fail(f"cannot use the data dir {settings.data_dir!r}: {exc.strerror or exc}", 3)
            updates = {}
            if settings.database_url is None:
                updates["DATABASE_URL"] = endpoints.database_url
            if settings.redis_url is None:
                updates["REDIS_URL"] = endpoints.redis_url
            os.environ.update({k: v for k, v in updates.items() if v})
            os.environ.setdefault("RWA_DATA_DIR", str(data_dir))
            get_settings.cache_clear()
            settings = get_settings()
        if migrate and settings.migrate_at_start:
            migrate_or_fail(settings.database_url or "")
        elif migrate:  # production: the `rwa migrate` Job migrates; a release never runs on a schema behind it
            require_schema_at_head(settings.database_url or "")
        yield settings


def check_secrets(settings: Settings) -> None:
    """The keys the API and workers build at startup, checked first: a malformed one is a line naming the variable,
    not a traceback from inside a uvicorn or dramatiq worker."""
    import json

    from core.encryption import parse_key
    from core.jwt_keys import KeyRing

    try:
        json.loads(settings.jwt_retired_public_keys or "{}")
    except ValueError as exc:
        raise fail(f"invalid configuration: JWT_RETIRED_PUBLIC_KEYS is not JSON ({exc})", 2)
    checks = (
        ("JWT_PRIVATE_KEY / JWT_RETIRED_PUBLIC_KEYS", lambda: KeyRing.from_settings(settings)),
        (
            "KYC_ENCRYPTION_KEY",
            lambda: settings.kyc_encryption_key is None or parse_key(settings.kyc_encryption_key.get_secret_value()),
        ),
        ("KYC_RETIRED_ENCRYPTION_KEYS", settings.kyc_retired_keys),
    )
    for name, check in checks:
        try:
            check()
        except (ValueError, TypeError, AttributeError) as exc:
            raise fail(f"invalid configuration: {name}: {str(exc).split('. See ')[0]}", 2)
        except OSError as exc:  # the development key in an unusable RWA_DATA_DIR
            raise fail(f"cannot use the data dir {settings.data_dir!r}: {exc.strerror or exc}", 3)


# exit codes of the migration paths (README "Deploying")
EXIT_SCHEMA_BEHIND = 4  # a command that does not migrate found the database behind this release
EXIT_MIGRATION_BUSY = 5  # `rwa migrate`: another migration holds the migration lock
EXIT_MIGRATION_TIMEOUT = 6  # `rwa migrate`: a DDL waited longer than MIGRATION_LOCK_TIMEOUT_S (nothing applied)


def _check_url(database_url: str) -> None:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        driver = make_url(database_url).drivername
    except ArgumentError:
        driver = ""
    if driver != "postgresql+asyncpg":
        raise fail("DATABASE_URL must be a postgresql+asyncpg://user:pass@host:5432/db URL", 2)


def _already_at_head(database_url: str) -> bool:
    """The common start: the database is at this release's heads, checked with one asyncpg query against the
    scripts' revision ids (core.migrate.at_head) without importing alembic or sqlalchemy (~0.5 s of a CLI start).
    False on anything else, an error included: the full path (alembic) then decides and reports."""
    import asyncio

    from core.migrate import at_head

    if not database_url.startswith("postgresql+asyncpg://"):
        return False
    try:
        return asyncio.run(at_head(database_url))
    except Exception:  # unreachable, refused, unparseable: the full path says which, with its exit code
        return False


def require_schema_at_head(database_url: str) -> None:
    """With MIGRATE_ON_START off: refuse to start on a database behind this release's migrations (exit 4). A database
    ahead of it (a newer release migrated it: a rollback) is accepted with a warning: migrations are expand-only
    (docs/runbooks/deploy-and-rollback.md)."""
    if _already_at_head(database_url):
        return
    import asyncio

    import asyncpg

    from core.migrate import current_revisions, head_revisions, schema_state

    _check_url(database_url)
    try:
        current = asyncio.run(current_revisions(database_url))
    except OSError as exc:
        raise fail(f"cannot reach the database: {exc}", 3)
    except asyncpg.PostgresError as exc:
        raise fail(f"the database refused the connection: {exc}", 3)
    state = schema_state(current)
    if state == "behind":
        raise fail(
            f"the database schema is at {', '.join(sorted(current)) or 'no revision (empty)'}, this release needs "
            f"{', '.join(sorted(head_revisions()))}: run `rwa migrate` (the rwa-migrate Job) first, or set "
            "MIGRATE_ON_START=true to migrate on start",
            EXIT_SCHEMA_BEHIND,
        )
    if state == "ahead":
        log.warning(
            "database schema %s is newer than this release (%s): running on it (rollback)",
            ",".join(sorted(current)),
            ",".join(sorted(head_revisions())),
        )


def migrate_exclusive(settings: Settings) -> None:
    """`rwa migrate`: refuse at once when another migration holds the lock (exit 5), and bound every DDL's wait for
    a table lock (MIGRATION_LOCK_TIMEOUT_S, exit 6 with nothing applied) and its run time
    (MIGRATION_STATEMENT_TIMEOUT_S)."""
    from sqlalchemy.exc import DBAPIError

    from core.migrate import MigrationBusy, upgrade_sync

    database_url = settings.database_url or ""
    _check_url(database_url)
    try:
        upgrade_sync(
            database_url,
            exclusive=True,
            lock_timeout_s=settings.migration_lock_timeout_s,
            statement_timeout_s=settings.migration_statement_timeout_s,
        )
    except MigrationBusy as exc:
        raise fail(f"{exc}: not migrating; wait for it to finish and run `rwa migrate` again", EXIT_MIGRATION_BUSY)
    except OSError as exc:
        raise fail(f"cannot reach the database: {exc}", 3)
    except DBAPIError as exc:
        sqlstate = _sqlstate(exc)
        if sqlstate == "55P03":  # lock_not_available: lock_timeout
            raise fail(
                f"a migration waited more than MIGRATION_LOCK_TIMEOUT_S={settings.migration_lock_timeout_s:g} s "
                "for a table lock (a long transaction holds the table); nothing was applied. Retry when the "
                "table is quiet, or raise MIGRATION_LOCK_TIMEOUT_S",
                EXIT_MIGRATION_TIMEOUT,
            )
        if sqlstate == "57014":  # query_canceled: statement_timeout
            raise fail(
                f"a migration statement ran longer than MIGRATION_STATEMENT_TIMEOUT_S="
                f"{settings.migration_statement_timeout_s:g} s; nothing was applied",
                EXIT_MIGRATION_TIMEOUT,
            )
        if sqlstate is None or sqlstate.startswith(("08", "28", "3D")):  # connection, auth, unknown database
            raise fail(f"the database refused the connection: {exc.orig}", 3)
        raise


def _sqlstate(exc: BaseException) -> str | None:
    seen: BaseException | None = exc
    while seen is not None:
        for attr in ("sqlstate", "pgcode"):
            value = getattr(seen, attr, None)
            if isinstance(value, str):
                return value
        seen = getattr(seen, "orig", None) or seen.__cause__
    return None


def migrate_or_fail(database_url: str) -> None:
    """Apply migrations; an unusable DATABASE_URL (unparseable, not PostgreSQL, unreachable, refused) is one
    line on stderr and a non-zero exit, not a traceback. At head already: nothing to apply, alembic is not run."""
    if _already_at_head(database_url):
        return
    from sqlalchemy.exc import DBAPIError

    from core.migrate import upgrade_sync

    _check_url(database_url)
    try:
        upgrade_sync(database_url)
    except OSError as exc:
        raise fail(f"cannot reach the database: {exc}", 3)
    except DBAPIError as exc:  # reached, but refused: unknown role or database, wrong password
        raise fail(f"the database refused the connection: {exc.orig}", 3)
