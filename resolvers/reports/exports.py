"""Report files: the cap table and the statement as CSV, the statement as PDF (fpdf2, in statement_pdf.py).

CSV: RFC 4180 (csv module, CRLF), UTF-8; amounts in plain decimal notation, never floats; text cells that a
spreadsheet would read as a formula (leading = + - @, tab, CR) are prefixed with a quote (CSV injection), numbers
are written as they are. PDF: A4, DejaVu Sans when the system has it (any script), else the core Helvetica font with
text outside Latin-1 replaced by '?'.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from datetime import datetime
from decimal import Decimal, localcontext
from typing import Any

from resolvers.reports.cap_table import CapTable, IdentityLevel
from resolvers.reports.statements import Statement

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def plain(value: Decimal) -> str:
    """Plain decimal notation without trailing zeros ("300", "0.5", "0")."""
    if not value:
        return "0"
    with localcontext(prec=100):  # the default 28 digits would round Numeric(38, 18) and raw uint256 values
        return format(value.normalize(), "f")


def cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, Decimal):
        return plain(value)
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    text = str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


def to_csv(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow([cell(v) for v in row])
    return buf.getvalue()


# --- cap table ---------------------------------------------------------------------------------------------


def cap_table_columns(table: CapTable) -> list[str]:
    columns = ["holder", "balance_units", "amount", "percent"]
    if table.identity is IdentityLevel.FULL:
        columns += ["user_id", "email"] + (["full_name"] if table.names else []) + ["kyc_country"]
    else:
        columns += ["user_id", "kyc_country"]
    return columns


def cap_table_csv(table: CapTable) -> str:
    columns = cap_table_columns(table)

    def row(r: Any) -> list[Any]:
        values = {
            "holder": r.holder,
            "balance_units": r.balance,
            "amount": r.amount,
            "percent": r.percent,
            "user_id": r.user_id,
            "email": r.email,
            "full_name": r.full_name,
            "kyc_country": r.kyc_country,
        }
        return [values[c] for c in columns]

    return to_csv(columns, (row(r) for r in table.rows))


def cap_table_filename(table: CapTable) -> str:
    return f"cap-table-{table.token.chain_id}-{table.token.address}-block-{table.at_block}.csv"


# --- statement ---------------------------------------------------------------------------------------------

STATEMENT_COLUMNS = [
    "section",
    "date",
    "asset",
    "description",
    "quantity",
    "price",
    "amount",
    "fee",
    "balance",
    "status",
]


def statement_rows(s: Statement) -> list[list[Any]]:
    rows: list[list[Any]] = []
    for c in s.cash:
        rows.append(
            ["cash_opening", s.period_from, c.currency, "opening balance", None, None, None, None, c.opening, None]
        )
    for m in s.movements:
        rows.append(
            ["cash", m.at, m.currency, f"{m.kind} {m.reference}", None, None, m.amount, None, m.balance_after, None]
        )
    for c in s.cash:
        rows.append(
            ["cash_closing", s.period_to, c.currency, "closing balance", None, None, None, None, c.closing, None]
        )
    for t in s.trades:
        rows.append(
            [
                "trade",
                t.at,
                t.market,
                f"{t.side} trade {t.trade_id}",
                t.quantity,
                t.price,
                t.notional,
                t.fee,
                None,
                t.settlement,
            ]
        )
    for f in s.fees:
        rows.append(
            [
                "fees",
                s.period_to,
                f.currency,
                f"trading fees ({f.trades} trades)",
                None,
                None,
                f.amount,
                None,
                None,
                None,
            ]
        )
    for h in s.holdings:
        asset = f"{h.symbol or h.token} (chain {h.chain_id} {h.token})"
        rows.append(["holding_start", s.period_from, asset, "balance at start", h.start, None, None, None, None, None])
        rows.append(["holding_end", s.period_to, asset, "balance at end", h.end, None, None, None, None, None])
    return rows


def statement_csv(s: Statement) -> str:
    return to_csv(STATEMENT_COLUMNS, statement_rows(s))


def statement_filename(s: Statement, ext: str) -> str:
    return f"statement-{s.user_id}-{s.period_from:%Y%m%d}-{s.period_to:%Y%m%d}.{ext}"


def _day(value: datetime) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if value.utcoffset() is not None else value.isoformat()


def statement_pdf(s: Statement) -> bytes:
    """The statement as PDF. fpdf2 (and Pillow, fontTools under it) is imported on the first PDF, not with the API:
    it cost every API process ~0.7 s of start-up and ~15 MB for a download few ever ask for."""
    from resolvers.reports.statement_pdf import render

    return render(s)
