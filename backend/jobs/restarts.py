"""How a job's run starts again after a restart of the backend: from the job's resume point
when it has a usable one (`resume_points.py`), else from step 1.

What a job trains again from is found once, on the event loop (`find_restart`: the steps its
events already report and its usable point), by the engine when it re-queues or resumes the
job, or by the job's start when the engine did not; `start_run` then starts from that point.

A point the run cannot read (a damaged file, a state of another run) is no reason to fail
the job: it starts over, and the event the engine records says why. Either way the job's
folders are left holding only what the chosen start needs.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from ..storage.store import Store
from ..trainers.base import StepMetrics, Trainer, TrainingFailure, TrainingRun, TrainingSpec, remove_weights
from .recorded_steps import recorded_metrics
from .resume_points import ResumePoint, latest_point, remove_points, usable_point


@dataclass(frozen=True, slots=True)
class Restart:
    reported: dict[int, StepMetrics]  # the steps the job's events report, by step number
    point: ResumePoint | None  # the usable resume point; None: from step 1


def find_restart(store: Store, points: Path, job_id: str) -> Restart:
    """Read the job's recorded steps (once) and choose its usable resume point in `points`,
    the folder of its resume point (event loop only)."""
    reported = recorded_metrics(store, job_id)
    return Restart(reported, usable_point(latest_point(points), max(reported, default=0)))


@dataclass(frozen=True, slots=True)
class RunStart:
    run: TrainingRun
    point: ResumePoint | None  # where it continues from; None: from step 1
    failure: str | None  # why the job's resume point could not be used


def start_run(trainer: Trainer, spec: TrainingSpec, points: Path, job_dir: Path, point: ResumePoint | None) -> RunStart:
    """Start the job's run (executor thread). `points`: the folder of its resume point;
    `job_dir`: its epoch snapshots; `point`: the usable point `find_restart` chose, if any."""
    failure = None
    if point is not None:
        try:
            run = trainer.start(dataclasses.replace(spec, resume_from=point.run_state))
        except (TrainingFailure, ValueError, OSError) as exc:  # a point it cannot read
            reason = getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"
        else:
            if run.total_steps == point.total_steps:
                remove_points(points, keep=point.run_state.parent)
                _keep_only(job_dir, {str(saved.get("name")) for saved in point.snapshots})
                return RunStart(run, point, None)
            run.close()
            reason = f"it was saved for a run of {point.total_steps} steps, this one has {run.total_steps}"
        failure = (
            f"Could not resume from the checkpoint at step {point.step} ({reason}); training starts again from step 1"
        )
    remove_points(points)
    _keep_only(job_dir, set())  # epoch snapshots of the run that is gone
    return RunStart(trainer.start(spec), None, failure)


def _keep_only(folder: Path, names: set[str]) -> None:
    """Remove what `folder` holds but `names` (snapshots the run will write again, or a lost run's)."""
    if folder.is_dir():
        for path in folder.iterdir():
            if path.name not in names:
                remove_weights(path)
