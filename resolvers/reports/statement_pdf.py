"""The investor statement as PDF (fpdf2): A4, DejaVu Sans when the system has it (any script), else the core
Helvetica font with text outside Latin-1 replaced by '?'. Imported only when a PDF is asked for
(resolvers/reports/exports.statement_pdf)."""

from __future__ import annotations

import os
import unicodedata
from collections.abc import Sequence
from typing import Any

from fpdf import FPDF

from resolvers.reports.exports import _day, cell
from resolvers.reports.statements import Statement

UNICODE_FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
UNICODE_FONT_BOLD = "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"


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
        return (
            "".join(ch for ch in text if not unicodedata.combining(ch)).encode("latin-1", "replace").decode("latin-1")
        )

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
        with self.table(
            col_widths=tuple(widths), text_align="LEFT", line_height=4.5, first_row_as_headings=True, width=sum(widths)
        ) as table:
            table.row([self.text_of(h) for h in header])
            for r in rows:
                table.row([self.text_of(cell(v)) for v in r])


def render(s: Statement) -> bytes:
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
    pdf.grid(
        ["Currency", "Opening", "Credits", "Debits", "Closing"],
        [[c.currency, c.opening, c.credits, c.debits, c.closing] for c in s.cash],
        [25, 40, 40, 40, 40],
    )
    pdf.heading("Cash movements")
    pdf.grid(
        ["Date", "Currency", "Kind", "Amount", "Balance", "Reference"],
        [[_day(m.at), m.currency, m.kind, m.amount, m.balance_after, m.reference] for m in s.movements],
        [30, 17, 20, 30, 30, 63],
    )
    pdf.heading("Trades")
    pdf.grid(
        ["Date", "Market", "Side", "Quantity", "Price", "Notional", "Fee", "Settlement"],
        [[_day(t.at), t.market, t.side, t.quantity, t.price, t.notional, t.fee, t.settlement] for t in s.trades],
        [30, 28, 12, 24, 24, 26, 22, 24],
    )
    pdf.heading("Fees")
    pdf.grid(["Currency", "Trading fees", "Trades"], [[f.currency, f.amount, f.trades] for f in s.fees], [25, 40, 20])
    pdf.heading("Holdings")
    pdf.grid(
        ["Token", "Chain", "Address", "Start", "End"],
        [[h.symbol, h.chain_id, h.token, h.start, h.end] for h in s.holdings],
        [22, 14, 84, 35, 35],
    )
    return bytes(pdf.output())
