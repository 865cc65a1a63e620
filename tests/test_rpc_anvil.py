"""RpcClient's normal path against real anvil nodes (shared fixtures `anvil`, `local_chains`):
blocks, batches, logs, eth_call, failover."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
from eth_utils import keccak
from prometheus_client import REGISTRY

from chains.anvil import AnvilNode
from chains.errors import AllEndpointsFailed, ChainIdMismatch, RpcUnavailable
from chains.log_range import AdaptiveLogRange, iter_logs
from chains.registry import get_chain
from chains.rpc import RpcClient
from chains.rpc_urls import url_label

# Runtime: for i in n..1 (n = calldata word 0): LOG2(data=i, topic0=PING, topic1=caller). ~1.4k gas per log.
PING = "0x" + keccak(text="Ping(address,uint256)").hex()
_RUNTIME = "6000355b8015603b578060005233" + "7f" + PING[2:] + "60206000a2600190036003565b00"
LOG_EMITTER_INITCODE = "0x603d600c600039603d6000f3" + _RUNTIME


def closed_port() -> int:
    """A port nothing listens on: bound then released, so connects are refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
async def client(anvil: AnvilNode) -> AsyncIterator[RpcClient]:
    async with RpcClient([anvil.url], chain_id=1, backoff_base=0.001) as c:
        yield c


async def mined_receipt(client: RpcClient, tx: str) -> dict[str, Any]:
    """anvil may answer eth_sendTransaction before mining: poll for the receipt."""
    for _ in range(200):
        receipt = await client.get_transaction_receipt(tx)
        if receipt is not None:
            assert receipt["status"] == "0x1"
            return receipt
        await asyncio.sleep(0.01)
    raise AssertionError(f"{tx} not mined")


async def deploy_emitter(client: RpcClient) -> str:
    sender = (await client.call("eth_accounts"))[0]
    tx = await client.call("eth_sendTransaction", [{"from": sender, "data": LOG_EMITTER_INITCODE, "gas": hex(200_000)}])
    return (await mined_receipt(client, tx))["contractAddress"]


async def emit(client: RpcClient, emitter: str, n: int) -> dict[str, Any]:
    sender = (await client.call("eth_accounts"))[0]
    data = "0x" + n.to_bytes(32, "big").hex()
    tx = await client.call(
        "eth_sendTransaction", [{"from": sender, "to": emitter, "data": data, "gas": hex(30_000 + 2_000 * n)}]
    )
    return await mined_receipt(client, tx)


async def test_block_number_and_chain_id(client: RpcClient) -> None:
    await client.call("anvil_mine", ["0x3"])
    assert await client.block_number() >= 3
    assert await client.chain_id() == 1
    assert await client.verify_chain_id() == 1


async def test_wrong_chain_id_is_detected(anvil: AnvilNode) -> None:
    async with RpcClient([anvil.url], chain_id=137) as c:
        with pytest.raises(ChainIdMismatch):
            await c.verify_chain_id()


async def test_get_block_by_tag_number_and_hash(client: RpcClient) -> None:
    await client.call("anvil_mine", ["0x10"])
    head = await client.block_number()
    latest = await client.get_block("latest")
    safe = await client.get_block("safe")
    finalized = await client.get_block("finalized")
    assert latest is not None and safe is not None and finalized is not None
    assert int(latest["number"], 16) == head
    # anvil --slots-in-an-epoch 4: safe = head - 4, finalized = head - 8
    assert int(safe["number"], 16) == head - 4
    assert int(finalized["number"], 16) == head - 8
    assert await client.get_block(latest["hash"]) == latest
    assert await client.get_block(head + 1000) is None
    assert await client.get_block("0x" + "00" * 32) is None


async def test_get_blocks_is_one_batched_request_per_chunk(anvil: AnvilNode) -> None:
    label = url_label(anvil.url)
    key = {"chain_id": "1", "method": "batch:eth_getBlockByNumber", "url": label}
    async with RpcClient([anvil.url], chain_id=1, batch_size=4) as c:
        await c.call("anvil_mine", ["0xa"])
        before = REGISTRY.get_sample_value("rwa_rpc_requests_total", key) or 0.0
        blocks = await c.get_blocks(list(range(10)))
        after = REGISTRY.get_sample_value("rwa_rpc_requests_total", key)
    assert after == before + 3  # 4 + 4 + 2
    assert [int(b["number"], 16) for b in blocks] == list(range(10))
    for parent, child in zip(blocks, blocks[1:]):
        assert child["parentHash"] == parent["hash"]


async def test_get_logs_returns_the_emitted_logs(client: RpcClient) -> None:
    emitter = await deploy_emitter(client)
    receipt = await emit(client, emitter, 25)
    block = int(receipt["blockNumber"], 16)
    logs = await client.get_logs(emitter, [PING], block, block)
    assert len(logs) == 25
    assert [int(entry["data"], 16) for entry in logs] == list(range(25, 0, -1))
    assert {entry["address"] for entry in logs} == {emitter.lower()}
    assert await client.get_logs([emitter], [PING, "0x" + "00" * 32], block, block) == []  # topic1 mismatch


async def test_iter_logs_against_anvil_covers_every_log_once(client: RpcClient) -> None:
    emitter = await deploy_emitter(client)
    first = await client.block_number() + 1
    for n in (3, 7, 1, 12):
        await emit(client, emitter, n)
        await client.call("anvil_mine", ["0x5"])
    last = await client.block_number()
    ranger = AdaptiveLogRange(initial=2, floor=1, ceiling=8, sparse_below=5)
    chunks = [c async for c in iter_logs(client, emitter, [PING], first, last, ranger)]
    assert chunks[0][0] == first and chunks[-1][1] == last
    assert all(a[1] + 1 == b[0] for a, b in zip(chunks, chunks[1:]))
    assert sum(len(logs) for _, _, logs in chunks) == 3 + 7 + 1 + 12
    assert ranger.size > 2  # sparse ranges made it grow


async def test_eth_call_on_the_identity_precompile(client: RpcClient) -> None:
    identity = "0x0000000000000000000000000000000000000004"
    assert await client.eth_call(identity, "0xdeadbeef") == "0xdeadbeef"
    assert await client.eth_call(identity, "0x01", block=0) == "0x01"


async def test_failover_from_a_dead_url_to_anvil(anvil: AnvilNode) -> None:
    dead = f"http://127.0.0.1:{closed_port()}"
    key = {"chain_id": "1", "method": "eth_blockNumber", "url": url_label(dead), "kind": "unavailable"}
    before = REGISTRY.get_sample_value("rwa_rpc_errors_total", key) or 0.0
    async with RpcClient([dead, anvil.url], chain_id=1, backoff_base=0.001) as c:
        assert await c.block_number() >= 0
        assert c.current_endpoint == url_label(anvil.url)
        await c.block_number()  # starts at the healthy URL: no new error on the dead one
    assert REGISTRY.get_sample_value("rwa_rpc_errors_total", key) == before + 1


async def test_dead_urls_only_raise_all_endpoints_failed() -> None:
    dead = [f"http://127.0.0.1:{closed_port()}/key{i}" for i in range(2)]
    async with RpcClient(dead, backoff_base=0.001, max_retries=2) as c:
        with pytest.raises(AllEndpointsFailed) as exc:
            await c.block_number()
        assert set(exc.value.errors) == {url_label(u) for u in dead}
        assert "key0" not in str(exc.value)
        # A write is tried once, on one URL, and its own error surfaces.
        with pytest.raises(RpcUnavailable):
            await c.send_raw_transaction("0x00")


@pytest.mark.parametrize("chain_id", [1, 137, 56])
async def test_client_per_local_chain_matches_its_spec(local_chains: dict[int, AnvilNode], chain_id: int) -> None:
    spec = get_chain(chain_id)
    async with RpcClient([local_chains[chain_id].url], chain_id=spec.chain_id) as c:
        assert await c.verify_chain_id() == spec.chain_id
        assert (await c.get_block("finalized")) is not None
