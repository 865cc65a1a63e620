"""The Dockerfile cannot be built here (no Docker engine), so its contract with the code is checked by reading it:
the runtime stage runs as non-root with production defaults, its HEALTHCHECK script really probes /healthz, its
ENTRYPOINT/CMD are a valid `rwa` invocation, and everything it copies or installs is in the build context."""

from __future__ import annotations

import fnmatch
import importlib.util
import json
import re
import shlex
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.fixtures.app import free_port

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]

    def last(self, keyword: str) -> str:
        found = self.all(keyword)
        assert found, f"stage {self.name or self.base} has no {keyword}"
        return found[-1]


def parse_dockerfile(text: str) -> list[Stage]:
    logical, current = [], ""
    for line in text.splitlines():
        if line.lstrip().startswith("#") and not current:
            continue
        if line.rstrip().endswith("\\"):
            current += line.rstrip()[:-1] + " "
            continue
        current += line
        if current.strip():
            logical.append(current.strip())
        current = ""
    stages: list[Stage] = []
    for line in logical:
        keyword, _, args = line.partition(" ")
        keyword, args = keyword.upper(), args.strip()
        if keyword == "FROM":
            words = [w for w in args.split() if not w.startswith("--")]
            stages.append(Stage(words[0], words[2] if len(words) > 2 and words[1].upper() == "AS" else None))
        else:
            assert stages, f"{keyword} before FROM"
            stages[-1].instructions.append((keyword, args))
    return stages


def env_of(stage: Stage) -> dict[str, str]:
    env: dict[str, str] = {}
    for args in stage.all("ENV"):
        for token in shlex.split(args):
            key, _, value = token.partition("=")
            env[key] = value
    return env


def ignored(path: str, patterns: list[str]) -> bool:
    """.dockerignore semantics, enough for this file: a pattern excludes a path or any of its parents; `**/x`
    matches x at any depth; a later `!pattern` re-includes."""
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    result = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pat = pattern.lstrip("!").strip("/")
        if pat.startswith("**/"):
            hit = any(fnmatch.fnmatch(c.rsplit("/", 1)[-1], pat[3:]) for c in candidates)
        else:
            hit = any(fnmatch.fnmatch(c, pat) for c in candidates)
        if hit:
            result = not negate
    return result


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    return parse_dockerfile((REPO / "Dockerfile").read_text())


@pytest.fixture(scope="module")
def runtime(stages: list[Stage]) -> Stage:
    return stages[-1]


@pytest.fixture(scope="module")
def dockerignore() -> list[str]:
    lines = (REPO / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


@pytest.fixture(scope="module")
def pyproject() -> dict:  # type: ignore[type-arg]
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def test_multi_stage_on_a_supported_python(stages: list[Stage], pyproject: dict) -> None:  # type: ignore[type-arg]
    assert len(stages) >= 2
    runtime_base = stages[-1].base
    match = re.fullmatch(r"python:(3\.\d+)-slim(?:-\w+)?", runtime_base)
    assert match, f"runtime stage should be python:3.x-slim, is {runtime_base}"
    minor = int(match.group(1).split(".")[1])
    bounds = re.findall(r"(>=|<)3\.(\d+)", pyproject["project"]["requires-python"])
    for op, value in bounds:
        assert (minor >= int(value)) if op == ">=" else (minor < int(value)), f"python 3.{minor} vs requires-python"
    builders = [s for s in stages[:-1] if s.base == runtime_base]
    assert builders, "the venv is built on the runtime's base image (same interpreter path for its symlinks)"


def test_runtime_runs_as_non_root_with_production_defaults(runtime: Stage) -> None:
    user = runtime.last("USER").split(":")[0]
    assert user not in ("root", "0", ""), f"runtime USER is {user!r}"
    env = env_of(runtime)
    assert env.get("RWA_ENV") == "production"
    assert env.get("RWA_DATA_DIR") and not env["RWA_DATA_DIR"].startswith("/root")
    assert "/opt/venv/bin" in env.get("PATH", "")
    assert "8000" in runtime.last("EXPOSE").split()


def test_entrypoint_and_cmd_are_a_valid_rwa_serve(runtime: Stage, pyproject: dict) -> None:  # type: ignore[type-arg]
    entrypoint = json.loads(runtime.last("ENTRYPOINT"))
    cmd = json.loads(runtime.last("CMD"))
    assert entrypoint == ["rwa"] and "rwa" in pyproject["project"]["scripts"]
    import typer.main

    from cli.main import app

    command = typer.main.get_command(app)
    ctx = command.make_context("rwa", list(cmd), resilient_parsing=False)
    sub = command.get_command(ctx, cmd[0])  # type: ignore[attr-defined]
    assert sub is not None and cmd[0] == "serve"
    params = sub.make_context("serve", list(cmd[1:])).params
    assert params["host"] == "0.0.0.0" and params["port"] == 8000  # reachable from outside the container


def healthcheck_command(runtime: Stage) -> list[str]:
    args = runtime.last("HEALTHCHECK")
    exec_form = json.loads(args[args.index("CMD") + 3 :].strip())
    assert exec_form[0] == "python", "the slim image has no curl: the probe is python"
    return exec_form


def test_healthcheck_probes_healthz(runtime: Stage, live_server) -> None:  # type: ignore[no-untyped-def]
    """The image's probe finds the role from PID 1's command (core/healthcheck.py; every role's URL is tested in
    tests/platform/test_ops_ports.py); here it probes a live API given that command."""
    command = healthcheck_command(runtime)
    assert command == ["python", "-m", "core.healthcheck"]
    port = live_server.url.rsplit(":", 1)[1]
    probe = [sys.executable, *command[1:]]
    ok = subprocess.run(
        [*probe, "rwa", "serve", "--host", "0.0.0.0", "--port", port], capture_output=True, timeout=30, cwd=REPO
    )
    assert ok.returncode == 0, ok.stderr
    down = subprocess.run(
        [*probe, "rwa", "serve", "--port", str(free_port())], capture_output=True, timeout=30, cwd=REPO
    )
    assert down.returncode != 0
    assert {"8000", "9100", "9101", "9102", "9103"} <= set(runtime.last("EXPOSE").split())
    assert env_of(runtime).get("RWA_OPS_HOST") == "0.0.0.0", "probes and scrapes reach the ops ports from outside"


def test_build_inputs_are_in_the_context(stages: list[Stage], dockerignore: list[str], pyproject: dict) -> None:  # type: ignore[type-arg]
    # files the Dockerfile copies from the context
    for stage in stages:
        for args in stage.all("COPY"):
            if "--from=" in args:
                continue
            sources = [w for w in shlex.split(args) if not w.startswith("--")][:-1]
            for source in sources:
                if source == ".":
                    continue
                assert (REPO / source).exists(), f"COPY {source}: not in the repository"
                assert not ignored(source, dockerignore), f"COPY {source}: excluded by .dockerignore"
    # what `pip install .` needs: pyproject, its readme, and every package it includes
    needed = ["pyproject.toml", pyproject["project"]["readme"], "package.json", "package-lock.json"]
    patterns = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    needed += [
        p.name
        for p in REPO.iterdir()
        if p.is_dir() and (p / "__init__.py").exists() and any(fnmatch.fnmatch(p.name, pat) for pat in patterns)
    ]
    for path in needed:
        assert not ignored(path, dockerignore), f"{path} is needed by the build but excluded by .dockerignore"
    # the local environment stays out
    for path in (".venv", "node_modules", ".git", "server/static/graphiql", ".rwa"):
        assert ignored(path, dockerignore), f"{path} should be excluded from the build context"


def test_python_modules_run_during_the_build_exist(stages: list[Stage]) -> None:
    run_lines = " ".join(args for stage in stages for args in stage.all("RUN"))
    modules = re.findall(r"python -m ([\w.]+)", run_lines) + re.findall(r"from ([\w.]+) import", run_lines)
    assert "server.graphiql" in modules, "the build installs the GraphiQL assets"
    for module in modules:
        if module in ("venv", "pip"):
            continue
        assert importlib.util.find_spec(module) is not None, f"the Dockerfile runs {module}, which does not exist"
    from server.graphiql import main, missing_assets

    assert callable(missing_assets)
    with pytest.raises(SystemExit) as done:
        main(["install", "--help"])
    assert done.value.code == 0
