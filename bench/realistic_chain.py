"""A realistic security-token history for the backfill benchmark (``--shape realistic``).

Unlike the busy shape (one sender paying the same 500 recipients over and over), it looks like a token with
a real investor base: ``holders`` verified investors (IdentityRegistered, some CountryUpdated), tokens
minted to all of them (batchMint), then ``senders`` of them each paying random other holders
(batchTransfer of ``per_tx`` transfers), and compliance activity on a separate set of holders
(AddressFrozen on and off, TokensFrozen, TokensUnfrozen). Roughly: 80% Transfers, 10% identity, 10% freeze.

Transactions from many senders go out through anvil's auto-impersonation as JSON-RPC batches of
``eth_sendTransaction`` with explicit per-sender nonces; receipts are polled, mining when the pool stalls.
"""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import httpx
from eth_abi import encode
from eth_utils import function_signature_to_4byte_selector

from chains.loadgen import MAX_BATCH, _call, load_recipients


def _calldata(signature: str, types: list[str], args: list[Any]) -> str:
    return "0x" + (function_signature_to_4byte_selector(signature) + encode(types, args)).hex()


@dataclass(frozen=True)
class Shape:
    events: int  # about this many events in total
    holders: int = 5_000
    senders: int = 200
    per_tx: int = 100  # transfers per batchTransfer
    freeze_holders: int = 200  # holders that only see compliance actions (never pay or get paid later)


async def _send_all(client: httpx.AsyncClient, url: str, txs: list[dict[str, Any]], chunk: int = 100) -> int:
    """Send txs (each with "from"), nonces assigned per sender in list order; wait for every receipt.
    Returns the number of logs they emitted. RuntimeError if one reverted."""
    senders = sorted({t["from"] for t in txs})
    counts = await _call(client, url, [("eth_getTransactionCount", [s, "pending"]) for s in senders])
    nonce = {s: int(c, 16) for s, c in zip(senders, counts)}
    hashes: list[str] = []
    for start in range(0, len(txs), chunk):
        batch = []
        for t in txs[start : start + chunk]:
            batch.append(
                ("eth_sendTransaction", [{**t, "nonce": hex(nonce[t["from"]]), "gas": hex(t.get("gas", 30_000_000))}])
            )
            nonce[t["from"]] += 1
        hashes += await _call(client, url, batch)
    receipts: dict[str, dict[str, Any]] = {}
    pending = list(hashes)
    while pending:
        got = await _call(client, url, [("eth_getTransactionReceipt", [h]) for h in pending])
        receipts.update({h: r for h, r in zip(pending, got) if r is not None})
        still = [h for h in pending if h not in receipts]
        if still and len(still) == len(pending):
            await _call(client, url, [("evm_mine", [])])
            await asyncio.sleep(0.005)
        pending = still
    failed = [h for h, r in receipts.items() if r["status"] != "0x1"]
    if failed:
        raise RuntimeError(f"{len(failed)} of {len(hashes)} txs reverted, first {failed[0]}")
    return sum(len(r["logs"]) for r in receipts.values())


async def generate(url: str, token: str, registry: str, agent: str, shape: Shape, seed: int = 7) -> dict[str, int]:
    """Build the history on ``token``/``registry`` (the agent is an agent of both); returns event counts."""
    rng = random.Random(seed)
    holders = load_recipients(shape.holders, offset=0x20000)
    frozen_set = holders[: shape.freeze_holders]
    payers = holders[shape.freeze_holders : shape.freeze_holders + shape.senders]
    payees = holders[shape.freeze_holders :]
    counts: dict[str, int] = defaultdict(int)
    async with httpx.AsyncClient(timeout=300.0) as client:
        await _call(client, url, [("anvil_autoImpersonateAccount", [True])])
        await _call(client, url, [("anvil_setBalance", [p, hex(10**21)]) for p in payers])
        # identities: every holder registered (500 per tx), a tenth of them change country
        txs = [
            {
                "from": agent,
                "to": registry,
                "data": _calldata(
                    "batchRegisterIdentity(address[],address[],uint16[])",
                    ["address[]", "address[]", "uint16[]"],
                    [
                        holders[i : i + MAX_BATCH],
                        holders[i : i + MAX_BATCH],
                        [rng.choice((250, 276, 826, 840)) for _ in holders[i : i + MAX_BATCH]],
                    ],
                ),
            }
            for i in range(0, len(holders), MAX_BATCH)
        ]
        txs += [
            {
                "from": agent,
                "to": registry,
                "data": _calldata(
                    "updateCountry(address,uint16)", ["address", "uint16"], [h, rng.choice((40, 56, 208))]
                ),
                "gas": 200_000,
            }
            for h in rng.sample(holders, len(holders) // 10)
        ]
        counts["identity"] = await _send_all(client, url, txs)
        # supply: every holder minted a balance (payers much more: they pay the rest)
        amounts = {h: (10**24 if h in set(payers) else 10**20) for h in holders}
        txs = [
            {
                "from": agent,
                "to": token,
                "data": _calldata(
                    "batchMint(address[],uint256[])",
                    ["address[]", "uint256[]"],
                    [holders[i : i + MAX_BATCH], [amounts[h] for h in holders[i : i + MAX_BATCH]]],
                ),
            }
            for i in range(0, len(holders), MAX_BATCH)
        ]
        counts["mint"] = await _send_all(client, url, txs)
        # trading: interleaved rounds of payers paying random payees, and compliance actions on the frozen set
        transfers_left = max(0, int(shape.events * 0.8) - counts["mint"])
        freeze_left = max(0, shape.events - transfers_left - counts["mint"] - counts["identity"])
        rounds = max(1, transfers_left // (shape.per_tx * shape.senders) + 1)
        for r in range(rounds):
            txs = []
            for p in payers:
                if transfers_left <= 0:
                    break
                n = min(shape.per_tx, transfers_left)
                to = rng.sample(payees, n)
                txs.append(
                    {
                        "from": p,
                        "to": token,
                        "gas": 60_000 * n,
                        "data": _calldata(
                            "batchTransfer(address[],uint256[])",
                            ["address[]", "uint256[]"],
                            [to, [rng.randrange(1, 10**18) for _ in to]],
                        ),
                    }
                )
                transfers_left -= n
            per_round = freeze_left // (rounds - r)
            for _ in range(per_round // 4):  # 4 events per holder: frozen, unfrozen, tokens frozen/unfrozen
                h = rng.choice(frozen_set)
                for sig, types, args in (
                    ("setAddressFrozen(address,bool)", ["address", "bool"], [h, True]),
                    ("setAddressFrozen(address,bool)", ["address", "bool"], [h, False]),
                    ("freezePartialTokens(address,uint256)", ["address", "uint256"], [h, 5]),
                    ("unfreezePartialTokens(address,uint256)", ["address", "uint256"], [h, 5]),
                ):
                    txs.append({"from": agent, "to": token, "data": _calldata(sig, types, args), "gas": 200_000})
            freeze_left -= per_round // 4 * 4
            got = await _send_all(client, url, txs)
            counts["trading"] += got
        await _call(client, url, [("anvil_autoImpersonateAccount", [False])])
    counts["total"] = counts["identity"] + counts["mint"] + counts["trading"]
    return dict(counts)
