"""The committed schema.graphql (front-end teams read it) is exactly what the code serves."""

from __future__ import annotations

import difflib
import subprocess
import sys
from pathlib import Path

from core.settings import Environment, Settings
from schema import build_schema, production_sdl

REPO = Path(__file__).resolve().parents[2]
COMMITTED = REPO / "schema.graphql"
RWA = str(Path(sys.executable).with_name("rwa"))


def current_sdl() -> str:
    return production_sdl()


def stale_message(committed: str, current: str) -> str:
    diff = "".join(
        difflib.unified_diff(
            committed.splitlines(True), current.splitlines(True), "schema.graphql (committed)", "build_schema(...)", n=1
        )
    )
    lines = diff.splitlines()
    shown = "\n".join(lines[:60]) + (f"\n... {len(lines) - 60} more diff lines" if len(lines) > 60 else "")
    return f"schema.graphql is stale: run `rwa schema export` and commit it.\n{shown}"


def test_committed_sdl_is_current() -> None:
    assert COMMITTED.exists(), "schema.graphql is missing: run `rwa schema export` and commit it"
    committed, current = COMMITTED.read_text(), current_sdl()
    assert committed == current, stale_message(committed, current)


def test_export_command_writes_the_served_sdl(tmp_path: Path) -> None:
    out = tmp_path / "schema.graphql"
    proc = subprocess.run(
        [RWA, "schema", "export", "--out", str(out)], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert out.read_text() == current_sdl()


def test_development_schema_is_the_contract_plus_the_dev_only_fields() -> None:
    """schema.graphql is what production serves; development and test add only the documented dev-only fields
    (schema/dev_funding.py), so nothing a front end builds against the contract is missing in development."""
    dev = build_schema(Settings(RWA_ENV=Environment.DEVELOPMENT))._schema  # type: ignore[call-arg]
    prod = build_schema(Settings(RWA_ENV=Environment.PRODUCTION))._schema  # type: ignore[call-arg]
    extra = {
        (t, f)
        for t in ("Query", "Mutation", "Subscription")
        for f in getattr(dev.get_type(t), "fields", {})
        if f not in getattr(prod.get_type(t), "fields", {})
    }
    missing = {
        (t, f)
        for t in ("Query", "Mutation", "Subscription")
        for f in getattr(prod.get_type(t), "fields", {})
        if f not in getattr(dev.get_type(t), "fields", {})
    }
    assert extra == {("Mutation", "creditCash")} and not missing
    assert "creditCash" not in COMMITTED.read_text()
