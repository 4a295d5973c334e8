"""The work of each job state, one unit at a time.

`Phases.advance_once(job)` does the next unit of a job's life: validate its files
(validating_files -> queued), prepare training (queued -> running), or run training
steps (the last one also publishes checkpoints, the model and the result file). Slow
parts (parsing files, tokenising, the maths) run in an executor thread; the store is
only touched on the event loop. After every off-loop wait the job is re-read, so a
cancel that landed meanwhile wins and nothing more is written for it.

While a job trains, a resume point (`resume_points.py`) is saved every few seconds; a job
started again after a restart continues from its latest one, and steps its events
already report (`recorded_steps.py`) are trained again silently: each step is reported once.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence, TypeVar

from tunedeck.core.datasets.jobrules import resolve_hyperparameters

from .. import objects
from ..compute import Device
from ..storage.blobs import Blobs
from ..storage.ids import new_file_id
from ..storage.private import tighten_tree
from ..storage.store import TERMINAL_STATUSES, Store
from ..trainers.base import (
    Hyperparameters,
    StepMetrics,
    Trainer,
    TrainingFailure,
    TrainingRun,
    TrainingSpec,
    remove_weights,
)
from ..trainers.options import TunedeckOptions
from .jobspec import base_model_name, final_model_name, set_hyperparameters
from .pausing import pause_dir
from .restarts import Restart, find_restart, start_run
from .resume_points import Cadence, ResumePoint, remove_points, write_point
from .training_data import Dataset, DatasetError, load_dataset

log = logging.getLogger("tunedeck.local")
T = TypeVar("T")
KEPT_CHECKPOINTS = 3  # the API keeps the last 3 epochs' checkpoints (RFT: the best 3 evaluations)


@dataclass
class Snapshot:
    step: int
    created_at: int
    path: Path
    metrics: dict[str, float]
    score: float | None = None  # RFT: the validation reward that ranks it


@dataclass
class ActiveJob:
    """What a job holds in memory while it is worked on (rebuilt from files after a restart)."""

    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    training: Dataset | None = None
    validation: Dataset | None = None
    run: TrainingRun | None = None
    steps: list[StepMetrics] = field(default_factory=list)
    snapshots: list[Snapshot] = field(default_factory=list)
    last_valid: tuple[float, float] | None = None
    # Steps the job's events reported before a restart that the run has not re-trained yet:
    # when it does, they are not reported again (their reported values stay the result's).
    reported: dict[int, StepMetrics] = field(default_factory=dict)
    # What a job that trains again already has (its reported steps, its resume point), as the
    # engine found it when it re-queued or resumed the job; the run's start uses it up.
    restart: Restart | None = None
    cadence: Cadence | None = None  # when the next resume point is due
    point_step: int = 0  # the step of the job's latest resume point
    devices: tuple[Device, ...] = ()  # the devices the engine placed it on while it trains


class Phases:
    def __init__(
        self,
        store: Store,
        blobs: Blobs,
        trainers: Sequence[Trainer],
        clock: Callable[[], float],
        executor: Executor,
        seconds_per_step: Callable[[], float],
        grader_endpoint: Callable[[], tuple[str, str] | None] = lambda: None,
    ) -> None:
        """`grader_endpoint`: where model graders ask their model (this backend, once it listens)."""
        self.grader_endpoint = grader_endpoint
        self.store = store
        self.blobs = blobs
        self.trainers = list(trainers)
        self._clock = clock
        self._executor = executor
        self._seconds_per_step = seconds_per_step

    def now(self) -> int:
        return int(self._clock())

    def trainer_for(self, model: str) -> Trainer | None:
        """The trainer of `model`, a base model or a fine-tuned model (trained further from its weights)."""
        if self.store.get_model(model) is not None:
            model = base_model_name(model)
        listed = next((t for t in self.trainers if model in t.base_models()), None)
        # A trainer may also claim names it does not list (a Hugging Face id not downloaded yet):
        # the job is created, then fails with `model_not_found` saying where it looked.
        return listed or next((t for t in self.trainers if t.claims(model)), None)

    async def off_loop(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, functools.partial(fn, *args))

    def add_event(self, job_id: str, message: str, **kwargs: Any) -> None:
        self.store.add_event(job_id, objects.event(self.now(), message, **kwargs))

    # -- one unit of work -------------------------------------------------------------------

    async def advance_once(self, job_id: str, active: ActiveJob, max_steps: int = 1) -> int:
        """Do the job's next unit of work: validate, start, or train up to `max_steps` steps
        (in one trip to the executor). Returns the units done; 0 when there is nothing to do."""
        job = self.store.get_job(job_id)
        if job is None or job["status"] in TERMINAL_STATUSES:
            return 0
        try:
            if job["status"] == "validating_files":
                await self._validate(job, active)
            elif job["status"] == "queued":
                await self._start(job, active)
            elif job["status"] == "running":
                return max(1, await self._train_steps(job, active, max_steps))
            else:
                return 0  # a state this backend never enters by itself (e.g. paused)
        except TrainingFailure as exc:
            self.fail(job_id, exc.code, exc.param, exc.message, finished=True)
        except Exception as exc:  # a trainer bug or a full disk fails the job, never the server
            log.exception("job %s failed while %s", job_id, job["status"])
            self.fail(job_id, "internal_error", None, f"Training failed: {exc}", finished=True)
        return 1

    async def _validate(self, job: dict[str, Any], active: ActiveJob) -> None:
        try:
            active.training, active.validation = await self.off_loop(self._load_datasets, job)
        except DatasetError as exc:
            self.fail(job["id"], exc.code, exc.param, exc.message)
            return
        job = self._reread(job, "validating_files")
        if job is None:
            return
        method = job["method"]["type"]
        trainer = self.trainer_for(job["model"])
        if trainer is None or not trainer.supports(method):
            message = f"method {method} is not supported by the built-in trainer yet"
            self.fail(job["id"], "unsupported_method", "method", message)
            return
        requested = job["method"][method]["hyperparameters"]
        set_hyperparameters(job, resolve_hyperparameters(requested, active.training.n_examples))
        job["status"] = "queued"
        with self.store.transaction():
            self.store.save_job(job)
            self.add_event(job["id"], "Files validated, moving job to queued state")

    def _load_datasets(self, job: dict[str, Any]) -> tuple[Dataset, Dataset | None]:
        method, model = job["method"]["type"], job["model"]  # the model: whose encoding bills the tokens
        training = load_dataset(self.blobs.file_path(job["training_file"]), method, "training", model)
        validation = None
        if job.get("validation_file"):
            validation = load_dataset(self.blobs.file_path(job["validation_file"]), method, "validation", model)
        return training, validation

    async def _start(self, job: dict[str, Any], active: ActiveJob) -> None:
        if active.run is not None:  # resumed after a pause: the same run carries on
            self._carry_on(job, active)
            return
        if active.training is None:  # re-queued after a restart: read the files again
            try:
                active.training, active.validation = await self.off_loop(self._load_datasets, job)
            except DatasetError as exc:
                self.fail(job["id"], exc.code, exc.param, exc.message)
                return
        trainer = self.trainer_for(job["model"])
        if trainer is None:
            self.fail(job["id"], "model_not_found", "model", f"The model `{job['model']}` is no longer available")
            return
        points = pause_dir(self.blobs, job["id"])
        restart = active.restart if active.restart is not None else find_restart(self.store, points, job["id"])
        active.restart = None  # used up: what the engine found holds for this start only
        reported = restart.reported  # by an earlier process, before a restart
        folders = points, self.blobs.job_dir(job["id"])
        start = await self.off_loop(start_run, trainer, self._spec(job, active), *folders, restart.point)
        run, point = start.run, start.point
        job = self._reread(job, "queued")
        if job is None:
            run.close()
            return
        done = point.step if point is not None else 0
        active.run, active.reported = run, {step: m for step, m in reported.items() if step > done}
        active.steps = [reported[step] for step in sorted(reported) if step <= done]
        active.last_valid = _last_valid(active.steps)
        active.snapshots = self._kept_by(job["id"], point)
        active.cadence, active.point_step = Cadence(self._clock()), done
        job["status"] = "running"
        job["estimated_finish"] = self.now() + max(1, math.ceil((run.total_steps - done) * self._seconds_per_step()))
        with self.store.transaction():
            self.store.save_job(job)
            if start.failure is not None:
                self.add_event(job["id"], start.failure, level="warn")
            if point is None:
                self.add_event(job["id"], "Fine-tuning job started")
            else:
                self.add_event(
                    job["id"],
                    f"Fine-tuning job resumed from step {done}/{run.total_steps} after the local backend restarted; "
                    f"training continues from step {done + 1}",
                )
            self._record_notices(job["id"], run)

    def _kept_by(self, job_id: str, point: ResumePoint | None) -> list[Snapshot]:
        """The epoch snapshots the run had kept when `point` was saved (those still on disk)."""
        if point is None:
            return []
        job_dir = self.blobs.job_dir(job_id)
        kept = []
        for saved in point.snapshots:
            path = job_dir / str(saved["name"])
            if path.exists():
                kept.append(
                    Snapshot(int(saved["step"]), int(saved["created_at"]), path, saved["metrics"], saved["score"])
                )
        return kept

    def _carry_on(self, job: dict[str, Any], active: ActiveJob) -> None:
        assert active.run is not None
        if active.devices:
            active.run.place(active.devices)
        done = active.steps[-1].step if active.steps else 0
        remaining = active.run.total_steps - done
        job["status"] = "running"
        job["estimated_finish"] = self.now() + max(1, math.ceil(remaining * self._seconds_per_step()))
        with self.store.transaction():
            self.store.save_job(job)
            self.add_event(job["id"], f"Fine-tuning job continued from step {done + 1}/{active.run.total_steps}")

    def _spec(self, job: dict[str, Any], active: ActiveJob) -> TrainingSpec:
        method = job["method"]["type"]
        values = dict(job["method"][method]["hyperparameters"])
        hyper = Hyperparameters(
            n_epochs=values.pop("n_epochs"),
            batch_size=values.pop("batch_size"),
            learning_rate_multiplier=float(values.pop("learning_rate_multiplier")),
            extra=values,
        )
        assert active.training is not None
        fine_tuned = self.store.get_model(job["model"])
        return TrainingSpec(
            base_model=base_model_name(job["model"]),
            method=method,
            training=active.training.examples,
            validation=active.validation.examples if active.validation else [],
            hyperparameters=hyper,
            seed=job["seed"],
            initial_weights=self.blobs.data_dir / fine_tuned["weights"] if fine_tuned else None,
            method_config={k: v for k, v in job["method"][method].items() if k != "hyperparameters"},
            training_path=self.blobs.file_path(job["training_file"]),
            validation_path=self.blobs.file_path(job["validation_file"]) if job.get("validation_file") else None,
            options=TunedeckOptions.from_json(job.get("tunedeck")),
            grader_endpoint=self.grader_endpoint(),
            job_id=job["id"],
            devices=active.devices,
        )

    async def _train_steps(self, job: dict[str, Any], active: ActiveJob, max_steps: int) -> int:
        if active.run is None:  # lost its run (cannot happen after `recover`, which re-queues)
            job["status"] = "queued"
            self.store.save_job(job)
            return 0
        job_dir = self.blobs.job_dir(job["id"])
        results, error = await self.off_loop(_steps_and_snapshots, active.run, job_dir, max_steps)
        job = self._reread(job, "running")
        if job is None:  # cancelled meanwhile: these steps never happened
            return 0
        with self.store.transaction():
            for metrics, saved in results:
                self._record_step(job["id"], active, metrics, saved)
            self._record_notices(job["id"], active.run)
            self._update_estimate(job, active.run, results)
        if error is not None:
            raise error  # after recording the steps that did finish
        if results and results[-1][0].step >= results[-1][0].total_steps:
            await self._succeed(job, active)
        elif active.cadence is not None and active.cadence.due(self._clock()):
            await self.save_resume_point(job["id"], active)
        return len(results)

    async def save_resume_point(self, job_id: str, active: ActiveJob) -> None:
        """Save the run's state as the job's resume point, after the steps it has trained are
        recorded (the caller holds the job's lock). A failed save is logged, never fatal: the
        job only loses the chance to resume from here."""
        run = active.run
        step = active.steps[-1].step if active.steps else 0
        if run is None or not run.resumable or step <= active.point_step or step >= run.total_steps:
            return
        state = {"total_steps": run.total_steps, "snapshots": [_snapshot_json(s) for s in active.snapshots]}
        cost = 0.0
        try:
            cost = await self.off_loop(write_point, pause_dir(self.blobs, job_id), run, step, state)
        except Exception:
            log.warning("job %s: could not save a resume point at step %s", job_id, step, exc_info=True)
        else:
            active.point_step = step
        if active.cadence is not None:
            active.cadence.written(self._clock(), cost)

    def _update_estimate(self, job: dict[str, Any], run: TrainingRun, results: StepResults) -> None:
        """A run that measures its own pace (real training) refines `estimated_finish`."""
        rate = run.seconds_per_step
        if rate is None or not results:
            return
        last = results[-1][0]
        job["estimated_finish"] = self.now() + max(1, math.ceil((last.total_steps - last.step) * rate))
        self.store.save_job(job)

    def _record_notices(self, job_id: str, run: TrainingRun) -> None:
        for level, text in run.take_notices():
            self.add_event(job_id, text, level=level)

    def _record_step(self, job_id: str, active: ActiveJob, metrics: StepMetrics, saved: Path | None) -> None:
        reported = active.reported.pop(metrics.step, None)  # before a restart: not reported again
        shown = reported or metrics
        active.steps.append(shown)
        if shown.valid_loss is not None and shown.valid_mean_token_accuracy is not None:
            active.last_valid = (shown.valid_loss, shown.valid_mean_token_accuracy)
        if saved is not None:
            metrics_now = objects.checkpoint_metrics(shown, active.last_valid)
            snapshot = Snapshot(metrics.step, self.now(), saved, metrics_now, metrics.checkpoint_score)
            self._keep_snapshot(active, snapshot)
        if reported is None:
            self.store.add_event(job_id, objects.metrics_event(self.now(), metrics))

    def _keep_snapshot(self, active: ActiveJob, snapshot: Snapshot) -> None:
        active.snapshots.append(snapshot)
        kept = kept_snapshots(active.snapshots)
        for dropped in active.snapshots:
            if all(dropped is not k for k in kept):
                remove_weights(dropped.path)
        active.snapshots = kept

    async def _succeed(self, job: dict[str, Any], active: ActiveJob) -> None:
        model_name = final_model_name(job)
        result_id = new_file_id()
        csv = objects.results_csv(active.steps)
        await self.off_loop(self.blobs.write_file, result_id, csv)
        job = self._reread(job, "running")
        if job is None:  # cancelled while the file was written
            self.blobs.remove_file(result_id)
            return
        now = self.now()
        with self.store.transaction():
            result = objects.file_object(result_id, len(csv), now, objects.RESULT_FILENAME, "fine-tune-results", None)
            self.store.add_file(result)
            self._publish_checkpoints(job["id"], model_name, active.snapshots)
            self.add_event(job["id"], f"New fine-tuned model created: {model_name}")
            n_epochs = job["hyperparameters"]["n_epochs"]
            job.update(
                status="succeeded",
                fine_tuned_model=model_name,
                finished_at=now,
                estimated_finish=None,
                trained_tokens=_tokens_per_epoch(active) * n_epochs,
                result_files=[result_id],
            )
            self.store.save_job(job)
            self.add_event(job["id"], "The job has successfully completed")
        await self.off_loop(remove_points, pause_dir(self.blobs, job["id"]))

    def _publish_checkpoints(self, job_id: str, model_name: str, snapshots: list[Snapshot]) -> None:
        """Checkpoint objects, events and models; the last one is the fine-tuned model itself."""
        for index, snapshot in enumerate(snapshots):
            final = index == len(snapshots) - 1
            name = model_name if final else f"{model_name}:ckpt-step-{snapshot.step}"
            if self.store.get_model(name) is not None:
                continue  # published already, when the job was paused at this very step
            created = snapshot.created_at
            checkpoint = objects.checkpoint(job_id, created, snapshot.step, name, snapshot.metrics)
            self.store.add_checkpoint(job_id, checkpoint)
            weights = self.blobs.relative(snapshot.path)
            self.store.add_model(name, job_id, created, "final" if final else "checkpoint", weights)
            self.add_event(job_id, f"Checkpoint created at step {snapshot.step} with Snapshot ID: {name}")

    # -- endings --------------------------------------------------------------------------

    def fail(self, job_id: str, code: str, param: str | None, message: str, *, finished: bool = False) -> None:
        """Fail a job. Validation failures leave `finished_at` null, as the API does."""
        job = self.store.get_job(job_id)
        if job is None or job["status"] in TERMINAL_STATUSES:
            return
        job.update(status="failed", error={"code": code, "message": message, "param": param}, estimated_finish=None)
        if finished:
            job["finished_at"] = self.now()
        with self.store.transaction():
            self.store.save_job(job)
            self.add_event(job_id, message, level="error")
        self.blobs.remove_job_dir(job_id)  # partial checkpoints of a run that will not finish
        remove_points(pause_dir(self.blobs, job_id))

    def _reread(self, job: dict[str, Any], expected_status: str) -> dict[str, Any] | None:
        """The job as stored now, or None if it left `expected_status` meanwhile (cancelled)."""
        current = self.store.get_job(job["id"])
        return current if current is not None and current["status"] == expected_status else None


def _last_valid(steps: list[StepMetrics]) -> tuple[float, float] | None:
    for metrics in reversed(steps):
        if metrics.valid_loss is not None and metrics.valid_mean_token_accuracy is not None:
            return metrics.valid_loss, metrics.valid_mean_token_accuracy
    return None


def _snapshot_json(snapshot: Snapshot) -> dict[str, Any]:
    return {
        "step": snapshot.step,
        "created_at": snapshot.created_at,
        "name": snapshot.path.name,  # in the job's folder: a copied data directory stays valid
        "metrics": snapshot.metrics,
        "score": snapshot.score,
    }


def _tokens_per_epoch(active: ActiveJob) -> int:
    """By the run's own tokenizer when it counts (transformers), else the file's billed
    tokens as the validator (and so the app's pre-flight) counts them."""
    counted = active.run.tokens_per_epoch if active.run is not None else None
    if counted:
        return int(counted)
    return active.training.n_tokens if active.training else 0


def kept_snapshots(snapshots: list[Snapshot]) -> list[Snapshot]:
    """The last `KEPT_CHECKPOINTS`; or, when snapshots are scored (RFT), the best-scoring
    ones (later wins a tie) plus the newest, which becomes the model if training ends there."""
    if any(s.score is None for s in snapshots):
        return snapshots[-KEPT_CHECKPOINTS:]
    best = sorted(snapshots, key=lambda s: (s.score, s.step), reverse=True)[:KEPT_CHECKPOINTS]
    return [s for s in snapshots if any(s is b for b in best) or s is snapshots[-1]]


StepResults = list[tuple[StepMetrics, Path | None]]


def _steps_and_snapshots(run: TrainingRun, job_dir: Path, max_steps: int) -> tuple[StepResults, Exception | None]:
    """Up to `max_steps` steps, saving a checkpoint file where a step asks for one (each
    epoch's end, or RFT evaluations) (executor thread).
    A failing step ends the batch; the steps before it are still returned."""
    results: StepResults = []
    try:
        for _ in range(max_steps):
            metrics = run.step()
            path = None
            if metrics.saves_checkpoint:
                path = job_dir / f"step-{metrics.step}{run.checkpoint_suffix}"
                run.save(path)
                tighten_tree(path)
            results.append((metrics, path))
            if metrics.step >= metrics.total_steps:
                break
    except Exception as exc:
        return results, exc
    return results, None
