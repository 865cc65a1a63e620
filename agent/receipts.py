"""Receipts for BROADCAST operations, polled in JSON-RPC batches (every hash the op ever broadcast).

- a receipt for any of the op's hashes: MINED (block, block hash, which hash, status, gas used); the op is not
  CONFIRMED until the indexer has its event at finality (agent/confirm.py);
- no receipt after `replace_after_s`: the node no longer knows the tx (dropped) -> the same raw tx again; it is
  still pending (underpriced) -> a replacement at the same nonce with bumped fees, stored before it is sent;
- no receipt, but the sender's nonce at the FINALIZED block is past the op's nonce: a transaction not ours consumed
  it (the key used outside the platform) and ours can never land -> back to PENDING to be signed at a fresh nonce.
  Waiting for finality makes this safe against a reorg that would bring our tx back.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from agent import batches, metrics
from agent.calls import encode_call
from agent.context import ChainView, SenderContext, log
from agent.fees import Fees, bumped
from agent.sender import broadcast, op_fees, set_fees, tx_dict
from models.operations import ChainOperation, OperationState

S = OperationState


def _now() -> datetime:
    return datetime.now(UTC)


async def fetch_receipts(ctx: SenderContext, ops: list[ChainOperation]) -> dict[Any, dict[str, Any]]:
    """op id -> the receipt of whichever of its hashes was mined (latest hash first)."""
    calls: list[tuple[str, list[Any]]] = []
    owners: list[Any] = []
    for op in ops:
        for h in reversed(op.tx_hashes):
            calls.append(("eth_getTransactionReceipt", [h]))
            owners.append(op.id)
    found: dict[Any, dict[str, Any]] = {}
    for owner, rcpt in zip(owners, await ctx.client.batch(calls)):
        if rcpt and rcpt.get("blockNumber") and owner not in found:
            found[owner] = rcpt
    # A hash other than the latest counts only if it was sent at the op's current nonce: a retried op keeps the
    # hashes of its earlier attempts (mined and reverted, or at a nonce taken by someone else) as history.
    by_id = {op.id: op for op in ops}
    older = [(i, r) for i, r in found.items() if r["transactionHash"] != by_id[i].tx_hash]
    if older:
        txs = await ctx.client.batch([("eth_getTransactionByHash", [r["transactionHash"]]) for _, r in older])
        for (i, _), tx in zip(older, txs):
            if tx is None or by_id[i].nonce is None or int(tx["nonce"], 16) != by_id[i].nonce:
                del found[i]
    return found


def mark_mined(op: ChainOperation, rcpt: dict[str, Any]) -> None:
    op.state = S.MINED
    op.mined_block = int(rcpt["blockNumber"], 16)
    op.mined_block_hash = rcpt["blockHash"]
    op.mined_tx_hash = rcpt["transactionHash"]
    op.mined_status = int(rcpt.get("status", "0x1"), 16)
    op.gas_used = int(rcpt.get("gasUsed", "0x0"), 16)
    op.mined_at = _now()


def competitive(fees: Fees, view: ChainView) -> bool:
    """Could a block include a tx with these fees now? (A dropped tx that could not is replaced, not re-sent.)"""
    if fees.gas_price is not None:
        return fees.gas_price >= (view.fees.gas_price or 0) * 100 // 125  # within the node's price band
    return view.base_fee is None or int(fees.max_fee_per_gas or 0) >= view.base_fee


async def sender_ops(s: AsyncSession, ctx: SenderContext, state: OperationState) -> list[ChainOperation]:
    """This sender's ops in `state` (BROADCAST: poll; REPLACED: agent/cancels.py), by nonce, at most max_in_flight,
    locked for the pass (SKIP LOCKED leaves an operator's action alone)."""
    rows = await s.scalars(
        select(ChainOperation)
        .where(
            ChainOperation.chain_id == ctx.chain_id,
            ChainOperation.sender == ctx.address,
            ChainOperation.state == state,
        )
        .order_by(ChainOperation.nonce)
        .limit(ctx.config.max_in_flight)
        .with_for_update(skip_locked=True)
    )
    return list(rows.all())


async def poll(ctx: SenderContext, view: ChainView) -> int:
    """Advance BROADCAST ops (locked for the pass; SKIP LOCKED leaves an operator's action alone). Returns how
    many moved."""
    rebroadcast: list[ChainOperation] = []
    replaced: list[ChainOperation] = []  # signed again at the same nonce (fee bump)
    moved = mined = 0
    async with ctx.session() as s:
        async with s.begin():
            ops = await sender_ops(s, ctx, S.BROADCAST)
            if not ops:
                return 0
            receipts = await fetch_receipts(ctx, ops)
            for op in ops:
                rcpt = receipts.get(op.id)
                if rcpt is not None:
                    mark_mined(op, rcpt)
                    mined += 1
            waiting = [op for op in ops if op.id not in receipts]
            consumed = [op for op in waiting if op.nonce is not None and op.nonce < view.mined_nonce]
            if consumed:
                finalized_nonce = int(await ctx.client.call("eth_getTransactionCount", [ctx.address, "finalized"]), 16)
                for row in consumed:
                    if row.nonce is None or row.nonce >= finalized_nonce:
                        continue  # consumed, but not yet final: a reorg could still bring ours back
                    log.warning(
                        "chain %s: nonce %s of %s was used by a transaction not sent by the agent; operation "
                        "%s is signed again at a fresh nonce",
                        ctx.chain_id,
                        row.nonce,
                        ctx.address,
                        row.business_ref,
                    )
                    metrics.FOREIGN_NONCES.labels(str(ctx.chain_id)).inc()
                    row.last_error = f"nonce {row.nonce} consumed outside the platform; signing again"
                    row.state, row.nonce, row.raw_tx, row.tx_hash = S.PENDING, None, None, None
                    row.broadcast_at = row.signed_at = None
                    moved += 1
            overdue_at = _now() - timedelta(seconds=ctx.config.replace_after_s)
            overdue = [
                op
                for op in waiting
                if op not in consumed and (op.broadcast_at is None or op.broadcast_at <= overdue_at)
            ]
            known: dict[Any, bool] = {}
            if overdue:
                txs = await ctx.client.batch([("eth_getTransactionByHash", [op.tx_hash]) for op in overdue])
                known = {op.id: tx is not None for op, tx in zip(overdue, txs)}
            for row in overdue:
                fresh = view.fees
                if not known.get(row.id) and competitive(op_fees(row), view):
                    rebroadcast.append(row)  # dropped from the pool: the same bytes again
                    continue
                if row.nonce != view.mined_nonce:
                    # behind another pending tx (ours, or a gap): only the lowest nonce can be mined next, and
                    # paying more for this one would not help; it waits (sent again if the node dropped it)
                    if not known.get(row.id):
                        rebroadcast.append(row)
                    else:
                        row.broadcast_at = _now()
                    continue
                # the lowest nonce, still pending or dropped because its fees no longer reach the base fee: replace
                new_fees = bumped(op_fees(row), fresh, ctx.cap, ctx.config.fee_bump_pct)
                if new_fees is None:
                    ctx.warn_once(
                        f"cap:{row.id}",
                        "chain %s: op %s is stuck at the fee cap (%s wei); waiting",
                        ctx.chain_id,
                        row.business_ref,
                        ctx.cap,
                    )
                    row.broadcast_at = _now()
                    continue
                data = encode_call(row.abi_name, row.function, list(row.args))
                raw, tx_hash = await ctx.signer.sign(
                    tx_dict(ctx, row, data, int(row.nonce or 0), int(row.gas_limit or 0), new_fees)
                )
                row.raw_tx, row.tx_hash, row.tx_hashes = raw, tx_hash, [*row.tx_hashes, tx_hash]
                set_fees(row, new_fees)
                rebroadcast.append(row)
                replaced.append(row)
                log.info(
                    "chain %s: op %s stuck at nonce %s; replaced with fees %s",
                    ctx.chain_id,
                    row.business_ref,
                    row.nonce,
                    new_fees.tx_fields(),
                )
            if replaced:
                await s.flush()
                await batches.follow_signatures(s, replaced)
    if mined:
        metrics.TRANSITIONS.labels(str(ctx.chain_id), "MINED").inc(mined)
    if rebroadcast:  # committed above (the replacement's raw tx first), now sent
        await broadcast(ctx, rebroadcast, why="replace")
    return mined + moved + len(rebroadcast)
