"""The Decimal scalar's wire format: plain decimal notation, never exponent form (a JavaScript client's Number(),
BigInt() and decimal libraries read it as is), trailing zeros of the column dropped, nothing rounded."""

from __future__ import annotations

from decimal import Decimal

import pytest

from schema.scalars import _serialize_big_int, _serialize_decimal


@pytest.mark.parametrize(
    "value, wire",
    [
        ("0E-18", "0"),
        ("300.000000000000000000", "300"),
        ("3E+2", "300"),
        ("1E-7", "0.0000001"),
        ("-0.50", "-0.5"),
        ("12345678901234567890.123456789012345678", "12345678901234567890.123456789012345678"),
        ("1E+30", "1000000000000000000000000000000"),
    ],
)
def test_decimals_are_sent_in_plain_notation(value: str, wire: str) -> None:
    assert _serialize_decimal(Decimal(value)) == wire


async def test_a_zero_balance_column_reaches_the_client_as_zero(gql, make_user) -> None:  # type: ignore[no-untyped-def]
    user = await make_user()
    res = await gql(
        'mutation { createPayment(input: {amount: "2.50", currency: "USD", method: BANK_TRANSFER, '
        'idempotencyKey: "wire"}) { payment { amount receivedAmount } } }',
        token=user.token,
    )
    assert res["data"]["createPayment"]["payment"] == {"amount": "2.5", "receivedAmount": "0"}


@pytest.mark.parametrize(
    "value, wire",
    [
        (Decimal("2.5000E+8"), "250000000"),
        (Decimal("0E-0"), "0"),
        (10**30, "1" + "0" * 30),
        (Decimal("-7"), "-7"),
        (Decimal(2**256 - 1), str(2**256 - 1)),
    ],
)
def test_big_ints_are_plain_decimal_integer_strings(value: object, wire: str) -> None:
    assert _serialize_big_int(value) == wire


@pytest.mark.parametrize("value", [Decimal("1.5"), Decimal("NaN"), True])
def test_a_big_int_refuses_what_is_not_an_integer(value: object) -> None:
    with pytest.raises(TypeError):
        _serialize_big_int(value)
