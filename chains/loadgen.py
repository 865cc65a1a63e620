"""Generate Transfer-event volume on a local chain with ``batchTransfer`` (500 Transfers per tx).

Transactions go out as raw JSON-RPC batches of ``eth_sendTransaction`` with explicit nonces (anvil
rejects a batch without them), then receipts are polled in batches. Works for SecurityToken and
Stablecoin alike (same ``batchTransfer(address[],uint256[])``); for a SecurityToken the sender and
recipients must be verified first: ``prepare_security_token_load`` does that.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx
from eth_abi import encode
from eth_utils import function_signature_to_4byte_selector, to_checksum_address
from web3 import AsyncWeb3

from chains.deploy import RwaStack, Sender, sender_address, transact

MAX_BATCH = 500  # the contracts' DynArray bound
_BATCH_TRANSFER = function_signature_to_4byte_selector("batchTransfer(address[],uint256[])")
_MAX_REQUEST_BYTES = 1_500_000
_ids = itertools.count(1)


@dataclass(frozen=True)
class LoadResult:
    txs: int
    events: int
    seconds: float
    first_block: int
    last_block: int

    @property
    def events_per_second(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0


def load_recipients(count: int, offset: int = 0x10000) -> list[str]:
    """Deterministic, distinct, non-precompile recipient addresses (checksummed)."""
    return [to_checksum_address(f"0x{offset + i:040x}") for i in range(count)]


def batch_transfer_calldata(recipients: Sequence[str], amounts: Sequence[int]) -> str:
    if len(recipients) != len(amounts) or len(recipients) > MAX_BATCH:
        raise ValueError(f"need equal lengths <= {MAX_BATCH}")
    args = encode(["address[]", "uint256[]"], [list(recipients), list(amounts)])
    return "0x" + (_BATCH_TRANSFER + args).hex()


async def _call(client: httpx.AsyncClient, url: str, requests: list[tuple[str, list[Any]]]) -> list[Any]:
    payload = [{"jsonrpc": "2.0", "id": next(_ids), "method": m, "params": p} for m, p in requests]
    reply = await client.post(url, json=payload)
    reply.raise_for_status()
    body = reply.json()
    if not isinstance(body, list):  # a batch-level error (e.g. request too large)
        raise RuntimeError(f"JSON-RPC batch of {len(payload)} failed: {body}")
    by_id = {item["id"]: item for item in body}
    out = []
    for req in payload:
        item = by_id[req["id"]]
        if "error" in item:
            raise RuntimeError(f"{req['method']} failed: {item['error']}")
        out.append(item["result"])
    return out


_MAX_EMPTY_MINES = 200  # blocks mined in a row without one more receipt: the pool lost a transaction


async def send_batch_transfers(
    url: str,
    token: str,
    sender: str,
    recipients: Sequence[str],
    txs: int,
    amount: int = 1,
    rpc_batch: int | None = None,
) -> LoadResult:
    """Send ``txs`` batchTransfer txs from unlocked ``sender`` paying ``amount`` to each recipient.

    Emits ``txs * len(recipients)`` Transfer events; the sender needs that much free balance.
    Raises RuntimeError if any transaction reverts.
    """
    data = batch_transfer_calldata(recipients, [amount] * len(recipients))
    tx = {"from": sender, "to": token, "data": data}
    # anvil refuses request bodies over ~2 MB ("Invalid request"): a 500-transfer call is ~64 KB.
    rpc_batch = rpc_batch or max(1, min(200, _MAX_REQUEST_BYTES // len(data)))
    async with httpx.AsyncClient(timeout=120.0) as client:
        nonce_hex, gas_hex, head_hex = await _call(
            client,
            url,
            [("eth_getTransactionCount", [sender, "pending"]), ("eth_estimateGas", [tx]), ("eth_blockNumber", [])],
        )
        nonce, gas = int(nonce_hex, 16), int(gas_hex, 16) * 6 // 5  # margin: the first sends cost more
        started = time.perf_counter()
        hashes: list[str] = []
        for start in range(0, txs, rpc_batch):
            chunk = [
                ("eth_sendTransaction", [{**tx, "nonce": hex(nonce + i), "gas": hex(gas)}])
                for i in range(start, min(start + rpc_batch, txs))
            ]
            hashes += await _call(client, url, chunk)
        receipts: dict[str, dict[str, Any]] = {}
        pending = list(hashes)
        stalled_rounds = 0
        while pending:
            before = len(receipts)
            got = await _call(client, url, [("eth_getTransactionReceipt", [h]) for h in pending])
            receipts.update({h: r for h, r in zip(pending, got) if r is not None})
            stalled = len(receipts) == before
            pending = [h for h in pending if h not in receipts]
            stalled_rounds = stalled_rounds + 1 if stalled else 0
            if pending and stalled_rounds > _MAX_EMPTY_MINES:
                raise RuntimeError(
                    f"{len(pending)} of {len(hashes)} transactions still unmined after "
                    f"{_MAX_EMPTY_MINES} blocks without progress (first {pending[0]})"
                )
            if pending and stalled:
                # anvil's automine mines only when a tx arrives; once a block is full the rest
                # wait in the pool, so mine explicitly to drain it.
                await _call(client, url, [("evm_mine", [])])
                await asyncio.sleep(0.01)
        seconds = time.perf_counter() - started
    failed = [h for h, r in receipts.items() if r["status"] != "0x1"]
    if failed:
        raise RuntimeError(f"{len(failed)} batchTransfer txs reverted, first {failed[0]}")
    blocks = [int(r["blockNumber"], 16) for r in receipts.values()]
    events = sum(len(r["logs"]) for r in receipts.values())
    return LoadResult(
        txs=txs, events=events, seconds=seconds, first_block=int(head_hex, 16) + 1, last_block=max(blocks)
    )


async def prepare_security_token_load(
    w3: AsyncWeb3, stack: RwaStack, agent: Sender, recipients: Sequence[str], supply: int, country: int = 840
) -> None:
    """Register ``agent`` and ``recipients`` in the stack's registry (identity = the wallet itself,
    good enough for load) and mint ``supply`` tokens to the agent, who then sends the load."""
    agent_addr = sender_address(agent)
    wallets = [agent_addr, *recipients]
    for start in range(0, len(wallets), MAX_BATCH):
        chunk = wallets[start : start + MAX_BATCH]
        await transact(stack.registry.functions.batchRegisterIdentity(chunk, chunk, [country] * len(chunk)), agent)
    await transact(stack.token.functions.mint(agent_addr, supply), agent)


async def _measure(events: int, contract: str, recipients_per_tx: int, gas_limit: int | None) -> LoadResult:
    from chains.anvil import AnvilNode
    from chains.deploy import connect, deploy_rwa_stack

    extra = ["--gas-limit", str(gas_limit)] if gas_limit else []
    with AnvilNode(1, extra_args=extra) as node:
        w3 = connect(node.url)
        agent = (await w3.eth.accounts)[0]
        stack = await deploy_rwa_stack(w3, agent)
        recipients = load_recipients(recipients_per_tx)
        txs = max(1, events // recipients_per_tx)
        if contract == "token":
            await prepare_security_token_load(w3, stack, agent, recipients, supply=10**30)
            target = stack.token.address
        else:
            await transact(stack.stablecoin.functions.mint(agent, 10**30), agent)
            target = stack.stablecoin.address
        # Warm-up pass: first transfers to new holders cost 20k gas more per slot than the steady state.
        await send_batch_transfers(node.url, target, agent, recipients, txs=1)
        result = await send_batch_transfers(node.url, target, agent, recipients, txs=txs)
        await w3.provider.disconnect()
        return result


def main(argv: list[str] | None = None) -> int:
    """``python -m chains.loadgen [--events N] [--contract token|stablecoin]``: measure events/s on a
    fresh anvil node (the transfer volume an indexer benchmark can expect to generate)."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m chains.loadgen", description=main.__doc__)
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--contract", choices=("token", "stablecoin"), default="token")
    parser.add_argument("--per-tx", type=int, default=MAX_BATCH)
    parser.add_argument("--gas-limit", type=int, default=None, help="block gas limit (anvil default 30M)")
    args = parser.parse_args(argv)
    result = asyncio.run(_measure(args.events, args.contract, args.per_tx, args.gas_limit))
    print(
        f"{args.contract}: {result.events} Transfer events in {result.txs} txs, blocks "
        f"{result.first_block}-{result.last_block}, {result.seconds:.2f} s, {result.events_per_second:,.0f} events/s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
