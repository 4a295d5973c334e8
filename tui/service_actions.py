"""The app's actions that call the service on behalf of screens: list models, launch, cancel.

A mixin of `TunedeckApp`, kept apart so the app module stays about start-up, polling and
state. Each action runs in an app-level worker (leaving a screen does not cancel it) and
reports back with a message, never by touching widgets.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from textual import work

from .messages import CancelFailed, JobCancelled, JobLaunched, LaunchFailed, ModelsLoaded
from .safe_text import clean

if TYPE_CHECKING:  # pragma: no cover
    from textual.app import App

    from tunedeck.core.records import JobRow
    from tunedeck.core.service import Service

    _Base = App[int]
else:
    _Base = object


class ServiceActions(_Base):
    service: Service | None
    rows: list[JobRow]
    connection_state: str
    connection_detail: str

    def load_models(self) -> None:
        """Ask the backend for its model list (answers with `ModelsLoaded`)."""
        if self.service is not None and self.service.is_connected:
            self._load_models()

    @work(group="models", exclusive=True, exit_on_error=False, description="list models")
    async def _load_models(self) -> None:
        from tunedeck.core.api import ApiError
        from tunedeck.core.service import ServiceError

        assert self.service is not None
        try:
            models = await self.service.base_models()
        except ApiError as exc:
            self.post_message(ModelsLoaded([], error=exc.message))
        except ServiceError as exc:
            self.post_message(ModelsLoaded([], error=str(exc)))
        else:
            self.post_message(ModelsLoaded(models))

    def launch_job(
        self, training_path: Path, model: str, method: str = "supervised", validation_path: Path | None = None
    ) -> None:
        """Upload and create a job in an app-level worker (leaving the form does not cancel it)."""
        self._launch(training_path, model, method, validation_path)

    @work(group="launch", exclusive=True, exit_on_error=False, description="upload and create a job")
    async def _launch(self, training_path: Path, model: str, method: str, validation_path: Path | None) -> None:
        from tunedeck.core.api import ApiError
        from tunedeck.core.service import LaunchRequest, ServiceError

        service = self.service
        if service is None:
            self.post_message(LaunchFailed("the cache is still opening; try again in a moment"))
            return
        if not service.is_connected:
            state = self.connection_detail if self.connection_state == "error" else self.connection_state
            self.post_message(LaunchFailed(f"not connected to {service.profile.describe()} ({state}); press r to retry"))
            return
        try:
            request = LaunchRequest(
                training_path=training_path, model=model, method=method, validation_path=validation_path
            )
            job = await service.launch(request)
        except ApiError as exc:
            self.post_message(LaunchFailed(exc.message, exc.kind))
        except ServiceError as exc:
            self.post_message(LaunchFailed(str(exc)))
        except OSError as exc:
            self.post_message(LaunchFailed(f"{training_path}: {exc.strerror or exc}"))
        else:
            self.post_message(JobLaunched(job))

    def confirm_cancel(self, job_id: str) -> None:
        """Ask first; cancel only on yes."""
        from .screens.confirm import ConfirmScreen

        row = next((r for r in self.rows if r.job.id == job_id), None)
        if row is not None and row.job.is_terminal:
            self.notify(f"{clean(job_id)} already {clean(row.job.status)}", markup=False)
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self._cancel(job_id)

        self.push_screen(
            ConfirmScreen(f"Cancel job {job_id}?", yes_label="Cancel job", no_label="Keep it"),
            answered,
        )

    @work(group="cancel", exit_on_error=False, description="cancel a job")
    async def _cancel(self, job_id: str) -> None:
        from tunedeck.core.api import ApiError
        from tunedeck.core.service import ServiceError

        if self.service is None:
            return
        try:
            job = await self.service.cancel(job_id)
        except ApiError as exc:
            self.post_message(CancelFailed(job_id, exc.message))
        except ServiceError as exc:
            self.post_message(CancelFailed(job_id, str(exc)))
        else:
            self.post_message(JobCancelled(job))

