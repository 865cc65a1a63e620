"""Committed artifacts match the Vyper sources, and runtime code never needs the compiler."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

import pytest

import chains.contracts.compile as compile_mod
from chains.contracts import ARTIFACTS_DIR, CONTRACT_NAMES, Artifact, load_artifact

# Compiling takes ~0.5-1 s per contract: compile each once per test session.
fresh_compile = lru_cache(maxsize=None)(compile_mod.compile_contract)


@pytest.mark.parametrize("name", CONTRACT_NAMES)
def test_artifact_matches_fresh_compile(name: str) -> None:
    assert fresh_compile(name) == load_artifact(name), f"run `python -m chains.contracts.compile` ({name})"
    assert compile_mod.render(fresh_compile(name)) == (ARTIFACTS_DIR / f"{name}.json").read_text()


def test_compile_check_and_write_modes(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def cached(name: str) -> Artifact:
        return json.loads(json.dumps(fresh_compile(name)))  # a copy: callers may mutate

    shutil.copytree(ARTIFACTS_DIR, tmp_path / "artifacts")
    monkeypatch.setattr(compile_mod, "compile_contract", cached)
    monkeypatch.setattr(compile_mod, "ARTIFACTS_DIR", tmp_path / "artifacts")
    assert compile_mod.main(["--check"]) == 0
    (tmp_path / "artifacts" / "Stablecoin.json").write_text("{}")
    assert compile_mod.main(["--check"]) == 1
    assert "stale artifacts: Stablecoin" in capsys.readouterr().err
    assert compile_mod.main([]) == 0
    assert json.loads((tmp_path / "artifacts" / "Stablecoin.json").read_text()) == load_artifact("Stablecoin")


def test_artifact_shape_and_unknown_name() -> None:
    artifact = load_artifact("SecurityToken")
    assert artifact["bytecode"].startswith("0x") and len(artifact["bytecode"]) > 1000
    assert {e["name"] for e in artifact["abi"] if e["type"] == "function"} >= {
        "transfer",
        "batchTransfer",
        "forcedTransfer",
        "recoveryAddress",
        "freezePartialTokens",
        "batchMint",
    }
    with pytest.raises(KeyError, match="unknown contract"):
        load_artifact("Nope")


def test_runtime_imports_do_not_load_vyper() -> None:
    code = (
        "import sys, chains.contracts, chains.deploy, chains.loadgen, chains.anvil;"
        "chains.contracts.load_artifact('Stablecoin');"
        "assert 'vyper' not in sys.modules, 'vyper imported at runtime'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
