"""Confirmation from the indexer, never from the agent's own receipts.

A MINED op is CONFIRMED when `chain_events` holds an event of its contract with its mined tx hash in its mined
block (same block hash) at or below the indexer's finalized block (indexer_cursors.finalized_block); a value
transfer (no event) needs its block to be canonical at or below that block. Its handler runs in the same
transaction. A receipt with status 0 becomes FAILED at the same point, with the reason replayed by eth_call.

Reorgs: a MINED op whose block the indexer now knows under another hash, or that the indexer passed without its
event, is checked against the node again: mined elsewhere -> new block; no receipt -> back to BROADCAST and the
stored raw tx is sent again (same nonce, so it can only land once). CONFIRMED is final: the state check in
`transitions.confirm` makes a second confirmation impossible.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_, exists, or_, select, update

from agent import metrics
from agent.calls import decode_revert, encode_call, is_revert, revert_data
from agent.context import ChainView, SenderContext, log
from agent.receipts import fetch_receipts, mark_mined
from agent.sender import broadcast
from agent.transitions import confirm, confirm_many, fail
from chains.errors import RpcResponseError
from models.chain import Block, ChainEvent, IndexerCursor
from models.operations import ChainOperation, OperationState

S = OperationState


async def replay_reason(ctx: SenderContext, op: ChainOperation) -> str:
    """Why a mined tx reverted: eth_call of the same call at the block before it (then at its block)."""
    data = encode_call(op.abi_name, op.function, list(op.args))
    call = {
        "from": ctx.address,
        "to": op.contract,
        "data": data,
        "value": hex(int(op.value or 0)),
        "gas": hex(int(op.gas_limit or 0)),
    }
    for block in (int(op.mined_block or 1) - 1, int(op.mined_block or 0)):
        try:
            await ctx.client.call("eth_call", [call, hex(max(block, 0))])
        except RpcResponseError as exc:
            if is_revert(exc.code, exc.rpc_message):
                return decode_revert(revert_data(exc), exc.rpc_message)
        except Exception:  # noqa: BLE001  (no archive state: say what we know)
            break
    if op.gas_used is not None and op.gas_limit is not None and int(op.gas_used) >= int(op.gas_limit):
        return "out of gas"
    return "reverted (status 0; reason not reproducible by eth_call)"


async def step(ctx: SenderContext, view: ChainView) -> int:
    """Confirm or fail MINED ops at finality; move reorged ones back. Returns how many changed."""
    if view.finalized is None:
        return 0
    finalized: int = view.finalized
    event = exists().where(
        and_(
            ChainEvent.chain_id == ChainOperation.chain_id,
            ChainEvent.address == ChainOperation.contract,
            ChainEvent.block_number == ChainOperation.mined_block,
            ChainEvent.block_hash == ChainOperation.mined_block_hash,
            ChainEvent.tx_hash == ChainOperation.mined_tx_hash,
        )
    )
    other_hash = exists().where(
        and_(
            Block.chain_id == ChainOperation.chain_id,
            Block.number == ChainOperation.mined_block,
            Block.hash != ChainOperation.mined_block_hash,
        )
    )
    async with ctx.session() as s:
        # the indexer's cursor read again here, not the iteration's view: the steps before this one can take a
        # while in a burst, and a block the indexer finalized meanwhile is confirmed in this pass, not the next
        cursor = (
            await s.execute(
                select(IndexerCursor.indexed_block, IndexerCursor.finalized_block).where(
                    IndexerCursor.chain_id == ctx.chain_id
                )
            )
        ).one_or_none()
        indexed = -1 if cursor is None or cursor.indexed_block is None else int(cursor.indexed_block)
        if cursor is not None and cursor.finalized_block is not None:
            finalized = int(cursor.finalized_block)
        # only what can move now: final and indexed, or seen under another block hash (the rest waits cheaply)
        rows = (
            await s.execute(
                select(ChainOperation.id, event.label("has_event"), other_hash.label("moved"))
                .where(
                    ChainOperation.chain_id == ctx.chain_id,
                    ChainOperation.sender == ctx.address,
                    ChainOperation.state == S.MINED,
                    or_(ChainOperation.mined_block <= min(finalized, indexed), other_hash),
                )
                .order_by(ChainOperation.nonce)
                .limit(2000)
            )
        ).all()
        await s.commit()
    if not rows:
        return 0
    done: list[tuple[Any, bool]] = []  # (op id, has event) at finality
    suspect: list[Any] = []  # maybe reorged out
    async with ctx.session() as s:
        ops = {
            op.id: op
            for op in (await s.scalars(select(ChainOperation).where(ChainOperation.id.in_([r.id for r in rows])))).all()
        }
        await s.commit()
    for r in rows:
        op = ops[r.id]
        if r.moved:
            suspect.append(r.id)
        elif op.mined_block is not None and op.mined_block <= finalized and indexed >= op.mined_block:
            if r.has_event or op.mined_status == 0 or not op.function:
                done.append((r.id, r.has_event))
            else:
                suspect.append(r.id)  # the indexer passed the block without our event: reorged, or not indexed
    if not done and not suspect:
        return 0
    # Canonical check for what we are about to settle without an event, and for the suspects.
    check = [ops[i] for i, has in done if not has] + [ops[i] for i in suspect]
    canonical: dict[Any, bool] = {}
    if check:
        blocks = await ctx.client.batch(
            [("eth_getBlockByNumber", [hex(int(op.mined_block or 0)), False]) for op in check]
        )
        canonical = {op.id: bool(b) and b.get("hash") == op.mined_block_hash for op, b in zip(check, blocks)}
    gone = [ops[i] for i in suspect if not canonical.get(i)]
    receipts = await fetch_receipts(ctx, gone) if gone else {}
    reasons: dict[Any, str] = {}
    for op_id, has in done:
        op = ops[op_id]
        if op.mined_status == 0 and canonical.get(op_id, has):
            reasons[op_id] = await replay_reason(ctx, op)
    changed = 0
    rebroadcast: list[ChainOperation] = []
    async with ctx.session() as s:
        async with s.begin():
            locked = {
                op.id: op
                for op in (
                    await s.scalars(
                        select(ChainOperation)
                        .where(ChainOperation.id.in_([i for i, _ in done] + suspect), ChainOperation.state == S.MINED)
                        .with_for_update()
                    )
                ).all()
            }
            ready = [(i, locked[i]) for i, has in done if i in locked and (has or canonical.get(i))]

            async def complete(op: ChainOperation) -> None:
                if op.mined_status == 0:
                    if await fail(s, op, reasons.get(op.id, "reverted"), where="mining"):
                        metrics.TRANSITIONS.labels(str(ctx.chain_id), "FAILED").inc()
                else:
                    await confirm(s, op, int(op.mined_block or 0))

            # Optimistic: the whole batch under one savepoint (one flush; per-op savepoints cost ~3 round trips
            # each and made confirmations the slowest step at 1,000 ops), the confirmations' handlers set-based.
            # A handler that raises rolls the batch back; it is then redone op by op so that only the failing op
            # waits.
            try:
                async with s.begin_nested():
                    for _, op in ready:
                        if op.mined_status == 0:
                            await complete(op)
                    await confirm_many(s, [op for _, op in ready if op.mined_status != 0])
                changed += len(ready)
                ready = []
            except Exception:  # noqa: BLE001
                locked = {
                    op.id: op
                    for op in (
                        await s.scalars(
                            select(ChainOperation)
                            .where(ChainOperation.id.in_([i for i, _ in done] + suspect))
                            .execution_options(populate_existing=True)
                        )
                    ).all()
                }
                ready = [(i, locked[i]) for i, _ in ready if locked[i].state is S.MINED]
            for op_id, op in ready:
                ref = op.business_ref
                try:
                    async with s.begin_nested():
                        await complete(op)
                    changed += 1
                except Exception as exc:  # noqa: BLE001  (a handler bug must not stop the other ops)
                    # the savepoint rolled back and expired the row: write the error with a plain UPDATE
                    ctx.warn_once(
                        f"handler:{op_id}",
                        "chain %s: completion handler of %s failed; retried every iteration",
                        ctx.chain_id,
                        ref,
                        level=40,
                        exc_info=exc,
                    )
                    await s.execute(
                        update(ChainOperation)
                        .where(ChainOperation.id == op_id)
                        .values(last_error=f"handler failed: {type(exc).__name__}: {exc}"[:2000])
                    )
            for op_id in suspect:
                if op_id not in locked:
                    continue
                op = locked[op_id]
                if canonical.get(op_id):
                    ctx.warn_once(
                        f"noevent:{op_id}",
                        "chain %s: op %s is mined in a final block but the indexer has "
                        "no event of %s for it: is the contract among the indexed tokens?",
                        ctx.chain_id,
                        op.business_ref,
                        op.contract,
                    )
                    op.last_error = "mined and final, but no indexed event yet"
                    continue
                rcpt = receipts.get(op_id)
                if rcpt is not None:
                    mark_mined(op, rcpt)  # re-mined in another block after the reorg
                else:
                    log.warning(
                        "chain %s: op %s's tx left the chain in a reorg; sending the stored tx again",
                        ctx.chain_id,
                        op.business_ref,
                    )
                    op.state = S.BROADCAST
                    op.mined_block = op.mined_block_hash = op.mined_tx_hash = op.mined_status = None
                    rebroadcast.append(op)
                changed += 1
    if rebroadcast:
        await broadcast(ctx, rebroadcast, why="reorg")
    return changed
