"""Compile the Vyper sources into ``artifacts/<Name>.json``: ``python -m chains.contracts.compile``.

Needs the dev dependency ``vyper==0.4.3``. ``--check`` exits non-zero when a committed artifact
differs from a fresh compile (the test suite does the same comparison).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from chains.contracts import ARTIFACTS_DIR, CONTRACT_NAMES, CONTRACTS_DIR, Artifact

VYPER_VERSION = "0.4.3"

# Vyper cannot name a variable `from` (a Python keyword), so its ERC-20 Transfer event says
# sender/receiver. The encoding depends only on types; renaming the ABI inputs to the ERC-20
# names lets web3 and other ABI consumers read args["from"] / args["to"] as for any token.
_EVENT_INPUT_RENAMES: dict[str, dict[str, str]] = {
    "Transfer": {"sender": "from", "receiver": "to"},
}


def _standardize_abi(abi: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for entry in abi:
        renames = _EVENT_INPUT_RENAMES.get(entry.get("name", "")) if entry.get("type") == "event" else None
        if renames:
            for inp in entry["inputs"]:
                inp["name"] = renames.get(inp["name"], inp["name"])
    return abi


def compile_contract(name: str) -> Artifact:
    import vyper  # dev dependency: imported here so runtime imports never need it

    if vyper.__version__ != VYPER_VERSION:
        raise RuntimeError(f"vyper {VYPER_VERSION} required, found {vyper.__version__}")
    source = (CONTRACTS_DIR / f"{name}.vy").read_text(encoding="utf-8")
    out = vyper.compile_code(source, output_formats=["abi", "bytecode"])
    bytecode = out["bytecode"]
    if not bytecode.startswith("0x"):
        bytecode = "0x" + bytecode
    return {"abi": _standardize_abi(out["abi"]), "bytecode": bytecode, "compiler": f"vyper-{VYPER_VERSION}"}


def render(artifact: Artifact) -> str:
    return json.dumps(artifact, indent=1) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m chains.contracts.compile", description=__doc__)
    parser.add_argument("--check", action="store_true", help="only compare with the committed artifacts")
    args = parser.parse_args(argv)
    ARTIFACTS_DIR.mkdir(exist_ok=True)
    stale: list[str] = []
    for name in CONTRACT_NAMES:
        text = render(compile_contract(name))
        path = ARTIFACTS_DIR / f"{name}.json"
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current == text:
            continue
        stale.append(name)
        if not args.check:
            path.write_text(text, encoding="utf-8")
    if args.check and stale:
        print(f"stale artifacts: {', '.join(stale)}", file=sys.stderr)
        return 1
    print(f"{'stale' if args.check else 'written'}: {', '.join(stale) or 'none'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
