"""`node(id)` for the payments, withdrawals and chain-operations types (schema/node.py): each loader applies its
type's own visibility, so a caller who may not see the object gets null, exactly like an unknown id.

Payment: its owner or ADMIN/COMPLIANCE (like `payment(id)`); PaymentRefund: ADMIN/COMPLIANCE; WebhookEndpoint and
WebhookDelivery: ADMIN (like `webhookEndpoints`/`webhookDeliveries`); Withdrawal: its owner or ADMIN/COMPLIANCE (like
`myWithdrawals`/`withdrawals`); ChainOperation: ADMIN/COMPLIANCE (like `operations`)."""

from __future__ import annotations

import uuid

from models.payments import WebhookDelivery

NODES = """query($ids: [ID!]!) { nodes(ids: $ids) { __typename id
  ... on Payment { paymentState: state } ... on PaymentRefund { amount } ... on WebhookDelivery { deliveryState: state }
  ... on Withdrawal { withdrawalState: state } ... on ChainOperation { kind } } }"""
ERRORS = "errors { code field message }"


async def test_payment_types_as_nodes(gql, make_user, session) -> None:  # type: ignore[no-untyped-def]
    owner, stranger = await make_user(), await make_user()
    admin, compliance = await make_user(["ADMIN"]), await make_user(["COMPLIANCE"])
    created = await gql(
        'mutation { createPayment(input: {amount: "40", currency: "USD", method: BANK_TRANSFER, '
        f'idempotencyKey: "node"}}) {{ payment {{ id }} {ERRORS} }} }}',
        token=owner.token,
    )
    pid = gql.payload(created, "createPayment", "payment")["id"]
    confirm = await gql(
        f'mutation {{ confirmBankTransfer(input: {{paymentId: "{pid}", bankReference: "N1"}}) '
        f"{{ payment {{ state }} {ERRORS} }} }}",
        token=admin.token,
    )
    assert gql.payload(confirm, "confirmBankTransfer", "payment")["state"] == "CONFIRMED"
    refunded = await gql(
        f'mutation {{ refundPayment(input: {{paymentId: "{pid}", amount: "5", reason: "node"}}) '
        f"{{ paymentRefund {{ id }} {ERRORS} }} }}",
        token=admin.token,
    )
    refund_id = gql.payload(refunded, "refundPayment", "paymentRefund")["id"]
    hook = await gql(
        'mutation { createWebhookEndpoint(input: {url: "http://127.0.0.1:9/node"}) '
        f"{{ webhookEndpoint {{ id }} {ERRORS} }} }}",
        token=admin.token,
    )
    endpoint_id = gql.payload(hook, "createWebhookEndpoint", "webhookEndpoint")["id"]
    delivery = WebhookDelivery(
        id=uuid.uuid4(), url="http://127.0.0.1:9/node", event="payment.test", payload={}, state="DEAD"
    )
    session.add(delivery)
    await session.commit()
    ids = [pid, refund_id, endpoint_id, str(delivery.id)]

    async def seen(token: str) -> list[str | None]:
        result = await gql(NODES, {"ids": ids}, token=token)
        assert "errors" not in result, result
        return [n and n["__typename"] for n in result["data"]["nodes"]]

    assert await seen(admin.token) == ["Payment", "PaymentRefund", "WebhookEndpoint", "WebhookDelivery"]
    assert await seen(compliance.token) == ["Payment", "PaymentRefund", None, None]
    assert await seen(owner.token) == ["Payment", None, None, None]
    assert await seen(stranger.token) == [None, None, None, None]
    anonymous = await gql(NODES, {"ids": ids})
    assert anonymous["data"]["nodes"] == [None, None, None, None], anonymous
    one = await gql(f'{{ node(id: "{delivery.id}") {{ id ... on WebhookDelivery {{ state }} }} }}', token=admin.token)
    assert one["data"]["node"] == {"id": str(delivery.id), "state": "DEAD"}


async def test_withdrawal_and_operation_as_nodes(gql, make_user, session_factory) -> None:  # type: ignore[no-untyped-def]
    from tests.trading.factories import make_market, make_trader

    m = await make_market(session_factory, decimals=6)
    owner, stranger = await make_user(), await make_user()
    admin, compliance = await make_user(["ADMIN"]), await make_user(["COMPLIANCE"])
    t = await make_trader(session_factory, m, cash="100", tokens="10", user_id=owner.id)
    requested = await gql(
        'mutation($c: String!, $w: String!) { requestWithdrawal(input: {currency: $c, amount: "5", wallet: $w, '
        f'idempotencyKey: "node"}}) {{ withdrawal {{ id }} {ERRORS} }} }}',
        {"c": m.quote, "w": t.wallet},
        token=owner.token,
    )
    withdrawal_id = gql.payload(requested, "requestWithdrawal", "withdrawal")["id"]
    frozen = await gql(
        'mutation($t: UUID!, $w: String!) { freezeWallet(input: {tokenId: $t, wallet: $w, reason: "node"}) '
        f"{{ operation {{ id }} {ERRORS} }} }}",
        {"t": str(m.token_id), "w": t.wallet},
        token=compliance.token,
    )
    operation_id = gql.payload(frozen, "freezeWallet", "operation")["id"]
    ids = [withdrawal_id, operation_id]

    async def seen(token: str) -> list[str | None]:
        result = await gql(NODES, {"ids": ids}, token=token)
        assert "errors" not in result, result
        return [n and n["__typename"] for n in result["data"]["nodes"]]

    assert await seen(owner.token) == ["Withdrawal", None]
    assert await seen(admin.token) == ["Withdrawal", "ChainOperation"]
    assert await seen(compliance.token) == ["Withdrawal", "ChainOperation"]
    assert await seen(stranger.token) == [None, None]
