"""The progress display of `rwa index backfill`: a rich bar on a terminal, a plain line every few seconds
otherwise (CI logs, pipes), both from the pipeline's ProgressUpdate (blocks done/total, events, elapsed)."""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, ProgressColumn, Task, TextColumn, TimeRemainingColumn
from rich.text import Text


class _RateColumn(ProgressColumn):
    """blocks/s or events/s from the pipeline's own counters and elapsed time."""

    def __init__(self, field: str, unit: str) -> None:
        super().__init__()
        self.field, self.unit = field, unit

    def render(self, task: Task) -> Text:
        elapsed = task.fields.get("elapsed") or 0.0
        value = task.completed if self.field == "blocks" else task.fields.get("events", 0)
        rate = value / elapsed if elapsed > 0 else 0.0
        return Text(f"{rate:,.0f} {self.unit}/s", style="progress.data.speed")


class _CountsColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        if task.total is None:  # before the first batch: the pipeline has not sized the work yet
            return Text("starting...")
        return Text(f"{task.completed:,.0f}/{task.total:,.0f} blocks, {task.fields.get('events', 0):,} events")


class BackfillProgress:
    """Call it with each ProgressUpdate; use `.progress` as a context manager around the backfill."""

    def __init__(self, label: str, console: Console, line_every_s: float = 2.0) -> None:
        self.console = console
        self.last: Any = None
        self.live = console.is_terminal
        self.line_every_s = line_every_s
        self._printed = float("-inf")
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            _CountsColumn(),
            _RateColumn("blocks", "blocks"),
            _RateColumn("events", "events"),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=console,
            disable=not self.live,
        )
        self.task = self.progress.add_task(label, total=None, events=0, elapsed=0.0)

    def __call__(self, update: Any) -> None:
        self.last = update
        self.progress.update(
            self.task,
            completed=update.blocks_done,
            total=update.blocks_total,
            events=update.events,
            elapsed=update.elapsed_s,
        )
        now = time.monotonic()
        if not self.live and now - self._printed >= self.line_every_s:
            self._printed = now
            self.console.print(self.line(update), soft_wrap=True, highlight=False)

    @staticmethod
    def line(update: Any) -> str:
        elapsed = max(update.elapsed_s, 1e-9)
        return (
            f"{update.blocks_done:,}/{update.blocks_total:,} blocks, {update.events:,} events in "
            f"{update.elapsed_s:.1f}s ({update.blocks_done / elapsed:,.0f} blocks/s, "
            f"{update.events / elapsed:,.0f} events/s)"
        )
