"""The backfill progress display, in-process: the terminal bar and the plain lines for pipes."""

from __future__ import annotations

import io

from rich.console import Console

from cli.indexer_progress import BackfillProgress
from indexer.service import ProgressUpdate


def test_terminal_bar_shows_blocks_events_rates_and_eta() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=160, color_system=None)
    view = BackfillProgress("ethereum 100..1099", console)
    with view.progress:
        view.progress.refresh()  # before the first update: no total yet, must still render
        assert "starting..." in out.getvalue()
        view(ProgressUpdate(1, blocks_done=250, blocks_total=1000, events=5000, elapsed_s=2.0, current_block=349))
        view.progress.refresh()
    text = out.getvalue()
    assert "250/1,000 blocks, 5,000 events" in text
    assert "125 blocks/s" in text and "2,500 events/s" in text
    assert "ETA" in text
    assert view.last.blocks_done == 250


def test_piped_output_prints_a_line_per_interval() -> None:
    out = io.StringIO()
    view = BackfillProgress("bsc 0..99", Console(file=out, force_terminal=False, width=80), line_every_s=3600)
    with view.progress:
        view(ProgressUpdate(56, 10, 100, 1_234_567, 0.5, 9))
        view(ProgressUpdate(56, 20, 100, 2_000_000, 1.0, 19))  # within the interval: not printed
    lines = out.getvalue().splitlines()
    assert lines == ["10/100 blocks, 1,234,567 events in 0.5s (20 blocks/s, 2,469,134 events/s)"]
