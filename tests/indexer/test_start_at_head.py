"""The start-up check of every `rwa` command without alembic (core.migrate.at_head, cli/runtime.py): the heads read
from the scripts' revision ids equal alembic's over the real migrations dir and over shapes it does not hold yet
(a merge, two branches); a database at head starts without importing alembic or sqlalchemy, one behind still
migrates (MIGRATE_ON_START) or is refused (exit 4) through alembic's path."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import asyncpg
import pytest
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy.engine import make_url

from core.dsn import asyncpg_dsn
from core.migrate import MIGRATIONS_DIR, at_head, current_revisions, script_heads, upgrade
from tests.fixtures.db import admin_database_url

REPO = Path(__file__).resolve().parents[2]


def _alembic_heads(script_location: Path) -> set[str]:
    cfg = Config()
    cfg.set_main_option("script_location", str(script_location))
    return set(ScriptDirectory.from_config(cfg).get_heads())


def test_script_heads_equal_alembics_over_the_real_migrations() -> None:
    assert script_heads() == _alembic_heads(MIGRATIONS_DIR)
    assert script_heads(MIGRATIONS_DIR / "versions") == _alembic_heads(MIGRATIONS_DIR)


def _script(folder: Path, rev: str, down: object, extra: str = "") -> None:
    (folder / f"{rev}_step.py").write_text(
        textwrap.dedent(
            f'''\
            """step {rev}"""
            from alembic import op
            revision: str = {rev!r}
            down_revision = {down!r}
            branch_labels = None
            depends_on = None
            {extra}

            def upgrade() -> None:
                pass


            def downgrade() -> None:
                pass
            '''
        )
    )


def _scripts_dir(tmp_path: Path, steps: list[tuple[str, object]], extra: dict[str, str] | None = None) -> Path:
    root = tmp_path / "migrations"
    (root / "versions").mkdir(parents=True)
    (root / "script.py.mako").write_text((MIGRATIONS_DIR / "script.py.mako").read_text())
    (root / "env.py").write_text("")
    (root / "versions" / "__init__.py").write_text("")
    for rev, down in steps:
        _script(root / "versions", rev, down, (extra or {}).get(rev, ""))
    return root


@pytest.mark.parametrize(
    "steps",
    [
        [("a1", None), ("b2", "a1"), ("c3", "b2")],  # a line
        [("a1", None), ("b2", "a1"), ("c3", "a1")],  # two branches: two heads
        [("a1", None), ("b2", "a1"), ("c3", "a1"), ("d4", ("b2", "c3"))],  # merged again
        [("a1", None), ("b2", ["a1"])],  # a list as down_revision
    ],
    ids=["line", "branches", "merge", "list"],
)
def test_script_heads_equal_alembics_over_other_shapes(tmp_path: Path, steps: list[tuple[str, object]]) -> None:
    root = _scripts_dir(tmp_path, steps)
    assert script_heads(root / "versions") == _alembic_heads(root)


def test_scripts_out_of_the_simple_form_defer_to_alembic(tmp_path: Path) -> None:
    labelled = _scripts_dir(tmp_path / "x", [("a1", None), ("b2", "a1")], {"b2": "branch_labels = ('side',)"})
    assert script_heads(labelled / "versions") is None
    unknown = _scripts_dir(tmp_path / "y", [("a1", None), ("b2", "zz")])
    assert script_heads(unknown / "versions") is None
    computed = _scripts_dir(tmp_path / "z", [("a1", None)])
    (computed / "versions" / "b2_step.py").write_text("revision = 'b' + '2'\ndown_revision = 'a1'\n")
    assert script_heads(computed / "versions") is None


def test_asyncpg_dsn_drops_only_the_driver() -> None:
    url = "postgresql+asyncpg://u:p%40ss@db.example:6432/rwa?ssl=require"
    assert asyncpg_dsn(url) == "postgresql://u:p%40ss@db.example:6432/rwa?ssl=require"
    assert asyncpg_dsn(url) == make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def _fresh(migrated: bool) -> tuple[str, str]:
    name = f"rwa_head_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(asyncpg_dsn(admin_database_url()))
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    url = make_url(admin_database_url()).set(database=name).render_as_string(hide_password=False)
    if migrated:
        await upgrade(url)
    return name, url


async def _drop(name: str) -> None:
    admin = await asyncpg.connect(asyncpg_dsn(admin_database_url()))
    await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await admin.close()


_START = """
import sys
import typer
from cli.runtime import {fn}
try:
    {fn}({url!r})
except typer.Exit as exc:
    sys.exit(exc.exit_code)
print(sorted(m for m in ("alembic", "sqlalchemy") if m in sys.modules))
"""


def _start(fn: str, url: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", _START.format(fn=fn, url=url)],
        cwd=REPO,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
    )


async def test_at_head_starts_without_alembic_behind_goes_through_it(service_urls: tuple[str, str]) -> None:
    head, head_url = await _fresh(migrated=True)
    empty, empty_url = await _fresh(migrated=False)
    try:
        assert await at_head(head_url) and not await at_head(empty_url)
        for fn in ("migrate_or_fail", "require_schema_at_head"):
            out = await asyncio.to_thread(_start, fn, head_url)
            assert out.returncode == 0, out.stderr
            assert out.stdout.strip() == "[]", out.stdout  # neither imported
        refused = await asyncio.to_thread(_start, "require_schema_at_head", empty_url)
        assert refused.returncode == 4 and "run `rwa migrate`" in refused.stderr, refused.stderr
        migrated = await asyncio.to_thread(_start, "migrate_or_fail", empty_url)
        assert migrated.returncode == 0, migrated.stderr
        assert "alembic" in migrated.stdout
        assert await current_revisions(empty_url) == script_heads() and await at_head(empty_url)
    finally:
        await _drop(head)
        await _drop(empty)
