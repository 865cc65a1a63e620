"""The asset list's one statement, as SQL text built per query shape (cached), run as driver SQL.

The list is the hottest read of the API: building and compiling a SQLAlchemy statement per request cost more
CPU (~2 ms) than Postgres spends answering it. The shape (ordering, direction, which filters, visibility, which
cursors, which relations) picks a cached SQL string; values travel as $n parameters. Keyset semantics are those
of resolvers/pagination.py (same cursor format, same page flags).

Relations the query selects (the issuer, the latest valuation, the tokens) come in the same statement: the page
is a subquery, joined to users and valuations by primary key and given its tokens as an array of records, so a
page with all three is one round trip instead of four (each statement cost ~0.3 ms of Python CPU in the driver
and the event loop, and Postgres its own executor start-up). The rows are those the DataLoaders of
resolvers/assets/loaders.py return for the same keys, in the same order, from the same snapshot.
"""

from __future__ import annotations

import base64
import json
import re
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from decimal import Decimal
from functools import lru_cache
from typing import Any

import orjson

from core.errors import BadUserInput
from models.assets import AssetStatus, AssetType
from resolvers.assets.token_reads import TOKEN_COLUMNS
from resolvers.pagination import Page, check_window, cut_page, decode_cursor, encode_cursor, window_page

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
# relation name -> (select-list SQL over the page subquery `p`, join SQL or "")
ISSUER_COLUMNS = ("id", "email")
VALUATION_COLUMNS = ("id", "asset_id", "amount", "currency", "method", "as_of", "source", "created_at")
# TOKENS_SQL's columns (token_row reads them in this order); the enum as text (asyncpg decodes no enum inside an
# anonymous record)
TOKEN_FIELDS = tuple(f"{c.key}::text" if c.key == "kind" else c.key for c in TOKEN_COLUMNS)
RELATIONS: dict[str, tuple[str, str]] = {
    "issuer": (", ".join(f"u.{c}" for c in ISSUER_COLUMNS), "LEFT JOIN users u ON u.id = p.issuer_id"),
    "latest": (
        ", ".join(f"v.{c}" for c in VALUATION_COLUMNS),
        "LEFT JOIN valuations v ON v.id = p.latest_valuation_id",
    ),
    "tokens": (
        "ARRAY(SELECT ROW("
        + ", ".join(f"t.{c}" for c in TOKEN_FIELDS)
        + ") FROM tokens t WHERE t.asset_id = p.id ORDER BY t.created_at, t.id)",
        "",
    ),
}
RELATION_WIDTH = {"issuer": len(ISSUER_COLUMNS), "latest": len(VALUATION_COLUMNS), "tokens": 1}
_STATUS = {s.value: s for s in AssetStatus}
_TYPE = {t.value: t for t in AssetType}


@lru_cache(maxsize=256)
def page_sql(
    column: str,
    descending: bool,
    backwards: bool,
    filters: tuple[str, ...],
    visibility: str,
    after: bool,
    before: bool,
    relations: tuple[str, ...] = (),
) -> str:
    """SQL for one shape; parameters follow the order: filters, visibility, after, before, limit. Each relation
    (RELATIONS, in the order given) adds its columns after the page's."""
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
    page = (
        f"SELECT {', '.join(COLUMNS)}, {column} AS sort_key FROM assets"
        + (f" WHERE {' AND '.join(where)}" if where else "")
        + f" ORDER BY {column} {direction}, id {direction} LIMIT {p('::int')}"
    )
    if not relations:
        return page
    # the page first (its plan is the list's own), then the relations of its rows only; the outer ORDER BY keeps
    # the page's order (a join does not promise it)
    names = [c.split("::")[0] for c in COLUMNS]
    return (
        f"SELECT {', '.join('p.' + n for n in names)}, p.sort_key, "
        + ", ".join(RELATIONS[r][0] for r in relations)
        + f" FROM ({page}) p "
        + " ".join(RELATIONS[r][1] for r in relations if RELATIONS[r][1])
        + f" ORDER BY p.sort_key {direction}, p.id {direction}"
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
    relations: tuple[str, ...] = (),
) -> Page[Any]:
    """`filters` in a stable key order with values already validated; `make_row(values)` builds one row;
    `fetch(sql, *params)` runs the statement (Context.fetch_all). With `relations` (names of RELATIONS), each
    row is `(row, {relation: raw values})`: the issuer's and latest valuation's columns as a tuple (None when
    there is none), the tokens as a list of tuples."""
    limit, backwards, column, params = _window(
        order, filters, visibility, visible_statuses, viewer_id, first, after, last, before
    )
    sql = page_sql(column, descending, backwards, tuple(filters), visibility, bool(after), bool(before), relations)
    result, more = cut_page(await fetch(sql, *params), limit, backwards)
    rows, cursors = [], []
    for r in result:
        attributes = r[8]
        row = make_row(
            r[0],
            r[1],
            r[2],
            _TYPE[r[3]],
            _STATUS[r[4]],
            r[5],
            r[6],
            r[7],
            _json(attributes) if isinstance(attributes, str) else attributes,
            r[9],
            r[10],
            r[11],
            r[12],
        )
        if relations:
            row = (row, _related(r, relations))
        rows.append(row)
        cursors.append(_cursor(r[13], r[0]))
    return window_page(rows, cursors, more, backwards=backwards, after=after, before=before)


@lru_cache(maxsize=256)
def wrap_sql(page: str, descending: bool, nodes: tuple[str, ...], joins: tuple[str, ...]) -> str:
    """The page statement (page_sql's, without relations) with each row's id, sort key and the JSON texts of the
    `nodes` expressions over the page `p` and the `joins`, in the list's order."""
    select = ", ".join(("p.id", "p.sort_key", *(f"({n})::text" for n in nodes)))
    direction = "DESC" if descending else "ASC"
    return f"SELECT {select} FROM ({page}) p {' '.join(joins)} ORDER BY p.sort_key {direction}, p.id {direction}"


def _window(
    order: str,
    filters: dict[str, Any],
    visibility: str,
    visible_statuses: list[str],
    viewer_id: uuid.UUID | None,
    first: int | None,
    after: str | None,
    last: int | None,
    before: str | None,
) -> tuple[int, bool, str, list[Any]]:
    """(limit, backwards, sort column, statement parameters) of a page; BAD_USER_INPUT for a bad window or cursor."""
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
    return limit, backwards, column, params


async def fetch_json_page(
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
    nodes: tuple[str, ...],
    joins: tuple[str, ...],
) -> Page[Any]:
    """fetch_page's page (the same statement around the same parameters, the same rows, cursors and flags) with
    each row a record of (id, sort key, the JSON texts of the `nodes` SQL expressions over the page `p` and the
    `joins`: resolvers/assets/page_json.py)."""
    limit, backwards, column, params = _window(
        order, filters, visibility, visible_statuses, viewer_id, first, after, last, before
    )
    page = page_sql(column, descending, backwards, tuple(filters), visibility, bool(after), bool(before))
    result, more = cut_page(
        await fetch(wrap_sql(page, descending != backwards, nodes, joins), *params), limit, backwards
    )
    cursors = [_cursor(r[1], r[0]) for r in result]
    return window_page(result, cursors, more, backwards=backwards, after=after, before=before)


def _cursor(key: Any, id_: uuid.UUID) -> str:
    """encode_cursor((key, id_)), the same text, for the keys of this list: json.dumps of a list of tagged values
    cost more than the rest of a row's handling. Decimal, datetime and UUID text needs no JSON escaping; other
    keys (names, NULL) take encode_cursor."""
    kind = type(key)
    if kind is Decimal:
        head = '[["dec", "' + str(key)
    elif kind is datetime:
        head = '[["dt", "' + key.isoformat()
    else:
        return encode_cursor((key, id_))
    text = head + '"], ["u", "' + str(id_) + '"]]'
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def _json(text: str) -> Any:
    """A jsonb column's text, as json.loads reads it; orjson parses ~3x faster but reads integers beyond 64 bits
    as floats, so text with a run of 19 digits (or anything orjson refuses) goes to json."""
    if _LONG_DIGITS.search(text) is None:
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:
            pass
    return json.loads(text)


_LONG_DIGITS = re.compile(r"[0-9]{19}")


def _related(record: Any, relations: tuple[str, ...]) -> dict[str, Any]:
    related: dict[str, Any] = {}
    at = len(COLUMNS) + 1  # after the page's columns and its sort key
    for name in relations:
        width = RELATION_WIDTH[name]
        if name == "tokens":  # the driver decodes an anonymous record as a tuple
            related[name] = record[at]
        else:  # a LEFT JOIN that found nothing: None
            related[name] = None if record[at] is None else record[at : at + width]
        at += width
    return related
