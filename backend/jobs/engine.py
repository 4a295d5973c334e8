"""The job engine: creates and cancels jobs, and decides *when* each job does its next unit
of work (`phases.py` decides *what* that work is).

Two ways to drive time:
- `auto_advance=True` (the product): each job gets a background task that validates,
  waits for a free training slot, then trains step by step, sleeping
  `step_delay * time_scale` seconds between steps (and `PHASE_STEPS` times that in
  validating_files and queued), so a job stays visible in a UI for a while.
- `auto_advance=False` (tests): nothing moves until `advance`, `run_until` or
  `run_until_settled` is awaited; those never sleep.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

from ..compute import PlacementError
from ..errors import bad_request, not_found
from ..storage.ids import new_job_id
from ..storage.store import TERMINAL_STATUSES
from ..trainers.base import Trainer
from ..trainers.options import TunedeckOptions
from .jobspec import new_job, parse_job_request, raise_if_terminal
from .pausing import pause_dir, pause_running_job, require_status_for, resumed_message
from .phases import ActiveJob, Phases
from .restarts import Restart, find_restart
from .resume_points import remove_points

PHASE_STEPS = 20  # validating_files and queued each last as long as this many steps
MAX_RUNNING_JOBS = 2  # jobs training at once in auto mode; the rest wait in `queued`
LIFECYCLE_ORDER = {"validating_files": 0, "queued": 1, "running": 2, "succeeded": 3, "failed": 3, "cancelled": 3}
STEPS_PER_TRIP = 64  # steps per executor call when nothing paces them (manual driving, step_delay 0)


@dataclass(frozen=True, slots=True)
class Pacing:
    auto_advance: bool = True
    step_delay: float = 0.05
    time_scale: float = 1.0
    # How auto mode waits between phases and steps. Tests pass a gate here, so they can
    # drive the automatic drivers one wait at a time instead of sleeping.
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep

    def step_seconds(self) -> float:
        return max(0.0, self.step_delay * self.time_scale)

    def phase_seconds(self) -> float:
        return self.step_seconds() * PHASE_STEPS


class JobEngine:
    """Lives on the server's event loop; every method must be called from it."""

    def __init__(self, phases: Phases, pacing: Pacing) -> None:
        self._phases = phases
        self._store = phases.store
        self._pacing = pacing
        self._active: dict[str, ActiveJob] = {}
        self._drivers: dict[str, asyncio.Task[None]] = {}
        self._chores: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(MAX_RUNNING_JOBS)
        self._trainer_slots: dict[Any, asyncio.Semaphore] = {}

    def base_models(self) -> list[str]:
        return [name for trainer in self._phases.trainers for name in trainer.base_models()]

    def model_details(self, model: str) -> dict[str, Any]:
        """What the trainer that lists `model` says of it (`tunedeck` field of `/v1/models`)."""
        for trainer in self._phases.trainers:
            if model in trainer.base_models():
                return trainer.model_details(model)
        return {}

    # -- commands from the API ---------------------------------------------------------------

    @property
    def busy(self) -> bool:
        """A job is being driven: validating, queued or training (a paused one waits for the user)."""
        return any(not task.done() for task in self._drivers.values())

    def create_job(self, body: dict[str, Any], alias: str | None = None) -> dict[str, Any]:
        """`alias`: the name the request gave the model by, when `body` names the model that
        alias stands for (the job trains that model, and says so)."""
        request = parse_job_request(body)
        if self._phases.trainer_for(request.model) is None:
            named = f"{alias[:100]} (an alias of {request.model[:100]} here)" if alias else request.model[:100]
            raise bad_request(  # the real API's wording and code for an unknown base model
                f"Model {named} is not available for fine-tuning or does not exist.",
                param="model",
                code="model_not_available",
            )
        self._require_training_file(request.training_file, "training_file")
        if request.validation_file:
            self._require_training_file(request.validation_file, "validation_file")
        job = new_job(request, new_job_id(), self._phases.now())
        files = f"Validating training file: {job['training_file']}"
        if job["validation_file"]:
            files += f" and validation file: {job['validation_file']}"
        with self._store.transaction():
            self._store.add_job(job)
            self._phases.add_event(job["id"], f"Created fine-tuning job: {job['id']}")
            if alias:
                self._phases.add_event(job["id"], f"Model {alias} is an alias on this backend: training {request.model}")
            self._phases.add_event(job["id"], files)
        if self._pacing.auto_advance:
            self._spawn_driver(job["id"])
        return job

    def _require_training_file(self, file_id: str, param: str) -> None:
        found = self._store.get_file(file_id)
        if found is None:
            # The real API's wording, also for a deleted file.
            raise bad_request(f"invalid {param}: {file_id[:100]}", param=param)
        if found["purpose"] != "fine-tune":
            raise bad_request(
                f"Invalid '{param}': {file_id} was uploaded with purpose '{found['purpose']}'; "
                "fine-tuning needs purpose 'fine-tune'.",
                param=param,
            )

    def get_job(self, job_id: str) -> dict[str, Any]:
        job = self._store.get_job(job_id)
        if job is None:
            raise not_found("fine-tuning job", job_id, param="fine_tuning_job_id")
        return job

    def cancel_job(self, job_id: str) -> dict[str, Any]:
        """Cancel at once; an in-flight step finishes off-loop and is then thrown away."""
        job = self.get_job(job_id)
        raise_if_terminal(job, "cancelled")
        job.update(status="cancelled", finished_at=self._phases.now(), estimated_finish=None)
        with self._store.transaction():
            self._store.save_job(job)
            self._phases.add_event(job_id, "Fine-tuning job cancelled")
        active = self._active.get(job_id)
        if active is not None and active.run is not None:
            active.run.close()  # a worker process ends now, even mid-step; its step is thrown away
        self._chore(self._discard(job_id))
        return job

    async def pause_job(self, job_id: str) -> dict[str, Any]:
        """Checkpoint a running job and pause it, once its in-flight training trip is recorded."""
        require_status_for(self.get_job(job_id), "paused")
        active = self._active.setdefault(job_id, ActiveJob())
        async with active.lock:
            job = self.get_job(job_id)  # the trip we waited for may have finished the job
            require_status_for(job, "paused")
            return await pause_running_job(self._phases, job, active)

    def resume_job(self, job_id: str) -> dict[str, Any]:
        """paused -> queued; the run carries on if it is still in memory, else from the job's
        resume point (saved at the pause), else it starts over."""
        job = self.get_job(job_id)
        require_status_for(job, "resumed")
        active = self._active.get(job_id)
        in_memory = active is not None and active.run is not None
        steps_done = active.steps[-1].step if active is not None and active.steps else 0
        point = None
        if not in_memory:
            self._active.pop(job_id, None)
            point = self._find_restart(job_id).point
            if point is None:
                self._forget_files(job_id)
        job["status"] = "queued"
        with self._store.transaction():
            self._store.save_job(job)
            message = resumed_message(in_memory, steps_done, point.step if point is not None else None)
            self._phases.add_event(job_id, message)
        if self._pacing.auto_advance:
            self._spawn_driver(job_id)
        return job

    async def _discard(self, job_id: str) -> None:
        """Drop a stopped job's memory and partial checkpoints, once its in-flight work ends."""
        active = self._active.get(job_id)
        if active is not None:
            async with active.lock:
                self._forget(job_id)
        await self._phases.off_loop(self._forget_files, job_id)

    def _forget_files(self, job_id: str) -> None:
        """The epoch snapshots and the resume point of a run that is gone (pause checkpoints stay)."""
        self._phases.blobs.remove_job_dir(job_id)
        remove_points(pause_dir(self._phases.blobs, job_id))

    def _find_restart(self, job_id: str) -> Restart:
        """The steps the job's events report and its resume point, if a restarted run can
        continue from it: read once here, and kept for the run's start (`Phases._start`)."""
        restart = find_restart(self._store, pause_dir(self._phases.blobs, job_id), job_id)
        self._active.setdefault(job_id, ActiveJob()).restart = restart
        return restart

    def _forget(self, job_id: str) -> None:
        active = self._active.pop(job_id, None)
        if active is not None and active.run is not None:
            active.run.close()

    # -- restart ------------------------------------------------------------------------------

    def recover(self) -> None:
        """After a restart (a clean stop, a crash or a reboot): jobs that were queued or training
        go back to the queue, and continue from their resume point when they have one."""
        for job_id in self._store.unfinished_job_ids():
            job = self._store.get_job(job_id)
            if job is not None and job["status"] in ("queued", "running"):
                self._requeue(job)
            if self._pacing.auto_advance:
                self._spawn_driver(job_id)

    def _requeue(self, job: dict[str, Any]) -> None:
        was_running = job["status"] == "running"
        point = self._find_restart(job["id"]).point
        job.update(status="queued", estimated_finish=None)
        message = "The local backend restarted; job re-queued"
        if point is not None:
            message += f", training will resume from its checkpoint at step {point.step}"
        elif was_running:
            message += ", training will start again from step 1"
        with self._store.transaction():
            self._store.save_job(job)
            self._phases.add_event(job["id"], message)
        if point is None:
            self._forget_files(job["id"])

    # -- manual driving (tests, `auto_advance=False`) ---------------------------------------------

    async def advance(self, job_id: str, steps: int = 1) -> dict[str, Any]:
        """Bring the job to `running` (validating and starting it as needed), then run
        `steps` training steps; stops early if the job ends. Returns the job."""
        self._require_job(job_id)
        while self._status(job_id) in ("validating_files", "queued"):
            if not await self._advance_once(job_id):
                break
        remaining = steps
        while remaining > 0 and self._status(job_id) == "running":
            done = await self._advance_once(job_id, min(remaining, STEPS_PER_TRIP))
            if not done:
                break
            remaining -= done
        return self._require_job(job_id)

    async def run_until(self, job_id: str, status: str) -> dict[str, Any]:
        """Advance until the job reaches `status`, or is past it (a terminal state, say)."""
        self._require_job(job_id)
        target = LIFECYCLE_ORDER.get(status, LIFECYCLE_ORDER["succeeded"])
        # Step by step when the target is a live state, so the caller sees it as early as it happens.
        steps_per_trip = STEPS_PER_TRIP if status in TERMINAL_STATUSES else 1
        while (current := self._status(job_id)) != status and LIFECYCLE_ORDER.get(current or "", 3) < target:
            if not await self._advance_once(job_id, steps_per_trip):
                break
        return self._require_job(job_id)

    async def run_until_settled(self) -> None:
        """Advance every job until all are terminal (or paused: those wait for a resume).
        In auto mode, wait for the drivers instead."""
        while True:
            pending = [j for j in self._store.unfinished_job_ids() if self._status(j) != "paused"]
            if self._pacing.auto_advance:
                for job_id in pending:
                    self._spawn_driver(job_id)
                drivers = [self._drivers[j] for j in pending if j in self._drivers]
                if not drivers:
                    return
                await asyncio.gather(*drivers, return_exceptions=True)
                continue
            progressed = False
            for job_id in pending:
                while self._status(job_id) not in TERMINAL_STATUSES:
                    if not await self._advance_once(job_id, STEPS_PER_TRIP):
                        break
                    progressed = True
            if not progressed:
                return

    def _require_job(self, job_id: str) -> dict[str, Any]:
        job = self._store.get_job(job_id)
        if job is None:
            raise KeyError(f"no fine-tuning job {job_id!r}")
        return job

    def _status(self, job_id: str) -> str | None:
        job = self._store.get_job(job_id)
        return job["status"] if job else None

    async def _advance_once(self, job_id: str, max_steps: int = 1) -> int:
        active = self._active.setdefault(job_id, ActiveJob())
        async with active.lock:
            done = await self._phases.advance_once(job_id, active, max_steps)
            if self._status(job_id) in TERMINAL_STATUSES:
                self._forget(job_id)
        return done

    # -- automatic driving ----------------------------------------------------------------------

    def _spawn_driver(self, job_id: str) -> None:
        current = self._drivers.get(job_id)
        if current is not None and not current.done():  # a driver that has returned cannot see a resume
            return
        task = asyncio.get_running_loop().create_task(self._drive(job_id), name=f"drive {job_id}")
        self._drivers[job_id] = task
        task.add_done_callback(lambda done: self._forget_driver(job_id, done))

    def _forget_driver(self, job_id: str, task: asyncio.Task[None]) -> None:
        if self._drivers.get(job_id) is task:  # not the driver a resume has started since
            del self._drivers[job_id]

    async def _drive(self, job_id: str) -> None:
        if self._status(job_id) == "validating_files":
            await self._pacing.sleep(self._pacing.phase_seconds())
            await self._advance_once(job_id)
        if self._status(job_id) in (None, "paused", *TERMINAL_STATUSES):
            return
        job = self._require_job(job_id)
        trainer = self._phases.trainer_for(job["model"])
        if trainer is None or trainer.devices is None:
            async with self._slots_for(trainer):
                await self._train(job_id, trainer)
            return
        request = trainer.device_request(TunedeckOptions.from_json(job.get("tunedeck")))
        try:
            async with trainer.devices.holding(job_id, request) as devices:
                active = self._active.setdefault(job_id, ActiveJob())
                active.devices = tuple(devices)
                try:
                    await self._train(job_id, trainer)
                finally:
                    active.devices = ()
        except PlacementError as refused:  # asked before waiting: no wait could meet it
            self._phases.fail(job_id, "invalid_request", "tunedeck.devices", f"Cannot place the job: {refused}")

    async def _train(self, job_id: str, trainer: Trainer | None) -> None:
        """Start the queued job and train it to its end (or a pause), holding its slot."""
        if self._status(job_id) == "queued":
            await self._pacing.sleep(self._pacing.phase_seconds())
        paced = trainer is None or trainer.paced  # a real trainer's steps take their own time
        pause = self._pacing.step_seconds() if paced else 0.0
        steps_per_trip = 1 if pause > 0 or not paced else STEPS_PER_TRIP
        while self._status(job_id) not in (None, "paused", *TERMINAL_STATUSES):
            if not await self._advance_once(job_id, steps_per_trip):
                return
            await self._pacing.sleep(pause)

    def _slots_for(self, trainer: Trainer | None) -> asyncio.Semaphore:
        """The shared training slots, or a trainer's own when it sets how many runs at once."""
        limit = trainer.max_concurrent_runs if trainer is not None else None
        if trainer is None or limit is None:
            return self._slots
        return self._trainer_slots.setdefault(trainer, asyncio.Semaphore(limit))

    def compute(self) -> dict[str, Any]:
        """The devices runs are placed on, the job holding each, and the jobs waiting for some."""
        devices: list[dict[str, Any]] = []
        waiting: list[str] = []
        cluster = None
        for trainer in self._phases.trainers:
            if trainer.devices is not None:
                devices += trainer.devices.snapshot()
                waiting += trainer.devices.waiting()
            cluster = cluster or trainer.cluster_info()
        return {"object": "tunedeck.compute", "devices": devices, "waiting": waiting, "cluster": cluster}

    def _chore(self, coroutine: Any) -> None:
        """Run a background clean-up, kept referenced so it is not garbage-collected mid-way."""
        task = asyncio.get_running_loop().create_task(coroutine)
        self._chores.add(task)
        task.add_done_callback(self._chores.discard)

    async def close(self) -> None:
        """Stop driving (jobs stay as they are in the store; `recover` resumes them)."""
        tasks = [*self._drivers.values(), *self._chores]
        for task in self._drivers.values():
            task.cancel()
        for active in self._active.values():
            if active.run is not None:
                active.run.close()
        await asyncio.gather(*tasks, return_exceptions=True)
