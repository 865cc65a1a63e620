"""Scalars shared by every domain. Define a scalar once: two definitions with one name break the schema."""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime
from decimal import Context
from decimal import Decimal as PyDecimal
from typing import TYPE_CHECKING, Any, NewType, TypeAlias

import strawberry
from strawberry.exceptions import StrawberryInputCoercionError
from strawberry.file_uploads import Upload as PyUpload
from strawberry.scalars import JSON as PyJSON
from strawberry.schema.types.base_scalars import DateDefinition, DateTimeDefinition, DecimalDefinition, UUIDDefinition
from strawberry.schema.types.scalar import DEFAULT_SCALAR_REGISTRY
from strawberry.types.scalar import ScalarDefinition

from core.errors import BadUserInput, echo

# What a number in a string may look like: ASCII digits only. Python's int() and Decimal() also take surrounding
# whitespace, `_` between digits and any Unicode digit ("1_0" and " 10" were 10, the Arabic-Indic "٣" was 3), so an
# amount a client (or a typo) wrote in no format this API documents was accepted as another number.
_INTEGER_TEXT = re.compile(r"[+-]?[0-9]+")
_DECIMAL_TEXT = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_NON_FINITE_TEXT = re.compile(r"[+-]?(?:s?nan|inf|infinity)", re.IGNORECASE)  # refused below, with their own message


def _parse_big_int(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise BadUserInput(f"not an integer: {echo(value)!r}")
    if isinstance(value, str) and not _INTEGER_TEXT.fullmatch(value):
        raise BadUserInput(f"not an integer: {echo(value)!r}")
    try:
        return int(value)
    except ValueError:  # more digits than int() converts (4300)
        raise BadUserInput(f"not an integer: {echo(value)!r}") from None


def _serialize_big_int(value: object) -> str:
    """A plain decimal integer string whatever the source: raw token units come from Numeric(78, 0) columns as
    Decimal, and str(Decimal("2.5E+8")) is "2.5E+8", which JavaScript's BigInt() rejects."""
    if isinstance(value, bool):
        raise TypeError("BigInt cannot represent a boolean")
    number = PyDecimal(value) if isinstance(value, (int, PyDecimal)) else PyDecimal(str(value))
    if not number.is_finite() or number != number.to_integral_value():
        raise TypeError(f"BigInt cannot represent a non-integer: {value!r}")
    return str(int(number))


if TYPE_CHECKING:
    # to the type checker a BigInt field holds what resolvers put there: an int, or a Decimal read from a
    # Numeric(78, 0) column (strawberry's scalar() returns a wrapper object, which is not a type)
    BigInt: TypeAlias = int | PyDecimal
else:
    BigInt = strawberry.scalar(
        NewType("BigInt", int),
        name="BigInt",
        serialize=_serialize_big_int,
        parse_value=_parse_big_int,
        description=(
            "An integer of any size (raw token units, up to uint256). Wire format: always a JSON string holding a plain "
            "decimal integer: an optional `-` then digits, no exponent, no `+`, no leading zeros, no fraction "
            '(`"250000000"`, `"0"`); JavaScript reads it with `BigInt(value)`. Inputs: that string or a JSON '
            "integer."
        ),
    )


def _parser(builtin: ScalarDefinition) -> Callable[[Any], Any]:
    """A built-in scalar's parse_value function (ScalarDefinition types it optional; these have one)."""
    if builtin.parse_value is None:
        raise TypeError(f"strawberry's {builtin.name} scalar has no parse_value function")
    return builtin.parse_value


_parse_builtin_datetime = _parser(DateTimeDefinition)
_parse_builtin_decimal = _parser(DecimalDefinition)


def _parse_datetime(value: object) -> datetime:
    """ISO 8601 with a UTC offset ("2024-01-01T00:00:00Z"), parsed as strawberry's own DateTime parses it.
    Resolvers compare inputs with aware datetimes: a time without an offset ("2024-01-01") raised TypeError and
    came back INTERNAL, and so did one that leaves datetime's range in UTC ("0001-01-01T00:00:00+14:00")."""
    try:
        parsed = _parse_builtin_datetime(value)
        if parsed.tzinfo is not None:
            parsed.astimezone(UTC)
    except (StrawberryInputCoercionError, OverflowError):
        raise BadUserInput(f"not an ISO 8601 date-time: {echo(value)!r}") from None
    if parsed.tzinfo is None:
        raise BadUserInput(f"date-time needs a UTC offset, e.g. 2024-01-01T00:00:00Z: {echo(value)!r}")
    return parsed


DECIMAL_DIGITS = 40  # on either side of the point: twice what any Money column holds (NUMERIC(38, 18))


def _parse_decimal(value: object) -> PyDecimal:
    """A finite number with at most DECIMAL_DIGITS digits before and after the point. NaN, Infinity, sNaN,
    1E+999999999, 1e-999999999 or 60 digits reached resolver arithmetic (InvalidOperation, Overflow) or asyncpg's
    encoder and came back INTERNAL. Domain ranges (with `extensions.field`) stay with the resolvers."""
    if isinstance(value, str) and not (_DECIMAL_TEXT.fullmatch(value) or _NON_FINITE_TEXT.fullmatch(value)):
        raise BadUserInput(f"not a decimal number: {echo(value)!r}")
    try:
        parsed = _parse_builtin_decimal(value)
    except StrawberryInputCoercionError:
        raise BadUserInput(f"not a decimal number: {echo(value)!r}") from None
    if parsed.is_finite() and parsed.is_zero():
        return PyDecimal(0)  # "0E-1000026" included: asyncpg cannot encode that exponent
    if not (
        parsed.is_finite() and parsed.adjusted() < DECIMAL_DIGITS and parsed.as_tuple().exponent >= -DECIMAL_DIGITS
    ):
        raise BadUserInput(
            f"a decimal must be finite, with at most {DECIMAL_DIGITS} digits before and after the "
            f"point: {echo(value)!r}"
        )
    return parsed


# Replace strawberry's DateTime and Decimal for every `datetime` / `Decimal` argument (RwaSchema's
# scalar_overrides); same names and descriptions, so the SDL does not change.
def _serialize_datetime(value: datetime) -> str:
    """ISO 8601 in UTC, whatever zone the value came in (a naive value is UTC: the database stores UTC)."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC).isoformat()
    if value.utcoffset():
        value = value.astimezone(UTC)
    return value.isoformat()


DateTime = strawberry.scalar(
    name="DateTime",
    serialize=_serialize_datetime,
    parse_value=_parse_datetime,
    description=(
        "An instant. Wire format: an ISO 8601 / RFC 3339 string in UTC with an explicit `+00:00` offset, "
        'microseconds only when non-zero (`"2026-01-31T09:30:00+00:00"`, `"2026-01-31T09:30:00.250000+00:00"`); '
        "JavaScript: `new Date(value)`. Inputs: ISO 8601 with an offset (`Z` or `+hh:mm`); a time without one is "
        "BAD_USER_INPUT."
    ),
)


# the default 28 digits would round Numeric(38, 18) values; an explicit context costs less than localcontext()
_WIDE = Context(prec=80)


def _serialize_decimal(value: PyDecimal) -> str:
    """Plain decimal notation without trailing zeros: "300" (not "3E+2"), "0" (not "0E-18"), "0.0000001" (not
    "1E-7"): JavaScript's Number()/BigInt() and decimal libraries read it as is."""
    return format(value.normalize(_WIDE), "f")


Decimal = strawberry.scalar(
    name="Decimal",
    serialize=_serialize_decimal,
    parse_value=_parse_decimal,
    description=(
        "An exact decimal number (money, prices, quantities). Wire format: always a JSON string in plain decimal "
        "notation: an optional `-`, digits, optionally `.` and digits; never an exponent, no trailing zeros after "
        'the point (`"1234.5"`, `"0.000001"`, `"300"`, `"0"`). Read it with a decimal library '
        "(decimal.js, big.js), never into a float. Inputs: such a string (an exponent is accepted) or a JSON number; "
        f"at most {DECIMAL_DIGITS} digits before and after the point, finite."
    ),
)


# The remaining built-in scalars keep their parsing and serialization; only their descriptions say the wire format.
def _serializer(builtin: ScalarDefinition) -> Callable[[Any], Any]:
    """A built-in scalar's serialize function (ScalarDefinition types it optional; every built-in has one)."""
    if builtin.serialize is None:
        raise TypeError(f"strawberry's {builtin.name} scalar has no serialize function")
    return builtin.serialize


Date = strawberry.scalar(
    name="Date",
    serialize=_serializer(DateDefinition),
    parse_value=DateDefinition.parse_value,
    description='A calendar day. Wire format: an ISO 8601 string `YYYY-MM-DD` (`"2026-01-31"`), no time, no zone.',
)
UUID = strawberry.scalar(
    name="UUID",
    serialize=_serializer(UUIDDefinition),
    parse_value=UUIDDefinition.parse_value,
    description=(
        "The id of a row. Wire format: a UUID (RFC 9562) string, lowercase, hyphenated "
        '(`"0b7c5a8e-2f4d-4c1a-9d3e-5f6a7b8c9d0e"`). Opaque: compare it as a string, do not derive meaning from it.'
    ),
)
_parse_builtin_json = _parser(DEFAULT_SCALAR_REGISTRY[PyJSON])


def _parse_json(value: object) -> object:
    """JSON as given, with only finite numbers: a literal `{a: 1e999}` became inf (the request body's decoder
    refuses NaN/Infinity/1e999, but graphql-core turns a float literal into a Python float), which Postgres' jsonb
    refused with an INTERNAL error."""
    parsed = _parse_builtin_json(value)
    stack = [parsed]
    while stack:
        item = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            raise BadUserInput("JSON numbers must be finite (no NaN or Infinity; 1e999 is out of range)")
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return parsed


JSON = strawberry.scalar(
    name="JSON",
    serialize=_serializer(DEFAULT_SCALAR_REGISTRY[PyJSON]),
    parse_value=_parse_json,
    specified_by_url="https://ecma-international.org/wp-content/uploads/ECMA-404_2nd_edition_december_2017.pdf",
    description=(
        "Free-form JSON (ECMA-404) sent as is, not as a string: an object, array, string, number, boolean or null. "
        "Keys the API defines (asset metadata, payment events) are camelCase; exact amounts are strings."
    ),
)
Upload = strawberry.scalar(
    name="Upload",
    serialize=_serializer(DEFAULT_SCALAR_REGISTRY[PyUpload]),
    parse_value=DEFAULT_SCALAR_REGISTRY[PyUpload].parse_value,
    description=(
        "A file, input only: a variable set to null in `operations` and mapped to a multipart part, per the "
        "GraphQL multipart request specification; the request needs an `Apollo-Require-Preflight` header."
    ),
)
SCALAR_OVERRIDES: dict[object, ScalarDefinition] = {
    datetime: DateTime,
    PyDecimal: Decimal,
    date: Date,
    uuid.UUID: UUID,
    PyJSON: JSON,
    PyUpload: Upload,
}
