"""Single-object lookups (`asset(id)`, `payment(id)`, `token(...)`...) are nullable: a row that does not exist or
that the caller may not see is `null`, not an error, so a client renders "not found" without a failed request
(and cannot tell a hidden row from a missing one)."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TypeVar

from core.errors import NotFound

T = TypeVar("T")


async def found(lookup: Awaitable[T]) -> T | None:
    try:
        return await lookup
    except NotFound:
        return None
