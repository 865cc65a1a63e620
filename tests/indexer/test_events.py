"""Decoders: every event type, sliced from hex, agrees with eth-abi on real logs from anvil."""

from __future__ import annotations

import random
from typing import Any

import pytest
from eth_utils import to_checksum_address
from web3._utils.events import get_event_data

from chains.anvil import AnvilNode
from chains.contracts import event_abi
from chains.rpc import RpcClient
from indexer.events import BY_TOPIC0, EVENT_TYPES, UndecodableLog, checksum, decode_log, subject_of
from indexer.intervals import gaps, merge
from tests.indexer.conftest import deploy
from tests.indexer.scenario import run_scenario

_CONTRACT_OF = {
    "IdentityRegistered": "IdentityRegistry",
    "IdentityRemoved": "IdentityRegistry",
    "CountryUpdated": "IdentityRegistry",
}


def _abi_args(name: str, log: dict[str, Any], w3_codec: Any) -> dict[str, Any]:
    abi = event_abi(_CONTRACT_OF.get(name, "SecurityToken"), name)
    entry = {
        "address": log["address"],
        "topics": [bytes.fromhex(t[2:]) for t in log["topics"]],
        "data": bytes.fromhex(log["data"][2:]),
        "logIndex": 0,
        "transactionIndex": 0,
        "transactionHash": b"\x00" * 32,
        "blockHash": b"\x00" * 32,
        "blockNumber": 0,
    }
    return dict(get_event_data(w3_codec, abi, entry)["args"])


async def test_every_event_decodes_like_eth_abi(node: AnvilNode) -> None:
    d = await deploy(node.url)
    await run_scenario(d)
    async with RpcClient([node.url]) as client:
        logs = await client.get_logs(
            [d.stack.token.address, d.stack.registry.address, d.stack.stablecoin.address], None, 0, "latest"
        )
    seen: set[str] = set()
    for lg in logs:
        decoded = decode_log(lg["topics"], lg["data"])
        if decoded is None:
            continue  # Approval, AgentAdded, OwnershipTransferred...: not watched
        name, args = decoded
        seen.add(name)
        ref = _abi_args(name, lg, d.w3.codec)
        ref_values = [v if not isinstance(v, str) else to_checksum_address(v) for v in ref.values()]
        got_values = [int(v) if k in ("value", "amount") else v for k, v in args.items()]
        assert got_values == ref_values, (name, args, ref)
        subject = subject_of(name, args, to_checksum_address(lg["address"]))
        if name == "Transfer" or name == "RecoverySuccess":
            assert subject is None
        else:
            assert subject is not None
    assert seen == {e.name for e in EVENT_TYPES}


def test_unknown_and_malformed_logs() -> None:
    assert decode_log(["0x" + "ab" * 32], "0x") is None
    assert decode_log([], "0x") is None
    transfer = next(t for t, e in BY_TOPIC0.items() if e.name == "Transfer")
    # an ERC-721 Transfer has the same topic0 but the value in a 4th topic and no data
    with pytest.raises(UndecodableLog):
        decode_log([transfer, "0x" + "00" * 32, "0x" + "00" * 32, "0x" + "00" * 31 + "07"], "0x")


def test_intervals_merge_and_gaps() -> None:
    assert merge([(5, 9), (1, 3), (4, 4), (20, 30)]) == [(1, 9), (20, 30)]
    assert gaps([(1, 9), (20, 30)], 0, 40) == [(0, 0), (10, 19), (31, 40)]
    assert gaps([(1, 9)], 3, 7) == []
    assert gaps([], 3, 7) == [(3, 7)]
    assert gaps([(5, 6)], 3, 7) == [(3, 4), (7, 7)]


def test_checksum_is_eip55_for_every_casing_and_refuses_what_is_no_address() -> None:
    rng = random.Random(55)
    samples = ["0x" + "0" * 40, "0x" + "f" * 40, "0X" + "AB" * 20, "0x5fbdb2315678afecb367f032d93f642f64180aa3"]
    samples += ["0x" + "".join(rng.choice("0123456789abcdefABCDEF") for _ in range(40)) for _ in range(3000)]
    for address in samples:
        assert checksum(address) == to_checksum_address(address)
    for bad in ("0x" + "g" * 40, "0x" + "a" * 39, "0x" + "a" * 41, "12" + "a" * 40):
        with pytest.raises(ValueError):
            checksum(bad)
