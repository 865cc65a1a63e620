"""Cash out through the treasury signer: withdrawals (limits, approval, reservation, final or reversed with the
payout) and refund payouts (a failed payout undoes the refund)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import delete, func, select

from core.errors import AppError
from core.settings import Environment, Settings
from models.identity import AuditLog, Wallet
from models.ledger import AccountKind
from models.operations import ChainOperation
from models.payments import OutgoingTransfer, Payment, PaymentMatch, PaymentMethod, PaymentState
from models.tokens import Token, TokenKind
from models.withdrawals import WithdrawalState
from resolvers import ledger
from resolvers.payments import withdrawals
from resolvers.payments.refunds import refund
from resolvers.payments.withdrawals import WithdrawalRequest
from tests.agent_domain.helpers import complete, op_by_ref, tx_hash
from tests.trading.factories import make_market, make_trader, make_user, random_address
from tests.trading.test_settlement_failure import cash, platform_balance


def settings(**kw: str) -> Settings:
    return Settings(RWA_ENV=Environment.TEST, **kw)  # type: ignore[call-arg]


async def reason_of(coro) -> tuple[str, str | None]:  # type: ignore[no-untyped-def]
    with pytest.raises(AppError) as err:
        await coro
    return err.value.code.value, err.value.extensions.get("reason")


async def test_withdrawal_reserved_then_final(session_factory, session):  # type: ignore[no-untyped-def]
    m = await make_market(session_factory)
    t = await make_trader(session_factory, m, cash="1000")
    req = WithdrawalRequest(m.quote, Decimal("250.5"), t.wallet.lower(), "w-1")
    w, created = await withdrawals.request(session, settings(), t.user_id, req)
    assert created and w.state is WithdrawalState.APPROVED and w.to_address == t.wallet
    assert await cash(session, t.user_id) == (Decimal("749.5"), 0)
    assert await platform_balance(session, AccountKind.WITHDRAWALS_PENDING, m.quote) == Decimal("250.5")
    op = await op_by_ref(session, f"withdrawal:{w.id}")
    assert (op.kind, op.signer, op.function, op.args) == (
        "payout.withdrawal",
        "treasury",
        "transfer",
        [t.wallet, "250500000"],
    )
    # the same key: the same withdrawal; the same key for something else: CONFLICT
    again, created = await withdrawals.request(session, settings(), t.user_id, req)
    assert again.id == w.id and not created
    assert await reason_of(
        withdrawals.request(session, settings(), t.user_id, WithdrawalRequest(m.quote, Decimal("1"), t.wallet, "w-1"))
    ) == ("CONFLICT", "IDEMPOTENCY_KEY_REUSED")
    txh = tx_hash()
    op.mined_tx_hash, op.mined_block = txh, 12
    await complete(session, op, confirmed=True)
    await session.refresh(w)
    assert (w.state, w.tx_hash, w.block_number) == (WithdrawalState.COMPLETED, txh, 12)
    assert await platform_balance(session, AccountKind.WITHDRAWALS_PENDING, m.quote) == 0
    assert await platform_balance(session, AccountKind.WITHDRAWALS, m.quote) == Decimal("250.5")
    assert (await ledger.total_by_currency(session))[m.quote] == 0
    await complete(session, op, confirmed=False, reason="late")  # a replayed completion changes nothing
    await session.refresh(w)
    assert w.state is WithdrawalState.COMPLETED


async def test_failed_payout_gives_the_cash_back(session_factory, session):  # type: ignore[no-untyped-def]
    m = await make_market(session_factory)
    t = await make_trader(session_factory, m, cash="100")
    w, _ = await withdrawals.request(
        session, settings(), t.user_id, WithdrawalRequest(m.quote, Decimal(40), t.wallet, "w-2")
    )
    await complete(
        session,
        await op_by_ref(session, f"withdrawal:{w.id}"),
        confirmed=False,
        reason="execution reverted: insufficient balance",
    )
    await session.refresh(w)
    assert w.state is WithdrawalState.FAILED and w.reason == "execution reverted: insufficient balance"
    assert await cash(session, t.user_id) == (Decimal(100), 0)
    assert await platform_balance(session, AccountKind.WITHDRAWALS_PENDING, m.quote) == 0


async def test_limits_wallet_and_kyc_checks_change_nothing(session_factory, session):  # type: ignore[no-untyped-def]
    m = await make_market(session_factory)
    t = await make_trader(session_factory, m, cash="5000")
    s = settings(WITHDRAWAL_MIN="10", WITHDRAWAL_MAX="1000", WITHDRAWAL_DAILY_MAX="1500")

    def req(amount: str, key: str, wallet: str | None = None) -> WithdrawalRequest:
        return WithdrawalRequest(m.quote, Decimal(amount), wallet or t.wallet, key)

    assert await reason_of(withdrawals.request(session, s, t.user_id, req("9.99", "a"))) == (
        "BAD_USER_INPUT",
        "LIMIT_EXCEEDED",
    )
    assert await reason_of(withdrawals.request(session, s, t.user_id, req("1000.01", "b"))) == (
        "BAD_USER_INPUT",
        "LIMIT_EXCEEDED",
    )
    assert (await reason_of(withdrawals.request(session, s, t.user_id, req("1.0000001", "c"))))[0] == "BAD_USER_INPUT"
    await withdrawals.request(session, s, t.user_id, req("1000", "d"))
    assert await reason_of(withdrawals.request(session, s, t.user_id, req("501", "e"))) == (
        "BAD_USER_INPUT",
        "LIMIT_EXCEEDED",
    )
    with pytest.raises(AppError) as over:  # what is left, in the API's decimal format (was "500.000000000000000000")
        await withdrawals.request(session, s, t.user_id, req("501", "e2"))
    assert over.value.extensions["remaining"] == "500" and "(500 left)" in over.value.message
    assert await reason_of(withdrawals.request(session, s, t.user_id, req("100", "f", random_address()))) == (
        "NOT_FOUND",
        None,
    )
    unverified = await make_trader(session_factory, m, cash="100", registered=False)
    assert await reason_of(
        withdrawals.request(
            session, s, unverified.user_id, WithdrawalRequest(m.quote, Decimal(50), unverified.wallet, "g")
        )
    ) == ("FORBIDDEN", "WALLET_NOT_VERIFIED")
    poor = await make_trader(session_factory, m, cash="20")
    assert await reason_of(
        withdrawals.request(session, s, poor.user_id, WithdrawalRequest(m.quote, Decimal(50), poor.wallet, "h"))
    ) == ("CONFLICT", "INSUFFICIENT_FUNDS")
    assert await reason_of(
        withdrawals.request(session, s, t.user_id, WithdrawalRequest("NOPE", Decimal(50), t.wallet, "i"))
    ) == ("BAD_USER_INPUT", None)


async def test_large_withdrawal_waits_for_an_admin(session_factory, session):  # type: ignore[no-untyped-def]
    m = await make_market(session_factory)
    t = await make_trader(session_factory, m, cash="5000")
    s = settings(WITHDRAWAL_APPROVAL_THRESHOLD="1000")
    w, _ = await withdrawals.request(session, s, t.user_id, WithdrawalRequest(m.quote, Decimal(3000), t.wallet, "big"))
    assert w.state is WithdrawalState.PENDING_APPROVAL
    assert (
        await session.scalar(
            select(func.count()).select_from(ChainOperation).where(ChainOperation.business_ref == f"withdrawal:{w.id}")
        )
        == 0
    )
    assert await reason_of(withdrawals.decide(session, w.id, approve=True, actor_id=t.user_id)) == ("FORBIDDEN", None)
    admin = uuid.uuid4()
    await withdrawals.decide(session, w.id, approve=True, actor_id=admin)
    assert (
        w.state is WithdrawalState.APPROVED and (await op_by_ref(session, f"withdrawal:{w.id}")).args[1] == "3000000000"
    )
    assert await reason_of(withdrawals.decide(session, w.id, approve=False, actor_id=admin, reason="x")) == (
        "CONFLICT",
        "INVALID_STATE",
    )
    # approval re-checks the wallet: unlinked meanwhile, it cannot be approved (only rejected)
    w3, _ = await withdrawals.request(session, s, t.user_id, WithdrawalRequest(m.quote, Decimal(1001), t.wallet, "b3"))
    async with session.begin_nested() as unlinked:
        await session.execute(delete(Wallet).where(Wallet.address == t.wallet))
        assert await reason_of(withdrawals.decide(session, w3.id, approve=True, actor_id=admin)) == ("NOT_FOUND", None)
        await unlinked.rollback()
    await withdrawals.decide(session, w3.id, approve=False, actor_id=admin, reason="wallet unlinked")
    w2, _ = await withdrawals.request(session, s, t.user_id, WithdrawalRequest(m.quote, Decimal(1500), t.wallet, "b2"))
    await withdrawals.decide(session, w2.id, approve=False, actor_id=admin, reason="source of funds unclear")
    assert w2.state is WithdrawalState.REJECTED
    assert await cash(session, t.user_id) == (Decimal(2000), 0)
    actions = (
        (
            await session.execute(
                select(AuditLog.action).where(AuditLog.action.like("withdrawal.%")).order_by(AuditLog.id)
            )
        )
        .scalars()
        .all()
    )
    assert actions == [
        "withdrawal.request",
        "withdrawal.approve",
        "withdrawal.request",
        "withdrawal.reject",
        "withdrawal.request",
        "withdrawal.reject",
    ]


async def test_refund_payout_failure_undoes_the_refund(session_factory, session):  # type: ignore[no-untyped-def]
    m = await make_market(session_factory)
    t = await make_trader(session_factory, m)
    usdc = (
        await session.execute(select(Token).where(Token.symbol == m.quote, Token.kind == TokenKind.STABLECOIN))
    ).scalar_one()
    payer = random_address()
    p = Payment(
        id=uuid.uuid4(),
        user_id=t.user_id,
        method=PaymentMethod.STABLECOIN,
        state=PaymentState.CONFIRMED,
        amount=Decimal(100),
        currency=m.quote,
        idempotency_key="p",
        chain_id=m.chain_id,
        token_address=usdc.address,
        decimals=6,
        deposit_address=random_address(),
        derivation_index=10**9,
        amount_units=100 * 10**6,
        received_units=100 * 10**6,
        final_units=100 * 10**6,
        received_amount=Decimal(100),
        credited_amount=Decimal(100),
        expires_at=datetime.now(UTC) + timedelta(hours=1),
    )
    session.add(p)
    await session.flush()
    session.add(
        PaymentMatch(
            chain_id=m.chain_id,
            block_hash=tx_hash(),
            log_index=0,
            payment_id=p.id,
            block_number=5,
            tx_hash=tx_hash(),
            from_address=payer,
            value=100 * 10**6,
        )
    )
    await ledger.credit_deposit(session, t.user_id, Decimal(100), m.quote, f"payment:{p.id}:credit")
    admin = await make_user(session_factory, ["ADMIN"])
    row, payment = await refund(session, p.id, Decimal(30), "customer asked", admin)
    assert payment.state is PaymentState.PARTIALLY_REFUNDED
    op = await op_by_ref(session, f"refund:{row.id}")
    assert (op.kind, op.signer, op.contract, op.args) == (
        "payout.refund",
        "treasury",
        usdc.address,
        [payer, str(30 * 10**6)],
    )
    await complete(session, op, confirmed=False, reason="execution reverted: insufficient balance")
    out = (await session.execute(select(OutgoingTransfer).where(OutgoingTransfer.refund_id == row.id))).scalar_one()
    await session.refresh(payment)
    assert out.state == "FAILED"
    assert (payment.state, payment.refunded_amount) == (PaymentState.CONFIRMED, 0)
    assert await cash(session, t.user_id) == (Decimal(100), 0)
    assert await platform_balance(session, AccountKind.WITHDRAWALS, m.quote) == 0
    assert (await ledger.total_by_currency(session))[m.quote] == 0
    # a second refund is paid: COMPLETED with its hash
    row2, _ = await refund(session, p.id, Decimal(10), "again", admin)
    op2 = await op_by_ref(session, f"refund:{row2.id}")
    op2.mined_tx_hash = tx_hash()
    await complete(session, op2, confirmed=True)
    out2 = (await session.execute(select(OutgoingTransfer).where(OutgoingTransfer.refund_id == row2.id))).scalar_one()
    assert (out2.state, out2.tx_hash) == ("COMPLETED", op2.mined_tx_hash)


async def test_a_deposit_minted_to_the_address_has_no_one_to_refund(session_factory, session):  # type: ignore[no-untyped-def]
    """A stablecoin minted straight to a deposit address (its Transfer comes from 0x0) was refunded to 0x0: the
    refund was accepted (PENDING), then the treasury's transfer reverted ("zero address") and was undone. Refused at
    once instead, NO_SOURCE_ADDRESS, nothing written; a later transfer from a real sender is refunded to it."""
    m = await make_market(session_factory)
    t = await make_trader(session_factory, m)
    usdc = (
        await session.execute(select(Token).where(Token.symbol == m.quote, Token.kind == TokenKind.STABLECOIN))
    ).scalar_one()
    p = Payment(
        id=uuid.uuid4(),
        user_id=t.user_id,
        method=PaymentMethod.STABLECOIN,
        state=PaymentState.OVERPAID,
        amount=Decimal(10),
        currency=m.quote,
        idempotency_key="minted",
        chain_id=m.chain_id,
        token_address=usdc.address,
        decimals=6,
        deposit_address=random_address(),
        derivation_index=10**9 + 1,
        amount_units=10 * 10**6,
        received_units=15 * 10**6,
        final_units=15 * 10**6,
        received_amount=Decimal(15),
        credited_amount=Decimal(10),
        expires_at=datetime.now(UTC) + timedelta(hours=1),
    )
    session.add(p)
    await session.flush()

    def match(sender: str, block: int) -> PaymentMatch:
        return PaymentMatch(
            chain_id=m.chain_id,
            block_hash=tx_hash(),
            log_index=0,
            payment_id=p.id,
            block_number=block,
            tx_hash=tx_hash(),
            from_address=sender,
            value=15 * 10**6,
        )

    session.add(match("0x" + "0" * 40, 5))
    await ledger.credit_deposit(session, t.user_id, Decimal(10), m.quote, f"payment:{p.id}:credit")
    admin = await make_user(session_factory, ["ADMIN"])
    assert await reason_of(refund(session, p.id, None, "overpaid", admin)) == ("CONFLICT", "NO_SOURCE_ADDRESS")
    sender = random_address()
    session.add(match(sender, 4))  # an earlier transfer from a real sender: the one to pay back
    await session.flush()
    row, _ = await refund(session, p.id, Decimal(5), "overpaid", admin)
    assert (await op_by_ref(session, f"refund:{row.id}")).args == [sender, str(5 * 10**6)]


async def test_request_withdrawal_over_graphql(gql, make_user, session_factory):  # type: ignore[no-untyped-def]
    m = await make_market(session_factory)
    user = await make_user()
    t = await make_trader(session_factory, m, cash="100", user_id=user.id)
    doc = """mutation($c: String!, $a: Decimal!, $w: String!, $k: String!) {
      requestWithdrawal(input: {currency: $c, amount: $a, wallet: $w, idempotencyKey: $k}) {
        withdrawal { id state amount toAddress } errors { code field } } }"""
    ok = await gql(doc, {"c": m.quote.lower(), "a": "12.5", "w": t.wallet, "k": "g1"}, token=user.token)
    withdrawal = gql.payload(ok, "requestWithdrawal", "withdrawal")
    assert withdrawal["state"] == "APPROVED" and withdrawal["amount"] == "12.5"
    bad = await gql(doc, {"c": m.quote, "a": "-1", "w": t.wallet, "k": "g2"}, token=user.token)
    assert bad["data"]["requestWithdrawal"]["errors"] == [{"code": "BAD_USER_INPUT", "field": ["input", "amount"]}]
    mine = await gql("{ myWithdrawals(first: 5) { edges { node { id state } } } }", token=user.token)
    assert [e["node"]["id"] for e in mine["data"]["myWithdrawals"]["edges"]] == [withdrawal["id"]]
    # deciding is for PENDING_APPROVAL ones: an APPROVED one is INVALID_STATE, as data; nobody decides their own
    admin = await make_user(["ADMIN"])
    approve = """mutation($id: UUID!) { approveWithdrawal(id: $id) { withdrawal { state } errors { code } } }"""
    reject = """mutation($id: UUID!, $r: String!) { rejectWithdrawal(id: $id, input: {reason: $r}) {
      withdrawal { state reason } errors { code field } } }"""
    late = await gql(reject, {"id": withdrawal["id"], "r": "too late"}, token=admin.token)
    assert late["data"]["rejectWithdrawal"] == {
        "withdrawal": None,
        "errors": [{"code": "INVALID_STATE", "field": None}],
    }
    assert gql.error_code(await gql(approve, {"id": withdrawal["id"]}, token=admin.token)) == "INVALID_STATE"
    unknown = await gql(approve, {"id": "00000000-0000-0000-0000-000000000000"}, token=admin.token)
    assert gql.error_code(unknown) == "NOT_FOUND"


async def test_my_withdrawals_hears_the_payout(gql, make_user, services, session_factory, session):  # type: ignore[no-untyped-def]
    import asyncio

    from agent.effects import live
    from tests.agent_domain.test_settlement_api import subscribe

    m = await make_market(session_factory)
    user = await make_user()
    t = await make_trader(session_factory, m, cash="100", user_id=user.id)
    w, _ = await withdrawals.request(
        session, settings(), t.user_id, WithdrawalRequest(m.quote, Decimal(9), t.wallet, "sub")
    )
    await session.commit()
    live.configure(services.redis, services.settings.redis_prefix)
    stream, ctx = await subscribe(
        services, user.token, "subscription { myWithdrawals { id state amount txHash blockNumber } }"
    )
    try:
        first = asyncio.ensure_future(stream.__anext__())
        await asyncio.sleep(0.3)  # the Redis subscription is up
        async with session_factory() as s:
            op = await op_by_ref(s, f"withdrawal:{w.id}")
            op.mined_tx_hash, op.mined_block = tx_hash(), 31
            await complete(s, op, confirmed=True)
            await s.commit()
        await live.drain()
        update = await asyncio.wait_for(first, 5)
        assert update.data["myWithdrawals"] == {
            "id": str(w.id),
            "state": "COMPLETED",
            "amount": "9",
            "txHash": op.mined_tx_hash,
            "blockNumber": 31,
        }
    finally:
        live.configure(None)
        await stream.aclose()
        await ctx.close()


async def test_a_payout_in_flight_shows_its_transaction(gql, make_user, session_factory):  # type: ignore[no-untyped-def]
    """`txHash` is documented "null until sent" and `blockNumber` "null until mined": an APPROVED withdrawal shows
    its payout's hash from the first broadcast and its block once mined, before the row records them at completion
    (it used to show null for both until COMPLETED, while the operation had both)."""
    from tests.agent_domain.helpers import broadcast

    m = await make_market(session_factory)
    user = await make_user()
    t = await make_trader(session_factory, m, cash="100", user_id=user.id)
    doc = """mutation($c: String!, $w: String!) {
      requestWithdrawal(input: {currency: $c, amount: "5", wallet: $w, idempotencyKey: "fly"}) {
        withdrawal { id txHash } errors { code } } }"""
    withdrawal = gql.payload(
        await gql(doc, {"c": m.quote, "w": t.wallet}, token=user.token), "requestWithdrawal", "withdrawal"
    )
    assert withdrawal["txHash"] is None
    mine = "{ myWithdrawals(first: 5) { edges { node { id state txHash blockNumber } } } }"
    node = "query($id: ID!) { node(id: $id) { ... on Withdrawal { state txHash blockNumber } } }"

    async def seen() -> tuple[dict, dict]:  # type: ignore[type-arg]
        listed = (await gql(mine, token=user.token))["data"]["myWithdrawals"]["edges"][0]["node"]
        one = (await gql(node, {"id": withdrawal["id"]}, token=user.token))["data"]["node"]
        return listed, one

    listed, one = await seen()
    assert (listed["txHash"], one["txHash"]) == (None, None)  # nothing sent yet
    async with session_factory() as s:
        op = await op_by_ref(s, f"withdrawal:{withdrawal['id']}")
        sent = await broadcast(s, op)
        await s.commit()
    listed, one = await seen()
    assert listed == {"id": withdrawal["id"], "state": "APPROVED", "txHash": sent, "blockNumber": None}
    assert one == {"state": "APPROVED", "txHash": sent, "blockNumber": None}
    async with session_factory() as s:
        op = await op_by_ref(s, f"withdrawal:{withdrawal['id']}")
        landed = tx_hash()
        op.mined_tx_hash, op.mined_block = landed, 77
        await s.commit()
    listed, one = await seen()
    assert (listed["txHash"], listed["blockNumber"]) == (landed, 77) and one["txHash"] == landed
    async with session_factory() as s:
        await complete(s, await op_by_ref(s, f"withdrawal:{withdrawal['id']}"), confirmed=True)
        await s.commit()
    listed, one = await seen()
    assert (listed["state"], listed["txHash"], listed["blockNumber"]) == ("COMPLETED", landed, 77)


async def test_a_refund_payout_in_flight_shows_its_transaction(gql, make_user, session_factory):  # type: ignore[no-untyped-def]
    """`PaymentRefund.payoutTxHash` is documented "the payout transaction's hash once sent": it shows the payout
    operation's hash from its first broadcast (it used to stay null until the payout completed)."""
    from tests.agent_domain.helpers import broadcast, paid_in_stablecoin

    m = await make_market(session_factory)
    t = await make_trader(session_factory, m)
    admin = await make_user(["ADMIN"])
    async with session_factory() as s:
        p = await paid_in_stablecoin(
            s, m, t.user_id, state=PaymentState.CONFIRMED, asked=100, received=100, derivation_index=10**9 + 1
        )
        await s.commit()
    doc = """mutation($p: UUID!) { refundPayment(input: {paymentId: $p, reason: "asked", amount: "10"}) {
      paymentRefund { id payoutState payoutTxHash } errors { code } } }"""
    made = gql.payload(await gql(doc, {"p": str(p.id)}, token=admin.token), "refundPayment", "paymentRefund")
    assert (made["payoutState"], made["payoutTxHash"]) == ("PENDING", None)
    node = "query($id: ID!) { node(id: $id) { ... on PaymentRefund { payoutState payoutTxHash } } }"
    async with session_factory() as s:
        sent = await broadcast(s, await op_by_ref(s, f"refund:{made['id']}"))
        await s.commit()
    seen = (await gql(node, {"id": made["id"]}, token=admin.token))["data"]["node"]
    assert seen == {"payoutState": "PENDING", "payoutTxHash": sent}
    async with session_factory() as s:
        op = await op_by_ref(s, f"refund:{made['id']}")
        op.mined_tx_hash = tx_hash()
        await complete(s, op, confirmed=True)
        await s.commit()
    seen = (await gql(node, {"id": made["id"]}, token=admin.token))["data"]["node"]
    assert seen == {"payoutState": "COMPLETED", "payoutTxHash": op.mined_tx_hash}
