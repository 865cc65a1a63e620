"""Parsing what operators and API clients type: chain keys and addresses.

Pure functions (no I/O) shared by `rwa index` and the GraphQL resolvers; each raises ValueError (or
chains.errors.UnknownChain) with a message fit to show as is.
"""

from __future__ import annotations

import re
from functools import lru_cache

from chains.registry import get_chain
from chains.spec import ChainSpec

_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")
ZERO_ADDRESS = "0x" + "0" * 40


@lru_cache(maxsize=4096)
def checksum_address(text: str) -> str:
    """`0x` + 40 hex digits -> EIP-55 form. All-lowercase/all-uppercase input is accepted as is;
    mixed case must already be a valid checksum (a typo in one character is caught this way)."""
    value = text.strip()
    if not _ADDRESS.match(value):
        raise ValueError(f"not an address: {text!r} (expected 0x followed by 40 hex digits)")
    from eth_utils import to_checksum_address  # here: 0.07-0.26 s of imports, which `rwa index backfill` skips

    checksummed = to_checksum_address(value)
    body = value[2:]
    if body != body.lower() and body != body.upper() and value != checksummed:
        raise ValueError(f"bad address checksum: {text!r} (did you mean {checksummed}?)")
    return checksummed


def parse_chain(key: int | str) -> ChainSpec:
    """1/137/56 or ethereum/polygon/bsc (and the registry's aliases). Raises UnknownChain."""
    return get_chain(key)
