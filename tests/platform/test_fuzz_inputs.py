"""Hostile mutation input, as an outside reviewer sends it: every answer is a typed error (never INTERNAL, never a
5xx), and a refused mutation writes nothing. Found by fuzzing a running `rwa dev`."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from core.errors import BadUserInput
from models.assets import FxRate
from models.identity import ApiKey, AuditLog
from models.ledger import LedgerTransaction
from models.payments import Payment
from schema.scalars import _parse_big_int

CREATE_KEY = (
    "mutation($n: String!) { createApiKey(input: {name: $n}) { createdApiKey { apiKey { id name } } "
    "errors { code field } } }"
)
CREATE_PAYMENT = (
    "mutation($i: CreatePaymentInput!) { createPayment(input: $i) { payment { id amount } errors { code field } } }"
)
TYPED = {"BAD_USER_INPUT", "CONFLICT", "FORBIDDEN", "NOT_FOUND", "RATE_LIMITED", "UNAUTHENTICATED"}


async def count(session, model) -> int:  # type: ignore[no-untyped-def]
    return (await session.execute(select(func.count()).select_from(model))).scalar_one()


async def post_raw(client, body: str, token: str):  # type: ignore[no-untyped-def]
    """The body exactly as given (json.dumps escapes lone surrogates as \\udXXX, as a hostile client would)."""
    return await client.post(
        "/graphql",
        content=body.encode(),
        headers={"content-type": "application/json", "authorization": f"Bearer {token}"},
    )


def assert_typed(resp) -> list[str]:  # type: ignore[no-untyped-def]
    assert resp.status_code < 500, resp.text[:500]
    assert "Traceback" not in resp.text and "asyncpg" not in resp.text
    body = resp.json()
    codes = [e["extensions"]["code"] for e in body.get("errors") or []]
    assert set(codes) <= TYPED, resp.text[:500]
    for value in (body.get("data") or {}).values():  # expected failures are payload data (typed by the schema)
        if isinstance(value, dict) and value.get("errors"):
            codes += [e["code"] for e in value["errors"]]
    return codes


@pytest.mark.parametrize(
    "variables",
    [
        '{"n": "a\\u0000b"}',  # NUL: Postgres text refuses it (was INTERNAL after the resolver ran)
        '{"n": "\\ud800"}',  # a lone surrogate cannot be encoded as UTF-8 (was INTERNAL)
        '{"n": "ok", "extra": ["\\udfff"]}',  # anywhere in the body
    ],
)
async def test_unstorable_text_is_refused_and_nothing_is_written(client, make_user, session, variables: str) -> None:  # type: ignore[no-untyped-def]
    user = await make_user()
    resp = await post_raw(client, '{"query": %s, "variables": %s}' % (json.dumps(CREATE_KEY), variables), user.token)
    assert resp.status_code == 400, resp.text
    assert assert_typed(resp) == ["BAD_USER_INPUT"]
    assert await count(session, ApiKey) == 0 and await count(session, AuditLog) == 0


async def test_nul_escape_in_a_graphql_literal_is_refused(client, make_user, session) -> None:  # type: ignore[no-untyped-def]
    user = await make_user()
    for literal in ('"a\\u0000b"', '"a\\u{0}b"'):
        query = "mutation { createApiKey(input: {name: %s}) { createdApiKey { apiKey { id } } } }" % literal
        resp = await post_raw(client, json.dumps({"query": query}), user.token)
        assert assert_typed(resp) == ["BAD_USER_INPUT"], (literal, resp.text)
    assert await count(session, ApiKey) == 0


async def test_escaped_surrogate_pairs_are_ordinary_text(client, make_user) -> None:  # type: ignore[no-untyped-def]
    user = await make_user()
    resp = await post_raw(client, json.dumps({"query": CREATE_KEY, "variables": {"n": "key \U0001f600"}}), user.token)
    assert resp.json()["data"]["createApiKey"]["createdApiKey"]["apiKey"]["name"] == "key \U0001f600", resp.text


_HOSTILE_TEXT = st.one_of(
    st.text(max_size=300),
    st.sampled_from(["\x00", "\ud800", "'; DROP TABLE users; --", " " * 5, "\u202e", "x" * 10_000]),
)
_HOSTILE_AMOUNT = st.one_of(
    st.decimals(allow_nan=True, allow_infinity=True).map(str),
    st.integers(min_value=-(10**40), max_value=10**40),
    st.sampled_from(["NaN", "-Infinity", "1e999999", "-0", "0", "0.0000001", "1,5", "0x10", " 1", "1" * 80, ""]),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=_HOSTILE_TEXT)
async def test_create_api_key_with_any_name(client, make_user, session, name: str) -> None:  # type: ignore[no-untyped-def]
    user = await make_user()
    before = await count(session, ApiKey)
    resp = await post_raw(client, json.dumps({"query": CREATE_KEY, "variables": {"n": name}}), user.token)
    codes = assert_typed(resp)
    assert await count(session, ApiKey) == before + (0 if codes else 1)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    amount=_HOSTILE_AMOUNT,
    currency=st.one_of(st.sampled_from(["USD", "EUR", "JPY", "usd"]), _HOSTILE_TEXT),
    key=_HOSTILE_TEXT,
    expires=st.one_of(st.integers(min_value=-(2**31), max_value=2**31 - 1), st.just("60")),
)
async def test_create_bank_payment_with_any_input(client, make_user, session, amount, currency, key, expires) -> None:  # type: ignore[no-untyped-def]
    user = await make_user()
    before = await count(session, Payment)
    variables = {
        "i": {
            "amount": amount,
            "currency": currency,
            "method": "BANK_TRANSFER",
            "idempotencyKey": key,
            "expiresIn": expires,
        }
    }
    resp = await post_raw(client, json.dumps({"query": CREATE_PAYMENT, "variables": variables}), user.token)
    codes = assert_typed(resp)
    if codes:
        assert await count(session, Payment) == before
    else:  # accepted: a positive amount, stored exactly as sent
        stored = Decimal(resp.json()["data"]["createPayment"]["payment"]["amount"])
        assert stored > 0 and stored == Decimal(str(amount))


REPORT = "query($f: DateTime!, $t: DateTime!) { settlementReport(from: $f, to: $t) { state } }"


@pytest.mark.parametrize(
    "start, end, code",
    [
        ("2024-01-01T00:00:00Z", "2024-01-02T00:00:00+02:00", None),
        ("2024-01-01", "2024-02-01T00:00:00Z", "BAD_USER_INPUT"),  # no offset (was TypeError naive/aware -> INTERNAL)
        ("2024-01-01T00:00:00Z", "2024-01-02T00:00:00", "BAD_USER_INPUT"),
        ("0001-01-01T00:00:00+14:00", "2024-01-01T00:00:00Z", "BAD_USER_INPUT"),  # before year 1 in UTC (was INTERNAL)
        ("2024-13-01T00:00:00Z", "2024-01-01T00:00:00Z", "BAD_USER_INPUT"),
        ("yesterday", "2024-01-01T00:00:00Z", "BAD_USER_INPUT"),
    ],
)
async def test_datetime_arguments_need_an_offset(gql, make_user, start: str, end: str, code: str | None) -> None:  # type: ignore[no-untyped-def]
    admin = await make_user(roles=["ADMIN"])
    result = await gql(REPORT, {"f": start, "t": end}, token=admin.token)
    assert gql.error_code(result) == code, result
    literal = await gql('{ settlementReport(from: "%s", to: "%s") { state } }' % (start, end), token=admin.token)
    assert gql.error_code(literal) == code, literal


SET_FX = (
    'mutation($r: Decimal!) { setFxRate(input: {base: "USD", quote: "EUR", asOf: "2024-01-01", rate: $r}) '
    "{ fxRate { rate } errors { code } } }"
)
CREDIT = (
    'mutation($u: UUID!, $a: Decimal!) { creditCash(input: {userId: $u, amount: $a, currency: "USD", reference: "fz"}) '
    "{ cashBalances { available } errors { code } } }"
)


@pytest.mark.parametrize(
    "number", ["NaN", "sNaN", "-Infinity", "1E+999999999", "1e-999999999", "9" * 60, "1." + "1" * 58]
)
async def test_decimals_that_break_arithmetic_are_refused(gql, make_user, session, number: str) -> None:  # type: ignore[no-untyped-def]
    """They reached Decimal arithmetic / asyncpg's encoder: InvalidOperation, Overflow, a ledger sum rounded at
    28 digits ("does not balance") and an unencodable exponent were all INTERNAL."""
    admin = await make_user(roles=["ADMIN"])
    before = (await count(session, FxRate), await count(session, LedgerTransaction))
    fx = await gql(SET_FX, {"r": number}, token=admin.token)
    credit = await gql(CREDIT, {"u": str(admin.id), "a": number}, token=admin.token)
    assert (gql.error_code(fx), gql.error_code(credit)) == ("BAD_USER_INPUT", "BAD_USER_INPUT"), (fx, credit)
    assert (await count(session, FxRate), await count(session, LedgerTransaction)) == before


@pytest.mark.parametrize("number", ["1_000", " 5", "5 ", "\u0663", "\u0661\u0660", "\uff15", "5\n", "0x10"])
async def test_numbers_in_no_documented_format_are_refused(gql, make_user, session, number: str) -> None:  # type: ignore[no-untyped-def]
    """Python's Decimal()/int() read `_` between digits, surrounding whitespace and any Unicode digit: "1_000" credited
    1000, the Arabic-Indic "\u0663" 3, an order of quantity " 5" rested for 5. Amounts are ASCII digits (Decimal's and
    BigInt's documented wire formats): anything else is BAD_USER_INPUT and nothing is written."""
    admin = await make_user(roles=["ADMIN"])
    before = (await count(session, FxRate), await count(session, LedgerTransaction))
    fx = await gql(SET_FX, {"r": number}, token=admin.token)
    credit = await gql(CREDIT, {"u": str(admin.id), "a": number}, token=admin.token)
    assert (gql.error_code(fx), gql.error_code(credit)) == ("BAD_USER_INPUT", "BAD_USER_INPUT"), (fx, credit)
    assert (await count(session, FxRate), await count(session, LedgerTransaction)) == before


@pytest.mark.parametrize("digits", [4301, 20_000])
async def test_integer_literals_longer_than_python_converts_are_bad_input(gql, make_user, digits: int) -> None:  # type: ignore[no-untyped-def]
    """graphql-core coerces an Int literal with int(), which refuses more than 4300 digits with a ValueError: the
    document answered INTERNAL (and logged a traceback) instead of a typed error."""
    user = await make_user()
    body = await gql("{ myOrders(first: %s) { edges { node { id } } } }" % ("9" * digits), token=user.token)
    assert gql.error_code(body) == "BAD_USER_INPUT", body
    assert body["errors"][0]["message"] == "an integer literal has more than 4300 digits"


def test_big_int_inputs_are_ascii_integers() -> None:
    for text in ("1_000", " 5", "\u0663", "5.0", "", "9" * 5000):
        with pytest.raises(BadUserInput):
            _parse_big_int(text)
    assert [_parse_big_int(v) for v in ("250000000", "-3", "0", 7, 2**256)] == [250000000, -3, 0, 7, 2**256]


PLACE = (
    "mutation($i: PlaceOrderInput!) { placeOrder(input: $i) "
    "{ order { id status reason price quantity reservedCash } errors { code field } } }"
)
_HOSTILE_DATETIME = st.one_of(
    st.none(),
    st.datetimes(timezones=st.none() | st.timezones()).map(lambda d: d.isoformat()),
    st.sampled_from(["", "now", "9999-12-31T23:59:59Z", "0001-01-01T00:00:00+14:00"]),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    side=st.sampled_from(["BUY", "SELL"]),
    kind=st.sampled_from(["LIMIT", "MARKET"]),
    quantity=_HOSTILE_AMOUNT,
    price=st.one_of(st.none(), _HOSTILE_AMOUNT),
    tif=st.sampled_from([None, "GTC", "IOC", "FOK", "GTD"]),
    expires=_HOSTILE_DATETIME,
    client_id=st.one_of(st.none(), _HOSTILE_TEXT),
)
async def test_place_order_with_any_input(
    client,
    services,
    session_factory,
    session,
    side,
    kind,
    quantity,
    price,  # type: ignore[no-untyped-def]
    tif,
    expires,
    client_id,
) -> None:
    from models.trading import Order
    from tests.trading.factories import make_market, make_trader

    market = await make_market(session_factory)
    trader = await make_trader(session_factory, market, cash="1000", tokens="100")
    token, _ = services.keyring.issue(trader.user_id, ["INVESTOR"])
    variables = {
        "i": {
            "marketId": str(market.market_id),
            "side": side,
            "type": kind,
            "quantity": quantity,
            "price": price,
            "timeInForce": tif,
            "expiresAt": expires,
            "clientOrderId": client_id,
        }
    }
    resp = await post_raw(client, json.dumps({"query": PLACE, "variables": variables}), token)
    codes = assert_typed(resp)
    mine = select(func.count()).select_from(Order).where(Order.user_id == trader.user_id)
    if codes:
        assert (await session.execute(mine)).scalar_one() == 0
