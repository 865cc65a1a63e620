"""Call data: the fast ABI encoder (elementary static types and arrays of them) gives eth_abi's bytes, refuses what
eth_abi refuses, and every other type still goes through eth_abi."""

from __future__ import annotations

import random

import pytest
from eth_abi import encode

from agent import calls
from agent.calls import encode_call, function_types
from chains.contracts import CONTRACT_NAMES, load_artifact

A = "0x" + "ab" * 20
B = "0x" + "cd" * 20


def slow(abi_name: str, function: str, args: list) -> str:  # type: ignore[type-arg]
    selector, types = function_types(abi_name, function, len(args))
    values = [calls._coerce(t, a) for t, a in zip(types, args)]
    return "0x" + (selector + encode(list(types), values)).hex()


def test_batch_mint_and_settlement_transfers_encode_as_eth_abi() -> None:
    rng = random.Random(7)
    wallets = ["0x" + rng.randbytes(20).hex() for _ in range(200)]
    amounts = [str(rng.randrange(0, 2**256)) for _ in wallets]
    for abi_name, function, args in [
        ("SecurityToken", "batchMint", [wallets, amounts]),
        ("SecurityToken", "batchMint", [[], []]),
        ("SecurityToken", "mint", [A, "1000000000000000000"]),
        ("SecurityToken", "settlementTransfer", [A, B, str(2**256 - 1)]),
        ("SecurityToken", "batchSettlementTransfer", [wallets[:50], wallets[50:100], amounts[:50]]),
    ]:
        _, types = function_types(abi_name, function, len(args))
        assert calls._fast_types(types)
        assert encode_call(abi_name, function, args) == slow(abi_name, function, args)


def test_every_fast_function_of_the_project_abis_matches_eth_abi() -> None:
    rng = random.Random(11)

    def sample(t: str):  # type: ignore[no-untyped-def]
        if t.endswith("[]"):
            return [sample(t[:-2]) for _ in range(rng.randrange(0, 4))]
        if t == "address":
            return "0x" + rng.randbytes(20).hex()
        if t == "bool":
            return rng.choice([True, False])
        if t.startswith("uint"):
            return str(rng.randrange(0, 2 ** int(t[4:] or 256)))
        if t.startswith("int"):
            bits = int(t[3:] or 256)
            return str(rng.randrange(-(2 ** (bits - 1)), 2 ** (bits - 1)))
        return "0x" + rng.randbytes(int(t[5:])).hex()

    checked = 0
    for name in CONTRACT_NAMES:
        for entry in load_artifact(name)["abi"]:
            if entry.get("type") != "function":
                continue
            _, types = function_types(name, entry["name"], len(entry["inputs"]))
            if not calls._fast_types(types):
                continue
            for _ in range(3):
                args = [sample(t) for t in types]
                assert encode_call(name, entry["name"], args) == slow(name, entry["name"], args), (name, entry)
                checked += 1
    assert checked > 30


@pytest.mark.parametrize(
    "types,values",
    [
        (("uint8",), [256]),
        (("uint256",), [-1]),
        (("uint256",), [2**256]),
        (("int8",), [128]),
        (("int8",), [-129]),
        (("address",), [b"\x01" * 19]),
        (("bytes4",), [b"\x01" * 5]),
        (("bool",), [1]),
        (("uint256[]",), [5]),
    ],
)
def test_fast_encoder_refuses_what_eth_abi_refuses(types: tuple[str, ...], values: list) -> None:  # type: ignore[type-arg]
    assert calls._fast_types(types)
    with pytest.raises(ValueError):
        calls._encode_fast(types, values)
    with pytest.raises(Exception):  # noqa: B017  (eth_abi raises its own types)
        encode(list(types), values)


def test_other_types_go_through_eth_abi() -> None:
    for types in [("string",), ("bytes",), ("uint256[2]",), ("address[][]",), ("(uint256,address)",), ("bytes33",)]:
        assert not calls._fast_types(types)


def test_bad_argument_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        encode_call("SecurityToken", "batchMint", [[A], ["-1"]])
    with pytest.raises(ValueError):
        encode_call("SecurityToken", "mint", ["0x1234", "1"])
