"""What screens ask of the profile's service: list models, launch, cancel.

A plain helper the app owns (`app.requests`). Each action runs in an app-level worker (the
work is passed uncalled, so a worker cancelled before it starts leaves no coroutine behind):
leaving a screen does not cancel it, and it reports back with a message, never by touching
widgets. An unexpected exception ends the worker in ERROR: the app's one worker-failure
handler shows it, and screens recover from `AppState.worker_failed` (the worker groups
below say which action failed).
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .messages import CancelFailed, JobCancelled, JobLaunched, LaunchFailed, ModelsLoaded
from .safe_text import clean

if TYPE_CHECKING:  # pragma: no cover
    from textual.app import App

    from .state import AppState

MODELS_WORKERS = "models"
LAUNCH_WORKERS = "launch"
CANCEL_WORKERS = "cancel"


class ServiceActions:
    def __init__(self, app: App[Any], state: AppState) -> None:
        self._app = app
        self._state = state

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
            models = await service.base_models()
        except ApiError as exc:
            self._app.post_message(ModelsLoaded([], error=exc.message))
        except ServiceError as exc:
            self._app.post_message(ModelsLoaded([], error=str(exc)))
        else:
            self._app.post_message(ModelsLoaded(models))

    def launch_job(
        self, training_path: Path, model: str, method: str = "supervised", validation_path: Path | None = None
    ) -> None:
        """Upload and create a job (answers with `JobLaunched` or `LaunchFailed`)."""
        self._app.run_worker(
            partial(self._launch, training_path, model, method, validation_path),
            group=LAUNCH_WORKERS,
            exclusive=True,
            exit_on_error=False,
            description="upload and create a job",
        )

    async def _launch(self, training_path: Path, model: str, method: str, validation_path: Path | None) -> None:
        from tunedeck.core.api import ApiError
        from tunedeck.core.service import LaunchRequest, ServiceError

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
            request = LaunchRequest(
                training_path=training_path, model=model, method=method, validation_path=validation_path
            )
            job = await service.launch(request)
        except ApiError as exc:
            post(LaunchFailed(exc.message, exc.kind))
        except ServiceError as exc:
            post(LaunchFailed(str(exc)))
        except OSError as exc:
            post(LaunchFailed(f"{training_path}: {exc.strerror or exc}"))
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
