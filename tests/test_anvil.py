"""AnvilNode lifecycle, binary lookup and the anvil_/evm_ helpers (real anvil processes)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import httpx
import pytest

import chains.anvil as anvil_mod
from chains.anvil import AnvilError, AnvilNode, find_anvil_binary, start_local_chains, stop_nodes


def _block(node: AnvilNode, tag: str) -> dict:
    return node.rpc("eth_getBlockByNumber", tag, False)


def test_node_starts_answers_and_stops_its_process() -> None:
    node = AnvilNode(31337)
    with pytest.raises(AnvilError):
        _ = node.url  # no port before start
    with node:
        assert node.running and node.port
        reply = httpx.post(node.url, json={"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []})
        assert int(reply.json()["result"], 16) == 31337
        assert node.url == f"http://127.0.0.1:{node.port}"
        proc = node._proc
    assert not node.running
    assert proc is not None and proc.poll() is not None
    with pytest.raises(httpx.ConnectError):
        httpx.post(node.url, json={"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []})


def test_start_local_chains_gives_three_chain_ids_on_distinct_ports() -> None:
    nodes = start_local_chains()
    try:
        assert sorted(nodes) == [1, 56, 137]
        assert len({n.port for n in nodes.values()}) == 3
        for chain_id, node in nodes.items():
            assert int(node.rpc("eth_chainId"), 16) == chain_id
    finally:
        stop_nodes(nodes.values())
    assert not any(n.running for n in nodes.values())


def test_occupied_port_fails_with_clear_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        node = AnvilNode(1, port=sock.getsockname()[1])
        with pytest.raises(AnvilError, match="did not start"):
            node.start(timeout=5)
        assert not node.running


def test_missing_binary_says_how_to_install(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.delenv("ANVIL_BIN", raising=False)
    monkeypatch.setattr(anvil_mod, "NPM_ANVIL", tmp_path / "nope" / "anvil")
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(AnvilError, match="npm ci --ignore-scripts"):
        find_anvil_binary()
    monkeypatch.setenv("ANVIL_BIN", str(tmp_path / "missing"))
    with pytest.raises(AnvilError, match="ANVIL_BIN"):
        find_anvil_binary()


def test_anvil_bin_env_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    real = str(anvil_mod.NPM_ANVIL)
    monkeypatch.setenv("ANVIL_BIN", real)
    assert find_anvil_binary() == real


def test_finality_tags_follow_slots_in_an_epoch(anvil: AnvilNode) -> None:
    anvil.mine(20)
    head = anvil.block_number()
    assert int(_block(anvil, "safe")["number"], 16) == head - 4
    assert int(_block(anvil, "finalized")["number"], 16) == head - 8


def test_reorg_replaces_blocks_at_same_height(anvil: AnvilNode) -> None:
    anvil.mine(5)
    head = anvil.block_number()
    old = [_block(anvil, hex(n))["hash"] for n in range(head - 2, head + 1)]
    anvil.reorg(3)
    assert anvil.block_number() == head
    new = [_block(anvil, hex(n))["hash"] for n in range(head - 2, head + 1)]
    assert all(o != n for o, n in zip(old, new))
    assert anvil.rpc("eth_getBlockByHash", old[-1], False) is None
    assert _block(anvil, hex(head - 2))["parentHash"] == _block(anvil, hex(head - 3))["hash"]


def _mine_to_base_fee_floor(node: AnvilNode) -> None:
    """Empty blocks lower the base fee by 1/8 until it stops at 7 wei: from then on an empty block re-mined with
    the same timestamp would be the same block, the case a reorg must still give new hashes in."""
    while int(_block(node, "latest")["baseFeePerGas"], 16) > 7:
        node.mine(64)
    node.mine(5)


def test_reorg_of_empty_blocks_at_the_base_fee_floor_gives_new_hashes(anvil: AnvilNode) -> None:
    _mine_to_base_fee_floor(anvil)
    coinbase = anvil.rpc("eth_coinbase")
    for depth in (1, 3, 3):  # twice in a row: the replaced blocks' own miner is then the reorg's coinbase
        head = anvil.block_number()
        old = [_block(anvil, hex(n)) for n in range(head - depth + 1, head + 1)]
        assert all(b["transactions"] == [] and int(b["baseFeePerGas"], 16) == 7 for b in old)
        anvil.reorg(depth)
        new = [_block(anvil, hex(n)) for n in range(head - depth + 1, head + 1)]
        assert anvil.block_number() == head
        assert all(o["hash"] != n["hash"] for o, n in zip(old, new))
        assert all(anvil.rpc("eth_getBlockByHash", o["hash"], False) is None for o in old)
    assert anvil.rpc("eth_coinbase") == coinbase  # the node's coinbase is back for the blocks mined next
    anvil.mine()
    assert _block(anvil, "latest")["miner"] == coinbase


async def test_async_reorg_of_empty_blocks_at_the_base_fee_floor_gives_new_hashes(anvil: AnvilNode) -> None:
    _mine_to_base_fee_floor(anvil)
    coinbase = anvil.rpc("eth_coinbase")
    for depth in (2, 2):
        head = anvil.block_number()
        old = [_block(anvil, hex(n))["hash"] for n in range(head - depth + 1, head + 1)]
        await anvil_mod.reorg(anvil.url, depth)
        assert anvil.block_number() == head
        new = [_block(anvil, hex(n))["hash"] for n in range(head - depth + 1, head + 1)]
        assert all(o != n for o, n in zip(old, new))
    assert anvil.rpc("eth_coinbase") == coinbase


def test_reorg_can_include_transactions(anvil: AnvilNode) -> None:
    sender, receiver = anvil.rpc("eth_accounts")[:2]
    anvil.mine(3)
    head = anvil.block_number()
    anvil.reorg(2, [({"from": sender, "to": receiver, "value": hex(12345)}, 1)])
    assert anvil.block_number() == head
    assert len(_block(anvil, hex(head))["transactions"]) == 1
    assert len(_block(anvil, hex(head - 1))["transactions"]) == 0


def test_snapshot_revert_and_timestamp(anvil: AnvilNode) -> None:
    head = anvil.block_number()
    snap = anvil.snapshot()
    anvil.mine(3)
    assert anvil.revert(snap) is True
    assert anvil.block_number() == head
    ts = int(_block(anvil, "latest")["timestamp"], 16) + 1000
    anvil.set_next_block_timestamp(ts)
    anvil.mine()
    assert int(_block(anvil, "latest")["timestamp"], 16) == ts


async def test_async_helpers(anvil: AnvilNode) -> None:
    head = anvil.block_number()
    await anvil_mod.mine(anvil.url, 4)
    assert anvil.block_number() == head + 4
    hash_before = _block(anvil, "latest")["hash"]
    await anvil_mod.reorg(anvil.url, 2)
    assert _block(anvil, "latest")["hash"] != hash_before
    snap = await anvil_mod.snapshot(anvil.url)
    await anvil_mod.mine(anvil.url, 2)
    assert await anvil_mod.revert(anvil.url, snap)
    assert anvil.block_number() == head + 4
    ts = int(_block(anvil, "latest")["timestamp"], 16) + 77
    await anvil_mod.set_next_block_timestamp(anvil.url, ts)
    await anvil_mod.mine(anvil.url)
    assert int(_block(anvil, "latest")["timestamp"], 16) == ts
    with pytest.raises(AnvilError, match="evm_revert"):
        await anvil_mod.rpc(anvil.url, "evm_revert", "not-a-snapshot")


def test_nodes_left_running_are_stopped_at_interpreter_exit() -> None:
    code = "from chains.anvil import AnvilNode\nnode = AnvilNode(5).start()\nprint(node.pid, flush=True)\n"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, timeout=60)
    pid = int(out.stdout.strip())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
