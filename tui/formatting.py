"""Small pure helpers that turn core records into rich `Text` for the screens (no widgets here).

The plain-text descriptions both front ends share (times, hyperparameters, job fields) live
in `tunedeck.core.describe`, which the headless CLI uses without loading rich.

Every status, marker and series differs by more than its colour (a glyph, a word, bold or
reverse), so the screens read the same under `NO_COLOR=1`.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from rich.cells import cell_len
from rich.text import Text

from tunedeck.core.describe import duration_text

from .safe_text import clean, one_line

if TYPE_CHECKING:  # pragma: no cover
    from tunedeck.core.records import JobRow
    from tunedeck.core.watch.overfit import Verdict

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

STATUS_GLYPHS = {
    "succeeded": "✓",
    "failed": "✖",
    "cancelled": "⊘",
    "running": "▶",
    "paused": "‖",
    "validating_files": "◌",
    "queued": "◌",
    "pending": "◌",
}
"""One glyph per kind of status, so the table scans without colour (waits share one)."""

STALE_GLYPH = "?"
"""Replaces the status glyph of a cached row that may have moved on since (offline)."""

BAR_WIDTH = 5


def status_text(status: str) -> Text:
    return one_line(status, STATUS_STYLES.get(status, ""))


def status_glyph(status: str) -> Text:
    return Text(STATUS_GLYPHS.get(status, "·"), style=STATUS_STYLES.get(status, ""), end="")


def shown_fraction(row: JobRow) -> float | None:
    """The fraction the table shows: 1.0 only for a job that succeeded.

    A job whose last step has been reported is not done until it says so (the list can
    still say `running` while the final step is in): such a row shows 99%, never
    `running 100%`. Status and fraction both come from `row`, so they never disagree.
    """
    fraction = row.progress
    if fraction is None:
        return None
    if row.job.status == "succeeded":
        return 1.0
    return min(fraction, 0.99)


def epoch_label(row: JobRow) -> str:
    """`e2/3`: the epoch the step is in, of how many (empty when unknown)."""
    total = row.n_epochs
    if total is None:
        hyper = row.job.hyperparameters.get("n_epochs")
        total = hyper if isinstance(hyper, int) and not isinstance(hyper, bool) else None
    if not total or total < 1:
        return ""
    done = row.epoch
    fraction = shown_fraction(row)
    if done is None and fraction is not None:
        done = fraction * total
    if done is None:
        return ""
    current = total if row.job.status == "succeeded" else min(total, max(1, math.ceil(done)))
    return f"e{current}/{total}"


def progress_text(row: JobRow) -> Text:
    """`███░░  60% e2/3` when the fraction is known, `42/120` or `-` otherwise."""
    fraction = shown_fraction(row)
    epoch = epoch_label(row)
    if fraction is not None:
        done = row.job.status == "succeeded"
        filled = BAR_WIDTH if done else math.floor(fraction * BAR_WIDTH)
        percent = 100 if done else math.floor(fraction * 100)
        style = STATUS_STYLES.get(row.job.status, "cyan")
        text = Text(end="")
        text.append("█" * filled, style=style or "cyan")
        text.append("░" * (BAR_WIDTH - filled), style="dim")
        text.append(f" {percent:>3d}%")
        if epoch:
            text.append(f" {epoch}", style="dim")
        return text
    if row.step:
        return Text(f"{row.step}/{row.total_steps or '?'}", end="")
    return Text("-", style="dim", end="")


def age_text(seconds: float | None) -> str:
    """`3h ago` (`just now` under a minute)."""
    if seconds is None:
        return "age unknown"
    if seconds < 60:
        return "just now"
    shown = duration_text(seconds, compact=True)
    # The coarse unit is enough for an age: 1h05m ago reads as 1h ago.
    head = shown[: next((i + 1 for i, c in enumerate(shown) if c.isalpha()), len(shown))]
    return f"{head} ago"


def tokens_text(tokens: int | float | None, estimate: bool = False) -> str:
    """`812`, `45.2k`, `1.2M` (`~` in front of an estimate; `-` when unknown)."""
    if tokens is None:
        return "-"
    value = float(tokens)
    if value < 1000:
        shown = f"{value:.0f}"
    elif value < 1_000_000:
        shown = f"{value / 1000:.1f}k"
    else:
        shown = f"{value / 1_000_000:.1f}M"
    return f"~{shown}" if estimate else shown


VERDICT_MARKS = {
    "overfitting": ("⚠ overfit", "bold reverse red"),
    "watch": ("~ watch", "bold yellow"),
}
"""The table's overfitting marker: only states that ask for attention show one."""


def verdict_marker(verdict: Verdict | None) -> Text:
    if verdict is None:
        return Text("", end="")
    if verdict.alarm:
        label, style = VERDICT_MARKS["overfitting"]
    else:
        label, style = VERDICT_MARKS.get(verdict.state, ("", ""))
    return Text(label, style=style, end="")


def middle_ellipsis(value: object, width: int) -> str:
    """`value` in at most `width` cells, cut in the middle with `…` (both ends stay readable:
    a fine-tuned model's base is at its head, its suffix and id at its tail)."""
    text = clean(value)
    if cell_len(text) <= width:
        return text
    if width <= 1:
        return "…"[:width]
    keep = width - 1
    head, tail = keep - keep // 2, keep // 2
    out_head = _fit(text, head)
    out_tail = _fit(text[::-1], tail)[::-1]
    return f"{out_head}…{out_tail}"


def _fit(text: str, cells: int) -> str:
    used = 0
    for index, char in enumerate(text):
        used += cell_len(char)
        if used > cells:
            return text[:index]
    return text
