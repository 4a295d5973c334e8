"""What screens ask of the profile's service: list models, launch, cancel, pause, resume.

A plain helper the app owns (`app.requests`). Each action runs in an app-level worker (the
work is passed uncalled, so a worker cancelled before it starts leaves no coroutine behind):
leaving a screen does not cancel it, and it reports back with a message, never by touching
widgets. An unexpected exception ends the worker in ERROR: the app's one worker-failure
handler shows it, and screens recover from `AppState.worker_failed` (the worker groups
below say which action failed). Pause and resume answer with a toast: the job's new state
reaches the screens through the service's own `JobsChanged`.

Evaluations run here too (`start_evaluation`, `evaluate_job`, `resume_evaluation`): one
worker per run, which creates it (or plans it from a job), then asks every model through
`service.evaluations.execute`, posting `EvalStarted`, `EvalProgressed`, then `EvalFinished`
or `EvalFailed`. Leaving the Evaluate screen leaves it running; `cancel_evaluation` cancels
the worker, and the run keeps every answer stored so far (it resumes).
"""

from __future__ import annotations

import asyncio
import itertools
import threading
from functools import partial
from typing import TYPE_CHECKING, Any

from .messages import (
    CancelFailed,
    EvalFailed,
    EvalFinished,
    EvalProgressed,
    EvalStarted,
    JobCancelled,
    JobLaunched,
    LaunchFailed,
    LaunchProgressed,
    ModelsLoaded,
    PreflightChecked,
)
from .safe_text import clean

if TYPE_CHECKING:  # pragma: no cover
    from textual.app import App
    from textual.worker import Worker

    from tunedeck.core.evaluate.records import EvalRunInfo, EvalSettings
    from tunedeck.core.launch.launching import CheckedLaunch
    from tunedeck.core.launch.models import ModelChoice
    from tunedeck.core.launch.request import LaunchRequest

    from .state import AppState

MODELS_WORKERS = "models"
LAUNCH_WORKERS = "launch"
PREFLIGHT_WORKERS = "preflight"
CANCEL_WORKERS = "cancel"
JOB_ACTION_WORKERS = "job action"
EVAL_WORKERS = "evaluate"
JOB_ACTIONS = ("pause", "resume")
"""Job actions without a question first (each is a `Service` method of that name)."""


class ServiceActions:
    def __init__(self, app: App[Any], state: AppState) -> None:
        self._app = app
        self._state = state
        self._launch_cancel: asyncio.Event | None = None
        self._preflight_cancel = threading.Event()
        self._tickets = itertools.count(1)
        self._evaluating: dict[str, Worker[None]] = {}
        self._running_settings: dict[str, EvalSettings] = {}
        """What each run going on in this app asks (a job's one-key evaluation finds its twin)."""
        """The worker asking each running evaluation's models, by run id."""

    def load_models(self) -> None:
        """Ask the backend for its model list (answers with `ModelsLoaded`)."""
        if self._state.connected:
            self._app.run_worker(
                self._load_models, group=MODELS_WORKERS, exclusive=True, exit_on_error=False, description="list models"
            )

    async def _load_models(self) -> None:
        from tunedeck.core.api import ApiError
        from tunedeck.core.service import ServiceError

        service = self._state.service
        assert service is not None
        try:
            choices = await service.model_choices()
        except ApiError as exc:
            self._app.post_message(ModelsLoaded([], error=exc.message))
        except ServiceError as exc:
            self._app.post_message(ModelsLoaded([], error=str(exc)))
        else:
            self._app.post_message(ModelsLoaded(list(choices)))

    def run_preflight(self, request: LaunchRequest, model: ModelChoice | None = None) -> None:
        """Check a launch before anything is spent (answers with `PreflightChecked`)."""
        self._preflight_cancel.set()  # an earlier check nobody waits for any more
        self._preflight_cancel = threading.Event()
        self._app.run_worker(
            partial(self._preflight, request, model, self._preflight_cancel),
            group=PREFLIGHT_WORKERS,
            exclusive=True,
            exit_on_error=False,
            description="pre-flight",
        )

    def cancel_preflight(self) -> None:
        self._preflight_cancel.set()

    async def _preflight(self, request: LaunchRequest, model: ModelChoice | None, cancel: threading.Event) -> None:
        from tunedeck.core.service import ServiceError

        service, post = self._state.service, self._app.post_message
        if service is None:
            post(PreflightChecked(request, None, "the cache is still opening; try again in a moment"))
            return
        from tunedeck.core.datasets import ValidationCancelled

        from .widgets.background_work import start_resource_tracker

        # A big file is validated in worker processes; inside the app they need the tracker
        # started first (see start_resource_tracker).
        await asyncio.to_thread(start_resource_tracker)
        try:
            checked = await service.preflight(request, model, cancel=cancel)
        except ValidationCancelled:
            return  # the pre-flight screen was left: nobody waits for this answer
        except ServiceError as exc:
            post(PreflightChecked(request, None, str(exc)))
        except OSError as exc:
            post(PreflightChecked(request, None, f"{exc.filename or 'file'}: {exc.strerror or exc}"))
        else:
            post(PreflightChecked(request, checked))

    def launch_job(self, checked: CheckedLaunch) -> None:
        """Upload and create a job (answers with `JobLaunched` or `LaunchFailed`; progress
        comes as `LaunchProgressed`). `cancel_launch()` stops the upload."""
        self._launch_cancel = asyncio.Event()
        self._app.run_worker(
            partial(self._launch, checked, self._launch_cancel),
            group=LAUNCH_WORKERS,
            exclusive=True,
            exit_on_error=False,
            description="upload and create a job",
        )

    def cancel_launch(self) -> None:
        if self._launch_cancel is not None:
            self._launch_cancel.set()

    async def _launch(self, checked: CheckedLaunch, cancel: asyncio.Event) -> None:
        from tunedeck.core.api import ApiError
        from tunedeck.core.service import ServiceError

        state, post = self._state, self._app.post_message
        service = state.service
        if service is None:
            post(LaunchFailed("the cache is still opening; try again in a moment"))
            return
        if not service.is_connected:
            where = state.connection_detail if state.connection_state == "error" else state.connection_state
            post(LaunchFailed(f"not connected to {service.profile.describe()} ({where}); press r to retry"))
            return
        try:
            job = await service.launch(checked, progress=lambda p: post(LaunchProgressed(p)), cancel=cancel)
        except ApiError as exc:
            post(LaunchFailed(exc.message, exc.kind))
        except ServiceError as exc:
            post(LaunchFailed(str(exc), getattr(exc, "kind", "")))
        except OSError as exc:
            post(LaunchFailed(f"{exc.filename or 'file'}: {exc.strerror or exc}"))
        else:
            post(JobLaunched(job))

    def confirm_cancel(self, job_id: str) -> None:
        """Ask first; cancel only on yes (answers with `JobCancelled` or `CancelFailed`)."""
        from .screens.confirm import ConfirmScreen

        row = self._state.row(job_id)
        if row is not None and row.job.is_terminal:
            self._app.notify(f"{clean(job_id)} already {clean(row.job.status)}", markup=False)
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self._app.run_worker(
                    partial(self._cancel, job_id), group=CANCEL_WORKERS, exit_on_error=False, description="cancel a job"
                )

        self._app.push_screen(
            ConfirmScreen(f"Cancel job {job_id}?", yes_label="Cancel job", no_label="Keep it"),
            answered,
        )

    async def _cancel(self, job_id: str) -> None:
        from tunedeck.core.api import ApiError
        from tunedeck.core.service import ServiceError

        service = self._state.service
        if service is None:
            return
        try:
            job = await service.cancel(job_id)
        except ApiError as exc:
            self._app.post_message(CancelFailed(job_id, exc.message))
        except ServiceError as exc:
            self._app.post_message(CancelFailed(job_id, str(exc)))
        else:
            self._app.post_message(JobCancelled(job))

    def pause_job(self, job_id: str) -> None:
        """Pause a running job (the provider saves a checkpoint first); answers with a toast."""
        self._job_action(job_id, "pause")

    def resume_job(self, job_id: str) -> None:
        """Resume a paused job; answers with a toast."""
        self._job_action(job_id, "resume")

    def _job_action(self, job_id: str, action: str) -> None:
        if self._state.service is None:
            self._app.notify("the cache is still opening; try again in a moment", markup=False)
            return
        self._app.run_worker(
            partial(self._act, job_id, action), group=JOB_ACTION_WORKERS, exit_on_error=False, description=f"{action} a job"
        )

    async def _act(self, job_id: str, action: str) -> None:
        from tunedeck.core.api import ApiError
        from tunedeck.core.service import ServiceError

        service = self._state.service
        if service is None:
            return
        assert action in JOB_ACTIONS
        try:
            job = await getattr(service, action)(job_id)
        except (ApiError, ServiceError) as exc:
            said = exc.message if isinstance(exc, ApiError) else str(exc)
            # App.notify is safe from a worker: it queues a toast and touches no widget.
            self._app.notify(clean(said), title=f"cannot {action} {clean(job_id)}", severity="error", markup=False, timeout=15)
        else:
            self._app.notify(f"{action} requested: {clean(job.id)} is {clean(job.status)}", title=action, markup=False)

    # -- evaluations ------------------------------------------------------------------------

    def start_evaluation(self, settings: EvalSettings) -> int:
        """Create a run from `settings` and ask every model; returns the ticket its messages carry."""
        return self._evaluation(partial(self._evaluate, settings=settings), "evaluate models")

    def evaluate_job(self, job_id: str) -> int:
        """Plan a job's evaluation (`service.evaluations.plan_for_job`), then run it."""
        return self._evaluation(partial(self._evaluate, job_id=job_id), "evaluate a job")

    def resume_evaluation(self, run_id: str, retry_errors: bool = False) -> int:
        """Ask what a stopped run has not answered (`retry_errors`: also the answers that failed)."""
        what = "retry an evaluation's failures" if retry_errors else "resume an evaluation"
        return self._evaluation(partial(self._evaluate, run_id=run_id, retry_errors=retry_errors), what)

    def cancel_evaluation(self, run_id: str) -> bool:
        """Stop a running evaluation; False when it is not running in this app."""
        worker = self._evaluating.get(run_id)
        if worker is None:
            return False
        worker.cancel()
        return True

    def evaluating(self, run_id: str) -> bool:
        return run_id in self._evaluating

    def running_twin(self, settings: EvalSettings) -> str | None:
        """The run going on in this app that asks what `settings` ask, if any."""
        return next((r for r, s in self._running_settings.items() if _same_asks(s, settings)), None)

    def _evaluation(self, work: Any, description: str) -> int:
        ticket = next(self._tickets)
        self._app.run_worker(
            partial(work, ticket), group=EVAL_WORKERS, exit_on_error=False, description=description
        )
        return ticket

    async def _evaluate(
        self,
        ticket: int,
        *,
        settings: EvalSettings | None = None,
        job_id: str | None = None,
        run_id: str | None = None,
        retry_errors: bool = False,
    ) -> None:
        from textual.worker import get_current_worker

        from tunedeck.core.api import ApiError
        from tunedeck.core.service import ServiceError

        state, post = self._state, self._app.post_message
        stage = "plan" if job_id is not None else "create" if settings is not None else "run"

        def failed(message: str, kind: str = "") -> None:
            post(EvalFailed(ticket, message, stage, run_id, kind, job_id))

        service = state.service
        if service is None:
            failed("the cache is still opening; try again in a moment")
            return
        if run_id is not None and run_id in self._evaluating:
            failed(f"evaluation {run_id} is already running", "running")
            return
        if not service.is_connected:
            where = state.connection_detail if state.connection_state == "error" else state.connection_state
            failed(f"not connected to {service.profile.describe()} ({where}); press r to retry", "connection")
            return
        evaluations = service.evaluations
        try:
            if job_id is not None:
                settings = await evaluations.plan_for_job(job_id)
                stage = "create"
                twin = self.running_twin(settings)
                if twin is not None and (running := await evaluations.run_info(twin)) is not None:
                    post(EvalStarted(ticket, running))  # already going: shown, not started twice
                    return
            if settings is not None:
                info: EvalRunInfo | None = await evaluations.create(settings)
            else:
                assert run_id is not None
                info = await evaluations.run_info(run_id)
                if info is None:
                    failed(f"no evaluation {run_id} in the cache")
                    return
        except ApiError as exc:
            failed(exc.message, exc.kind)
            return
        except ServiceError as exc:
            failed(str(exc), getattr(exc, "kind", "") or "")
            return
        except OSError as exc:
            failed(f"{exc.filename or 'file'}: {exc.strerror or exc}", "file")
            return
        run_id, stage = info.id, "run"
        if run_id in self._evaluating:  # resumed twice before the first got going
            failed(f"evaluation {run_id} is already running", "running")
            return
        self._evaluating[run_id] = get_current_worker()
        self._running_settings[run_id] = info.settings
        post(EvalStarted(ticket, info))
        try:
            final = await evaluations.execute(
                run_id, lambda progress: post(EvalProgressed(progress)), retry_errors=retry_errors
            )
        except asyncio.CancelledError:
            post(EvalFinished(ticket, run_id, "cancelled"))
            raise
        except ApiError as exc:
            failed(exc.message, exc.kind)
        except ServiceError as exc:
            failed(str(exc), getattr(exc, "kind", "") or "")
        except OSError as exc:
            failed(f"{exc.filename or 'file'}: {exc.strerror or exc}", "file")
        except Exception:
            # Shown by the app's one worker-failure handler; this only says the run stopped.
            stage = "crash"
            failed("stopped on an unexpected error")
            raise
        else:
            post(EvalFinished(ticket, run_id, final.status, final))
        finally:
            self._evaluating.pop(run_id, None)
            self._running_settings.pop(run_id, None)


def _same_asks(a: EvalSettings, b: EvalSettings) -> bool:
    """Two settings ask the same (the file's hash aside: a plan has none yet)."""
    from dataclasses import replace

    return replace(a, data_sha256="") == replace(b, data_sha256="")
