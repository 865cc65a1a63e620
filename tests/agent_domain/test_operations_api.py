"""Operations for ADMIN/COMPLIANCE over GraphQL (list with filters, retry, cancel) and the compliance actions that
create them: typed errors, audit rows, idempotency keys, one action in flight per (token, subject)."""

from __future__ import annotations

from sqlalchemy import func, select

from models.identity import AuditLog
from models.operations import ChainOperation, OperationState
from models.trading import SettlementStatus, Side
from resolvers.trading.orders import place_order
from tests.agent_domain.helpers import complete, op_by_ref
from tests.trading.factories import make_market, make_trader
from tests.trading.test_orders_flow import limit
from tests.trading.test_settlement_failure import trade_of

OPS = """query($s: [OperationState!], $k: String, $c: Int) { operations(state: $s, kind: $k, chainId: $c, first: 10) {
  edges { node { id kind state businessRef args contract chainId } } pageInfo { hasNextPage } } }"""
ERRORS = "errors { code field message }"
CANCEL = f"""mutation($id: UUID!, $r: String!) {{ cancelOperation(id: $id, input: {{reason: $r}}) {{
  operation {{ id state revertReason }} {ERRORS} }} }}"""
RETRY = f"mutation($id: UUID!) {{ retryOperation(id: $id) {{ operation {{ id state }} {ERRORS} }} }}"
FREEZE = f"""mutation($t: UUID!, $w: String!, $k: String) {{ freezeWallet(input: {{tokenId: $t, wallet: $w,
  reason: "AML hold", idempotencyKey: $k}}) {{ operation {{ id kind function args state }} {ERRORS} }} }}"""
PARTIAL = f"""mutation($t: UUID!, $w: String!, $a: Decimal!) {{ freezeTokens(input: {{tokenId: $t, wallet: $w, amount: $a,
  reason: "court order"}}) {{ operation {{ id args }} {ERRORS} }} }}"""
PAUSE = f"""mutation($t: UUID!) {{ pauseToken(input: {{tokenId: $t, reason: "incident"}}) {{
  operation {{ id kind function args }} {ERRORS} }} }}"""


def code(result) -> str | None:  # type: ignore[no-untyped-def]
    """A top-level error's code (authorization), else the payload's first error code (an expected failure)."""
    errors = result.get("errors") or []
    if errors:
        return errors[0]["extensions"]["code"]
    [body] = result["data"].values()
    return body["errors"][0]["code"] if body["errors"] else None


async def test_list_filter_and_cancel_a_settlement(gql, make_user, session_factory, session):  # type: ignore[no-untyped-def]
    m = await make_market(session_factory)
    seller = await make_trader(session_factory, m, tokens="10")
    buyer = await make_trader(session_factory, m, cash="1000")
    await place_order(session, buyer.user_id, limit(m, Side.BUY, "4", "5.00"))
    await place_order(session, seller.user_id, limit(m, Side.SELL, "4", "5.00"))
    await session.commit()
    trade, instruction = await trade_of(session, seller.wallet)
    staff = await make_user(["COMPLIANCE"])
    listed = await gql(OPS, {"s": ["PENDING"], "k": "settlement.", "c": m.chain_id}, token=staff.token)
    [edge] = listed["data"]["operations"]["edges"]
    assert (
        edge["node"]["businessRef"] == f"settlement:{instruction.id}" and edge["node"]["kind"] == "settlement.transfer"
    )
    assert (await gql(OPS, {"k": "identity."}, token=staff.token))["data"]["operations"]["edges"] == []

    op_id = edge["node"]["id"]
    canceled = await gql(CANCEL, {"id": op_id, "r": "wrong wallet"}, token=staff.token)
    assert canceled["data"]["cancelOperation"]["operation"]["state"] == "CANCELED"
    await session.refresh(trade)
    assert trade.settlement is SettlementStatus.FAILED and trade.failure_reason == "canceled: wrong wallet"
    # compensated: never sent again; canceled twice: CONFLICT
    assert code(await gql(RETRY, {"id": op_id}, token=staff.token)) == "COMPENSATED"
    assert code(await gql(CANCEL, {"id": op_id, "r": "again"}, token=staff.token)) == "INVALID_STATE"
    assert code(await gql(CANCEL, {"id": op_id, "r": " "}, token=staff.token)) == "BAD_USER_INPUT"
    assert (
        await session.scalar(
            select(func.count())
            .select_from(AuditLog)
            .where(AuditLog.action == "operation.cancel", AuditLog.target_id == op_id)
        )
        == 1
    )


async def test_compliance_actions(gql, make_user, session_factory, session):  # type: ignore[no-untyped-def]
    m = await make_market(session_factory, decimals=6)
    holder = await make_trader(session_factory, m, tokens="10")
    officer = await make_user(["COMPLIANCE"])
    first = await gql(FREEZE, {"t": str(m.token_id), "w": holder.wallet.lower(), "k": "case-17"}, token=officer.token)
    op = first["data"]["freezeWallet"]["operation"]
    assert (op["kind"], op["function"], op["args"]) == ("compliance.freeze", "setAddressFrozen", [holder.wallet, True])
    # the same key: the same operation; another freeze while it is in flight: CONFLICT
    again = await gql(FREEZE, {"t": str(m.token_id), "w": holder.wallet, "k": "case-17"}, token=officer.token)
    assert again["data"]["freezeWallet"]["operation"]["id"] == op["id"]
    assert (
        code(await gql(FREEZE, {"t": str(m.token_id), "w": holder.wallet}, token=officer.token))
        == "OPERATION_IN_FLIGHT"
    )
    # partial freezes are checked against the indexed balance, in token units
    other = await make_trader(session_factory, m, tokens="10")
    unfreeze = f"""mutation($t: UUID!, $w: String!) {{ unfreezeWallet(input: {{tokenId: $t, wallet: $w, reason: "x"}}) {{
      operation {{ id }} {ERRORS} }} }}"""
    assert code(await gql(unfreeze, {"t": str(m.token_id), "w": other.wallet}, token=officer.token)) == "NOT_FROZEN"
    iced = await make_trader(session_factory, m, tokens="1", frozen=True)
    assert code(await gql(FREEZE, {"t": str(m.token_id), "w": iced.wallet}, token=officer.token)) == "ALREADY_FROZEN"
    assert (
        code(await gql(PARTIAL, {"t": str(m.token_id), "w": other.wallet, "a": "10.5"}, token=officer.token))
        == "BAD_USER_INPUT"
    )
    assert (
        code(await gql(PARTIAL, {"t": str(m.token_id), "w": other.wallet, "a": "0.0000001"}, token=officer.token))
        == "BAD_USER_INPUT"
    )
    ok = await gql(PARTIAL, {"t": str(m.token_id), "w": other.wallet, "a": "2.5"}, token=officer.token)
    assert ok["data"]["freezeTokens"]["operation"]["args"] == [other.wallet, "2500000"]
    paused = await gql(PAUSE, {"t": str(m.token_id)}, token=officer.token)
    assert paused["data"]["pauseToken"]["operation"]["function"] == "pause"
    unpause = (
        f'mutation($t: UUID!) {{ unpauseToken(input: {{tokenId: $t, reason: "x"}}) {{ operation {{ id }} {ERRORS} }} }}'
    )
    assert code(await gql(unpause, {"t": str(m.token_id)}, token=officer.token)) == "OPERATION_IN_FLIGHT"
    m2 = await make_market(session_factory)
    assert code(await gql(unpause, {"t": str(m2.token_id)}, token=officer.token)) == "NOT_PAUSED"
    assert (
        code(await gql(FREEZE, {"t": "00000000-0000-0000-0000-000000000000", "w": holder.wallet}, token=officer.token))
        == "NOT_FOUND"
    )
    actions = (
        (
            await session.execute(
                select(AuditLog.action).where(AuditLog.action.like("compliance.%")).order_by(AuditLog.id)
            )
        )
        .scalars()
        .all()
    )
    assert actions == ["compliance.freeze", "compliance.freeze_partial", "compliance.pause"]
    # confirmed: an audit row of the outcome (the indexer updates holdings/tokens from the event itself)
    frozen = await op_by_ref(
        session, (await session.get(ChainOperation, __import__("uuid").UUID(op["id"]))).business_ref
    )
    await complete(session, frozen, confirmed=True)
    assert frozen.state is OperationState.CONFIRMED
    assert (
        await session.scalar(
            select(func.count()).select_from(AuditLog).where(AuditLog.action == "compliance.freeze.confirmed")
        )
        == 1
    )


async def test_retry_a_failed_identity_operation(gql, make_user, session_factory, session):  # type: ignore[no-untyped-def]
    from resolvers.identity.registry_sync import sync_wallets
    from tests.agent_domain.helpers import broadcast

    m = await make_market(session_factory)
    t = await make_trader(session_factory, m, registered=False)
    await session.execute(
        __import__("sqlalchemy").text("UPDATE kyc_cases SET country = 'NL' WHERE user_id = :u"), {"u": t.user_id}
    )
    [op] = await sync_wallets(session, [t.wallet])
    await complete(session, op, confirmed=False, reason="caller is not an agent")
    await session.commit()
    admin = await make_user(["ADMIN"])
    retried = await gql(RETRY, {"id": str(op.id)}, token=admin.token)
    assert retried["data"]["retryOperation"]["operation"]["state"] == "PENDING", retried
    op = await op_by_ref(session, op.business_ref)
    assert op.revert_reason is None and op.nonce is None
    await broadcast(session, op)
    await session.commit()
    assert code(await gql(RETRY, {"id": str(op.id)}, token=admin.token)) == "INVALID_STATE"
    assert code(await gql(CANCEL, {"id": str(op.id), "r": "x"}, token=admin.token)) == "INVALID_STATE"
    assert code(await gql(RETRY, {"id": "00000000-0000-0000-0000-000000000000"}, token=admin.token)) == "NOT_FOUND"
    investor = await make_user()
    assert code(await gql(RETRY, {"id": str(op.id)}, token=investor.token)) == "FORBIDDEN"


async def test_cancel_after_signing_asks_the_agent_to_fill_the_nonce(gql, make_user, session_factory, session):  # type: ignore[no-untyped-def]
    """A SIGNED settlement (its raw tx may sit in a node's pool) is not CANCELED at once: REPLACED, its trade not
    compensated yet (agent/cancels.py finishes it on chain); only ADMIN/COMPLIANCE may ask; audited."""
    m = await make_market(session_factory)
    seller = await make_trader(session_factory, m, tokens="10")
    buyer = await make_trader(session_factory, m, cash="1000")
    await place_order(session, buyer.user_id, limit(m, Side.BUY, "4", "5.00"))
    await place_order(session, seller.user_id, limit(m, Side.SELL, "4", "5.00"))
    await session.commit()
    trade, instruction = await trade_of(session, seller.wallet)
    op = await op_by_ref(session, f"settlement:{instruction.id}")
    await session.execute(
        __import__("sqlalchemy")
        .update(ChainOperation)
        .where(ChainOperation.id == op.id)
        .values(
            state=OperationState.SIGNED,
            sender="0x" + "11" * 20,
            nonce=7,
            raw_tx="0x02",
            tx_hash="0x" + "aa" * 32,
            tx_hashes=["0x" + "aa" * 32],
            last_error="broadcast refused: insufficient funds for gas * price + value",
        )
    )
    await session.commit()
    op_id = str(op.id)
    investor = await make_user()
    assert code(await gql(CANCEL, {"id": op_id, "r": "stuck"}, token=investor.token)) == "FORBIDDEN"
    assert code(await gql(CANCEL, {"id": op_id, "r": "stuck"})) == "UNAUTHENTICATED"
    admin = await make_user(["ADMIN"])
    asked = await gql(CANCEL, {"id": op_id, "r": "sweep underfunded"}, token=admin.token)
    assert asked["data"]["cancelOperation"]["operation"] == {
        "id": op_id,
        "state": "REPLACED",
        "revertReason": "canceled: sweep underfunded",
    }, asked
    await session.refresh(trade)
    assert trade.settlement is SettlementStatus.PENDING  # compensated only once the nonce is filled for good
    op = await op_by_ref(session, op.business_ref)
    assert op.nonce == 7 and op.tx_hashes == ["0x" + "aa" * 32]  # it keeps its nonce: nothing is signed over it
    assert code(await gql(CANCEL, {"id": op_id, "r": "again"}, token=admin.token)) == "INVALID_STATE"
    assert code(await gql(RETRY, {"id": op_id}, token=admin.token)) == "INVALID_STATE"
    [audit] = (
        await session.scalars(
            select(AuditLog).where(AuditLog.action == "operation.cancel", AuditLog.target_id == op_id)
        )
    ).all()
    assert audit.details["from"] == "SIGNED" and audit.details["nonce"] == 7
    assert audit.details["reason"] == "sweep underfunded"
    # a mined one cannot be canceled: only a reorg could take it back
    await session.execute(
        __import__("sqlalchemy")
        .update(ChainOperation)
        .where(ChainOperation.id == op.id)
        .values(state=OperationState.MINED)
    )
    await session.commit()
    mined = await gql(CANCEL, {"id": op_id, "r": "too late"}, token=admin.token)
    assert code(mined) == "INVALID_STATE"
    assert "mined" in mined["data"]["cancelOperation"]["errors"][0]["message"]


async def test_an_action_being_canceled_on_chain_is_still_in_flight(gql, make_user, session_factory, session):  # type: ignore[no-untyped-def]
    """REPLACED (cancel asked after signing): the freeze may still land, so a second action on the wallet waits."""
    m = await make_market(session_factory, decimals=6)
    holder = await make_trader(session_factory, m, tokens="10")
    officer = await make_user(["COMPLIANCE"])
    first = await gql(FREEZE, {"t": str(m.token_id), "w": holder.wallet, "k": None}, token=officer.token)
    op_id = first["data"]["freezeWallet"]["operation"]["id"]
    await session.execute(
        __import__("sqlalchemy")
        .update(ChainOperation)
        .where(ChainOperation.id == __import__("uuid").UUID(op_id))
        .values(state=OperationState.BROADCAST, sender="0x" + "22" * 20, nonce=3, tx_hashes=["0x" + "bb" * 32])
    )
    await session.commit()
    asked = await gql(CANCEL, {"id": op_id, "r": "wrong wallet"}, token=officer.token)
    assert asked["data"]["cancelOperation"]["operation"]["state"] == "REPLACED", asked
    assert (
        code(await gql(FREEZE, {"t": str(m.token_id), "w": holder.wallet}, token=officer.token))
        == "OPERATION_IN_FLIGHT"
    )
