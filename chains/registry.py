"""Look chains up by id or name, and find their RPC URLs in the environment."""

from __future__ import annotations

import os
from collections.abc import Mapping

from chains.bsc import BSC
from chains.errors import UnknownChain
from chains.ethereum import ETHEREUM
from chains.polygon import POLYGON
from chains.spec import ChainSpec

_CHAINS: tuple[ChainSpec, ...] = (ETHEREUM, POLYGON, BSC)

_BY_KEY: dict[str, ChainSpec] = {}
for _spec in _CHAINS:
    for _key in (str(_spec.chain_id), _spec.short_name, *_spec.aliases):
        _BY_KEY[_key.lower()] = _spec


def all_chains() -> tuple[ChainSpec, ...]:
    """Every supported chain, in a stable order (Ethereum, Polygon, BSC)."""
    return _CHAINS


def get_chain(key: int | str) -> ChainSpec:
    """Accepts 1, "1", "ethereum", "eth", 137, "polygon", 56, "bsc" (case-insensitive)."""
    if isinstance(key, bool):  # bool is an int; True must not mean chain 1
        raise UnknownChain(key, _known())
    spec = _BY_KEY.get(str(key).strip().lower())
    if spec is None:
        raise UnknownChain(key, _known())
    return spec


def rpc_urls_for(chain_id: int, environ: Mapping[str, str] = os.environ) -> list[str]:
    """URLs from ``RPC_URLS_<chain_id>`` (comma-separated, failover order), else the spec defaults."""
    raw = environ.get(f"RPC_URLS_{chain_id}", "")
    urls = [u.strip() for u in raw.split(",") if u.strip()]
    if urls:
        return urls
    try:
        return list(get_chain(chain_id).default_rpc_urls)
    except UnknownChain:
        return []


def _known() -> list[str]:
    return [f"{c.chain_id} ({c.short_name})" for c in _CHAINS]
