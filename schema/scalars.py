"""Scalars shared by every domain. Define a scalar once: two definitions with one name break the schema."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal as PyDecimal, localcontext
from operator import methodcaller
from typing import NewType

import strawberry
from strawberry.exceptions import StrawberryInputCoercionError
from strawberry.schema.types.base_scalars import DateTimeDefinition, DecimalDefinition

from core.errors import BadUserInput


def _parse_big_int(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise BadUserInput(f"not an integer: {value!r}")
    try:
        return int(value)
    except ValueError:
        raise BadUserInput(f"not an integer: {value!r}") from None


def _serialize_big_int(value: object) -> str:
    """A plain decimal integer string whatever the source: raw token units come from Numeric(78, 0) columns as
    Decimal, and str(Decimal("2.5E+8")) is "2.5E+8", which JavaScript's BigInt() rejects."""
    if isinstance(value, bool):
        raise TypeError("BigInt cannot represent a boolean")
    number = PyDecimal(value) if isinstance(value, (int, PyDecimal)) else PyDecimal(str(value))
    if not number.is_finite() or number != number.to_integral_value():
        raise TypeError(f"BigInt cannot represent a non-integer: {value!r}")
    return str(int(number))


BigInt = strawberry.scalar(
    NewType("BigInt", int), name="BigInt", serialize=_serialize_big_int, parse_value=_parse_big_int,
    description="An integer of any size (e.g. raw token units, up to uint256), as a decimal string.")


def _parse_datetime(value: object) -> datetime:
    """ISO 8601 with a UTC offset ("2024-01-01T00:00:00Z"), parsed as strawberry's own DateTime parses it.
    Resolvers compare inputs with aware datetimes: a time without an offset ("2024-01-01") raised TypeError and
    came back INTERNAL, and so did one that leaves datetime's range in UTC ("0001-01-01T00:00:00+14:00")."""
    try:
        parsed = DateTimeDefinition.parse_value(value)  # type: ignore[misc]
        if parsed.tzinfo is not None:
            parsed.astimezone(timezone.utc)
    except (StrawberryInputCoercionError, OverflowError):
        raise BadUserInput(f"not an ISO 8601 date-time: {value!r}") from None
    if parsed.tzinfo is None:
        raise BadUserInput(f"date-time needs a UTC offset, e.g. 2024-01-01T00:00:00Z: {value!r}")
    return parsed


DECIMAL_DIGITS = 40  # on either side of the point: twice what any Money column holds (NUMERIC(38, 18))


def _parse_decimal(value: object) -> PyDecimal:
    """A finite number with at most DECIMAL_DIGITS digits before and after the point. NaN, Infinity, sNaN,
    1E+999999999, 1e-999999999 or 60 digits reached resolver arithmetic (InvalidOperation, Overflow) or asyncpg's
    encoder and came back INTERNAL. Domain ranges (with `extensions.field`) stay with the resolvers."""
    try:
        parsed = DecimalDefinition.parse_value(value)  # type: ignore[misc]
    except StrawberryInputCoercionError:
        raise BadUserInput(f"not a decimal number: {str(value)[:40]!r}") from None
    if parsed.is_finite() and parsed.is_zero():
        return PyDecimal(0)  # "0E-1000026" included: asyncpg cannot encode that exponent
    if not (parsed.is_finite() and parsed.adjusted() < DECIMAL_DIGITS
            and parsed.as_tuple().exponent >= -DECIMAL_DIGITS):  # type: ignore[operator]
        raise BadUserInput(f"a decimal must be finite, with at most {DECIMAL_DIGITS} digits before and after the "
                           f"point: {str(value)[:40]!r}")
    return parsed


# Replace strawberry's DateTime and Decimal for every `datetime` / `Decimal` argument (RwaSchema's
# scalar_overrides); same names and descriptions, so the SDL does not change.
DateTime = strawberry.scalar(name="DateTime", description="Date with time (isoformat)",
                             serialize=methodcaller("isoformat"), parse_value=_parse_datetime)
def _serialize_decimal(value: PyDecimal) -> str:
    """Plain decimal notation without trailing zeros: "300" (not "3E+2"), "0" (not "0E-18"), "0.0000001" (not
    "1E-7"): JavaScript's Number()/BigInt() and decimal libraries read it as is."""
    with localcontext(prec=80):  # the default 28 digits would round Numeric(38, 18) values
        n = value.normalize()
    return format(n, "f")


Decimal = strawberry.scalar(name="Decimal", description="Decimal (fixed-point)", serialize=_serialize_decimal,
                            parse_value=_parse_decimal)
SCALAR_OVERRIDES = {datetime: DateTime, PyDecimal: Decimal}
