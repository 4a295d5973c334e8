"""Plain-text descriptions of jobs, shared by both front ends (the headless CLI and the TUI).

Everything here returns `str` and imports neither Textual nor rich, so the CLI can print
them without loading a UI. Values taken from the API are returned as they are: each front
end makes them safe for its own output (the CLI strips terminal controls when printing, the
TUI wraps them in literal `Text`).
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from .records import Job


def byte_size(count: float) -> str:
    """Bytes as people read them: `512 B`, `28.8 KB`, `64.0 MB`, `1.2 GB` (units of 1024)."""
    if count < 1024:
        return f"{count:,.0f} B"
    for unit in ("KB", "MB", "GB", "TB"):
        count /= 1024
        if count < 1024 or unit == "TB":
            break
    return f"{count:,.1f} {unit}"


def duration_text(seconds: float | None, *, compact: bool = False) -> str:
    """A wait as people read it: `45 s`, `3 min 05 s`, `2 h 10 min`; `compact` for table cells
    and one-line summaries: `45s`, `12m`, `1h05m`, `2d03h` (minutes hold still for a minute,
    so a live table changes a cell once a minute, not every tick). `-` when unknown."""
    if seconds is None or seconds < 0 or math.isnan(seconds):
        return "-"
    whole = int(seconds) if compact else max(0, int(round(seconds)))
    if whole < 60:
        return f"{whole}s" if compact else f"{whole} s"
    minutes, rest = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes}m" if compact else f"{minutes} min {rest:02d} s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24 or not compact:
        return f"{hours}h{minutes:02d}m" if compact else f"{hours} h {minutes:02d} min"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours:02d}h"


def eta_text(seconds: float | None) -> str:
    """A time left, compact and rounded up to the unit shown: 1 min 59 s left reads `2m`,
    never `1m` (a wait that says less than it is, is the one people complain about)."""
    if seconds is None or seconds < 0 or math.isnan(seconds):
        return "-"
    unit = 1 if seconds < 60 else 60 if seconds < 24 * 3600 else 3600
    return duration_text(math.ceil(seconds / unit) * unit, compact=True)


def local_time(timestamp: int | None, *, seconds: bool = False) -> str:
    """A Unix timestamp in the user's local time; '-' when unknown."""
    if not timestamp:
        return "-"
    fmt = "%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M"
    return datetime.fromtimestamp(timestamp).strftime(fmt)


def short_time(timestamp: int | None) -> str:
    """Compact local time for tables: 'Nov 22 14:03'."""
    if not timestamp:
        return "-"
    return datetime.fromtimestamp(timestamp).strftime("%b %d %H:%M")


HYPER_NAMES = {"n_epochs": "epochs", "batch_size": "batch", "learning_rate_multiplier": "lr×", "beta": "β"}


def hyperparameters_text(hyper: dict[str, Any]) -> str:
    """`epochs=3 batch=1 lr×=1.0` (known names shortened, unknown ones kept)."""
    return " ".join(f"{HYPER_NAMES.get(key, key)}={value}" for key, value in hyper.items()) or "-"


def finished_text(job: Job) -> str:
    if job.finished_at:
        return local_time(job.finished_at)
    if job.estimated_finish and not job.is_terminal:
        return f"~{local_time(job.estimated_finish)} (estimated)"
    return "-"


def job_fields(job: Job) -> list[tuple[str, str]]:
    """A job's labelled fields, as plain (label, untrusted value) pairs."""
    error = "-"
    if job.error_code or job.error_message:
        error = f"{job.error_code or 'error'}: {job.error_message or ''}".rstrip(": ")
    return [
        ("id", job.id),
        ("status", job.status),
        ("model", job.model or "-"),
        ("method", job.method_label),
        ("created", local_time(job.created_at)),
        ("finished", finished_text(job)),
        ("tokens", f"{job.trained_tokens:,}" if job.trained_tokens is not None else "-"),
        ("hyperparams", hyperparameters_text(job.hyperparameters)),
        ("fine-tuned", job.fine_tuned_model or "-"),
        ("error", error),
    ]
