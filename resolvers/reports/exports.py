"""Report files: the cap table and the statement as CSV, the statement as PDF (fpdf2).

CSV: RFC 4180 (csv module, CRLF), UTF-8; amounts in plain decimal notation, never floats; text cells that a
spreadsheet would read as a formula (leading = + - @, tab, CR) are prefixed with a quote (CSV injection), numbers
are written as they are. PDF: A4, DejaVu Sans when the system has it (any script), else the core Helvetica font with
text outside Latin-1 replaced by '?'.
"""

from __future__ import annotations

import csv
import io
import os
import unicodedata
from collections.abc import Iterable, Sequence
from datetime import datetime
from decimal import Decimal, localcontext
from typing import Any

from fpdf import FPDF

from resolvers.reports.cap_table import CapTable, IdentityLevel
from resolvers.reports.statements import Statement

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
UNICODE_FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
UNICODE_FONT_BOLD = "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"


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
        values = {"holder": r.holder, "balance_units": r.balance, "amount": r.amount, "percent": r.percent,
                  "user_id": r.user_id, "email": r.email, "full_name": r.full_name, "kyc_country": r.kyc_country}
        return [values[c] for c in columns]

    return to_csv(columns, (row(r) for r in table.rows))


def cap_table_filename(table: CapTable) -> str:
    return f"cap-table-{table.token.chain_id}-{table.token.address}-block-{table.at_block}.csv"


# --- statement ---------------------------------------------------------------------------------------------

STATEMENT_COLUMNS = ["section", "date", "asset", "description", "quantity", "price", "amount", "fee", "balance",
                     "status"]


def statement_rows(s: Statement) -> list[list[Any]]:
    rows: list[list[Any]] = []
    for c in s.cash:
        rows.append(["cash_opening", s.period_from, c.currency, "opening balance", None, None, None, None, c.opening,
                     None])
    for m in s.movements:
        rows.append(["cash", m.at, m.currency, f"{m.kind} {m.reference}", None, None, m.amount, None, m.balance_after,
                     None])
    for c in s.cash:
        rows.append(["cash_closing", s.period_to, c.currency, "closing balance", None, None, None, None, c.closing,
                     None])
    for t in s.trades:
        rows.append(["trade", t.at, t.market, f"{t.side} trade {t.trade_id}", t.quantity, t.price, t.notional, t.fee,
                     None, t.settlement])
    for f in s.fees:
        rows.append(["fees", s.period_to, f.currency, f"trading fees ({f.trades} trades)", None, None, f.amount,
                     None, None, None])
    for h in s.holdings:
        asset = f"{h.symbol or h.token} (chain {h.chain_id} {h.token})"
        rows.append(["holding_start", s.period_from, asset, "balance at start", h.start, None, None, None, None, None])
        rows.append(["holding_end", s.period_to, asset, "balance at end", h.end, None, None, None, None, None])
    return rows


def statement_csv(s: Statement) -> str:
    return to_csv(STATEMENT_COLUMNS, statement_rows(s))


def statement_filename(s: Statement, ext: str) -> str:
    return f"statement-{s.user_id}-{s.period_from:%Y%m%d}-{s.period_to:%Y%m%d}.{ext}"


class _Pdf(FPDF):
    def __init__(self) -> None:
        super().__init__(orientation="P", unit="mm", format="A4")
        self.unicode = os.path.exists(UNICODE_FONT) and os.path.exists(UNICODE_FONT_BOLD)
        if self.unicode:
            self.add_font("Body", "", UNICODE_FONT)
            self.add_font("Body", "B", UNICODE_FONT_BOLD)
            self.family = "Body"
        else:
            self.family = "Helvetica"
        self.set_auto_page_break(auto=True, margin=15)

    def text_of(self, value: Any) -> str:
        text = cell(value) if not isinstance(value, str) else value
        if self.unicode:
            return text
        text = unicodedata.normalize("NFKD", text)
        return "".join(ch for ch in text if not unicodedata.combining(ch)).encode("latin-1", "replace").decode(
            "latin-1")

    def footer(self) -> None:
        self.set_y(-12)
        self.set_font(self.family, "", 7)
        self.cell(0, 5, f"page {self.page_no()}/{{nb}}", align="R")

    def heading(self, text: str) -> None:
        self.ln(3)
        self.set_font(self.family, "B", 11)
        self.cell(0, 7, self.text_of(text), new_x="LMARGIN", new_y="NEXT")

    def line_text(self, text: str, size: float = 9) -> None:
        self.set_font(self.family, "", size)
        self.multi_cell(0, 5, self.text_of(text), new_x="LMARGIN", new_y="NEXT")

    def grid(self, header: Sequence[str], rows: Sequence[Sequence[Any]], widths: Sequence[float]) -> None:
        if not rows:
            self.line_text("none")
            return
        self.set_font(self.family, "", 7.5)
        with self.table(col_widths=tuple(widths), text_align="LEFT", line_height=4.5, first_row_as_headings=True,
                        width=sum(widths)) as table:
            table.row([self.text_of(h) for h in header])
            for r in rows:
                table.row([self.text_of(cell(v)) for v in r])


def _day(value: datetime) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if value.utcoffset() is not None else value.isoformat()


def statement_pdf(s: Statement) -> bytes:
    pdf = _Pdf()
    pdf.alias_nb_pages()
    pdf.set_title(f"Statement {s.period_from:%Y-%m-%d} to {s.period_to:%Y-%m-%d}")
    pdf.set_creator("StableRWA")
    pdf.add_page()
    pdf.set_font(pdf.family, "B", 15)
    pdf.cell(0, 9, "Investor statement", new_x="LMARGIN", new_y="NEXT")
    pdf.line_text(f"Investor: {s.full_name + ' - ' if s.full_name else ''}{s.email} (id {s.user_id})")
    pdf.line_text(f"Period: {_day(s.period_from)} to {_day(s.period_to)} (end exclusive)")
    pdf.line_text(f"Generated: {_day(s.generated_at)}")
    if s.wallets:
        pdf.line_text("Wallets: " + ", ".join(s.wallets), size=8)

    pdf.heading("Cash")
    pdf.grid(["Currency", "Opening", "Credits", "Debits", "Closing"],
             [[c.currency, c.opening, c.credits, c.debits, c.closing] for c in s.cash], [25, 40, 40, 40, 40])
    pdf.heading("Cash movements")
    pdf.grid(["Date", "Currency", "Kind", "Amount", "Balance", "Reference"],
             [[_day(m.at), m.currency, m.kind, m.amount, m.balance_after, m.reference] for m in s.movements],
             [30, 17, 20, 30, 30, 63])
    pdf.heading("Trades")
    pdf.grid(["Date", "Market", "Side", "Quantity", "Price", "Notional", "Fee", "Settlement"],
             [[_day(t.at), t.market, t.side, t.quantity, t.price, t.notional, t.fee, t.settlement] for t in s.trades],
             [30, 28, 12, 24, 24, 26, 22, 24])
    pdf.heading("Fees")
    pdf.grid(["Currency", "Trading fees", "Trades"], [[f.currency, f.amount, f.trades] for f in s.fees], [25, 40, 20])
    pdf.heading("Holdings")
    pdf.grid(["Token", "Chain", "Address", "Start", "End"],
             [[h.symbol, h.chain_id, h.token, h.start, h.end] for h in s.holdings], [22, 14, 84, 35, 35])
    return bytes(pdf.output())
