"""Launch form: files, base model, method with its hyperparameters, job fields, the local
backend's options, the RFT grader; ctrl+s opens the pre-flight, which uploads and creates.

Fields appear and vanish with the method and the profile: DPO's beta, RFT's effort,
compute, evaluation and grader; W&B only where the provider has it (OpenAI); tunedeck's
options only on the local backend. What the user typed becomes a `LaunchRequest` (the one
the headless `tunedeck jobs create` builds too), checked field by field by the rules the
backend applies, as they type.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import Screen
from textual.widgets import Button, Input, Label, RadioSet, Select, Static

from tunedeck.backend import BUILTIN_BASE_MODEL
from tunedeck.core.launch.request import FORMAT_METHODS, METHOD_LABELS, METHODS, LaunchRequest

from ..launch_fields import (
    FIELDS,
    field_id,
    field_label,
    file_choice,
    file_text,
    initial_text,
    parse_metadata,
    request_summary,
    typed_value,
)
from ..messages import ModelsLoaded
from ..safe_text import clean, one_line, safe
from ..service_actions import MODELS_WORKERS
from ..state import AppState, host
from ..widgets.header import AppHeader
from ..widgets.key_footer import KeyFooter
from ..widgets.marked_radio import MarkedRadioButton
from ..widgets.ordered_input import OrderedInput
from ..widgets.path_input import PathInput

if TYPE_CHECKING:  # pragma: no cover
    from tunedeck.core.datasets import ValidationReport
    from tunedeck.core.launch.models import ModelChoice

    from ..state import WorkerFailure


def default_model(models: list[str]) -> str | None:
    """The built-in model when the backend has it (trains in seconds on any machine), else the
    first base model (fine-tuned `ft:` models come after base ones)."""
    if BUILTIN_BASE_MODEL in models:
        return BUILTIN_BASE_MODEL
    base = [m for m in models if not m.startswith("ft:")]
    return (base or models or [None])[0]


class LaunchScreen(Screen):
    BINDINGS = [
        Binding("ctrl+s", "preflight", "Pre-flight", id="launch.preflight", tooltip="Check everything, then launch"),
        Binding("ctrl+g", "edit_grader", "Grader", id="launch.grader", tooltip="Edit and test the RFT grader"),
        Binding("ctrl+o", "pick_file", "Open file", id="launch.pick", tooltip="Pick the training file"),
        Binding("ctrl+n", "save_preset", "Save preset", id="launch.save_preset", tooltip="Save this form by name"),
        Binding("ctrl+l", "load_preset", "Presets", id="launch.load_preset", tooltip="Fill the form from a preset"),
        Binding("escape", "back", "Back", id="launch.back", tooltip="Back without launching"),
    ]

    HELP = (
        "Launch: fill in the form (empty hyperparameters are auto), then ctrl+s: the pre-flight checks "
        "the files for the method, shows tokens, cost and the exact request, and launches."
    )

    def __init__(
        self,
        training_path: str = "",
        validation_path: str = "",
        *,
        request: LaunchRequest | None = None,
        report: ValidationReport | None = None,
    ) -> None:
        super().__init__()
        if request is None:
            method = "supervised"
            if report is not None:
                method = FORMAT_METHODS.get(report.format or report.checked_as, "supervised")
            request = LaunchRequest(
                training_path=Path(training_path) if training_path else None,
                validation_path=Path(validation_path) if validation_path else None,
                method=method,
            )
        self.initial = request
        self.report = report
        """The dataset browser's validation of the training file, when launched from it."""
        self.grader: dict[str, Any] | None = request.grader
        self.response_format: dict[str, Any] | None = request.response_format
        self.model_choices: list[ModelChoice] = []
        self.recent: list[str] = []
        self.method_chosen = report is not None or request.method != "supervised"
        """The method was picked (by the user, a preset, the browser): typing a file no longer moves it."""
        self._choosing_method = False
        self.detected_format: str | None = None
        """The typed training file's format, from its first lines."""
        self._models_requested = False
        self.error_text = ""
        """The last error shown in the form (plain text; tests read it)."""
        self.problems: list[str] = []
        """What the form would refuse now, one line per field (tests read it)."""

    @property
    def state(self) -> AppState:
        return host(self).state

    # -- layout ---------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        request = self.initial
        yield AppHeader("Launch", id="header")
        with VerticalScroll(id="launch-form"):
            yield Static(Text("Data", style="bold underline"), classes="launch-section")
            with Horizontal(classes="launch-row"):
                yield Label("Training file", classes="field-label")
                yield PathInput(
                    file_text(request.training_path, request.training_file_id),
                    compact=True,
                    placeholder="path/to/train.jsonl, or a file id on the provider (file-…)",
                    id="training-path",
                    tooltip="A JSONL file (Tab completes the path; ctrl+o picks one)",
                )
            yield Static(id="training-note", classes="field-note")
            with Horizontal(classes="launch-row"):
                yield Label("Validation file", classes="field-label")
                yield PathInput(
                    file_text(request.validation_path, request.validation_file_id),
                    compact=True,
                    placeholder="optional: held-out examples (gives the validation loss curve)",
                    id="validation-path",
                    tooltip="Held-out examples in the same format; never trained on",
                )
            yield Static(Text("Model and method", style="bold underline"), classes="launch-section")
            with Horizontal(classes="launch-row"):
                yield Label("Method", classes="field-label")
                with RadioSet(id="method"):
                    for value in METHODS:
                        yield MarkedRadioButton(METHOD_LABELS[value], value=value == request.method, name=value)
            with Horizontal(classes="launch-row"):
                yield Label("Base model", classes="field-label")
                yield Select[str]([], prompt="models load when connected", id="model-select", allow_blank=True, compact=True)
            with Horizontal(classes="launch-row"):
                yield Label("…or type one", classes="field-label")
                yield OrderedInput(
                    request.model,
                    placeholder="model id, ft: model or checkpoint (continue training)",
                    id="model-custom",
                    compact=True,
                )
            yield Static(id="model-note", classes="field-note")
            with Horizontal(classes="launch-row rft-only", id="grader-row"):
                yield Label("Grader", classes="field-label")
                yield Static(id="grader-summary")
                yield Button("Edit  ctrl+g", id="edit-grader", compact=True)
            with Horizontal(classes="launch-row rft-only", id="schema-row"):
                yield Label("Answer format", classes="field-label")
                yield Static(id="schema-summary")
                yield Button("Edit", id="edit-schema", compact=True)
            yield Static(Text("Hyperparameters (empty: auto)", style="bold underline"), classes="launch-section")
            yield from self._fields("hyper")
            yield Static(Text("Job", style="bold underline"), classes="launch-section")
            yield from self._fields("job")
            yield from self._fields("wandb")
            yield Static(Text("Local backend options", style="bold underline"), classes="launch-section option-only")
            yield from self._fields("option")
            yield Static(id="launch-problems")
            with Horizontal(id="launch-buttons"):
                yield Button("Pre-flight  ctrl+s", id="launch", variant="primary")
                yield Button("Back  esc", id="back")
            yield Static(id="launch-status")
        yield KeyFooter()

    def _fields(self, group: str) -> ComposeResult:
        for spec in (f for f in FIELDS if f.group == group):
            classes = f"launch-row group-{group}"
            with Horizontal(classes=classes, id=f"row-{field_id(spec.key)}"):
                yield Label(spec.label, classes="field-label")
                value = initial_text(spec, self.initial)
                if spec.kind == "choice":
                    yield Select[str](
                        [(c, c) for c in spec.choices],
                        value=value if value in spec.choices else spec.choices[0],
                        allow_blank=False,
                        id=field_id(spec.key),
                        compact=True,
                    )
                else:
                    yield OrderedInput(
                        value, placeholder=spec.placeholder, id=field_id(spec.key), tooltip=spec.help or None, compact=True
                    )

    def on_mount(self) -> None:
        state = self.state
        state.models_listed.subscribe(self, self._models_loaded)
        state.worker_failed.subscribe(self, self._worker_failed)
        state.changed.subscribe(self, lambda _: self._on_state_changed())
        self.query_one("#training-path", Input).focus()
        if state.model_choices is not None:
            self._fill_models(state.model_choices)
        self._maybe_load_models()  # again each time: new fine-tuned models appear in the list
        self._show_method()
        self._show_profile_fields()
        self._show_training_note()
        self._show_grader()
        self._recheck()
        self._load_recent()
        if self.report is None:
            self._detect_format(self.query_one("#training-path", PathInput).path_text.strip())

    @work(exclusive=True, group="launch-recent", exit_on_error=False, description="recent datasets")
    async def _load_recent(self) -> None:
        """The recent datasets, offered as the file fields' suggestions and in the picker."""
        from tunedeck.core.recent import recent_files

        service = self.state.service
        if service is None:
            return
        self.recent = await recent_files(service.cache)
        for field in self.query(PathInput):
            field.offer(self.recent)

    # -- what shows, by method and profile ---------------------------------------------------

    def chosen_method(self) -> str:
        pressed = self.query_one("#method", RadioSet).pressed_button
        return pressed.name if pressed is not None and pressed.name else "supervised"

    def _show_method(self) -> None:
        method = self.chosen_method()
        for spec in FIELDS:
            self.query_one(f"#row-{field_id(spec.key)}").display = method in spec.methods and self._group_shown(spec.group)
        for row in self.query(".rft-only"):
            row.display = method == "reinforcement"

    def _group_shown(self, group: str) -> bool:
        backend = self._backend()
        if group == "option":
            service = self.state.service
            return service is not None and service.takes_tunedeck_options
        if group == "wandb":
            return backend == "openai"
        return True

    def _backend(self) -> str:
        service = self.state.service
        return service.profile.backend if service is not None else ""

    def _show_profile_fields(self) -> None:
        for node in self.query(".option-only"):
            node.display = self._group_shown("option")
        self._show_method()

    def _on_state_changed(self) -> None:
        self._show_profile_fields()
        self._maybe_load_models()

    def on_radio_set_changed(self, event: RadioSet.Changed) -> None:
        event.stop()
        if not self._choosing_method:
            self.method_chosen = True  # by the user: a detected format no longer moves it
        self._show_method()
        self._show_model_note()
        self._show_training_note()
        self._recheck()

    def on_input_changed(self, event: Input.Changed) -> None:
        event.stop()
        if event.input.id == "training-path":
            self._show_training_note()
            self._detect_format(self.query_one("#training-path", PathInput).path_text.strip())
        elif event.input.id == "model-custom":
            self._show_model_note()
        self._recheck()

    @work(thread=True, exclusive=True, group="launch-detect", exit_on_error=False, description="detect the format")
    def _detect_format(self, raw: str) -> None:
        """The typed training file's format, from its first lines (a few ms): it picks the
        method until the user picks one."""
        from tunedeck.core.datasets.validate import detect_format

        path = Path(raw).expanduser()
        try:
            fmt = detect_format(path) if raw and path.is_file() else None
        except OSError:
            fmt = None
        self.app.call_from_thread(self._format_detected, raw, fmt)

    def _format_detected(self, raw: str, fmt: str | None) -> None:
        if raw != self.query_one("#training-path", PathInput).path_text.strip():
            return  # typed on since
        self.detected_format = fmt
        method = FORMAT_METHODS.get(fmt or "")
        if method is not None and not self.method_chosen and method != self.chosen_method():
            self._choosing_method = True
            try:
                for button in self.query("#method RadioButton"):
                    if button.name == method:
                        button.value = True
            finally:
                self.call_after_refresh(self._method_set)
        self._show_training_note()

    def _method_set(self) -> None:
        self._choosing_method = False

    def on_select_changed(self, event: Select.Changed) -> None:
        event.stop()
        if event.select.id == "model-select":
            self._show_model_note()
        self._recheck()

    # -- models ---------------------------------------------------------------------------

    def _maybe_load_models(self) -> None:
        state = self.state
        if not self._models_requested and state.connected:
            self._models_requested = True
            if state.model_choices is None:
                self.query_one("#model-select", Select).prompt = "loading models…"
            host(self).requests.load_models()

    def _models_loaded(self, message: ModelsLoaded) -> None:
        select = self.query_one("#model-select", Select)
        if message.error is not None:
            select.prompt = "could not list models: type one below"
            self._set_status(Text.assemble(("models: ", "yellow"), safe(message.error)))
            return
        self._fill_models(message.choices)
        self._show_profile_fields()  # a compatible profile may turn out to be a tunedeck backend

    def _fill_models(self, choices: list[ModelChoice]) -> None:
        select = self.query_one("#model-select", Select)
        self.model_choices = choices
        if not choices:
            select.prompt = "no models listed: type one below"
            return
        today = dt.date.today()
        chosen = select.value
        ids = [c.id for c in choices]
        select.prompt = "choose a base model"
        select.set_options([(one_line(c.label(today)), c.id) for c in choices])
        typed = self.query_one("#model-custom", Input).value.strip()
        keep = chosen if isinstance(chosen, str) and chosen in ids else None
        if keep is None and typed in ids:
            keep = typed
            self.query_one("#model-custom", Input).value = ""
        if keep is None and not typed:
            keep = default_model(ids)
        if keep is not None:
            select.value = keep
        self._show_model_note()

    def chosen_model(self) -> str:
        custom = self.query_one("#model-custom", Input).value.strip()
        if custom:
            return custom
        value = self.query_one("#model-select", Select).value
        return value if isinstance(value, str) else ""

    def _model_choice(self) -> ModelChoice | None:
        model = self.chosen_model()
        return next((c for c in self.model_choices if c.id == model), None)

    def _show_model_note(self) -> None:
        note = self.query_one("#model-note", Static)
        choice = self._model_choice()
        parts: list[tuple[str, str] | Text] = []
        if choice is not None:
            warning = choice.shutdown_warning(dt.date.today())
            if warning:
                parts.append(safe("⚠ " + warning + "  ", "yellow"))
            trains = choice.trains(self.chosen_method())
            if trains is False:
                label = METHOD_LABELS[self.chosen_method()]
                parts.append((f"⚠ {label} is not known to train this model ({', '.join(choice.methods).upper()})", "yellow"))
        note.update(Text.assemble(*parts) if parts else "")
        note.display = bool(parts)

    # -- files ------------------------------------------------------------------------------

    def _show_training_note(self) -> None:
        """What the dataset browser found in this file, when it is the file launched from."""
        note = self.query_one("#training-note", Static)
        report = self.report
        raw = self.query_one("#training-path", PathInput).path_text.strip()
        if report is None or not raw or Path(raw).expanduser().absolute() != Path(report.path).absolute():
            fmt, method = self.detected_format, FORMAT_METHODS.get(self.detected_format or "")
            if fmt is None or not raw:
                note.display = False
                return
            text = Text(f"{fmt.upper()} format (from its first lines)", style="dim")
            if method is not None and method != self.chosen_method():
                text.append(f" · ⚠ the method is {METHOD_LABELS[self.chosen_method()]}", style="yellow")
            note.update(text)
            note.display = True
            return
        fmt = report.format or report.checked_as
        method = FORMAT_METHODS.get(fmt)
        parts: list[tuple[str, str]] = []
        if report.error_count:
            first = next((i for i in report.errors if i.line is not None), None)
            where = f" (first: line {first.line}: {first.message})" if first is not None else ""
            parts.append(
                (f"✖ {report.error_count:,} invalid line(s){where}: the pre-flight will block; "
                 "w in the dataset browser writes a clean copy", "red")
            )
        else:
            parts.append((f"✔ {report.valid_examples:,} valid examples", "green"))
        if fmt:
            parts.append((f" · {fmt.upper()} format", ""))
        if method is not None and method != self.chosen_method():
            parts.append((f" · ⚠ the method is {METHOD_LABELS[self.chosen_method()]}", "yellow"))
        note.update(Text.assemble(*(safe(t, s) if s else safe(t) for t, s in parts)))
        note.display = True

    def action_pick_file(self) -> None:
        from .dataset_prompts import OpenDatasetScreen

        field = self.focused if isinstance(self.focused, PathInput) else self.query_one("#training-path", PathInput)

        def chosen(path: Path | None) -> None:
            if path is not None:
                field.value = str(path)
                field.focus()

        self.app.push_screen(OpenDatasetScreen(self.recent, Path.cwd()), chosen)

    # -- grader and answer format (RFT) -------------------------------------------------------

    def _show_grader(self) -> None:
        summary = self.query_one("#grader-summary", Static)
        if self.grader is None:
            summary.update(Text("none yet: RFT needs one (ctrl+g)", style="yellow"))
        else:
            kind = str(self.grader.get("type", "?"))
            name = str(self.grader.get("name", ""))
            summary.update(Text.assemble(safe(kind, "bold"), " ", safe(name)))
        schema = self.query_one("#schema-summary", Static)
        if self.response_format is None:
            schema.update(Text("free text (optional: a JSON schema)", style="dim"))
        else:
            schema.update(Text("JSON schema", style="bold"))

    def action_edit_grader(self) -> None:
        if self.chosen_method() != "reinforcement":
            self.notify("a grader belongs to RFT: choose RFT first", markup=False)
            return
        from .grader_editor import GraderEditorScreen

        service = self.state.service
        dataset = self._training_path()

        def edited(grader: dict[str, Any] | None) -> None:
            if grader is not None:
                self.grader = grader
                self._show_grader()
                self._recheck()

        run = service.run_grader if service is not None else None
        paths = service.paths if service is not None else None
        self.app.push_screen(GraderEditorScreen(dataset, self.grader, run, paths), edited)

    def action_edit_schema(self) -> None:
        from .json_editor import JsonEditorScreen

        def edited(value: dict[str, Any] | None) -> None:
            if value is not None:
                self.response_format = value or None
                self._show_grader()
                self._recheck()

        start = self.response_format or {
            "type": "json_schema",
            "json_schema": {"name": "answer", "strict": True, "schema": {"type": "object", "properties": {}}},
        }
        self.app.push_screen(
            JsonEditorScreen("Answer format (response_format): empty {} for free text", start), edited
        )

    def _training_path(self) -> Path | None:
        raw = self.query_one("#training-path", PathInput).path_text.strip()
        if not raw or raw.startswith("file-"):
            return None
        path = Path(raw).expanduser().absolute()
        return path if path.is_file() else None

    # -- the request ----------------------------------------------------------------------------

    def build_request(self) -> tuple[LaunchRequest | None, list[str]]:
        """The request the form describes, or the typing errors that stop it being one."""
        errors: list[str] = []
        method = self.chosen_method()
        training_path, training_id = file_choice(self.query_one("#training-path", PathInput).path_text)
        validation_path, validation_id = file_choice(self.query_one("#validation-path", PathInput).path_text)
        hyper: dict[str, Any] = {}
        options: dict[str, Any] = {}
        wandb: dict[str, Any] = {}
        job: dict[str, Any] = {}
        for spec in FIELDS:
            if method not in spec.methods or not self._group_shown(spec.group):
                continue
            widget = self.query_one(f"#{field_id(spec.key)}")
            try:
                value = typed_value(spec, widget.value)
            except ValueError as exc:
                errors.append(f"{spec.label}: {exc}")
                widget.add_class("-invalid")
                continue
            widget.remove_class("-invalid")
            if value is None:
                continue
            if spec.group == "hyper":
                hyper[spec.key] = value
            elif spec.group == "option":
                options[spec.key] = value
            elif spec.group == "wandb":
                wandb[spec.key.split(".", 1)[1]] = value
            else:
                job[spec.key] = value
        try:
            metadata = parse_metadata(job.pop("metadata", ""))
        except ValueError as exc:
            errors.append(str(exc))
            metadata = {}
        if errors:
            return None, errors
        request = LaunchRequest(
            training_path=training_path,
            training_file_id=training_id,
            validation_path=validation_path,
            validation_file_id=validation_id,
            model=self.chosen_model(),
            method=method,
            hyperparameters=hyper,
            suffix=job.get("suffix", ""),
            seed=job.get("seed"),
            metadata=metadata,
            # W&B keys the form has no field for (a job's run name, tags) are kept as they came.
            wandb=_merged_wandb(self.initial.wandb, wandb),
            options=options,
            grader=self.grader if method == "reinforcement" else None,
            response_format=self.response_format if method == "reinforcement" else None,
        )
        return request, []

    def _recheck(self) -> None:
        request, errors = self.build_request()
        if request is not None:
            problems = request.problems(local=self._group_shown("option"))
            errors = [_labelled(field_label(p.field), p.message) for p in problems]
            bad = {p.field for p in problems}
            for spec in FIELDS:
                key = {"hyper": "hyperparameters.", "option": "options."}.get(spec.group, "") + spec.key
                widget = self.query_one(f"#{field_id(spec.key)}")
                widget.set_class(key in bad or (spec.group == "wandb" and "integrations.wandb" in bad), "-invalid")
        self.problems = errors
        panel = self.query_one("#launch-problems", Static)
        panel.update(Text("\n".join("• " + clean(e) for e in errors), style="yellow") if errors else "")
        panel.display = bool(errors)

    def action_preflight(self) -> None:
        request, errors = self.build_request()
        if request is None:
            self.show_error("; ".join(errors))
            return
        if request.training_path is None and not request.training_file_id:
            self.show_error("Enter the path of a JSONL training file (or a file id on the provider).")
            self.query_one("#training-path", Input).focus()
            return
        for path, field in ((request.training_path, "#training-path"), (request.validation_path, "#validation-path")):
            if path is not None and not path.is_file():
                self.show_error(f"{path}: no such file")
                self.query_one(field, Input).focus()
                return
        if not request.model:
            self.show_error("Choose a base model (or type one).")
            return
        self.error_text = ""
        self._set_status(Text(""))
        from .preflight import PreflightScreen

        choice = self._model_choice()
        self.app.push_screen(PreflightScreen(request, choice, self.report), self._preflight_done)

    def _preflight_done(self, outcome: str | None) -> None:
        request, _ = self.build_request()
        if outcome == "switch_profile" and request is not None:
            host(self).switch_profile(keep_launch=request)
        elif outcome is not None and outcome.startswith("job:"):
            from .job import JobScreen

            self.app.switch_screen(JobScreen(outcome.removeprefix("job:")))

    # -- presets ----------------------------------------------------------------------------

    def action_save_preset(self) -> None:
        request, errors = self.build_request()
        service = self.state.service
        if request is None or service is None or service.paths is None:
            self.show_error("; ".join(errors) or "presets are kept once the profile is open")
            return
        from tunedeck.core.launch.presets import PresetError, save_preset

        from .dataset_prompts import AskScreen

        paths = service.paths

        def named(name: str | None) -> None:
            if not name:
                return
            try:  # one small file in the config folder: written at once, no worker needed
                save_preset(paths, name, request)
            except PresetError as exc:
                self.show_error(str(exc))
            else:
                self.notify(f"saved preset {clean(name)}: ctrl+l fills a form from it", markup=False)

        self.app.push_screen(AskScreen("Save this form as the preset named"), named)

    def action_load_preset(self) -> None:
        service = self.state.service
        if service is None or service.paths is None:
            return
        from tunedeck.core.launch.presets import PresetError, load_presets

        try:
            presets = load_presets(service.paths)
        except PresetError as exc:
            self.show_error(str(exc))
            return
        if not presets:
            self.notify("no presets yet: ctrl+n saves this form as one", markup=False)
            return
        from .pick import PickScreen

        def picked(name: str | None) -> None:
            if name in presets:
                self.app.switch_screen(LaunchScreen(request=presets[name]))

        labels = {name: f"{name}  ·  {request_summary(r)}" for name, r in presets.items()}
        self.app.push_screen(PickScreen("Fill the form from the preset", labels), picked)

    # -- answers ------------------------------------------------------------------------------

    def _worker_failed(self, failure: WorkerFailure) -> None:
        if failure.group == MODELS_WORKERS:
            self._models_loaded(ModelsLoaded([], error=failure.error))

    def show_error(self, message: str) -> None:
        self.error_text = message
        self._set_status(Text.assemble(("✖ ", "bold red"), safe(message, "red")))

    def _set_status(self, text: Text) -> None:
        self.query_one("#launch-status", Static).update(text)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.action_preflight()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        actions = {
            "launch": self.action_preflight,
            "back": self.action_back,
            "edit-grader": self.action_edit_grader,
            "edit-schema": self.action_edit_schema,
        }
        if event.button.id in actions:
            actions[event.button.id]()

    def action_back(self) -> None:
        self.app.pop_screen()


def _merged_wandb(initial: dict[str, Any] | None, typed: dict[str, Any]) -> dict[str, Any] | None:
    """The W&B integration: the typed fields over the ones the form does not show. Without a
    project there is no integration (the API needs one)."""
    merged = {k: v for k, v in (initial or {}).items() if k not in ("project", "entity")}
    merged.update(typed)
    return merged if merged.get("project") else None


def _labelled(label: str, message: str) -> str:
    """A field's problem as the form lists it, its label once ("Epochs: expected ...")."""
    return message if message.startswith(f"{label}:") else f"{label}: {message}"
