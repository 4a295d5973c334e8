"""Resume points: a running job's whole training state, saved now and then (and at each pause)
so that after a crash, a SIGKILL or a reboot the job continues from the latest one instead
of from step 1.

They live beside the job's pause checkpoints, in `models/paused/<job id>/`:

    resume-step-K/              the latest point; only one is kept per job
        run<suffix>             the run's own state (`TrainingRun.save_state`), a file or a folder
        engine.json             what the engine held at step K: the epoch snapshots kept so far
    .resume-step-K.partial/     a point being written, ignored and cleared if a crash leaves it

A point is written under the partial name, flushed to disk (every file and folder fsynced, so
a power cut cannot leave a renamed folder of empty files), renamed into place, and only then
are the older points removed: at every instant the newest complete point is usable.

The engine writes a point only after the metric events of every step up to it are committed,
so a point never runs ahead of the job's events: a point beyond them means the store lost
its last writes (a power cut) and the point is not used.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..storage.private import private_dir, tighten_tree
from ..trainers.base import TrainingRun, remove_weights

POINT_PREFIX = "resume-step-"
PARTIAL_SUFFIX = ".partial"
RUN_STATE = "run"
ENGINE_STATE = "engine.json"
# A point at most every MIN_SECONDS of training, and never so often that writing points would
# take more than MAX_OVERHEAD of the time (a whole model's optimiser state can take seconds to
# write): a crash costs at most a few seconds of training, and training barely notices.
MIN_SECONDS = 5.0
MAX_OVERHEAD = 0.02


@dataclass(frozen=True, slots=True)
class ResumePoint:
    step: int
    total_steps: int
    run_state: Path
    snapshots: list[dict[str, Any]]  # {step, created_at, name (in the job's folder), metrics, score}


class Cadence:
    """When the next point is due, on the backend's clock (the test's fake clock in manual time)."""

    def __init__(self, now: float) -> None:
        self._last = now
        self._cost = 0.0

    def due(self, now: float) -> bool:
        elapsed = now - self._last
        return elapsed < 0 or elapsed >= max(MIN_SECONDS, self._cost / MAX_OVERHEAD)  # < 0: the clock went back

    def written(self, now: float, cost_seconds: float) -> None:
        self._last, self._cost = now, cost_seconds


def write_point(folder: Path, run: TrainingRun, step: int, engine_state: dict[str, Any]) -> float:
    """Write the run's state at `step` as the job's only point (executor thread); returns the
    seconds it took."""
    started = time.monotonic()
    private_dir(folder)
    partial = folder / f".{POINT_PREFIX}{step}{PARTIAL_SUFFIX}"
    remove_weights(partial)
    private_dir(partial)
    run_state = f"{RUN_STATE}{run.checkpoint_suffix}"
    run.save_state(partial / run_state)
    state = {"step": step, "run_state": run_state, **engine_state}
    (partial / ENGINE_STATE).write_text(json.dumps(state), encoding="utf-8")
    tighten_tree(partial)
    _fsync_tree(partial)
    final = folder / f"{POINT_PREFIX}{step}"
    remove_weights(final)  # one from an earlier run at this very step; older points stay until the rename
    partial.rename(final)
    _fsync(folder)
    remove_points(folder, keep=final)
    return time.monotonic() - started


def latest_point(folder: Path) -> ResumePoint | None:
    """The newest complete point in `folder`, if any."""
    points = []
    for path in _points(folder):
        point = _read(path)
        if point is not None:
            points.append(point)
    return max(points, key=lambda p: p.step, default=None)


def usable_point(point: ResumePoint | None, reported_through: int) -> ResumePoint | None:
    """`point`, unless it is ahead of the last step the job's events report (the store lost
    writes the point had seen, in a power cut: resuming there would leave a gap) or at the end."""
    if point is None or point.step > reported_through or point.step >= point.total_steps:
        return None
    return point


def remove_points(folder: Path, keep: Path | None = None) -> None:
    """Remove the job's points and leftover partial ones (all but `keep`); pause checkpoints stay."""
    if not folder.is_dir():
        return
    for path in folder.iterdir():
        is_point = path.name.startswith((POINT_PREFIX, f".{POINT_PREFIX}"))
        if is_point and path != keep:
            remove_weights(path)
    if keep is None and not any(folder.iterdir()):
        folder.rmdir()  # nothing was paused there either


def _points(folder: Path) -> Iterable[Path]:
    if not folder.is_dir():
        return []
    return [p for p in folder.iterdir() if p.name.startswith(POINT_PREFIX) and p.is_dir()]


def _read(path: Path) -> ResumePoint | None:
    try:
        state = json.loads((path / ENGINE_STATE).read_text(encoding="utf-8"))
        run_state = path / Path(state["run_state"]).name
        point = ResumePoint(int(state["step"]), int(state["total_steps"]), run_state, list(state["snapshots"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None  # not one this backend wrote whole: ignored
    return point if run_state.exists() else None


def _fsync_tree(root: Path) -> None:
    for folder, _, files in os.walk(root):
        for name in files:
            _fsync(Path(folder) / name)
        _fsync(Path(folder))


def _fsync(path: Path) -> None:
    try:
        descriptor = os.open(path, os.O_RDONLY)
    except OSError:
        if path.is_dir():
            return  # Windows cannot open a folder; NTFS journals the rename itself
        raise
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
