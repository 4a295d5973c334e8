"""The training steps a job has already reported: its metric events in the store.

A job that trains again after a restart re-runs steps it may have reported before the
crash (from its resume point, or from step 1 without one). Clients keep events by id, so a
step reported twice would show twice forever; the engine reports each step once and, for
the result file, uses the values it reported then.
"""

from __future__ import annotations

from typing import Any

from ..storage.store import Store
from ..trainers.base import LOSS_FIELDS, StepMetrics

PAGE = 5000  # events read per query


def recorded_metrics(store: Store, job_id: str) -> dict[int, StepMetrics]:
    """Every step the job's metric events report, by step number (event loop only)."""
    found: dict[int, StepMetrics] = {}
    after = None
    while True:
        page = store.list_events(job_id, after, PAGE)  # newest first: a step reported twice keeps its latest
        for event in page.items:
            if event.get("type") == "metrics" and isinstance(event.get("data"), dict):
                metrics = metrics_from_event(event["data"])
                if metrics is not None:
                    found.setdefault(metrics.step, metrics)
        if not page.has_more or not page.items:
            return found
        after = page.items[-1]["id"]


def metrics_from_event(data: dict[str, Any]) -> StepMetrics | None:
    """A metric event's `data` back as `StepMetrics` (what the result file needs of it)."""
    try:
        step, total = int(data["step"]), int(data["total_steps"])
    except (KeyError, TypeError, ValueError):
        return None
    extra = {k: v for k, v in data.items() if k not in LOSS_FIELDS and k not in ("step", "total_steps")}
    return StepMetrics(step=step, total_steps=total, extra=extra, **{k: data.get(k) for k in LOSS_FIELDS})
