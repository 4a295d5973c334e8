"""Pre-flight: everything about a launch before anything is spent, then the launch itself.

It checks the files for the method with the validator the backend uses, shows tokens,
resolved hyperparameters, the estimated cost and duration, the base model's retirement and
the exact request. Hard errors block; warnings need a confirm. Launching uploads (with
progress, rate, ETA and cancel; an identical file is reused) and creates the job once.
Dismisses with "job:<id>", "switch_profile" (403 training_not_available: try the form on
another profile) or None (back).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import Button, ProgressBar, Static

from ..messages import JobLaunched, LaunchFailed, LaunchProgressed, PreflightChecked
from ..safe_text import safe
from ..service_actions import LAUNCH_WORKERS, PREFLIGHT_WORKERS
from ..state import AppState, host
from ..widgets.header import AppHeader
from ..widgets.key_footer import KeyFooter

if TYPE_CHECKING:  # pragma: no cover
    from tunedeck.core.datasets import ValidationReport
    from tunedeck.core.launch.launching import CheckedLaunch
    from tunedeck.core.launch.models import ModelChoice
    from tunedeck.core.launch.request import LaunchRequest

    from ..state import WorkerFailure


class PreflightScreen(Screen[str | None]):
    BINDINGS = [
        Binding("ctrl+s", "launch", "Launch", id="preflight.launch", tooltip="Upload and create the job"),
        Binding("p", "other_profile", "Other profile", show=False, id="preflight.profile"),
        Binding("escape", "back", "Back / cancel", id="preflight.back", tooltip="Back to the form; cancels an upload"),
    ]

    HELP = "Pre-flight: what will be checked, sent and spent. ctrl+s launches; escape goes back (or cancels an upload)."

    def __init__(self, request: LaunchRequest, model: ModelChoice | None = None, report: ValidationReport | None = None) -> None:
        super().__init__()
        self.request = request
        self.model = model
        self.report = report
        self.checked: CheckedLaunch | None = None
        self.launching = False
        self.creating = False
        """The files are up and the create is on its way: escape cannot stop it any more."""
        self.confirmed_warnings = False
        self.unavailable = False
        """The provider answered 403 training_not_available: `p` tries another profile."""
        self.error_text = ""
        self.summary_text = ""
        """The pre-flight as plain text (tests read it)."""

    @property
    def state(self) -> AppState:
        return host(self).state

    def compose(self) -> ComposeResult:
        yield AppHeader("Pre-flight", id="header")
        with VerticalScroll(id="preflight-body"):
            yield Static(Text("checking the files for this method…", style="dim"), id="preflight-summary")
            yield Static(id="preflight-problems")
            with Vertical(id="upload-box"):
                yield Static(id="upload-label")
                yield ProgressBar(total=100, show_eta=False, id="upload-bar")
            yield Static(Text("The request", style="bold underline"), id="preflight-request-title")
            yield Static(id="preflight-request")
        with Horizontal(id="preflight-buttons"):
            yield Button("Launch  ctrl+s", id="launch", variant="primary", disabled=True, compact=True)
            yield Button("Back  esc", id="back", compact=True)
        yield Static(id="preflight-status")
        yield KeyFooter()

    def on_mount(self) -> None:
        state = self.state
        state.launch_answered.subscribe(self, self._launch_answered)
        state.launch_progressed.subscribe(self, self._progressed)
        state.preflight_checked.subscribe(self, self._checked)
        state.worker_failed.subscribe(self, self._worker_failed)
        self.query_one("#upload-box").display = False
        self.query_one("#preflight-request-title").display = False
        host(self).requests.run_preflight(self.request, self.model)

    # -- the check ------------------------------------------------------------------------

    def _checked(self, message: PreflightChecked) -> None:
        if message.request is not self.request:
            return
        if message.error is not None:
            self._set_status(Text.assemble(("✖ ", "bold red"), safe(message.error, "red")))
            self.error_text = message.error
            return
        checked = message.checked
        assert checked is not None
        self.checked = checked
        preflight = checked.preflight
        lines = preflight.render_text()
        self.summary_text = "\n".join(lines)
        self.query_one("#preflight-summary", Static).update(safe(self.summary_text))
        problems = Text()
        for line in preflight.blocking:
            problems.append_text(Text.assemble(("✖ ", "bold red"), safe(line, "red"), "\n"))
        for line in preflight.warnings:
            problems.append_text(Text.assemble(("⚠ ", "bold yellow"), safe(line, "yellow"), "\n"))
        self.query_one("#preflight-problems", Static).update(problems)
        self.query_one("#preflight-request-title").display = True
        body = json.dumps(preflight.request_body, indent=2, ensure_ascii=False)
        self.query_one("#preflight-request", Static).update(safe(body))
        launch = self.query_one("#launch", Button)
        launch.disabled = not preflight.ok
        if not preflight.ok:
            self._set_status(Text(f"{len(preflight.blocking)} problem(s) block the launch: fix them, then try again",
                                  style="bold red"))
        elif preflight.warnings:
            self._set_status(Text(f"{len(preflight.warnings)} warning(s): ctrl+s asks before launching", style="yellow"))
        else:
            self._set_status(Text("all checks passed: ctrl+s launches", style="green"))
        launch.focus()

    # -- launching ------------------------------------------------------------------------

    def action_launch(self) -> None:
        checked = self.checked
        if self.launching or checked is None or not checked.preflight.ok:
            return
        if checked.preflight.warnings and not self.confirmed_warnings:
            from .confirm import ConfirmScreen

            def answered(yes: bool | None) -> None:
                if yes:
                    self.confirmed_warnings = True
                    self.action_launch()

            count = len(checked.preflight.warnings)
            self.app.push_screen(
                ConfirmScreen(f"Launch despite {count} warning(s)?", yes_label="Launch", no_label="Not yet"), answered
            )
            return
        self.launching = True
        self.creating = False
        self.unavailable = False
        self.query_one("#launch", Button).disabled = True
        self.query_one("#upload-box").display = True
        self.query_one("#upload-label", Static).update(Text("starting…", style="dim"))
        self._set_status(Text("launching: escape cancels the upload", style="bold"))
        host(self).requests.launch_job(checked)

    def _progressed(self, message: LaunchProgressed) -> None:
        if not self.launching:
            return
        progress = message.progress
        self.creating = progress.upload is None
        bar = self.query_one("#upload-bar", ProgressBar)
        if progress.total:
            bar.update(total=progress.total, progress=progress.sent)
        self.query_one("#upload-label", Static).update(safe(progress.describe()))

    def _launch_answered(self, message: JobLaunched | LaunchFailed) -> None:
        if not self.launching:
            return
        self.launching = False
        if isinstance(message, JobLaunched):
            self.dismiss(f"job:{message.job.id}")
            return
        self.query_one("#launch", Button).disabled = False
        self.error_text = message.message
        if message.kind == "training_not_available":
            self.unavailable = True
            self._set_status(
                Text.assemble(
                    ("This organisation can no longer create fine-tuning jobs on this provider. ", "bold yellow"),
                    safe(message.message),
                    ("\np: try this form on another profile (Azure OpenAI, a compatible endpoint, the local backend)",
                     "bold"),
                )
            )
            return
        self._set_status(Text.assemble(("✖ ", "bold red"), safe(message.message, "red")))

    def _worker_failed(self, failure: WorkerFailure) -> None:
        if failure.group == LAUNCH_WORKERS and self.launching:
            self.launching = False
            self.query_one("#launch", Button).disabled = False
            self.error_text = f"launch stopped: {failure.error}"
            self._set_status(Text.assemble(("✖ ", "bold red"), safe(self.error_text, "red")))
        elif failure.group == PREFLIGHT_WORKERS and self.checked is None:
            self.error_text = f"the pre-flight stopped: {failure.error}"
            self._set_status(Text.assemble(("✖ ", "bold red"), safe(self.error_text, "red")))

    def action_other_profile(self) -> None:
        if self.unavailable:
            self.dismiss("switch_profile")

    def action_back(self) -> None:
        if self.launching:
            if self.creating:
                self._set_status(Text("the job is being created: it can no longer be cancelled", style="yellow"))
                return
            host(self).requests.cancel_launch()
            self._set_status(Text("cancelling the upload…", style="yellow"))
            return
        self.dismiss(None)

    def on_unmount(self) -> None:
        host(self).requests.cancel_preflight()  # a check still reading a big file stops

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "launch":
            self.action_launch()
        elif event.button.id == "back":
            self.action_back()

    def _set_status(self, text: Text) -> None:
        self.query_one("#preflight-status", Static).update(text)

