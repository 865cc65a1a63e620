"""Sign -> store -> broadcast: PENDING operations become signed transactions at consecutive nonces, committed
(raw tx, nonce, hash) BEFORE anything leaves the process, then sent in one JSON-RPC batch.

A crash after the commit leaves SIGNED rows whose raw txs `broadcast_signed` sends again at the next start (the same
bytes: at most one of them can ever be mined, whatever was already sent). Gas is estimated first: a revert at
estimation makes the op FAILED with the decoded reason and nothing is signed. Several ops per sender are in flight at
once (up to `max_in_flight` signed-but-unmined, operators' cancels under way (REPLACED) included), which is where
the throughput comes from.
"""

from __future__ import annotations

import os
import signal
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, func, select, update

from agent import batches, metrics
from agent.calls import decode_revert, encode_call, is_revert, revert_data
from agent.context import ChainView, SenderContext
from agent.fees import Fees, with_margin
from agent.nonces import foreign_nonces, free_nonces
from agent.transitions import fail
from chains.errors import RetryableRpcError, RpcError, RpcResponseError
from core.db import rowcount
from models.operations import ChainOperation, OperationState

S = OperationState


def now() -> datetime:
    return datetime.now(UTC)


def crash_point(ctx: SenderContext, point: str) -> None:
    """Test hook (RWA_AGENT_TEST_CRASH_AT): die like kill -9 at `point`, for the fault tests."""
    if ctx.config.crash_at == point:
        os.kill(os.getpid(), signal.SIGKILL)


def tx_dict(ctx: SenderContext, op: ChainOperation, data: str, nonce: int, gas: int, fees: Fees) -> dict[str, Any]:
    return {
        "chainId": ctx.chain_id,
        "nonce": nonce,
        "to": op.contract,
        "value": int(op.value or 0),
        "data": data,
        "gas": gas,
        **fees.tx_fields(),
    }


def op_fees(op: ChainOperation) -> Fees:
    if op.gas_price is not None:
        return Fees(gas_price=int(op.gas_price))
    return Fees(
        max_fee_per_gas=int(op.max_fee_per_gas or 0), max_priority_fee_per_gas=int(op.max_priority_fee_per_gas or 0)
    )


def set_fees(op: ChainOperation, fees: Fees) -> None:
    op.gas_price = fees.gas_price
    op.max_fee_per_gas = fees.max_fee_per_gas
    op.max_priority_fee_per_gas = fees.max_priority_fee_per_gas


# An operation's gas comes from one simulation (eth_createAccessList's gasUsed, after refunds; EIP-3529 caps refunds
# at 1/5 of the gas used, so the limit must be >= 25% above it) instead of eth_estimateGas's binary search: one
# execution against several (a 200-wallet batchMint: 4 ms against 40 ms on an idle anvil; a 100-transfer batch
# 18 ms against 84 ms on a busy one), which was most of the time to sign a burst. An operation whose simulation
# fails (it reverts, or the node lacks the method) is estimated with eth_estimateGas, which carries the revert
# data the reason is decoded from.
SIMULATED_MARGIN_PCT = 30


async def estimate(ctx: SenderContext, ops: list[ChainOperation], datas: dict[Any, str]) -> list[Any]:
    """Per op, the gas limit to sign with, or the estimation's exception (a revert: RpcResponseError)."""

    def call(op: ChainOperation) -> dict[str, str]:
        return {"from": ctx.address, "to": op.contract, "data": datas[op.id], "value": hex(int(op.value or 0))}

    first = await ctx.client.batch(
        [("eth_createAccessList", [call(op), "latest"]) for op in ops], return_exceptions=True
    )
    out: list[Any] = []
    redo: list[int] = []
    margin = max(ctx.config.gas_margin_pct, SIMULATED_MARGIN_PCT)
    for i, res in enumerate(first):
        if isinstance(res, dict) and not res.get("error") and res.get("gasUsed"):
            out.append(with_margin(int(res["gasUsed"], 16), margin))
        else:
            out.append(None)
            redo.append(i)
    if redo:
        again = await ctx.client.batch([("eth_estimateGas", [call(ops[i])]) for i in redo], return_exceptions=True)
        for i, res in zip(redo, again):
            out[i] = res if isinstance(res, Exception) else with_margin(int(res, 16), ctx.config.gas_margin_pct)
    return out


# A pass signs up to `batch` operations in chunks of growing size (1, 4, 16, then SEND_CHUNK_MAX), each chunk
# estimated, signed, committed and broadcast before the next is estimated: the first transaction reaches the pool
# after one simulation instead of `batch` of them, and the later chunks are prepared while the chain mines the
# first ones (a burst of 50 200-wallet batchMints estimated at once kept the first from the chain for 1-3 s). Each
# chunk costs a few database round trips, hence the fast growth: a pass of 10 takes 3 chunks, one of 200 takes 6.
# Each chunk holds its rows' locks from estimate to signature, as one pass did.
SEND_CHUNK_MAX = 64


def chunk_sizes(total: int) -> list[int]:
    """1, 4, 16, ... (at most SEND_CHUNK_MAX each) adding up to `total`."""
    out, size = [], 1
    while total > 0:
        out.append(min(size, total))
        total -= out[-1]
        size = min(size * 4, SEND_CHUNK_MAX)
    return out


async def sign_new(ctx: SenderContext, view: ChainView, folded: batches.Folded | None = None) -> int:
    """Take PENDING ops (oldest first), estimate, sign at fresh nonces, commit, broadcast: up to `batch` ops a pass,
    in chunks of growing size (SEND_CHUNK_MAX). Returns ops signed (or failed).
    `folded`: this pass's batches.fold; a batchable op it did not see alone is left for the next fold."""
    done = 0
    for size in chunk_sizes(ctx.config.batch):
        n, more = await _sign_chunk(ctx, view, folded, size)
        done += n
        if not more:
            break
    return done


async def _sign_chunk(
    ctx: SenderContext, view: ChainView, folded: batches.Folded | None, limit: int
) -> tuple[int, bool]:
    """One chunk of sign_new: (ops signed or failed, whether the next chunk may find more).

    One transaction: the PENDING rows are locked (SKIP LOCKED: an operator's retry/cancel in progress is left
    for the next pass) while their gas is estimated and they are signed, so a cancel can never slip between the
    estimate and the signature."""
    signed: list[ChainOperation] = []
    n_failed = 0
    async with ctx.session() as s:
        async with s.begin():
            busy = await s.scalar(
                select(func.count())
                .select_from(ChainOperation)
                .where(
                    ChainOperation.chain_id == ctx.chain_id,
                    ChainOperation.sender == ctx.address,
                    # REPLACED: an operator's cancel holds the nonce and the op's own tx may still land
                    ChainOperation.state.in_((S.SIGNED, S.BROADCAST, S.REPLACED)),
                )
            )
            room = min(limit, ctx.config.max_in_flight - int(busy or 0))
            if room <= 0:
                return 0, False
            ops = list(
                (
                    await s.scalars(
                        select(ChainOperation)
                        .where(
                            ChainOperation.chain_id == ctx.chain_id,
                            ChainOperation.signer.in_(ctx.roles),
                            ChainOperation.state == S.PENDING,
                            (ChainOperation.next_attempt_at.is_(None)) | (ChainOperation.next_attempt_at <= func.now()),
                            *([folded.sendable()] if folded is not None and ctx.config.batch_max > 1 else []),
                        )
                        .order_by(ChainOperation.created_at, ChainOperation.id)
                        .limit(room)
                        .with_for_update(skip_locked=True)
                    )
                ).all()
            )
            if not ops:
                return 0, False
            datas: dict[Any, str] = {}
            for op in ops:
                try:
                    datas[op.id] = encode_call(op.abi_name, op.function, list(op.args))
                except (ValueError, KeyError) as exc:
                    await fail(s, op, f"bad call: {exc}", where="encoding")
                    n_failed += 1
            sendable = [op for op in ops if op.id in datas]
            estimates = await estimate(ctx, sendable, datas) if sendable else []
            gas: dict[Any, int] = {}
            for op, est in zip(sendable, estimates):
                if isinstance(est, RpcResponseError) and is_revert(est.code, est.rpc_message):
                    await fail(s, op, decode_revert(revert_data(est), est.rpc_message), where="estimation")
                    n_failed += 1
                elif isinstance(est, Exception):
                    op.last_error = f"gas estimation failed: {est}"[:2000]
                    op.next_attempt_at = now() + timedelta(seconds=ctx.config.failed_backoff_s)
                else:
                    gas[op.id] = est
            to_sign = [op for op in sendable if op.id in gas]
            if to_sign:
                held = (
                    await s.scalars(
                        select(ChainOperation.nonce).where(
                            ChainOperation.chain_id == ctx.chain_id,
                            ChainOperation.sender == ctx.address,
                            ChainOperation.nonce.is_not(None),
                            ChainOperation.state != S.CANCELED,
                            ChainOperation.nonce >= view.mined_nonce,
                        )
                    )
                ).all()
                held_set = {n for n in held if n is not None}  # (the query excludes NULL nonces)
                foreign = foreign_nonces(view.mined_nonce, view.pending_nonce, held_set)
                if foreign:
                    metrics.FOREIGN_NONCES.labels(str(ctx.chain_id)).inc(len(foreign))
                    ctx.warn_once(
                        "foreign",
                        "chain %s: %s has pending nonce(s) %s not sent by the agent (the key is "
                        "used outside the platform); skipping them",
                        ctx.chain_id,
                        ctx.address,
                        foreign,
                    )
                nonces = free_nonces(view.mined_nonce, view.pending_nonce, held_set)
                stamp = now()
                for op in to_sign:
                    nonce = next(nonces)
                    raw, tx_hash = await ctx.signer.sign(tx_dict(ctx, op, datas[op.id], nonce, gas[op.id], view.fees))
                    op.state, op.sender, op.nonce, op.raw_tx, op.tx_hash = S.SIGNED, ctx.address, nonce, raw, tx_hash
                    op.tx_hashes = [*op.tx_hashes, tx_hash]
                    op.gas_limit = gas[op.id]
                    set_fees(op, view.fees)
                    op.attempts += 1
                    op.signed_at, op.last_error, op.next_attempt_at = stamp, None, None
                    signed.append(op)
                await s.flush()
                await batches.follow_signatures(s, signed)  # a batch's hash onto its members, stored with it
    if n_failed:
        metrics.TRANSITIONS.labels(str(ctx.chain_id), "FAILED").inc(n_failed)
    more = len(ops) == room  # a short chunk: nothing more is due now
    if not signed:
        return n_failed, more
    metrics.TRANSITIONS.labels(str(ctx.chain_id), "SIGNED").inc(len(signed))
    crash_point(ctx, "after_sign")
    await broadcast(ctx, signed, why="first")
    return len(signed) + n_failed, more


ALREADY = (
    "already known",
    "known transaction",
    "already imported",
    "alreadyknown",
    "already exists",
    "nonce too low",
    "replacement transaction underpriced",
    "transaction underpriced",
)
FUNDS = ("insufficient funds", "insufficient balance")
REFUSED_PREFIX = "broadcast refused: "  # last_error of an op the node refuses for funds (agent/status.py)


async def broadcast(ctx: SenderContext, ops: list[ChainOperation], why: str) -> tuple[int, int]:
    """Send the stored raw txs (one batch); SIGNED -> BROADCAST for each the node took or already has.

    "nonce too low" / "already known" mean the tx (or another at its nonce) is already in the pool or mined: the
    op is BROADCAST and the receipt poll decides which. Funds and transport errors keep the op SIGNED (sent again
    next iteration; a refusal for funds is kept in `last_error`, shown by `rwa agent status`, until the sender is
    funded or an operator cancels the op: agent/cancels.py). Returns (taken, refused for funds)."""
    if not ops:
        return 0, 0
    results = await ctx.client.batch([("eth_sendRawTransaction", [op.raw_tx]) for op in ops], return_exceptions=True)
    crash_point(ctx, "after_broadcast")  # sent, but the database still says SIGNED: the hardest restart
    metrics.BROADCASTS.labels(str(ctx.chain_id), why).inc(len(ops))
    sent: list[Any] = []
    errors: dict[Any, str] = {}
    refused = 0
    for op, res in zip(ops, results):
        if not isinstance(res, Exception):
            sent.append(op.id)
            continue
        msg = (res.rpc_message if isinstance(res, RpcResponseError) else str(res)).lower()
        if isinstance(res, RpcResponseError) and any(m in msg for m in ALREADY):
            sent.append(op.id)
        elif any(m in msg for m in FUNDS):
            errors[op.id] = f"{REFUSED_PREFIX}{msg[:300]}"
            refused += 1
            ctx.warn_once(
                "funds",
                "chain %s: %s cannot pay for gas (%s); operations wait",
                ctx.chain_id,
                ctx.address,
                msg[:120],
                level=40,
            )
        else:
            errors[op.id] = f"broadcast failed: {msg[:300]}"
            kind = "transient" if isinstance(res, (RetryableRpcError, RpcError)) else "error"
            ctx.warn_once(f"bcast:{kind}", "chain %s: broadcast failed (%s); will retry", ctx.chain_id, msg[:200])
    # Plain UPDATEs (no ORM load): SIGNED -> BROADCAST, and the replace/re-broadcast timer restarts.
    async with ctx.session() as s:
        async with s.begin():
            if sent:
                moved = await s.execute(
                    update(ChainOperation)
                    .where(ChainOperation.id.in_(sent), ChainOperation.state == S.SIGNED)
                    .values(state=S.BROADCAST, broadcast_at=func.now())
                )
                await s.execute(
                    update(ChainOperation)
                    .where(ChainOperation.id.in_(sent), ChainOperation.state == S.BROADCAST)
                    .values(broadcast_at=func.now())
                )
                if broadcast := rowcount(moved):
                    metrics.TRANSITIONS.labels(str(ctx.chain_id), "BROADCAST").inc(broadcast)
            if errors:
                table = ChainOperation.__table__
                await s.execute(
                    update(table)
                    # an operator's cancel (REPLACED) may have come in meanwhile: its own note stays
                    .where(table.c.id == bindparam("op_id"), table.c.state != S.REPLACED)
                    .values(last_error=bindparam("msg")),
                    [{"op_id": k, "msg": v} for k, v in errors.items()],
                )
    return len(sent), refused


REFUSED_RETRY_S = 10.0  # ops refused for funds are sent again at once when the balance changes, else this often


async def broadcast_signed(ctx: SenderContext, view: ChainView | None = None) -> int:
    """Send again every SIGNED op of this sender (a crash between commit and send, or a refused send). Returns how
    many the node took: ops it keeps refusing (no funds for gas) are no work, so the loop sleeps, and they are sent
    again only when the sender's balance moved or every REFUSED_RETRY_S (it sent them ~35 times a second on anvil,
    all refused); `ctx.refused` counts them. The same
    read notes whether an operator's cancel (REPLACED) waits (`ctx.canceling`), so the cancel step costs no round
    trip while there is none."""
    async with ctx.session() as s:
        rows = list(
            (
                await s.scalars(
                    select(ChainOperation)
                    .where(
                        ChainOperation.chain_id == ctx.chain_id,
                        ChainOperation.sender == ctx.address,
                        ChainOperation.state.in_((S.SIGNED, S.REPLACED)),
                    )
                    # a REPLACED one first: behind `batch` refused SIGNED ops it would never be seen, nor canceled
                    .order_by(ChainOperation.state != S.REPLACED, ChainOperation.nonce)
                    .limit(ctx.config.batch + 1)
                )
            ).all()
        )
        await s.commit()
    ops = [op for op in rows if op.state is S.SIGNED]
    ctx.canceling_ops = len(rows) - len(ops)
    ctx.canceling = ctx.canceling_ops > 0
    if not ops or ctx.gas_low:
        ctx.refused = 0
        return 0
    balance = None if view is None else view.balance
    if ctx.refused and balance == ctx.refused_balance and time.monotonic() - ctx.refused_at < REFUSED_RETRY_S:
        return 0  # refused for funds, and the balance has not moved since: the node would refuse them again
    taken, ctx.refused = await broadcast(ctx, ops, why="signed")
    ctx.refused_balance, ctx.refused_at = balance, time.monotonic()
    return taken
