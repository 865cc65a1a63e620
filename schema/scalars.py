"""Scalars shared by every domain. Define a scalar once: two definitions with one name break the schema."""

from __future__ import annotations

from datetime import datetime, timezone
from operator import methodcaller
from typing import NewType

import strawberry
from strawberry.exceptions import StrawberryInputCoercionError
from strawberry.schema.types.base_scalars import DateTimeDefinition

from core.errors import BadUserInput


def _parse_big_int(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise BadUserInput(f"not an integer: {value!r}")
    try:
        return int(value)
    except ValueError:
        raise BadUserInput(f"not an integer: {value!r}") from None


BigInt = strawberry.scalar(
    NewType("BigInt", int), name="BigInt", serialize=str, parse_value=_parse_big_int,
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


# Replaces strawberry's DateTime for every `datetime` argument (RwaSchema's scalar_overrides); same name and
# description, so the SDL does not change.
DateTime = strawberry.scalar(name="DateTime", description="Date with time (isoformat)",
                             serialize=methodcaller("isoformat"), parse_value=_parse_datetime)
SCALAR_OVERRIDES = {datetime: DateTime}
