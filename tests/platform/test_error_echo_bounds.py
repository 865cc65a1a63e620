"""Client errors do not echo hostile input unbounded: a 100 kB bad value in a scalar, enum or string argument, as a
variable or an inline literal, gets an error of a few hundred bytes that still names the start of what was sent
and what was expected (core/errors.py: echo, bounded)."""

from __future__ import annotations

import json

import pytest

from core.errors import ECHO_CHARS, MAX_MESSAGE_CHARS, BadUserInput, bounded
from schema.scalars import _parse_big_int, _parse_datetime, _parse_decimal

BIG = "x" * 100_000
SMALL = 2_000  # bytes of a whole error answer: the message, its location, path and code
ZERO = "00000000-0000-0000-0000-000000000000"

# the argument each probe fills with BIG, and a word of the message that must survive the cut
CASES = {
    "uuid": ("query($v: UUID!) { asset(id: $v) { id } }", "UUID"),
    "date": (
        'query($v: Date!) { convertAmount(amount: "1", fromCurrency: "USD", toCurrency: "EUR", asOf: $v) }',
        "Date",
    ),
    "datetime": (
        f'query($v: DateTime) {{ candles(marketId: "{ZERO}", interval: ONE_HOUR, from: $v) {{ open }} }}',
        "date-time",
    ),
    "decimal": (
        'query($v: Decimal!) { convertAmount(amount: $v, fromCurrency: "USD", toCurrency: "EUR", asOf: "2026-01-01") }',
        "decimal",
    ),
    "enum": (
        f'query($v: CandleInterval!) {{ candles(marketId: "{ZERO}", interval: $v) {{ open }} }}',
        "CandleInterval",
    ),
    "int": ("query($v: Int) { fxRates(first: $v) { edges { cursor } } }", "Int"),
    "currency (a resolver's BadUserInput)": (
        'query($v: String!) { convertAmount(amount: "1", fromCurrency: $v, toCurrency: "EUR", asOf: "2026-01-01") }',
        "",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
async def test_a_100kb_bad_variable_gets_a_small_error(gql, make_user, case: str) -> None:  # type: ignore[no-untyped-def]
    query, word = CASES[case]
    user = await make_user()
    result = await gql(query, {"v": BIG}, token=user.token)
    assert result["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT", str(result)[:500]
    assert len(json.dumps(result)) < SMALL, str(result)[:3000]
    message = result["errors"][0]["message"]
    assert "x" * (ECHO_CHARS - 1) + "…" in message.lower(), message  # still shows the start of what was sent
    assert word in message, message


@pytest.mark.parametrize(
    "literal",
    [
        f'{{ asset(id: "{"x" * 60_000}") {{ id }} }}',
        f'{{ candles(marketId: "{ZERO}", interval: {"X" * 60_000}) {{ open }} }}',
    ],
)
async def test_a_huge_bad_literal_gets_a_small_error(gql, make_user, literal: str) -> None:  # type: ignore[no-untyped-def]
    user = await make_user()
    result = await gql(literal, token=user.token)
    assert result["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT", str(result)[:500]
    assert len(json.dumps(result)) < SMALL, str(result)[:3000]


@pytest.mark.parametrize("parse", [_parse_big_int, _parse_datetime, _parse_decimal])
def test_our_scalars_quote_a_bounded_value(parse) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(BadUserInput) as refused:
        parse("1" + "z" * 100_000)
    assert len(refused.value.message) < 200 and "1" + "z" * (ECHO_CHARS - 1) + "…" in refused.value.message


def test_every_app_error_message_is_bounded() -> None:
    """Mutation payload errors carry AppError messages as they are: one built from a client's value stays small,
    whitespace-separated input included; ordinary messages (a 66-character tx hash too) are untouched."""
    assert len(BadUserInput(f"unknown currency {BIG}").message) < 200
    assert len(BadUserInput("unknown currency " + "ab " * 50_000).message) <= MAX_MESSAGE_CHARS + 1
    tx = "0x" + "ab" * 32
    assert bounded(f"transaction {tx} reverted") == f"transaction {tx} reverted"
    assert BadUserInput("address must be a 0x-prefixed 20-byte hex address").message.endswith("address")
