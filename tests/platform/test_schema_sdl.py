"""The committed schema.graphql (front-end teams read it) is exactly what the code serves."""

from __future__ import annotations

import difflib
import subprocess
import sys
from pathlib import Path

from core.settings import Settings
from schema import build_schema

REPO = Path(__file__).resolve().parents[2]
COMMITTED = REPO / "schema.graphql"
RWA = str(Path(sys.executable).with_name("rwa"))


def current_sdl() -> str:
    return build_schema(Settings()).as_str() + "\n"  # type: ignore[call-arg]


def stale_message(committed: str, current: str) -> str:
    diff = "".join(difflib.unified_diff(committed.splitlines(True), current.splitlines(True),
                                        "schema.graphql (committed)", "build_schema(...)", n=1))
    lines = diff.splitlines()
    shown = "\n".join(lines[:60]) + (f"\n... {len(lines) - 60} more diff lines" if len(lines) > 60 else "")
    return f"schema.graphql is stale: run `rwa schema export` and commit it.\n{shown}"


def test_committed_sdl_is_current() -> None:
    assert COMMITTED.exists(), "schema.graphql is missing: run `rwa schema export` and commit it"
    committed, current = COMMITTED.read_text(), current_sdl()
    assert committed == current, stale_message(committed, current)


def test_export_command_writes_the_served_sdl(tmp_path: Path) -> None:
    out = tmp_path / "schema.graphql"
    proc = subprocess.run([RWA, "schema", "export", "--out", str(out)], cwd=REPO, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert out.read_text() == current_sdl()
