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
import re
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, Generic, TypeVar

from sqlalchemy import BigInteger, Enum, Select, SmallInteger, func, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import QueryableAttribute
from sqlalchemy.sql.elements import ColumnElement

from core.errors import BadUserInput

MAX_PAGE = 100
DEFAULT_PAGE = 20
T = TypeVar("T")
U = TypeVar("U")
# a key column: a mapped attribute (`Asset.created_at`) or a Core column/expression
KeyColumn = ColumnElement[Any] | QueryableAttribute[Any]


# totalCount counts at most this many rows (a bounded scan); above it the count is null (README "Pagination")
TOTAL_COUNT_CAP = 10_000


@dataclass(frozen=True)
class Page(Generic[T]):
    rows: list[T]
    cursors: list[str]
    has_next_page: bool
    has_previous_page: bool
    # counts every row of the list (all pages), up to TOTAL_COUNT_CAP; None when the list is not countable cheaply
    count: Callable[[], Awaitable[int | None]] | None = field(default=None, compare=False, repr=False)

    def map(self, build: Callable[[T], U]) -> Page[U]:
        """The same page (cursors, page flags, count) with each row built into another type."""
        return Page([build(r) for r in self.rows], self.cursors, self.has_next_page, self.has_previous_page, self.count)


def bounded_count(session: AsyncSession, stmt: Select) -> Callable[[], Awaitable[int | None]]:
    """The rows of `stmt` (filters as given, before any cursor), counted up to TOTAL_COUNT_CAP, lazily: the
    statement runs only when a client selects totalCount. None above the cap."""

    async def count() -> int | None:
        capped = stmt.order_by(None).limit(TOTAL_COUNT_CAP + 1).subquery()
        n = (await session.execute(select(func.count()).select_from(capped))).scalar_one()
        return None if n > TOTAL_COUNT_CAP else int(n)

    return count


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


# A cursor this module writes is ~60-120 characters (two tagged values); anything much longer is not one of ours.
# The cap, and refusing nesting before decoding, keep the JSON decoder (recursive in C) away from crafted input: a
# 312 kB cursor of nested arrays segfaulted a process whose recursion limit py_ecc had raised (core/recursion_limit.py).
MAX_CURSOR_CHARS = 4096  # a 200-character name of emoji, JSON-escaped (12 bytes each), in base64: ~3,300
_MAX_TEXT = 256  # a string key value (an address, a name, a currency)
_INT_BOUND = 2**63  # Postgres bigint
# Decimal keys (prices, balances in raw token units: up to 78 digits): finite and of a size a column can hold
_DECIMAL_DIGITS = 100
_DECIMAL_EXPONENT = 100


_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)


class _Malformed(ValueError):
    pass


def _text(raw: Any, limit: int = _MAX_TEXT) -> str:
    if not isinstance(raw, str) or len(raw) > limit or "\x00" in raw:
        raise _Malformed("not a cursor string")
    raw.encode()  # a lone surrogate (JSON "\ud800") raises UnicodeEncodeError, a ValueError
    return raw


def _datetime(raw: Any) -> datetime:
    value = datetime.fromisoformat(_text(raw, 64))
    if value.tzinfo is not None:
        value.astimezone(UTC)  # OverflowError for year 1 at +01:00, say: the driver converts to UTC
    return value


def _decimal(raw: Any) -> Decimal:
    value = Decimal(_text(raw, _DECIMAL_DIGITS + 10))
    _, digits, exponent = value.as_tuple()
    # a finite Decimal's exponent is an int ('n'/'N'/'F' mark NaN/sNaN/Infinity)
    if not isinstance(exponent, int) or len(digits) > _DECIMAL_DIGITS or abs(exponent) > _DECIMAL_EXPONENT:
        raise _Malformed("decimal out of range")
    return value


def _plain(raw: Any) -> Any:
    if raw is None or isinstance(raw, bool):
        return raw
    if isinstance(raw, int):
        if not -_INT_BOUND <= raw < _INT_BOUND:
            raise _Malformed("integer out of range")
        return raw
    return _text(raw)  # floats, lists and objects are not values this module writes


_UNTAG = {
    "dt": _datetime,
    "d": lambda raw: date.fromisoformat(_text(raw, 16)),
    "dec": _decimal,
    "u": lambda raw: uuid.UUID(_text(raw, 64)),
    "v": _plain,
}


def _untag(item: Any) -> Any:
    if not isinstance(item, list) or len(item) != 2 or not isinstance(item[0], str) or item[0] not in _UNTAG:
        raise _Malformed("not a tagged cursor value")
    return _UNTAG[item[0]](item[1])


def encode_cursor(values: Sequence[Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps([_tag(v) for v in values]).encode()).decode().rstrip("=")


def decode_cursor(cursor: str, width: int, columns: Sequence[KeyColumn] | None = None) -> list[Any]:
    """The values of a cursor from encode_cursor; anything else (too long, not base64 JSON, nested, unknown tags,
    values no key column can hold, or of another column's type when `columns` are given) is BAD_USER_INPUT."""
    if not isinstance(cursor, str) or len(cursor) > MAX_CURSOR_CHARS:
        raise BadUserInput("invalid cursor", field="cursor")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        if _nesting(raw) > 2:  # a list of [tag, value] pairs
            raise _Malformed("nested")
        items = json.loads(raw)
        if not isinstance(items, list):
            raise _Malformed("not a list")
        values = [_untag(item) for item in items]
    except (ValueError, TypeError, ArithmeticError, RecursionError) as exc:  # ArithmeticError: decimal, overflow
        raise BadUserInput("invalid cursor", field="cursor") from exc
    if len(values) != width or (columns is not None and not all(map(_fits, values, columns))):
        raise BadUserInput("cursor does not belong to this list", field="cursor")
    return values


def _nesting(raw: bytes) -> int:
    """How deep the JSON text nests arrays/objects (strings skipped), without decoding it."""
    depth = deepest = 0
    for b in _JSON_STRING.sub(b"", raw):
        if b in (91, 123):  # [ {
            depth += 1
            deepest = max(deepest, depth)
        elif b in (93, 125):  # ] }
            depth -= 1
    return deepest


def _fits(value: Any, column: KeyColumn) -> bool:
    """Whether a decoded value can be compared with a key column (else Postgres refused the statement: INTERNAL)."""
    if value is None:
        return True
    col_type = column.type
    if isinstance(col_type, Enum):
        return isinstance(value, str) and value in col_type.enums
    try:
        expected = col_type.python_type
    except NotImplementedError:
        return True
    if expected is datetime or expected is date:
        return type(value) is expected
    if expected is int:
        bits = 15 if isinstance(col_type, SmallInteger) else 63 if isinstance(col_type, BigInteger) else 31
        return type(value) is int and -(2**bits) <= value < 2**bits
    if expected is Decimal:
        return isinstance(value, Decimal) or type(value) is int
    return isinstance(value, expected)


def check_window(first: int | None, last: int | None) -> tuple[int, bool]:
    """Validate first/last; return (limit, backwards)."""
    if first is not None and last is not None:
        raise BadUserInput("pass either first or last, not both", field="first")
    n = first if first is not None else last if last is not None else DEFAULT_PAGE
    if n < 0 or n > MAX_PAGE:
        raise BadUserInput(f"first/last must be between 0 and {MAX_PAGE}", field="first" if last is None else "last")
    return n, last is not None


def cut_page(result: Sequence[T], limit: int, backwards: bool) -> tuple[list[T], bool]:
    """The rows fetched for a window (limit + 1 asked, in fetch order) cut to the page, in page order, and whether
    the fetch found more than the page."""
    rows = list(result[:limit])
    if backwards:
        rows.reverse()
    return rows, len(result) > limit


def window_page(
    rows: list[T],
    cursors: list[str],
    more: bool,
    *,
    backwards: bool,
    after: str | None,
    before: str | None,
    count: Callable[[], Awaitable[int | None]] | None = None,
) -> Page[T]:
    """The page of a window with its flags: `more` (cut_page's) is the next page going forward, the previous one
    going backwards; the other side has a page when the window started from a cursor."""
    return Page(
        rows,
        cursors,
        has_next_page=more if not backwards else bool(before),
        has_previous_page=more if backwards else bool(after),
        count=count,
    )


async def keyset_page(
    session: AsyncSession,
    stmt: Select,
    key: Sequence[KeyColumn],
    *,
    descending: bool = False,
    first: int | None = None,
    after: str | None = None,
    last: int | None = None,
    before: str | None = None,
    scalars: bool = True,
) -> Page[Any]:
    """Run `stmt` one page at a time. The key columns must be selected-from entities of `stmt`."""
    limit, backwards = check_window(first, last)
    count = bounded_count(session, stmt)
    cols = tuple_(*key)
    if after:
        bound = tuple_(*decode_cursor(after, len(key), key))
        stmt = stmt.where(cols < bound if descending else cols > bound)
    if before:
        bound = tuple_(*decode_cursor(before, len(key), key))
        stmt = stmt.where(cols > bound if descending else cols < bound)
    forward_desc = descending != backwards
    stmt = stmt.add_columns(*key).order_by(*[(c.desc() if forward_desc else c.asc()) for c in key]).limit(limit + 1)
    result, more = cut_page((await session.execute(stmt)).all(), limit, backwards)
    width = len(key)
    rows = [(r[0] if scalars else tuple(r[:-width])) for r in result]
    cursors = [encode_cursor(tuple(r[-width:])) for r in result]
    return window_page(rows, cursors, more, backwards=backwards, after=after, before=before, count=count)
