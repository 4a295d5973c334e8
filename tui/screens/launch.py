"""Launch form: training file, base model, method (SFT or DPO), then upload and create the job."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Horizontal, VerticalScroll
from textual.screen import Screen
from textual.widgets import Button, Footer, Input, Label, RadioButton, RadioSet, Select, Static

from tunedeck.backend import BUILTIN_BASE_MODEL

from ..messages import JobLaunched, LaunchFailed, ModelsLoaded
from ..safe_text import one_line, safe
from ..service_actions import LAUNCH_WORKERS, MODELS_WORKERS
from ..state import AppState, host
from ..widgets.header import AppHeader
from ..widgets.path_input import PathInput

if TYPE_CHECKING:  # pragma: no cover
    from ..state import WorkerFailure

METHODS = (
    ("supervised", "SFT", True),
    ("dpo", "DPO", True),
    ("reinforcement", "RFT (needs a grader: not in this form yet)", False),
)


def default_model(models: list[str]) -> str | None:
    """The built-in model when the backend has it (trains in seconds on any machine), else the
    first base model (fine-tuned `ft:` models come after base ones)."""
    if BUILTIN_BASE_MODEL in models:
        return BUILTIN_BASE_MODEL
    base = [m for m in models if not m.startswith("ft:")]
    return (base or models or [None])[0]


class LaunchScreen(Screen):
    BINDINGS = [
        Binding("ctrl+s", "launch", "Launch", id="launch.launch", tooltip="Upload the file and create the job"),
        Binding("escape", "back", "Back", id="launch.back", tooltip="Back without launching"),
    ]

    HELP = "Launch: upload a JSONL training file and create a fine-tuning job."

    def __init__(self, training_path: str = "", validation_path: str = "") -> None:
        super().__init__()
        self._initial_path = training_path
        self._initial_validation = validation_path
        self.launching = False
        self._models_requested = False
        self.error_text = ""
        """The last error shown in the form (plain text; tests read it)."""

    @property
    def state(self) -> AppState:
        return host(self).state

    def compose(self) -> ComposeResult:
        yield AppHeader("Launch", id="header")
        with VerticalScroll(id="launch-form"):
            with Grid(id="launch-grid"):
                yield Label("Training file", classes="field-label")
                yield PathInput(
                    self._initial_path,
                    placeholder="path/to/train.jsonl",
                    id="training-path",
                    tooltip="A JSONL file of chat examples",
                )
                yield Label("Validation file", classes="field-label")
                yield PathInput(
                    self._initial_validation,
                    placeholder="optional: path/to/valid.jsonl (gives the validation loss curve)",
                    id="validation-path",
                    tooltip="Held-out examples in the same format; never trained on",
                )
                yield Label("Base model", classes="field-label")
                yield Select[str]([], prompt="models load when connected", id="model-select", allow_blank=True)
                yield Label("…or type one", classes="field-label")
                yield Input(placeholder="model name (overrides the list)", id="model-custom")
                yield Label("Method", classes="field-label")
                with RadioSet(id="method"):
                    for value, label, enabled in METHODS:
                        yield RadioButton(label, value=value == "supervised", disabled=not enabled, name=value)
            with Horizontal(id="launch-buttons"):
                yield Button("Launch  ctrl+s", id="launch", variant="primary")
                yield Button("Back  esc", id="back")
            yield Static(id="launch-status")
        yield Footer()

    def on_mount(self) -> None:
        state = self.state
        state.models_listed.subscribe(self, self._models_loaded)
        state.launch_answered.subscribe(self, self._launch_answered)
        state.worker_failed.subscribe(self, self._worker_failed)
        state.changed.subscribe(self, lambda _: self._maybe_load_models())
        self.query_one("#training-path", Input).focus()
        if state.models is not None:
            self._fill_models(state.models)
        self._maybe_load_models()  # again each time: new fine-tuned models appear in the list

    def _maybe_load_models(self) -> None:
        state = self.state
        if not self._models_requested and state.connected:
            self._models_requested = True
            if state.models is None:
                self.query_one("#model-select", Select).prompt = "loading models…"
            host(self).requests.load_models()

    def _models_loaded(self, message: ModelsLoaded) -> None:
        if message.error is not None:
            self.query_one("#model-select", Select).prompt = "could not list models: type one below"
            self._set_status(Text.assemble(("models: ", "yellow"), safe(message.error)))
            return
        self._fill_models(message.models)

    def _fill_models(self, models: list[str]) -> None:
        select = self.query_one("#model-select", Select)
        if not models:
            select.prompt = "no models listed: type one below"
            return
        chosen = select.value
        select.set_options([(one_line(m), m) for m in models])
        keep = chosen if isinstance(chosen, str) and chosen in models else default_model(models)
        if keep is not None:
            select.value = keep

    # -- launching ---------------------------------------------------------------------------

    def chosen_model(self) -> str:
        custom = self.query_one("#model-custom", Input).value.strip()
        if custom:
            return custom
        value = self.query_one("#model-select", Select).value
        return value if isinstance(value, str) else ""

    def chosen_method(self) -> str:
        pressed = self.query_one("#method", RadioSet).pressed_button
        return pressed.name if pressed is not None and pressed.name else "supervised"

    def action_launch(self) -> None:
        if self.launching:
            return
        raw_path = self.query_one("#training-path", PathInput).path_text.strip()
        if not raw_path:
            self.show_error("Enter the path of a JSONL training file.")
            self.query_one("#training-path", Input).focus()
            return
        path = Path(raw_path).expanduser().absolute()
        if not path.is_file():
            self.show_error(f"{path}: no such file")
            self.query_one("#training-path", Input).focus()
            return
        validation = self._optional_path("#validation-path")
        if validation is False:
            return
        model = self.chosen_model()
        if not model:
            self.show_error("Choose a base model (or type one).")
            return
        self.launching = True
        self.query_one("#launch", Button).disabled = True
        self.error_text = ""
        self._set_status(Text.assemble(("Uploading ", "bold"), safe(path.name), (" and creating the job…", "bold")))
        host(self).requests.launch_job(path, model, self.chosen_method(), validation or None)

    def _optional_path(self, selector: str) -> Path | None | bool:
        """The path typed in an optional field: None when empty, False (error shown) when missing."""
        field = self.query_one(selector, PathInput)
        raw = field.path_text.strip()
        if not raw:
            return None
        path = Path(raw).expanduser().absolute()
        if not path.is_file():
            self.show_error(f"{path}: no such file")
            field.focus()
            return False
        return path

    def _launch_answered(self, message: JobLaunched | LaunchFailed) -> None:
        if not self.launching:
            return
        self._unlock()
        if isinstance(message, LaunchFailed):
            if message.kind == "training_not_available":
                self.error_text = message.message
                self._set_status(
                    Text.assemble(("This backend does not offer fine-tuning. ", "bold yellow"), safe(message.message))
                )
            else:
                self.show_error(message.message)
            return
        from .job import JobScreen

        self.app.switch_screen(JobScreen(message.job.id))

    def _worker_failed(self, failure: WorkerFailure) -> None:
        """An action of this form died unexpectedly (the app already showed why): recover."""
        if failure.group == LAUNCH_WORKERS and self.launching:
            self._unlock()
            self.show_error(f"launch stopped: {failure.error}")
        elif failure.group == MODELS_WORKERS:
            self._models_loaded(ModelsLoaded([], error=failure.error))

    def _unlock(self) -> None:
        self.launching = False
        self.query_one("#launch", Button).disabled = False

    def show_error(self, message: str) -> None:
        self.error_text = message
        self._set_status(Text.assemble(("✖ ", "bold red"), safe(message, "red")))

    def _set_status(self, text: Text) -> None:
        self.query_one("#launch-status", Static).update(text)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.action_launch()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "launch":
            self.action_launch()
        elif event.button.id == "back":
            self.action_back()

    def action_back(self) -> None:
        self.app.pop_screen()
