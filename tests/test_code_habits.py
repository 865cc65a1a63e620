"""The habits CI enforces on the code itself (README "Checks"): ruff's lint rules and formatting as configured in
pyproject.toml, and the import layering (import-linter's contracts in pyproject.toml). A failure names the files and
lines; `.venv/bin/ruff check --fix . && .venv/bin/ruff format .` fixes most style findings; `.venv/bin/lint-imports`
names each forbidden import and the chain that leads to it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / args[0]), *args[1:]], cwd=REPO, capture_output=True, text=True, timeout=600)


def test_ruff_lint_passes() -> None:
    result = run("ruff", "check", "--output-format", "concise", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format_is_applied() -> None:
    result = run("ruff", "format", "--check", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_import_layering_contracts_hold() -> None:
    """models <- resolvers <- schema <- server <- cli, the indexer and the API never import each other, the agent and
    the jobs never import the schema, the server or the CLI (contracts and their reasons: pyproject.toml)."""
    result = run("lint-imports", "--no-cache")
    assert result.returncode == 0, result.stdout + result.stderr
