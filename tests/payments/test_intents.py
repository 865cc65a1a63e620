"""Payment intents through GraphQL: idempotency, minor units, bank transfers confirmed by ADMIN, refunds,
cancel, visibility, filters and the settlement report (no chain needed: reconciliation is in test_onchain)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from models.identity import AuditLog
from models.ledger import AccountKind
from models.payments import Payment, PaymentTransition
from models.tokens import Token, TokenKind
from resolvers.ledger import balances, total_by_currency

CREATE = """mutation($input: CreatePaymentInput!) { createPayment(input: $input) { payment {
  id state amount currency method depositAddress referenceCode amountUnits chainId expiresAt } errors { code field } } }"""
FIELDS = "id state amount receivedAmount creditedAmount refundedAmount refundableAmount bankReference"


def bank(amount: str, currency: str = "USD", key: str | None = None) -> dict:
    return {
        "input": {
            "amount": amount,
            "currency": currency,
            "method": "BANK_TRANSFER",
            "idempotencyKey": key or uuid.uuid4().hex,
        }
    }


@pytest.fixture
async def usdc(session) -> Token:  # type: ignore[no-untyped-def]
    token = Token(
        id=uuid.uuid4(),
        chain_id=137,
        address="0x" + uuid.uuid4().hex[:8].rjust(40, "a"),
        kind=TokenKind.STABLECOIN,
        name="USD Coin",
        symbol="USDC",
        decimals=6,
        start_block=0,
    )
    from eth_utils import to_checksum_address

    token.address = to_checksum_address(token.address)
    session.add(token)
    await session.commit()
    return token


async def test_same_idempotency_key_returns_the_same_payment(gql, make_user) -> None:  # type: ignore[no-untyped-def]
    user = await make_user()
    first = await gql(CREATE, bank("10.50", key="k1"), token=user.token)
    again = await gql(CREATE, bank("10.50", key="k1"), token=user.token)
    p = gql.payload(first, "createPayment", "payment")
    assert again["data"]["createPayment"]["payment"]["id"] == p["id"]
    assert p["state"] == "AWAITING_FUNDS" and p["amount"] == "10.5" and p["referenceCode"].startswith("RWA-")
    other = await make_user()
    theirs = await gql(CREATE, bank("10.50", key="k1"), token=other.token)
    assert theirs["data"]["createPayment"]["payment"]["id"] != p["id"]  # keys are per user
    reused = await gql(CREATE, bank("11.00", key="k1"), token=user.token)
    assert gql.error_code(reused) == "IDEMPOTENCY_KEY_REUSED"


@pytest.mark.parametrize(
    ("amount", "currency"),
    [("10.001", "USD"), ("1.5", "JPY"), ("0.0001", "KWD"), ("0", "USD"), ("-5", "EUR"), ("10", "XYZ"), ("NaN", "USD")],
)
async def test_amounts_beyond_the_currency_minor_units_are_refused(gql, make_user, amount, currency, session) -> None:  # type: ignore[no-untyped-def]
    user = await make_user()
    result = await gql(CREATE, bank(amount, currency), token=user.token)
    assert gql.error_code(result) == "BAD_USER_INPUT", result
    assert (
        await session.execute(select(func.count()).select_from(Payment).where(Payment.user_id == user.id))
    ).scalar() == 0


async def test_minor_units_allowed(gql, make_user) -> None:  # type: ignore[no-untyped-def]
    user = await make_user()
    for amount, currency in (("1500", "JPY"), ("1.005", "KWD"), ("99.99", "EUR")):
        result = await gql(CREATE, bank(amount, currency), token=user.token)
        assert gql.payload(result, "createPayment", "payment")["amount"] == amount, result


async def test_stablecoin_payment_gets_its_own_deposit_address(gql, make_user, usdc) -> None:  # type: ignore[no-untyped-def]
    user = await make_user()
    inp = {"amount": "25.123456", "currency": "USDC", "method": "STABLECOIN", "chainId": 137, "token": usdc.address}
    a = (await gql(CREATE, {"input": {**inp, "idempotencyKey": "a"}}, token=user.token))["data"]["createPayment"][
        "payment"
    ]
    b = (await gql(CREATE, {"input": {**inp, "idempotencyKey": "b"}}, token=user.token))["data"]["createPayment"][
        "payment"
    ]
    assert a["depositAddress"] != b["depositAddress"] and a["depositAddress"].startswith("0x")
    assert a["amountUnits"] == "25123456" and a["chainId"] == 137
    round_ = await gql(CREATE, {"input": {**inp, "amount": "250.0", "idempotencyKey": "e"}}, token=user.token)
    assert (
        round_["data"]["createPayment"]["payment"]["amountUnits"] == "250000000"
    )  # not "2.500E+8": JS BigInt() reads it
    too_fine = await gql(CREATE, {"input": {**inp, "amount": "1.0000001", "idempotencyKey": "c"}}, token=user.token)
    assert gql.error_code(too_fine) == "BAD_USER_INPUT"
    wrong_currency = await gql(CREATE, {"input": {**inp, "currency": "USD", "idempotencyKey": "d"}}, token=user.token)
    assert gql.error_code(wrong_currency) == "BAD_USER_INPUT"
    unknown = await gql(CREATE, {"input": {**inp, "chainId": 56, "idempotencyKey": "e"}}, token=user.token)
    assert gql.error_code(unknown) == "BAD_USER_INPUT"


async def test_bank_transfer_confirmed_by_admin_credits_once_and_refunds_balance(gql, make_user, session) -> None:  # type: ignore[no-untyped-def]
    user, admin = await make_user(), await make_user(roles=["ADMIN"])
    pid = (await gql(CREATE, bank("100.00", "EUR"), token=user.token))["data"]["createPayment"]["payment"]["id"]
    confirm = (
        f'mutation {{ confirmBankTransfer(input: {{paymentId: "{pid}", bankReference: "SEPA-123"}}) '
        f"{{ payment {{ {FIELDS} }} errors {{ code }} }} }}"
    )
    denied = await gql(confirm, token=user.token)
    assert gql.error_code(denied) == "FORBIDDEN"
    done = gql.payload(await gql(confirm, token=admin.token), "confirmBankTransfer", "payment")
    assert done["state"] == "CONFIRMED" and done["creditedAmount"] == "100" and done["bankReference"] == "SEPA-123"
    assert gql.error_code(await gql(confirm, token=admin.token)) == "INVALID_STATE"  # no second credit
    assert [(b.currency, b.available) for b in await balances(session, user.id)] == [("EUR", Decimal(100))]

    refund = (
        f'mutation {{ refundPayment(input: {{paymentId: "{pid}", amount: "30.00", reason: "customer asked"}}) '
        f"{{ paymentRefund {{ amount payment {{ {FIELDS} }} }} errors {{ code }} }} }}"
    )
    part = gql.payload(await gql(refund, token=admin.token), "refundPayment", "paymentRefund")
    assert part["amount"] == "30" and part["payment"]["state"] == "PARTIALLY_REFUNDED"
    too_much = await gql(refund.replace("30.00", "70.01"), token=admin.token)
    assert gql.error_code(too_much) == "BAD_USER_INPUT"
    rest = gql.payload(
        await gql(
            f'mutation {{ refundPayment(input: {{paymentId: "{pid}", reason: "rest"}}) '
            "{ paymentRefund { amount payment { state refundedAmount } } errors { code } } }",
            token=admin.token,
        ),
        "refundPayment",
        "paymentRefund",
    )
    assert rest["amount"] == "70" and rest["payment"] == {"state": "REFUNDED", "refundedAmount": "100"}
    assert [(b.currency, b.available) for b in await balances(session, user.id)] == [("EUR", Decimal(0))]
    assert all(v == 0 for v in (await total_by_currency(session)).values())
    history = (
        (
            await session.execute(
                select(PaymentTransition.to_state)
                .where(PaymentTransition.payment_id == uuid.UUID(pid))
                .order_by(PaymentTransition.id)
            )
        )
        .scalars()
        .all()
    )
    assert history == ["AWAITING_FUNDS", "CONFIRMED", "PARTIALLY_REFUNDED", "REFUNDED"]
    actions = (
        (await session.execute(select(AuditLog.action).where(AuditLog.target_id == pid).order_by(AuditLog.id)))
        .scalars()
        .all()
    )
    assert actions == ["payment.create", "payment.confirm_bank_transfer", "payment.refund", "payment.refund"]


async def test_refund_of_spent_cash_is_refused_and_changes_nothing(gql, make_user, session) -> None:  # type: ignore[no-untyped-def]
    from resolvers.ledger import Platform, UserAccount, post

    user, admin = await make_user(), await make_user(roles=["ADMIN"])
    pid = (await gql(CREATE, bank("50.00"), token=user.token))["data"]["createPayment"]["payment"]["id"]
    await gql(
        f'mutation {{ confirmBankTransfer(input: {{paymentId: "{pid}", bankReference: "W1"}}) {{ payment {{ id }} }} }}',
        token=admin.token,
    )
    await post(
        session,
        kind="FEE",
        reference=f"spend:{pid}",
        currency="USD",
        legs=[(UserAccount(user.id), Decimal(-45)), (Platform(AccountKind.FEES), Decimal(45))],
    )
    await session.commit()
    result = await gql(
        f'mutation {{ refundPayment(input: {{paymentId: "{pid}", reason: "r"}}) '
        "{ paymentRefund { id } errors { code } } }",
        token=admin.token,
    )
    assert gql.error_code(result) == "INSUFFICIENT_FUNDS"
    row = (await gql(f'{{ payment(id: "{pid}") {{ state refundedAmount }} }}', token=admin.token))["data"]["payment"]
    assert row == {"state": "CONFIRMED", "refundedAmount": "0"}


async def test_cancel_and_invalid_transitions(gql, make_user) -> None:  # type: ignore[no-untyped-def]
    user, other = await make_user(), await make_user()
    pid = (await gql(CREATE, bank("5.00"), token=user.token))["data"]["createPayment"]["payment"]["id"]
    cancel = f'mutation {{ cancelPayment(id: "{pid}") {{ payment {{ state }} errors {{ code }} }} }}'
    assert gql.error_code(await gql(cancel, token=other.token)) == "NOT_FOUND"
    assert gql.payload(await gql(cancel, token=user.token), "cancelPayment", "payment")["state"] == "CANCELED"
    assert gql.error_code(await gql(cancel, token=user.token)) == "INVALID_STATE"
    admin = await make_user(roles=["ADMIN"])
    late = await gql(
        f'mutation {{ acceptLatePayment(input: {{paymentId: "{pid}", reason: "x"}}) '
        "{ payment { state } errors { code } } }",
        token=admin.token,
    )
    assert gql.error_code(late) == "INVALID_STATE"
    confirm = await gql(
        f'mutation {{ confirmBankTransfer(input: {{paymentId: "{pid}", bankReference: "B"}}) '
        "{ payment { state } errors { code } } }",
        token=admin.token,
    )
    assert gql.error_code(confirm) == "INVALID_STATE"


async def test_visibility_filters_and_settlement_report(gql, make_user) -> None:  # type: ignore[no-untyped-def]
    alice, bob = await make_user(), await make_user()
    compliance, admin = await make_user(roles=["COMPLIANCE"]), await make_user(roles=["ADMIN"])
    a1 = (await gql(CREATE, bank("10.00", "USD"), token=alice.token))["data"]["createPayment"]["payment"]["id"]
    a2 = (await gql(CREATE, bank("20.00", "EUR"), token=alice.token))["data"]["createPayment"]["payment"]["id"]
    b1 = (await gql(CREATE, bank("30.00", "USD"), token=bob.token))["data"]["createPayment"]["payment"]["id"]
    await gql(
        f'mutation {{ confirmBankTransfer(input: {{paymentId: "{a1}", bankReference: "R"}}) {{ payment {{ id }} }} }}',
        token=admin.token,
    )
    q = "query($c: String, $s: PaymentState) { payments(currency: $c, state: $s, first: 50) { edges { node { id } } } }"

    def ids(r: dict) -> list[str]:
        return [e["node"]["id"] for e in r["data"]["payments"]["edges"]]

    assert ids(await gql(q, token=alice.token)) == [a2, a1]  # own only, newest first
    assert b1 not in ids(await gql(q, token=alice.token))
    assert {a1, a2, b1} <= set(ids(await gql(q, token=compliance.token)))
    assert ids(await gql(q, {"c": "EUR"}, token=alice.token)) == [a2]
    assert ids(await gql(q, {"s": "CONFIRMED"}, token=alice.token)) == [a1]
    hidden = await gql(f'{{ payment(id: "{b1}") {{ id }} }}', token=alice.token)  # another's: null, as if missing
    assert "errors" not in hidden and hidden["data"]["payment"] is None, hidden
    assert (await gql(f'{{ payment(id: "{b1}") {{ id }} }}', token=compliance.token))["data"]["payment"]["id"] == b1

    now = datetime.now(UTC)
    report = f"""{{ settlementReport(from: "{(now - timedelta(hours=1)).isoformat()}", to: "{(now + timedelta(hours=1)).isoformat()}") {{
        state method currency chainId count amount credited }} }}"""
    denied = await gql(report, token=alice.token)
    assert gql.error_code(denied) == "FORBIDDEN"
    lines = (await gql(report, token=compliance.token))["data"]["settlementReport"]
    usd_confirmed = [x for x in lines if x["currency"] == "USD" and x["state"] == "CONFIRMED"]
    assert usd_confirmed and usd_confirmed[0]["credited"] == usd_confirmed[0]["amount"]
    assert sum(x["count"] for x in lines if x["state"] == "AWAITING_FUNDS") >= 2
    bad = await gql(
        '{ settlementReport(from: "2026-02-01T00:00:00Z", to: "2026-01-01T00:00:00Z") { count } }', token=admin.token
    )
    assert gql.error_code(bad) == "BAD_USER_INPUT"
