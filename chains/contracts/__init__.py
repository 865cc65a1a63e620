"""Contract sources (Vyper 0.4.3) and their committed compiled artifacts.

Runtime code only reads the JSON artifacts in ``artifacts/``; the compiler is a dev dependency.
Regenerate them with ``python -m chains.contracts.compile`` after editing a ``.vy`` source.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any, TypedDict

CONTRACTS_DIR = Path(__file__).resolve().parent
ARTIFACTS_DIR = CONTRACTS_DIR / "artifacts"
CONTRACT_NAMES: tuple[str, ...] = ("IdentityRegistry", "SecurityToken", "Stablecoin")


class Artifact(TypedDict):
    abi: list[dict[str, Any]]
    bytecode: str  # 0x-prefixed creation code
    compiler: str


@cache
def load_artifact(name: str) -> Artifact:
    """Return the compiled ABI and creation bytecode of contract ``name`` (e.g. "SecurityToken")."""
    if name not in CONTRACT_NAMES:
        raise KeyError(f"unknown contract {name!r}; known: {', '.join(CONTRACT_NAMES)}")
    with open(ARTIFACTS_DIR / f"{name}.json", encoding="utf-8") as fh:
        return json.load(fh)


def event_abi(contract: str, event: str) -> dict[str, Any]:
    """The ABI entry of ``event`` in ``contract`` (for decoders that want names and types)."""
    for entry in load_artifact(contract)["abi"]:
        if entry.get("type") == "event" and entry.get("name") == event:
            return entry
    raise KeyError(f"{contract} has no event {event!r}")
