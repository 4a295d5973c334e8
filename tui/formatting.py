"""Small pure helpers that turn core records into rich `Text` for the screens (no widgets here).

The plain-text descriptions both front ends share (times, hyperparameters, job fields) live
in `tunedeck.core.describe`, which the headless CLI uses without loading rich.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.text import Text

from .safe_text import one_line

if TYPE_CHECKING:  # pragma: no cover
    from tunedeck.core.records import JobRow

STATUS_STYLES = {
    "succeeded": "bold green",
    "failed": "bold red",
    "cancelled": "yellow",
    "running": "bold cyan",
    "validating_files": "magenta",
    "queued": "magenta",
    "paused": "yellow",
    "pending": "magenta",
}

BAR_WIDTH = 5


def status_text(status: str) -> Text:
    return one_line(status, STATUS_STYLES.get(status, ""))


def progress_text(row: JobRow) -> Text:
    """`████░ 75%` when the fraction is known, `42/120` or `-` otherwise."""
    fraction = row.progress
    if fraction is not None:
        filled = round(fraction * BAR_WIDTH)
        style = STATUS_STYLES.get(row.job.status, "cyan")
        text = Text(end="")
        text.append("█" * filled, style=style or "cyan")
        text.append("░" * (BAR_WIDTH - filled), style="dim")
        text.append(f" {fraction:>4.0%}")
        return text
    if row.step:
        return Text(f"{row.step}/{row.total_steps or '?'}", end="")
    return Text("-", style="dim", end="")
