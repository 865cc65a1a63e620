"""Operator cancels of signed operations: the op's nonce is filled by a 0-value self-transfer, as wallets cancel.

A SIGNED operation may already sit in a node's pool even though the database says SIGNED (the agent died after the
send, the send timed out, another RPC URL took it, a peer got it by gossip before the node evicted it), so its
nonce can never be given to the next operation: the stored transaction could still land after its decision was
compensated. `cancelOperation` on a SIGNED or BROADCAST op (agent/operations.py) therefore only asks: the op goes
to REPLACED, keeps its nonce (so nothing else is signed there) and nothing is compensated yet. This step, run by the
sender that holds the (chain, address) lock, settles it on chain:

    REPLACED, no cancel tx yet   -> sign {to: sender, value 0, gas 21000} at the op's nonce, fees >= +12.5% over
                                    the op's last ones on both fields (so it replaces the op in any pool); its raw
                                    tx is committed in `raw_tx`/`tx_hash` BEFORE it is sent (`tx_hashes` keeps the
                                    op's own hashes only), then sent; refused for funds: sent again each pass
                                    (status shows it: fund the sender)
    cancel tx not mined in time  -> the same bytes again (dropped), or re-signed with bumped fees (pending)
    one of the op's OWN hashes   -> MINED (the cancel lost the race): the normal path, CONFIRMED or FAILED
    is mined
    the nonce is consumed at the -> CANCELED, and the kind's failure handler compensates in the same transaction
    FINALIZED block and none of     (a canceled refund/withdrawal gives the cash back, a settlement FAILS its trade)
    the op's hashes is mined

The last rule does not depend on which transaction filled the nonce (our cancel, or one sent with the key outside
the platform): once the nonce is final and none of the op's transactions is on chain, none of them can ever land.
The finalized nonce is read before the receipts, so a transaction mined at that nonce is always seen. A crash at
any point resumes from the row: a cancel tx stored but not sent is sent (same bytes), one sent but not recorded is
sent again (the node answers "already known" or "nonce too low").
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from agent import handlers, metrics
from agent.context import ChainView, SenderContext, log
from agent.fees import Fees, bumped
from agent.receipts import fetch_receipts, mark_mined, sender_ops
from agent.sender import ALREADY, FUNDS, REFUSED_RETRY_S, crash_point, op_fees, set_fees
from chains.errors import RpcResponseError
from models.operations import OPEN_STATES, ChainOperation, OperationState

S = OperationState
# states in which an op still needs its sender: the open ones, and REPLACED (its nonce waits for the cancel tx)
ACTIVE_STATES = (*OPEN_STATES, S.REPLACED)
CANCEL_GAS = 21_000  # a plain value transfer to an account without code


def _now() -> datetime:
    return datetime.now(UTC)


def cancel_signed(op: ChainOperation) -> bool:
    """Whether the agent already signed the cancel tx of a REPLACED op (its latest hash is not one of the op's)."""
    return op.tx_hash is not None and op.tx_hash not in (op.tx_hashes or [])


def cancel_tx(ctx: SenderContext, nonce: int, fees: Fees) -> dict[str, Any]:
    """The replacement that fills `nonce`: nothing moves but its gas."""
    return {
        "chainId": ctx.chain_id,
        "nonce": nonce,
        "to": ctx.address,
        "value": 0,
        "data": "0x",
        "gas": CANCEL_GAS,
        **fees.tx_fields(),
    }


async def _sign(ctx: SenderContext, op: ChainOperation, fees: Fees) -> None:
    raw, tx_hash = await ctx.signer.sign(cancel_tx(ctx, int(op.nonce or 0), fees))
    op.raw_tx, op.tx_hash = raw, tx_hash
    set_fees(op, fees)
    op.broadcast_at = None
    op.last_error = f"cancel tx {tx_hash} signed at nonce {op.nonce}"


async def step(ctx: SenderContext, view: ChainView) -> int:
    """Advance this sender's REPLACED ops (locked for the pass). Returns how much moved (0: nothing to do)."""
    to_send: list[ChainOperation] = []
    signed_now = 0
    moved = 0
    async with ctx.session() as s:
        async with s.begin():
            ops = await sender_ops(s, ctx, S.REPLACED)
            if not ops:
                return 0
            # finalized first: whatever filled a nonce below it is on chain for good, so the receipts read after it
            # see the op's own transaction if that is the one
            finalized_nonce = int(await ctx.client.call("eth_getTransactionCount", [ctx.address, "finalized"]), 16)
            receipts = await fetch_receipts(ctx, ops)
            open_ops: list[ChainOperation] = []
            for op in ops:
                rcpt = receipts.get(op.id)
                nonce = int(op.nonce or 0)
                if rcpt is not None:
                    await _lost(ctx, op, rcpt)
                    moved += 1
                elif nonce < finalized_nonce:
                    moved += await _canceled(ctx, s, op)
                elif nonce < view.mined_nonce:
                    op.last_error = f"nonce {nonce} filled; CANCELED once that block is final"
                else:
                    open_ops.append(op)
            overdue_at = _now() - timedelta(seconds=ctx.config.replace_after_s)
            overdue = [op for op in open_ops if cancel_signed(op) and op.broadcast_at is not None]
            overdue = [op for op in overdue if op.broadcast_at is not None and op.broadcast_at <= overdue_at]
            known: dict[Any, bool] = {}
            if overdue:
                txs = await ctx.client.batch([("eth_getTransactionByHash", [op.tx_hash]) for op in overdue])
                known = {op.id: tx is not None for op, tx in zip(overdue, txs)}
            for op in open_ops:
                if not cancel_signed(op):
                    fees = bumped(op_fees(op), view.fees, ctx.cap, ctx.config.fee_bump_pct)
                    if fees is None:
                        ctx.warn_once(
                            f"cancelcap:{op.id}",
                            "chain %s: the cancel of op %s cannot outbid it within the fee cap (%s wei); waiting",
                            ctx.chain_id,
                            op.business_ref,
                            ctx.cap,
                        )
                        op.last_error = f"cancel waits: no valid fee bump within the cap ({ctx.cap} wei)"
                        continue
                    await _sign(ctx, op, fees)
                    signed_now += 1
                    to_send.append(op)
                elif op.broadcast_at is None and not (
                    ctx.refused_cancels
                    and view.balance == ctx.cancel_refused_balance
                    and time.monotonic() - ctx.cancel_refused_at < REFUSED_RETRY_S
                ):
                    to_send.append(op)  # never taken (refused for funds, or a crash before the send)
                elif op.id in known:
                    if not known[op.id]:
                        to_send.append(op)  # dropped from the pool: the same bytes again
                    elif int(op.nonce or 0) == view.mined_nonce and (
                        fees := bumped(op_fees(op), view.fees, ctx.cap, ctx.config.fee_bump_pct)
                    ):
                        await _sign(ctx, op, fees)  # pending at the lowest nonce: outbid with bumped fees
                        signed_now += 1
                        to_send.append(op)
                    else:
                        op.broadcast_at = _now()
    if signed_now:
        crash_point(ctx, "after_cancel_sign")  # stored, not sent: the next pass sends the same bytes
    if to_send:  # (a refused cancel is sent again when the balance moves, else every REFUSED_RETRY_S)
        taken, ctx.refused_cancels = await _send(ctx, to_send)
        ctx.cancel_refused_balance, ctx.cancel_refused_at = view.balance, time.monotonic()
    else:
        taken = 0
    if moved:
        log.info("chain %s: %s canceled operation(s) of %s settled on chain", ctx.chain_id, moved, ctx.address)
    return moved + signed_now + taken


async def _lost(ctx: SenderContext, op: ChainOperation, rcpt: dict[str, Any]) -> None:
    """One of the op's own transactions was mined before the cancel: back on the normal path (MINED)."""
    mined = rcpt["transactionHash"]
    try:
        raw = await ctx.client.call("eth_getRawTransactionByHash", [mined])
    except Exception:  # noqa: BLE001  (an optional method: without it a reorg sends the cancel, which is safe)
        raw = None
    if raw:
        op.raw_tx = raw  # a reorg that removes it sends the op's own tx again, not the cancel
    op.tx_hash = mined
    mark_mined(op, rcpt)
    op.revert_reason = None
    op.last_error = "cancel lost: the operation's own transaction was mined first"
    log.warning("chain %s: op %s was mined before its cancel; it completes normally", ctx.chain_id, op.business_ref)


async def _canceled(ctx: SenderContext, s: AsyncSession, op: ChainOperation) -> int:
    """The op's nonce is final and none of its transactions is on chain: CANCELED, compensated in this transaction
    (a savepoint: a handler that fails leaves this op REPLACED with the error, and the others go on)."""
    how = f"our cancel tx {op.tx_hash}" if cancel_signed(op) else "a transaction not sent by the agent"
    reason = op.revert_reason or "canceled"
    op_id, ref = op.id, op.business_ref  # a rolled-back savepoint expires the row's attributes
    try:
        async with s.begin_nested():
            op.state = S.CANCELED
            op.last_error = f"canceled: nonce {op.nonce} was filled ({how} was the last candidate)"
            op.updated_at = _now()
            await handlers.run_failed(s, op, reason)
            await s.flush()
    except Exception as exc:  # noqa: BLE001  (a domain handler's bug must not stall the sender)
        ctx.warn_once(
            f"cancelhandler:{op_id}",
            "chain %s: cancel handler of op %s failed; retrying",
            ctx.chain_id,
            ref,
            level=40,
            exc_info=exc,
        )
        await s.refresh(op)
        op.last_error = f"cancel handler failed: {type(exc).__name__}: {exc}"[:2000]
        return 0
    metrics.TRANSITIONS.labels(str(ctx.chain_id), "CANCELED").inc()
    return 1


async def _send(ctx: SenderContext, ops: list[ChainOperation]) -> tuple[int, int]:
    """Send the stored cancel txs; record per op whether the node took it. Returns (taken, refused for funds)."""
    if not ops:
        return 0, 0
    results = await ctx.client.batch([("eth_sendRawTransaction", [op.raw_tx]) for op in ops], return_exceptions=True)
    crash_point(ctx, "after_cancel_broadcast")  # sent, not recorded: the next pass sends it again
    metrics.BROADCASTS.labels(str(ctx.chain_id), "cancel").inc(len(ops))
    notes: dict[Any, tuple[str, bool]] = {}
    refused = 0
    for op, res in zip(ops, results):
        if not isinstance(res, Exception):
            notes[op.id] = (f"cancel tx {op.tx_hash} sent at nonce {op.nonce}; CANCELED once it is final", True)
            continue
        msg = (res.rpc_message if isinstance(res, RpcResponseError) else str(res)).lower()
        if isinstance(res, RpcResponseError) and any(m in msg for m in ALREADY):
            notes[op.id] = (f"cancel tx {op.tx_hash} at nonce {op.nonce} is with the node; waiting for it", True)
        elif any(m in msg for m in FUNDS):
            refused += 1
            need = CANCEL_GAS * op_fees(op).max_cost_per_gas
            notes[op.id] = (f"cancel tx refused: {msg[:200]}; fund {ctx.address} with at least {need} wei", False)
            ctx.warn_once(
                f"cancelfunds:{op.id}",
                "chain %s: the cancel of op %s needs %s wei of gas on %s (%s)",
                ctx.chain_id,
                op.business_ref,
                need,
                ctx.address,
                msg[:120],
                level=40,
            )
        else:
            notes[op.id] = (f"cancel tx send failed: {msg[:300]}", False)
    async with ctx.session() as s:
        async with s.begin():
            for op_id, (note, taken) in notes.items():
                values: dict[str, Any] = {"last_error": note}
                if taken:
                    values["broadcast_at"] = _now()
                await s.execute(
                    update(ChainOperation)
                    .where(ChainOperation.id == op_id, ChainOperation.state == S.REPLACED)
                    .values(**values)
                )
    return sum(1 for _, ok in notes.values() if ok), refused
