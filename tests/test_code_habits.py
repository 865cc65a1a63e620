"""The habits CI enforces on the code itself (README "Checks"): ruff's lint rules and formatting as configured in
pyproject.toml, the import layering (import-linter's contracts in pyproject.toml) and mypy on the application code
(`[tool.mypy]` in pyproject.toml), where every `# type: ignore` says why. A failure names the files and lines;
`.venv/bin/ruff check --fix . && .venv/bin/ruff format .` fixes most style findings; `.venv/bin/lint-imports`
names each forbidden import and the chain that leads to it; `.venv/bin/mypy` prints the type errors."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
# `# type: ignore[code]` and what follows it on the line
_TYPE_IGNORE = re.compile(r"#\s*type:\s*ignore\b(?:\[[^\]]*\])?(?P<after>.*)$")
# the reason: a comment of its own after the ignore (a noqa directive is not one)
_REASON = re.compile(r"\s*#\s*(?!noqa\b)\S")


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


def test_mypy_passes() -> None:
    """The application packages type-check (which ones, the options and why: pyproject.toml [tool.mypy])."""
    result = run("mypy")
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_type_ignore_says_why() -> None:
    """In the packages mypy checks, each `# type: ignore[code]` is followed by `  # <why>` on its line: what mypy
    cannot see there (a library's annotation, Strawberry's runtime types), so that it is not silencing a bug."""
    mypy = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["mypy"]
    unreported = {
        module.partition(".")[0]
        for override in mypy.get("overrides", [])
        if override.get("ignore_errors")
        for module in override["module"]
    }
    unexplained = []
    for package in sorted(set(mypy["files"]) - unreported):
        for path in sorted((REPO / package).rglob("*.py")):
            for n, line in enumerate(path.read_text().splitlines(), 1):
                found = _TYPE_IGNORE.search(line)
                if found and not _REASON.match(found["after"]):
                    unexplained.append(f"{path.relative_to(REPO)}:{n}: {line.strip()}")
    assert not unexplained, "add `  # <why>` after these ignores:\n" + "\n".join(unexplained)
