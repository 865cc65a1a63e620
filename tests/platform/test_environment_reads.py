"""One settings object (issue 15 item 7): the environment is read in core/settings.py, once, and every variable it
reads is in the README's Configuration tables. A new `os.environ`/`os.getenv` read anywhere else in the product
fails here unless it is added to ALLOWED with its reason."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from core.settings import _PER_CHAIN_INTS, Settings

REPO = Path(__file__).resolve().parents[2]
PACKAGES = (
    "core",
    "server",
    "schema",
    "resolvers",
    "models",
    "indexer",
    "chains",
    "cli",
    "migrations",
    "jobs",
    "agent",
)
# file -> (number of environment accesses, why they are not settings reads)
ALLOWED = {
    "core/settings.py": (None, "the settings object itself"),
    "cli/main.py": (1, "writes RWA_SERVE_WORKERS for the uvicorn workers it starts"),
    "cli/runtime.py": (2, "exports the embedded DATABASE_URL/REDIS_URL/RWA_DATA_DIR to child processes"),
    "cli/dev.py": (1, "the environment of the child processes `rwa dev` starts"),
    "cli/dev_chains.py": (
        4,
        "exports a running `rwa dev`'s RPC_URLS_<id> (and, for `rwa agent`, the dev agent's key for those chains) "
        "for this process and its children, then clears the settings cache",
    ),
    "chains/anvil.py": (1, "ANVIL_BIN: dev/test tooling that locates the anvil binary (tests point it elsewhere)"),
    "chains/registry.py": (
        1,
        "rpc_urls_for(): the fallback after Settings.rpc_urls(), for in-process tests that set "
        "RPC_URLS_<id> after the settings were built",
    ),
    "core/migrate.py": (1, "TEST_DATABASE_URL: the autogenerate comparison of the migrations test"),
    "core/ops_server.py": (
        5,
        "PROMETHEUS_MULTIPROC_DIR: prometheus_client's multiprocess protocol, exported to the "
        "worker processes it supervises",
    ),
    "core/healthcheck.py": (
        1,
        "the container HEALTHCHECK probe: reads the ops port variables without building "
        "the settings (it runs every 30 s and must stay light)",
    ),
}


def _environment_accesses(path: Path) -> int:
    """os.environ / os.getenv / `from os import environ` uses in a file."""
    tree = ast.parse(path.read_text(), str(path))
    count = 0
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == "os"
            and node.attr in ("environ", "getenv", "environb", "putenv")
        ):
            count += 1
        elif (
            isinstance(node, ast.ImportFrom)
            and node.module == "os"
            and any(a.name in ("environ", "getenv", "environb") for a in node.names)
        ):
            count += 1
    return count


def test_no_environment_reads_outside_the_settings_object() -> None:
    found = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            n = _environment_accesses(path)
            if n:
                found[str(path.relative_to(REPO))] = n
    unexpected = {
        f: n for f, n in found.items() if f not in ALLOWED or (ALLOWED[f][0] is not None and n > ALLOWED[f][0])
    }
    assert not unexpected, (
        f"environment read outside core/settings.py: {unexpected}. Add a field to Settings "
        "(and a README row), or to ALLOWED here with the reason"
    )
    stale = [f for f in ALLOWED if f not in found and f != "core/settings.py"]
    assert not stale, f"ALLOWED lists files that no longer read the environment: {stale}"


def _readme_variables() -> set[str]:
    """Every backticked variable in the first column of the README's tables."""
    names: set[str] = set()
    for line in (REPO / "README.md").read_text().splitlines():
        if line.startswith("|") and line.count("|") > 2:
            names |= set(re.findall(r"`([A-Z][A-Z0-9_]+)", line.split("|")[1]))
    return names


def test_every_setting_is_in_the_readme() -> None:
    documented = _readme_variables()
    text = (REPO / "README.md").read_text()
    missing = sorted(f.alias for f in Settings.model_fields.values() if f.alias and f.alias not in documented)
    assert not missing, f"settings missing from the README's Configuration tables: {missing}"
    for prefix in (*_PER_CHAIN_INTS, "RPC_URLS_"):
        assert f"`{prefix}<chainid>`" in text, f"{prefix}<chainid> is not documented in the README"
