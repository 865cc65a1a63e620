"""Micro-benchmark: eth_getLogs read throughput (logs/s) through RpcClient vs web3's get_logs.

Starts its own anvil (chains.anvil.AnvilNode), deploys a tiny log emitter (hand-assembled
bytecode, no compiler), emits ``--logs`` Ping logs, then reads the same range through both
clients, alternating rounds, and prints both rates and the ratio (these machines are noisy;
compare within one run only). Both sides include anvil's own time to serve the logs.

    .venv/bin/python bench/rpc_getlogs.py --logs 20000 --rounds 5
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from eth_utils import keccak
from web3 import AsyncWeb3

from chains.anvil import AnvilNode
from chains.rpc import RpcClient

PING = "0x" + keccak(text="Ping(address,uint256)").hex()
# for i in n..1 (n = calldata word 0): LOG2(data=i, topic0=PING, topic1=caller)
_RUNTIME = "6000355b8015603b578060005233" + "7f" + PING[2:] + "60206000a2600190036003565b00"
EMITTER_INITCODE = "0x603d600c600039603d6000f3" + _RUNTIME
LOGS_PER_TX = 500


async def seed(client: RpcClient, n_logs: int) -> tuple[str, int, int]:
    sender = (await client.call("eth_accounts"))[0]
    tx = await client.call("eth_sendTransaction", [{"from": sender, "data": EMITTER_INITCODE}])
    emitter = (await client.get_transaction_receipt(tx))["contractAddress"]
    first = await client.block_number() + 1
    hashes = []
    for _ in range(0, n_logs, LOGS_PER_TX):
        data = "0x" + LOGS_PER_TX.to_bytes(32, "big").hex()
        hashes.append(
            await client.call(
                "eth_sendTransaction",
                [{"from": sender, "to": emitter, "data": data, "gas": hex(30_000 + 2_000 * LOGS_PER_TX)}],
            )
        )
    last = first
    for h in hashes:  # anvil may answer before mining: wait for every receipt
        while (receipt := await client.get_transaction_receipt(h)) is None:
            await asyncio.sleep(0.02)
        assert receipt["status"] == "0x1", receipt
        last = max(last, int(receipt["blockNumber"], 16))
    return emitter, first, last


async def interleaved_rates(readers: dict[str, Any], rounds: int) -> tuple[dict[str, float], int]:
    """logs/s per reader; rounds alternate between readers so load spikes hit both alike."""
    counts = {name: len(await read()) for name, read in readers.items()}  # warm-up, and sizes
    assert len(set(counts.values())) == 1, counts
    elapsed = dict.fromkeys(readers, 0.0)
    for _ in range(rounds):
        for name, read in readers.items():
            started = time.perf_counter()
            await read()
            elapsed[name] += time.perf_counter() - started
    n = next(iter(counts.values()))
    return {name: n * rounds / t for name, t in elapsed.items()}, n


async def main(n_logs: int, rounds: int) -> None:
    with AnvilNode(1, extra_args=["--gas-limit", "100000000"]) as node:
        w3 = AsyncWeb3(AsyncWeb3.AsyncHTTPProvider(node.url))
        async with RpcClient([node.url], chain_id=1) as client:
            emitter, first, last = await seed(client, n_logs)
            flt = {
                "address": AsyncWeb3.to_checksum_address(emitter),
                "topics": [PING],
                "fromBlock": first,
                "toBlock": last,
            }
            try:
                rates, n = await interleaved_rates(
                    {
                        "RpcClient.get_logs": lambda: client.get_logs(emitter, [PING], first, last),
                        "web3 eth.get_logs": lambda: w3.eth.get_logs(flt),
                    },
                    rounds,
                )
            finally:
                await w3.provider.disconnect()

    print(f"logs per read: {n} (blocks {first}..{last}), rounds: {rounds}")
    for name, rate in rates.items():
        print(f"{name:20s}: {rate:12,.0f} logs/s")
    print(f"ratio RpcClient/web3: {rates['RpcClient.get_logs'] / rates['web3 eth.get_logs']:.1f}x")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--logs", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(main(args.logs, args.rounds))
