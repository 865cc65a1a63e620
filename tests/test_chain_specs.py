"""Chain specs and the registry: lookups by id/name, unknown chains, RPC URLs from the environment."""

from __future__ import annotations

import dataclasses

import pytest

from chains.errors import UnknownChain
from chains.registry import all_chains, get_chain, rpc_urls_for
from chains.spec import ChainSpec, NativeCurrency


@pytest.mark.parametrize(
    ("key", "chain_id"),
    [
        (1, 1),
        ("1", 1),
        ("ethereum", 1),
        ("eth", 1),
        ("ETH", 1),
        (137, 137),
        ("polygon", 137),
        ("137", 137),
        (56, 56),
        ("bsc", 56),
        (" BSC ", 56),
    ],
)
def test_get_chain_accepts_ids_and_names(key: int | str, chain_id: int) -> None:
    assert get_chain(key).chain_id == chain_id


@pytest.mark.parametrize("key", [2, "10", "solana", "", True])
def test_unknown_chain_lists_known_chains(key: object) -> None:
    with pytest.raises(UnknownChain) as exc:
        get_chain(key)  # type: ignore[arg-type]
    msg = str(exc.value)
    assert "1 (ethereum)" in msg and "137 (polygon)" in msg and "56 (bsc)" in msg


def test_specs_carry_the_documented_values() -> None:
    eth, pol, bsc = (get_chain(i) for i in (1, 137, 56))
    assert (eth.block_time_s, eth.finality_depth, eth.supports_finality_tags) == (12, 64, True)
    assert (pol.block_time_s, pol.finality_depth, pol.supports_finality_tags) == (2, 256, True)
    assert (bsc.block_time_s, bsc.finality_depth, bsc.supports_finality_tags) == (3, 15, True)
    assert [c.chain_id for c in all_chains()] == [1, 137, 56]
    for spec in all_chains():
        assert spec.default_rpc_urls == ()  # keys never live in code
        assert 1 <= spec.max_logs_range_floor <= spec.max_logs_range
        assert spec.native_currency.decimals == 18


def test_specs_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        get_chain(1).chain_id = 5  # type: ignore[misc]


def test_spec_rejects_inconsistent_log_ranges() -> None:
    with pytest.raises(ValueError):
        ChainSpec(
            chain_id=9,
            name="x",
            short_name="x",
            block_time_s=1,
            finality_depth=1,
            supports_finality_tags=False,
            max_logs_range=10,
            max_logs_range_floor=20,
            native_currency=NativeCurrency("X", "X"),
        )


def test_rpc_urls_from_environment_in_failover_order() -> None:
    env = {"RPC_URLS_137": " https://a.example/k1 , ,https://b.example/k2,", "RPC_URLS_1": ""}
    assert rpc_urls_for(137, env) == ["https://a.example/k1", "https://b.example/k2"]
    assert rpc_urls_for(1, env) == []  # empty default: dev/tests use local anvil
    assert rpc_urls_for(999, env) == []
