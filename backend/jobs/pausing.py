"""Pausing and resuming a job, as `POST /v1/fine_tuning/jobs/{id}/pause` and `/resume` do.

Pause works on a `running` job only. The engine first takes the job's lock, so a training
trip in flight finishes and is recorded; then the run's weights are saved as a checkpoint
at the current step, published at once as a usable model named
`<final model name>:ckpt-step-N`, and the job becomes `paused`. The `TrainingRun` itself
stays in memory, so resume (`paused -> queued -> running`) carries on from the next step.

A pause also saves the job's resume point (`resume_points.py`), so a restart of the backend,
which loses that memory, does not lose the job's place: resuming then continues from the
pause step. Only a run that cannot save its state (or whose point is gone) starts again
from step 1, and says so in an event; checkpoints published so far stay available.

Pause checkpoints and resume points live in `models/paused/<job id>/`, outside the job's
own folder, which is cleared when a job is cancelled or fails: a published model must keep
its weights.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import objects
from ..errors import ApiError, bad_request
from ..storage.blobs import Blobs
from ..storage.private import private_dir, tighten_tree
from ..trainers.base import TrainingRun, remove_weights
from .jobspec import final_model_name, raise_if_terminal

if TYPE_CHECKING:  # pragma: no cover
    from ..trainers.base import StepMetrics
    from .phases import ActiveJob, Phases

PAUSED_WEIGHTS_DIR = "paused"  # never a job id: those start with "ftjob-"
REQUIRED_STATUS = {"paused": "running", "resumed": "paused"}


def require_status_for(job: dict[str, Any], action: str) -> None:
    """400 unless the job is in the one state `action` ("paused" or "resumed") starts from."""
    raise_if_terminal(job, action)
    needed = REQUIRED_STATUS[action]
    if job["status"] != needed:
        raise bad_request(
            f"Job {job['id']} is {job['status']}; only a {needed} job can be {action}.",
        )


async def pause_running_job(phases: Phases, job: dict[str, Any], active: ActiveJob) -> dict[str, Any]:
    """Checkpoint and pause `job`. The caller holds `active.lock` and has checked it is running."""
    last = active.steps[-1] if active.steps else None
    name = f"{final_model_name(job)}:ckpt-step-{last.step}" if last is not None else None
    # Paused at this step before (then restarted): same seed and data, so the same weights are already out.
    weights = None
    if name is not None and active.run is not None and phases.store.get_model(name) is None:
        weights = paused_weights_path(phases, job["id"], last.step, active.run)
        try:
            await phases.off_loop(_save_weights, active.run, weights)
        except Exception as exc:  # a cancel that ended the worker, or a failed save (disk full)
            remove_weights(weights)
            current = phases.store.get_job(job["id"]) or job
            require_status_for(current, "paused")  # cancelled meanwhile: says so
            message = getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"
            raise ApiError(500, f"Job {job['id']} could not be paused: {message}", param=None) from None
    await phases.save_resume_point(job["id"], active)  # a restart while paused continues from here
    current = phases.store.get_job(job["id"]) or job
    if current["status"] != "running":  # cancelled while the weights or the point were written
        if weights is not None:
            remove_weights(weights)
        require_status_for(current, "paused")
    job = current
    with phases.store.transaction():
        if weights is not None:
            _publish_pause_checkpoint(phases, job, active, name, weights)
        job.update(status="paused", estimated_finish=None)
        phases.store.save_job(job)
        phases.add_event(job["id"], _paused_message(last))
    return job


def resumed_message(run_in_memory: bool, steps_done: int, checkpoint_step: int | None = None) -> str:
    """`checkpoint_step`: the resume point a run that is no longer in memory continues from."""
    if run_in_memory:
        return f"Fine-tuning job resumed, moving job to queued state; training continues from step {steps_done + 1}"
    if checkpoint_step is not None:
        return (
            "Fine-tuning job resumed, moving job to queued state. The local backend restarted while the job was "
            f"paused; training continues from its checkpoint at step {checkpoint_step}"
        )
    return (
        "Fine-tuning job resumed, moving job to queued state. The local backend restarted while the job was "
        "paused and lost its training state, so training starts again from step 1; "
        "checkpoints created so far stay available"
    )


def pause_dir(blobs: Blobs, job_id: str) -> Path:
    """The job's pause checkpoints and resume point."""
    return blobs.models_dir / PAUSED_WEIGHTS_DIR / job_id


def paused_weights_path(phases: Phases, job_id: str, step: int, run: TrainingRun | None = None) -> Path:
    suffix = run.checkpoint_suffix if run is not None else TrainingRun.checkpoint_suffix
    return pause_dir(phases.blobs, job_id) / f"step-{step}{suffix}"


def _save_weights(run: TrainingRun, path: Path) -> None:
    """Save the pause checkpoint. A run that can `suspend` also stops its worker process here
    (freeing the GPU while paused) and continues from this checkpoint when stepped again."""
    private_dir(path.parent)
    run.suspend(path)
    tighten_tree(path)


def _publish_pause_checkpoint(phases: Phases, job: dict[str, Any], active: ActiveJob, name: str, weights: Path) -> None:
    last = active.steps[-1]
    now = phases.now()
    metrics = objects.checkpoint_metrics(last, active.last_valid)
    phases.store.add_checkpoint(job["id"], objects.checkpoint(job["id"], now, last.step, name, metrics))
    phases.store.add_model(name, job["id"], now, "checkpoint", phases.blobs.relative(weights))
    phases.add_event(job["id"], f"Checkpoint created at step {last.step} with Snapshot ID: {name}")


def _paused_message(last: StepMetrics | None) -> str:
    if last is None:
        return "Fine-tuning job paused before its first training step; no checkpoint was needed"
    return f"Fine-tuning job paused at step {last.step}/{last.total_steps}"
