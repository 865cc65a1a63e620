"""Hostile arguments to the agent-domain mutations and queries: always a typed error, never INTERNAL, nothing
written."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from models.operations import ChainOperation
from models.withdrawals import Withdrawal
from tests.trading.factories import make_market, make_trader

OK_CODES = {"BAD_USER_INPUT", "NOT_FOUND", "CONFLICT", "FORBIDDEN"}
WITHDRAW = """mutation($c: String!, $a: Decimal!, $w: String!, $k: String!, $ch: Int) {
  requestWithdrawal(input: {currency: $c, amount: $a, wallet: $w, idempotencyKey: $k, chainId: $ch}) {
    withdrawal { id } errors { code } } }"""
FREEZE = """mutation($t: UUID!, $w: String!, $a: Decimal!, $r: String!, $k: String) {
  freezeTokens(input: {tokenId: $t, wallet: $w, amount: $a, reason: $r, idempotencyKey: $k}) {
    operation { id } errors { code } } }"""
BIG = "9" * 80


def refused(result) -> bool:  # type: ignore[no-untyped-def]
    """Refused with a typed error: a top-level one of OK_CODES, or an expected failure in the mutation's payload
    (typed by its UserErrorCode enum) with a null result."""
    top = {e["extensions"]["code"] for e in result.get("errors") or []}
    if top:
        return top <= OK_CODES
    [body] = result["data"].values()
    return bool(body["errors"]) and all(v is None for k, v in body.items() if k != "errors")


@pytest.mark.parametrize(
    "currency,amount,wallet,key,chain",
    [
        ("USDC", "NaN", None, "k", None),
        ("USDC", "Infinity", None, "k", None),
        ("USDC", "-1", None, "k", None),
        ("USDC", "0", None, "k", None),
        ("USDC", "1e400", None, "k", None),
        ("USDC", BIG, None, "k", None),
        ("USDC", "0.0000001", None, "k", None),
        ("", "1", None, "k", None),
        ("U" * 100, "1", None, "k", None),
        ("USDC", "1", "0x", "k", None),
        ("USDC", "1", "not an address", "k", None),
        ("USDC", "1", None, "", None),
        ("USDC", "1", None, "k" * 500, None),
        ("USDC", "1", None, "k", 999999),
        ("USDC", "1", None, "k", -1),
        ("USDC", "1", "0x" + "ab" * 20, "k", None),
    ],
)
async def test_request_withdrawal(
    gql,
    make_user,
    session_factory,
    session,
    currency,
    amount,
    wallet,
    key,  # type: ignore[no-untyped-def]
    chain,
):
    m = await make_market(session_factory, quote="USDC" if currency == "USDC" else None)
    user = await make_user()
    t = await make_trader(session_factory, m, cash="100", user_id=user.id)
    result = await gql(
        WITHDRAW, {"c": currency, "a": amount, "w": wallet or t.wallet, "k": key, "ch": chain}, token=user.token
    )
    assert refused(result), result
    assert await session.scalar(select(func.count()).select_from(Withdrawal)) == 0


@pytest.mark.parametrize(
    "amount,reason,key,wallet",
    [
        ("NaN", "r", None, None),
        ("-5", "r", None, None),
        ("1e400", "r", None, None),
        (BIG, "r", None, None),
        ("1", "", None, None),
        ("1", "x" * 5000, None, None),
        ("1", "r", "bad key!", None),
        ("1", "r", "k" * 65, None),
        ("1", "r", None, "0x123"),
        ("0.0000000000000000001", "r", None, None),
    ],
)
async def test_freeze_tokens(gql, make_user, session_factory, session, amount, reason, key, wallet):  # type: ignore[no-untyped-def]
    m = await make_market(session_factory, decimals=6)
    t = await make_trader(session_factory, m, tokens="10")
    officer = await make_user(["COMPLIANCE"])
    result = await gql(
        FREEZE, {"t": str(m.token_id), "w": wallet or t.wallet, "a": amount, "r": reason, "k": key}, token=officer.token
    )
    assert refused(result), result
    assert (
        await session.scalar(
            select(func.count()).select_from(ChainOperation).where(ChainOperation.kind.like("compliance.%"))
        )
        == 0
    )


@pytest.mark.parametrize(
    "args", ['kind: "x"', f'kind: "{"k" * 41}"', "first: 100000", 'after: "garbage"', "chainId: -1", 'businessRef: ""']
)
async def test_operations_query(gql, make_user, args):  # type: ignore[no-untyped-def]
    admin = await make_user(["ADMIN"])
    result = await gql(f"{{ operations({args}) {{ edges {{ node {{ id }} }} }} }}", token=admin.token)
    codes = {e["extensions"]["code"] for e in result.get("errors") or []}
    assert codes <= OK_CODES | {"QUERY_TOO_COMPLEX"}, result
