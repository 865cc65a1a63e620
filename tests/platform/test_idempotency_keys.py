"""One rule for a client's idempotency key on every mutation that takes one (resolvers/idempotency_keys.py): null is
no key where it is optional; otherwise 1 to N visible characters, taken as given. An empty, blank, padded, spaced,
invisible or too long key is BAD_USER_INPUT on the key's argument and writes nothing, on every such mutation alike
(before: freezeWallet/pauseToken/refundPayment took "" as no key, createPayment/requestWithdrawal/subscribeToOffering
trimmed " k" to "k", redeemTokens/issueTokens/placeOrder stored "   " or " k" as a key)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import text

from tests.trading.factories import make_market, make_trader


@dataclass(frozen=True)
class Case:
    query: str
    roles: list[str]
    key_name: str
    max_chars: int
    table: str  # what a call that got through would write


def _mutation(name: str, input_type: str) -> str:
    return f"mutation($i: {input_type}!) {{ {name}(input: $i) {{ errors {{ code field message }} }} }}"


CASES = {
    "freezeWallet": Case(
        _mutation("freezeWallet", "FreezeWalletInput"),
        ["COMPLIANCE"],
        "idempotencyKey",
        64,
        "chain_operations",
    ),
    "pauseToken": Case(
        _mutation("pauseToken", "PauseTokenInput"),
        ["COMPLIANCE"],
        "idempotencyKey",
        64,
        "chain_operations",
    ),
    "createPayment": Case(_mutation("createPayment", "CreatePaymentInput"), [], "idempotencyKey", 120, "payments"),
    "refundPayment": Case(
        _mutation("refundPayment", "RefundPaymentInput"),
        ["ADMIN"],
        "idempotencyKey",
        120,
        "payment_refunds",
    ),
    "requestWithdrawal": Case(
        _mutation("requestWithdrawal", "RequestWithdrawalInput"),
        [],
        "idempotencyKey",
        120,
        "withdrawals",
    ),
    "placeOrder": Case(_mutation("placeOrder", "PlaceOrderInput"), [], "clientOrderId", 64, "orders"),
    "subscribeToOffering": Case(
        _mutation("subscribeToOffering", "SubscribeInput"), [], "clientKey", 64, "offering_subscriptions"
    ),
    "issueTokens": Case(_mutation("issueTokens", "IssueTokensInput"), ["ISSUER"], "clientKey", 64, "token_issuances"),
    "redeemTokens": Case(
        _mutation("redeemTokens", "RedeemTokensInput"), ["ISSUER"], "clientKey", 64, "token_issuances"
    ),
}

BAD_KEYS = ["", " ", "   ", " k", "k ", "a b", "k\tk", "k\nk", "k\u00a0", "k\u200bk", "k\u202ek", "k\x07"]


def _input(name: str, key: str | None, world: dict[str, Any]) -> dict[str, Any]:
    token, wallet, user = world["token"], world["wallet"], world["user"]
    unknown = str(uuid.uuid4())
    base: dict[str, Any] = {
        "freezeWallet": {"tokenId": token, "wallet": wallet, "reason": "AML hold"},
        "pauseToken": {"tokenId": token, "reason": "incident"},
        "createPayment": {"amount": "100", "currency": "USD", "method": "BANK_TRANSFER"},
        "refundPayment": {"paymentId": unknown, "reason": "duplicate"},
        "requestWithdrawal": {"currency": "USDC", "amount": "1", "wallet": wallet},
        "placeOrder": {"marketId": world["market"], "side": "BUY", "type": "LIMIT", "quantity": "1", "price": "1"},
        "subscribeToOffering": {"offeringId": unknown, "amount": "100"},
        "issueTokens": {"tokenId": token, "allocations": [{"userId": user, "amount": "1"}]},
        "redeemTokens": {"tokenId": token, "userId": user, "amount": "1"},
    }[name]
    return {**base, CASES[name].key_name: key}


@pytest.mark.parametrize("name", list(CASES))
async def test_every_keyed_mutation_refuses_the_same_keys(gql, make_user, session_factory, session, name):  # type: ignore[no-untyped-def]
    case = CASES[name]
    m = await make_market(session_factory, quote="USDC")
    caller = await make_user(case.roles or None)
    trader = await make_trader(session_factory, m, cash="100", tokens="10", user_id=caller.id)
    world = {"token": str(m.token_id), "wallet": trader.wallet, "user": str(caller.id), "market": str(m.market_id)}
    count = text(f"SELECT count(*) FROM {case.table}")  # noqa: S608 - a table name from CASES
    before = await session.scalar(count)
    for key in [*BAD_KEYS, "k" * (case.max_chars + 1)]:
        result = await gql(case.query, {"i": _input(name, key, world)}, token=caller.token)
        assert "errors" not in result, (key, result)
        [payload] = result["data"].values()
        assert [(e["code"], e["field"]) for e in payload["errors"]] == [("BAD_USER_INPUT", ["input", case.key_name])], (
            key,
            result,
        )
        assert await session.scalar(count) == before, key
    # a key of visible characters of any kind, up to the limit, gets past the key check (or through)
    for key in ["k", "Ö-1:/.#é", "k" * case.max_chars]:
        result = await gql(case.query, {"i": _input(name, key, world)}, token=caller.token)
        fields = [e.get("field") for e in (result.get("data") or {}).get(name, {}).get("errors") or []]
        assert ["input", case.key_name] not in fields, (key, result)
