"""refundPayment's idempotencyKey: a retry after a timeout must not refund twice (it did: an OVERPAID payment's 20 of
excess refunded again out of the user's credited cash, and for a stablecoin paid on chain again). The same key and
parameters return the first refund and write nothing; the key with another amount or reason is
IDEMPOTENCY_KEY_REUSED; concurrent calls with one key make one refund and one payout; no key: as before."""

from __future__ import annotations

import asyncio
import uuid
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from core.errors import AppError
from models.identity import AuditLog
from models.ledger import AccountKind, LedgerTransaction
from models.operations import ChainOperation
from models.payments import OutgoingTransfer, Payment, PaymentRefund, PaymentState
from resolvers import ledger
from resolvers.payments import intents, refunds
from resolvers.payments.refunds import refund
from tests.agent_domain.helpers import paid_in_stablecoin
from tests.trading.factories import make_market, make_trader
from tests.trading.factories import make_user as make_user_row
from tests.trading.live import committed_sessions
from tests.trading.test_settlement_failure import cash, platform_balance

REFUND = """mutation($p: UUID!, $amount: Decimal, $reason: String!, $key: String) {
  refundPayment(input: {paymentId: $p, reason: $reason, amount: $amount, idempotencyKey: $key}) {
    paymentRefund { id amount reason payoutState payment { state refundedAmount } } errors { code message } } }"""


async def overpaid(session_factory) -> tuple[Payment, uuid.UUID, str]:  # type: ignore[no-untyped-def]
    """A committed OVERPAID stablecoin payment: 100 asked, 120 received from a payer; 100 credited to the user's
    cash, 20 held as refundable. Returns (payment, user id, currency)."""
    m = await make_market(session_factory)
    t = await make_trader(session_factory, m)
    async with session_factory() as s:
        p = await paid_in_stablecoin(
            s,
            m,
            t.user_id,
            state=PaymentState.OVERPAID,
            asked=100,
            received=120,
            derivation_index=10**9 + uuid.uuid4().int % 10**9,
            refundable_amount=Decimal(20),
            refunded_amount=Decimal(0),
        )
        await ledger.post(
            s,
            kind="CREDIT",
            reference=f"payment:{p.id}:excess",
            currency=m.quote,
            legs=[
                (ledger.Platform(AccountKind.DEPOSITS), Decimal(-20)),
                (ledger.Platform(AccountKind.REFUNDS_PAYABLE), Decimal(20)),
            ],
        )
        await s.commit()
    return p, t.user_id, m.quote


async def snapshot(session_factory, p: Payment, user_id: uuid.UUID, currency: str) -> dict:  # type: ignore[no-untyped-def]
    """Everything a refund writes: its rows, payouts, ledger, balances, audit, the payment's totals."""
    async with session_factory() as s:
        refund_ids = list((await s.scalars(select(PaymentRefund.id).where(PaymentRefund.payment_id == p.id))).all())
        payment = await s.get(Payment, p.id)
        assert payment is not None
        await s.refresh(payment)
        return {
            "refunds": len(refund_ids),
            "transfers": await s.scalar(select(func.count()).where(OutgoingTransfer.refund_id.in_(refund_ids))),
            "payouts": await s.scalar(
                select(func.count()).where(
                    ChainOperation.kind == "payout.refund",
                    ChainOperation.business_ref.in_([f"refund:{i}" for i in refund_ids]),
                )
            ),
            "ledger": await s.scalar(select(func.count()).where(LedgerTransaction.reference.like(f"payment:{p.id}:%"))),
            "audit": await s.scalar(
                select(func.count()).where(AuditLog.action == "payment.refund", AuditLog.target_id == str(p.id))
            ),
            "cash": await cash(s, user_id),
            "refunds_payable": await platform_balance(s, AccountKind.REFUNDS_PAYABLE, currency),
            "withdrawals": await platform_balance(s, AccountKind.WITHDRAWALS, currency),
            "payment": (payment.state, payment.refunded_amount),
        }


async def test_a_retry_with_the_same_key_returns_the_first_refund(gql, make_user, session_factory):  # type: ignore[no-untyped-def]
    p, user_id, currency = await overpaid(session_factory)
    admin = await make_user(["ADMIN"])
    ask = {"p": str(p.id), "amount": "20", "reason": "excess", "key": "refund-excess-1"}
    first = gql.payload(await gql(REFUND, ask, token=admin.token), "refundPayment", "paymentRefund")
    assert (first["amount"], first["payoutState"], first["payment"]) == (
        "20",
        "PENDING",
        {"state": "PARTIALLY_REFUNDED", "refundedAmount": "20"},
    )
    after_first = await snapshot(session_factory, p, user_id, currency)
    assert after_first["cash"] == (Decimal(100), 0)  # the excess went back, the credited cash is untouched
    assert (after_first["refunds"], after_first["transfers"], after_first["refunds_payable"]) == (1, 1, 0)

    # the client timed out and retries: the same refund, nothing written (it took another 20 out of the user's cash)
    again = gql.payload(await gql(REFUND, ask, token=admin.token), "refundPayment", "paymentRefund")
    assert again == first
    assert await snapshot(session_factory, p, user_id, currency) == after_first

    # the key with another amount or reason: CONFLICT, nothing written
    for other in ({**ask, "amount": "21"}, {**ask, "amount": None}, {**ask, "reason": "something else"}):
        res = await gql(REFUND, other, token=admin.token)
        errors = res["data"]["refundPayment"]["errors"]
        assert (
            res["data"]["refundPayment"]["paymentRefund"] is None and errors[0]["code"] == "IDEMPOTENCY_KEY_REUSED"
        ), res
        assert "idempotencyKey" in errors[0]["message"]
    assert await snapshot(session_factory, p, user_id, currency) == after_first

    # amount null ("all that is left") is resolved at the first call; its retry returns it, though nothing is left now
    rest = {"p": str(p.id), "amount": None, "reason": "the rest", "key": "refund-rest"}
    made = gql.payload(await gql(REFUND, rest, token=admin.token), "refundPayment", "paymentRefund")
    assert (made["amount"], made["payment"]) == ("100", {"state": "REFUNDED", "refundedAmount": "120"})
    after_rest = await snapshot(session_factory, p, user_id, currency)
    assert after_rest["cash"] == (Decimal(0), 0) and after_rest["withdrawals"] == Decimal(120)
    assert gql.payload(await gql(REFUND, rest, token=admin.token), "refundPayment", "paymentRefund") == made
    res = await gql(REFUND, {**rest, "amount": "100"}, token=admin.token)  # the amount as given differs (null)
    assert res["data"]["refundPayment"]["errors"][0]["code"] == "IDEMPOTENCY_KEY_REUSED", res
    assert await snapshot(session_factory, p, user_id, currency) == after_rest
    async with session_factory() as s:
        assert (await ledger.total_by_currency(s))[currency] == 0


async def test_key_reused_reason_and_bad_keys(session_factory):  # type: ignore[no-untyped-def]
    p, user_id, currency = await overpaid(session_factory)
    admin = await make_user_row(session_factory, ["ADMIN"])
    async with session_factory() as s:
        await refund(s, p.id, Decimal(5), "excess", admin, idempotency_key="k")
        await s.commit()
    before = await snapshot(session_factory, p, user_id, currency)
    for amount, key, expected in (
        (Decimal(6), "k", ("CONFLICT", "IDEMPOTENCY_KEY_REUSED")),
        (Decimal(5), " ", ("BAD_USER_INPUT", None)),
        (Decimal(5), "x" * 121, ("BAD_USER_INPUT", None)),
    ):
        async with session_factory() as s:
            with pytest.raises(AppError) as err:
                await refund(s, p.id, amount, "excess", admin, idempotency_key=key)
            await s.rollback()
        assert (err.value.code.value, err.value.extensions.get("reason")) == expected
    assert await snapshot(session_factory, p, user_id, currency) == before
    # the same key on another payment is another refund (keys are per payment)
    q, _, _ = await overpaid(session_factory)
    async with session_factory() as s:
        other, _ = await refund(s, q.id, Decimal(5), "excess", admin, idempotency_key="k")
        await s.commit()
    async with session_factory() as s:
        assert other.payment_id == q.id and await s.scalar(select(func.count()).where(PaymentRefund.id == other.id))


@pytest.mark.parametrize("payment_lock", [True, False], ids=["payment-lock", "unique-index-only"])
async def test_concurrent_calls_with_one_key_make_one_refund(module_database_url, monkeypatch, payment_lock):  # type: ignore[no-untyped-def]
    """8 identical calls at once, each on its own connection: one refund, one transfer, one payout, every caller
    gets it. Without the payment's row lock (unique-index-only) the unique index alone decides: the losers wait for
    the winner's commit and return its refund."""
    if not payment_lock:

        async def unlocked(session, payment_id, *, lock=False):  # type: ignore[no-untyped-def]
            return await intents.get(session, payment_id)

        monkeypatch.setattr(refunds, "get", unlocked)
    async with committed_sessions(module_database_url) as sf:
        p, user_id, currency = await overpaid(sf)
        admin = await make_user_row(sf, ["ADMIN"])
        start = asyncio.Event()

        async def call() -> uuid.UUID:
            async with sf() as s:
                await s.execute(select(1))  # connected before the start
                await start.wait()
                row, _ = await refund(s, p.id, Decimal(20), "excess", admin, idempotency_key="same-key")
                row_id = row.id
                await s.commit()
                return row_id

        calls = [asyncio.create_task(call()) for _ in range(8)]
        await asyncio.sleep(0.2)
        start.set()
        ids = await asyncio.gather(*calls)
        assert len(set(ids)) == 1
        after = await snapshot(sf, p, user_id, currency)
    assert (after["refunds"], after["transfers"], after["payouts"], after["audit"]) == (1, 1, 1, 1)
    assert after["cash"] == (Decimal(100), 0) and after["refunds_payable"] == 0
    assert after["payment"] == (PaymentState.PARTIALLY_REFUNDED, Decimal(20))


async def test_without_a_key_each_call_refunds(session_factory):  # type: ignore[no-untyped-def]
    """No key: as before, every call is a new refund (held excess first, then the credited cash)."""
    p, user_id, currency = await overpaid(session_factory)
    admin = await make_user_row(session_factory, ["ADMIN"])
    for _ in range(2):
        async with session_factory() as s:
            row, _ = await refund(s, p.id, Decimal(20), "excess", admin)
            assert (row.idempotency_key, row.requested_amount) == (None, Decimal(20))
            await s.commit()
    after = await snapshot(session_factory, p, user_id, currency)
    assert (after["refunds"], after["transfers"], after["payouts"]) == (2, 2, 2)
    assert after["cash"] == (Decimal(80), 0) and after["refunds_payable"] == 0
