"""Keyset (cursor) pagination for every list in the API.

A cursor encodes the ordering key of a row (e.g. `(created_at, id)`), so pages stay stable while rows are
inserted: the next page starts strictly after the last row seen, whatever was added before it. The ordering
key must be unique (end it with the primary key) and have one direction for all its columns.

    page = await keyset_page(session, select(Asset), [Asset.created_at, Asset.id], descending=True,
                             first=50, after=cursor)
"""

from __future__ import annotations

import base64
import json
import uuid
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Generic, Sequence, TypeVar

from sqlalchemy import Select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from core.errors import BadUserInput

MAX_PAGE = 100
DEFAULT_PAGE = 20
T = TypeVar("T")


@dataclass(frozen=True)
class Page(Generic[T]):
    rows: list[T]
    cursors: list[str]
    has_next_page: bool
    has_previous_page: bool


def _tag(value: Any) -> list[Any]:
    if isinstance(value, datetime):
        return ["dt", value.isoformat()]
    if isinstance(value, date):
        return ["d", value.isoformat()]
    if isinstance(value, Decimal):
        return ["dec", str(value)]
    if isinstance(value, uuid.UUID):
        return ["u", str(value)]
    if value is None or isinstance(value, (int, str, bool)):
        return ["v", value]
    if hasattr(value, "value"):  # enums
        return ["v", value.value]
    raise TypeError(f"cannot put {type(value).__name__} in a cursor")


def _untag(item: list[Any]) -> Any:
    kind, raw = item
    return {"dt": datetime.fromisoformat, "d": date.fromisoformat, "dec": Decimal, "u": uuid.UUID}.get(
        kind, lambda v: v)(raw)


def encode_cursor(values: Sequence[Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps([_tag(v) for v in values]).encode()).decode().rstrip("=")


def decode_cursor(cursor: str, width: int) -> list[Any]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        values = [_untag(item) for item in json.loads(raw)]
    except (ValueError, TypeError, KeyError, json.JSONDecodeError) as exc:
        raise BadUserInput("invalid cursor", field="cursor") from exc
    if len(values) != width:
        raise BadUserInput("cursor does not belong to this list", field="cursor")
    return values


def check_window(first: int | None, last: int | None) -> tuple[int, bool]:
    """Validate first/last; return (limit, backwards)."""
    if first is not None and last is not None:
        raise BadUserInput("pass either first or last, not both", field="first")
    n = first if first is not None else last if last is not None else DEFAULT_PAGE
    if n < 0 or n > MAX_PAGE:
        raise BadUserInput(f"first/last must be between 0 and {MAX_PAGE}", field="first" if last is None else "last")
    return n, last is not None


async def keyset_page(session: AsyncSession, stmt: Select, key: Sequence[ColumnElement[Any]], *,
                      descending: bool = False, first: int | None = None, after: str | None = None,
                      last: int | None = None, before: str | None = None, scalars: bool = True) -> Page[Any]:
    """Run `stmt` one page at a time. The key columns must be selected-from entities of `stmt`."""
    limit, backwards = check_window(first, last)
    cols = tuple_(*key)
    if after:
        bound = tuple_(*decode_cursor(after, len(key)))
        stmt = stmt.where(cols < bound if descending else cols > bound)
    if before:
        bound = tuple_(*decode_cursor(before, len(key)))
        stmt = stmt.where(cols > bound if descending else cols < bound)
    forward_desc = descending != backwards
    stmt = stmt.add_columns(*key).order_by(*[(c.desc() if forward_desc else c.asc()) for c in key]).limit(limit + 1)
    result = (await session.execute(stmt)).all()
    more = len(result) > limit
    result = result[:limit]
    if backwards:
        result.reverse()
    width = len(key)
    rows = [(r[0] if scalars else tuple(r[:-width])) for r in result]
    cursors = [encode_cursor(tuple(r[-width:])) for r in result]
    return Page(rows, cursors,
                has_next_page=more if not backwards else bool(before),
                has_previous_page=more if backwards else bool(after))
