"""Scalars shared by every domain. Define a scalar once: two definitions with one name break the schema."""

from __future__ import annotations

from typing import NewType

import strawberry

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
