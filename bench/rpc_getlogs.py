"""Micro-benchmark: eth_getLogs read throughput (logs/s) through RpcClient vs web3's get_logs.

Starts its own anvil, deploys a tiny log emitter (hand-assembled bytecode, no compiler), emits
``--logs`` Ping logs, then reads the same range repeatedly through both clients in one run and
prints both rates and the ratio (these machines are noisy; compare within one run only).

    .venv/bin/python bench/rpc_getlogs.py --logs 20000 --rounds 5
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
from eth_utils import keccak
from web3 import AsyncWeb3

from chains.rpc import RpcClient

ANVIL = Path(__file__).resolve().parent.parent / "node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil"
PING = "0x" + keccak(text="Ping(address,uint256)").hex()
# for i in n..1 (n = calldata word 0): LOG2(data=i, topic0=PING, topic1=caller)
_RUNTIME = "6000355b8015603b578060005233" + "7f" + PING[2:] + "60206000a2600190036003565b00"
EMITTER_INITCODE = "0x603d600c600039603d6000f3" + _RUNTIME
LOGS_PER_TX = 500


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_anvil() -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen(
        [str(ANVIL), "--host", "127.0.0.1", "--port", str(port), "--chain-id", "1", "--silent",
         "--gas-limit", "100000000"]
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            httpx.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []}, timeout=1)
            return proc, url
        except httpx.TransportError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("anvil did not start")


async def seed(client: RpcClient, n_logs: int) -> tuple[str, int, int]:
    sender = (await client.call("eth_accounts"))[0]
    tx = await client.call("eth_sendTransaction", [{"from": sender, "data": EMITTER_INITCODE}])
    emitter = (await client.get_transaction_receipt(tx))["contractAddress"]
    first = await client.block_number() + 1
    hashes = []
    for _ in range(0, n_logs, LOGS_PER_TX):
        data = "0x" + LOGS_PER_TX.to_bytes(32, "big").hex()
        hashes.append(await client.call(
            "eth_sendTransaction", [{"from": sender, "to": emitter, "data": data, "gas": hex(30_000 + 2_000 * LOGS_PER_TX)}]
        ))
    last = first
    for h in hashes:  # anvil may answer before mining: wait for every receipt
        while (receipt := await client.get_transaction_receipt(h)) is None:
            await asyncio.sleep(0.02)
        assert receipt["status"] == "0x1", receipt
        last = max(last, int(receipt["blockNumber"], 16))
    return emitter, first, last


async def time_reads(fn: Any, rounds: int) -> tuple[float, int]:
    await fn()  # warm-up (connection, caches)
    started = time.perf_counter()
    total = 0
    for _ in range(rounds):
        total += len(await fn())
    return total / (time.perf_counter() - started), total // rounds


async def main(n_logs: int, rounds: int) -> None:
    proc, url = start_anvil()
    try:
        async with RpcClient([url], chain_id=1) as client:
            emitter, first, last = await seed(client, n_logs)
            raw_rate, raw_n = await time_reads(lambda: client.get_logs(emitter, [PING], first, last), rounds)

        w3 = AsyncWeb3(AsyncWeb3.AsyncHTTPProvider(url))
        flt = {"address": AsyncWeb3.to_checksum_address(emitter), "topics": [PING], "fromBlock": first, "toBlock": last}
        try:
            w3_rate, w3_n = await time_reads(lambda: w3.eth.get_logs(flt), rounds)
        finally:
            await w3.provider.disconnect()
    finally:
        proc.terminate()
        proc.wait(timeout=10)

    assert raw_n == w3_n, (raw_n, w3_n)
    print(f"logs per read: {raw_n} (blocks {first}..{last}), rounds: {rounds}")
    print(f"RpcClient.get_logs : {raw_rate:12,.0f} logs/s")
    print(f"web3 eth.get_logs  : {w3_rate:12,.0f} logs/s")
    print(f"ratio RpcClient/web3: {raw_rate / w3_rate:.1f}x")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--logs", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(main(args.logs, args.rounds))
