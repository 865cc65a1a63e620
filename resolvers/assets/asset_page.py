"""The asset list's one statement, as SQL text built per query shape (cached), run as driver SQL.

The list is the hottest read of the API: building and compiling a SQLAlchemy statement per request cost more
CPU (~2 ms) than Postgres spends answering it. The shape (ordering, direction, which filters, visibility, which
cursors) picks a cached SQL string; values travel as $n parameters. Keyset semantics are those of
resolvers/pagination.py (same cursor format, same page flags).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from decimal import Decimal
from functools import lru_cache
from typing import Any

from core.errors import BadUserInput
from models.assets import AssetStatus, AssetType
from resolvers.pagination import Page, check_window, decode_cursor, encode_cursor

COLUMNS = (
    "id",
    "issuer_id",
    "name",
    "type::text",
    "status::text",
    "description",
    "jurisdiction",
    "currency",
    "attributes::text",
    "review_reason",
    "latest_valuation_id",
    "created_at",
    "updated_at",
)
ORDER_COLUMN = {
    "CREATED": ("created_at", datetime),
    "NAME": ("name", str),
    "VALUATION": ("latest_valuation_amount", Decimal),
}
_STATUS = {s.value: s for s in AssetStatus}
_TYPE = {t.value: t for t in AssetType}


@lru_cache(maxsize=256)
def page_sql(
    column: str, descending: bool, backwards: bool, filters: tuple[str, ...], visibility: str, after: bool, before: bool
) -> str:
    """SQL for one shape; parameters follow the order: filters, visibility, after, before, limit."""
    where: list[str] = []
    n = 0

    def p(cast: str = "") -> str:
        nonlocal n
        n += 1
        return f"${n}{cast}"

    for name in filters:
        if name == "status":
            where.append(f"status = {p('::asset_status')}")
        elif name == "type":
            where.append(f"type = {p('::asset_type')}")
        elif name == "issuer_id":
            where.append(f"issuer_id = {p('::uuid')}")
        elif name == "jurisdiction":
            where.append(f"jurisdiction = {p()}")
        elif name == "chain_id":
            where.append(f"EXISTS (SELECT 1 FROM tokens t WHERE t.asset_id = assets.id AND t.chain_id = {p('::int')})")
        elif name == "search":
            where.append(f"name ILIKE {p()} ESCAPE '\\'")
    if visibility == "public":
        where.append(f"status = ANY({p('::asset_status[]')})")
    elif visibility == "public_or_own":
        where.append(f"(status = ANY({p('::asset_status[]')}) OR issuer_id = {p('::uuid')})")
    if after:
        where.append(f"({column}, id) {'<' if descending else '>'} ({p()}, {p('::uuid')})")
    if before:
        where.append(f"({column}, id) {'>' if descending else '<'} ({p()}, {p('::uuid')})")
    direction = "DESC" if descending != backwards else "ASC"
    return (
        f"SELECT {', '.join(COLUMNS)}, {column} FROM assets"
        + (f" WHERE {' AND '.join(where)}" if where else "")
        + f" ORDER BY {column} {direction}, id {direction} LIMIT {p('::int')}"
    )


def _bound(cursor: str, kind: type) -> list[Any]:
    values = decode_cursor(cursor, 2)
    if not isinstance(values[0], kind) or not isinstance(values[1], uuid.UUID):
        raise BadUserInput("cursor does not belong to this ordering", field="cursor")
    return values


async def fetch_page(
    fetch: Callable[..., Awaitable[Sequence[Any]]],
    *,
    order: str,
    descending: bool,
    filters: dict[str, Any],
    visibility: str,
    visible_statuses: list[str],
    viewer_id: uuid.UUID | None,
    first: int | None,
    after: str | None,
    last: int | None,
    before: str | None,
    make_row: Any,
) -> Page[Any]:
    """`filters` in a stable key order with values already validated; `make_row(values)` builds one row;
    `fetch(sql, *params)` runs the statement (Context.fetch_all)."""
    limit, backwards = check_window(first, last)
    column, kind = ORDER_COLUMN[order]
    params: list[Any] = list(filters.values())
    if visibility != "all":
        params.append(visible_statuses)
    if visibility == "public_or_own":
        params.append(viewer_id)
    if after:
        params += _bound(after, kind)
    if before:
        params += _bound(before, kind)
    params.append(limit + 1)
    sql = page_sql(column, descending, backwards, tuple(filters), visibility, bool(after), bool(before))
    result = await fetch(sql, *params)
    more = len(result) > limit
    result = result[:limit]
    if backwards:
        result = result[::-1]
    rows, cursors = [], []
    for r in result:
        attributes = r[8]
        rows.append(
            make_row(
                r[0],
                r[1],
                r[2],
                _TYPE[r[3]],
                _STATUS[r[4]],
                r[5],
                r[6],
                r[7],
                json.loads(attributes) if isinstance(attributes, str) else attributes,
                r[9],
                r[10],
                r[11],
                r[12],
            )
        )
        cursors.append(encode_cursor((r[13], r[0])))
    return Page(
        rows,
        cursors,
        has_next_page=more if not backwards else bool(before),
        has_previous_page=more if backwards else bool(after),
    )
