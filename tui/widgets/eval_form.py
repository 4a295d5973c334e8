"""The "new evaluation" form: the dataset, the models (each a row with its label; a base
model with a system prompt is the prompted baseline), the grader, the sampling and the
bounds. It builds an `EvalSettings` and posts `EvalForm.StartRequested`; the screen starts
it. A problem is shown next to its field: the form's own (no file, no model, a bad number)
at once, the service's (`Evaluations.create` refusing the file, a line, the grader) when
the screen passes it back through `show_problem`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, VerticalScroll
from textual.message import Message
from textual.suggester import SuggestFromList
from textual.widgets import Button, Input, Label, Select, Static

from tunedeck.core.evaluate.graders import OPERATION_NAMES, SIMILARITY_METRICS, STRING_OPERATIONS
from tunedeck.core.evaluate.records import EvalSettings, GraderChoice, ModelSpec, Sampling

from ..safe_text import clean, safe
from .eval_form_models import EvalModelList, default_label, kind_of
from .ordered_input import OrderedInput
from .path_input import PathInput

if TYPE_CHECKING:  # pragma: no cover
    from tunedeck.core.launch.models import ModelChoice

GRADER_OPTIONS = (
    ("exact match", "exact"),
    ("string check", "string_check"),
    ("text similarity", "text_similarity"),
    ("JSON fields", "json"),
    ("model judge", "model"),
    ("grader JSON file", "file"),
)
CUSTOM_OPTION = ("the job's grader", "custom")
GRADER_ROWS = {
    "string_check": "eval-operation-row",
    "text_similarity": "eval-metric-row",
    "json": "eval-fields-row",
    "model": "eval-judge-row",
    "file": "eval-grader-file-row",
}
"""The row of the setting each grader kind takes (exact and the job's grader take none)."""
MAX_GRADER_FILE = 1 << 20
FIELDS = ("data", "models", "grader", "sampling")
"""Where a problem is shown: each has a note under it (`#eval-<field>-note`)."""
FIELD_INPUTS = {
    "data": ("#eval-data",),
    "models": ("#eval-model-id",),
    "grader": ("#eval-judge", "#eval-fields", "#eval-grader-file", "#eval-pass"),
    "sampling": ("#eval-temperature", "#eval-max-tokens", "#eval-concurrency", "#eval-limit"),
}


def problem_field(message: str, kind: str = "") -> str:
    """Which field a refusal of the service is about: its kind when it says, else its words
    (a grader, a model, else the data: the file, a line of it)."""
    kind = kind.lower()
    for field, words in (("grader", ("grader", "judge")), ("models", ("model",)), ("data", ("data", "file", "line"))):
        if any(word in kind for word in words):
            return field
    lowered = message.lower()
    if "grader" in lowered or "judge" in lowered or "pass threshold" in lowered:
        return "grader"
    if ("model" in lowered or "label" in lowered) and "line" not in lowered and ".jsonl" not in lowered:
        return "models"
    if any(word in lowered for word in ("concurrency", "temperature", "max_tokens", "max tokens", "limit")):
        return "sampling"
    return "data"


@dataclass
class _Problem:
    field: str
    message: str
    widget: str | None = None


class EvalForm(VerticalScroll):
    """The form; `build_settings()` reads it, `ctrl+s` on the screen (or Start) posts
    `StartRequested` with the settings when the form has no problem of its own."""

    @dataclass
    class StartRequested(Message):
        settings: EvalSettings

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.job_id: str | None = None
        """The job the pre-filled models come from (stored with the run)."""
        self.custom_grader: dict[str, Any] | None = None
        """The job's own grader (an RFT job), offered as the grader while set."""
        self.problems: dict[str, str] = {}
        """What each field's note says now (tests read it)."""
        self.model_ids: list[str] = []
        self._picked: str | None = None
        self._recent: list[str] = []
        """The model picked from the list, while the id field still shows it."""

    # -- layout ---------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield Static(Text("New evaluation", style="bold underline"), classes="eval-section")
        with Horizontal(classes="eval-row"):
            yield Label("Dataset", classes="eval-label")
            yield PathInput(
                compact=True,
                placeholder="path/to/valid.jsonl: SFT, DPO or RFT rows (Tab completes)",
                id="eval-data",
                tooltip="Held-out rows the models never trained on; each is asked of every model",
            )
        yield Static(id="eval-data-note", classes="eval-note")
        with Horizontal(classes="eval-row"):
            yield Label("Models", classes="eval-label")
            yield EvalModelList(id="eval-models")
        with Horizontal(classes="eval-row"):
            yield Label("Add a model", classes="eval-label")
            yield Select[str]([], prompt="the profile's models load when connected", id="eval-model-select", compact=True)
        with Horizontal(classes="eval-row"):
            yield Label("…or type one", classes="eval-label")
            yield OrderedInput(
                placeholder="model id, ft: model or checkpoint (enter adds it)", id="eval-model-id", compact=True, clear_on_submit=True
            )
        with Horizontal(classes="eval-row"):
            yield Label("System prompt", classes="eval-label")
            yield OrderedInput(
                placeholder="optional: replaces the rows' own (a base model with one: the prompted baseline)",
                id="eval-system",
                compact=True,
            )
        with Horizontal(classes="eval-row"):
            yield Label("Label", classes="eval-label")
            yield OrderedInput(placeholder="optional: a short name (default: from the model)", id="eval-label", compact=True)
            yield Button("Add", id="eval-add", compact=True)
        yield Static(id="eval-models-note", classes="eval-note")
        with Horizontal(classes="eval-row"):
            yield Label("Grader", classes="eval-label")
            yield Select[str](list(GRADER_OPTIONS), value="exact", allow_blank=False, id="eval-grader", compact=True)
        with Horizontal(classes="eval-row eval-grader-setting", id="eval-operation-row"):
            yield Label("Operation", classes="eval-label")
            yield Select[str](
                [(f"{OPERATION_NAMES.get(op, op)} ({op})", op) for op in STRING_OPERATIONS],
                value="ilike" if "ilike" in STRING_OPERATIONS else STRING_OPERATIONS[0],
                allow_blank=False,
                id="eval-operation",
                compact=True,
            )
        with Horizontal(classes="eval-row eval-grader-setting", id="eval-metric-row"):
            yield Label("Metric", classes="eval-label")
            yield Select[str](
                [(m, m) for m in SIMILARITY_METRICS], value=SIMILARITY_METRICS[0], allow_blank=False, id="eval-metric", compact=True
            )
        with Horizontal(classes="eval-row eval-grader-setting", id="eval-fields-row"):
            yield Label("JSON fields", classes="eval-label")
            yield OrderedInput(placeholder="optional: the fields compared, comma-separated (default: all)", id="eval-fields", compact=True)
        with Horizontal(classes="eval-row eval-grader-setting", id="eval-judge-row"):
            yield Label("Judge model", classes="eval-label")
            yield OrderedInput(placeholder="the model that scores each answer 0..1 against the reference", id="eval-judge", compact=True)
        with Horizontal(classes="eval-row eval-grader-setting", id="eval-grader-file-row"):
            yield Label("Grader file", classes="eval-label")
            yield PathInput(
                compact=True, placeholder="a grader object as RFT jobs take (JSON)", id="eval-grader-file"
            )
        with Horizontal(classes="eval-row"):
            yield Label("Pass at", classes="eval-label")
            yield OrderedInput(placeholder="default: 1.0 for a match, 0.5 for a score", id="eval-pass", compact=True)
        yield Static(id="eval-grader-note", classes="eval-note")
        with Horizontal(classes="eval-row"):
            yield Label("Temperature", classes="eval-label")
            yield OrderedInput("0", id="eval-temperature", compact=True, tooltip="0 answers the same each time")
        with Horizontal(classes="eval-row"):
            yield Label("Max tokens", classes="eval-label")
            yield OrderedInput("256", id="eval-max-tokens", compact=True, tooltip="The longest answer asked for")
        with Horizontal(classes="eval-row"):
            yield Label("Concurrency", classes="eval-label")
            yield OrderedInput("4", id="eval-concurrency", compact=True, tooltip="Requests in flight at once")
        with Horizontal(classes="eval-row"):
            yield Label("Limit", classes="eval-label")
            yield OrderedInput(placeholder="all rows (or the first N)", id="eval-limit", compact=True)
        yield Static(id="eval-sampling-note", classes="eval-note")
        with Horizontal(id="eval-buttons"):
            yield Button("Start  ctrl+s", id="eval-start", variant="primary", compact=True)
        yield Static(id="eval-status-note", classes="eval-note")

    def on_mount(self) -> None:
        for field in (*FIELDS, "status"):
            self.query_one(f"#eval-{field}-note", Static).display = False
        self._show_grader_setting()

    # -- filling ------------------------------------------------------------------------------

    @property
    def models(self) -> EvalModelList:
        return self.query_one(EvalModelList)

    @property
    def data_input(self) -> PathInput:
        return self.query_one("#eval-data", PathInput)

    def offer_models(self, choices: Sequence[ModelChoice]) -> None:
        """The profile's models: picked from the list, suggested as an id is typed."""
        ids = [c.id for c in choices]
        self.model_ids = ids
        select = self.query_one("#eval-model-select", Select)
        select.set_options([(clean(i), i) for i in ids])
        select.prompt = "pick one of the profile's models" if ids else "the profile lists no models"
        suggester = SuggestFromList([clean(i) for i in ids], case_sensitive=True) if ids else None
        self.query_one("#eval-model-id", Input).suggester = suggester
        self.query_one("#eval-judge", Input).suggester = suggester

    def offer_paths(self, recent: Sequence[str], graders: Sequence[str] = ()) -> None:
        self._recent = list(recent)
        self.data_input.offer(self._recent)
        self.query_one("#eval-grader-file", PathInput).offer(graders)

    def prefill(self, specs: Sequence[ModelSpec], grader: GraderChoice | None = None, job_id: str | None = None) -> None:
        """A job's models (and its grader), so only the dataset is left to pick."""
        self.job_id = job_id
        self.models.set_specs(specs)
        if grader is not None:
            self.set_grader(grader)

    def set_grader(self, grader: GraderChoice) -> None:
        select = self.query_one("#eval-grader", Select)
        if grader.kind == "custom":
            self.custom_grader = grader.grader
            select.set_options([*GRADER_OPTIONS, CUSTOM_OPTION])
            select.value = "custom"
        else:
            select.value = grader.kind
            if grader.kind == "string_check" and grader.operation in STRING_OPERATIONS:
                self.query_one("#eval-operation", Select).value = grader.operation
            if grader.kind == "text_similarity" and grader.metric in SIMILARITY_METRICS:
                self.query_one("#eval-metric", Select).value = grader.metric
            if grader.kind == "json":
                self.query_one("#eval-fields", Input).value = ", ".join(grader.fields)
            if grader.kind == "model":
                self.query_one("#eval-judge", Input).value = clean(grader.judge_model or "")
        if grader.pass_threshold is not None:
            self.query_one("#eval-pass", Input).value = str(grader.pass_threshold)
        self._show_grader_setting()

    def set_data_path(self, path: str) -> None:
        """Show `path` (its control characters made visible) and mean the real one."""
        self.data_input.offer([path, *self._recent])
        self.data_input.value = clean(path)

    def grader_kind(self) -> str:
        value = self.query_one("#eval-grader", Select).value
        return value if isinstance(value, str) else "exact"

    def _show_grader_setting(self) -> None:
        shown = GRADER_ROWS.get(self.grader_kind())
        for row in self.query(".eval-grader-setting"):
            row.display = row.id == shown

    # -- events -------------------------------------------------------------------------------

    def on_select_changed(self, event: Select.Changed) -> None:
        event.stop()
        if event.select.id == "eval-grader":
            self._show_grader_setting()
            self.clear_problem("grader")
        elif event.select.id == "eval-model-select" and isinstance(event.value, str):
            field = self.query_one("#eval-model-id", Input)
            field.value = clean(event.value)
            self._picked = event.value
            field.focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        event.stop()
        for field, ids in FIELD_INPUTS.items():
            if f"#{event.input.id}" in ids and field in self.problems:
                self.clear_problem(field)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        if event.input.id == "eval-model-id":
            # The field emptied itself on Enter: what it holds by now was typed after, and
            # belongs to the next model.
            self.add_model(event.value)
        elif event.input.id in ("eval-system", "eval-label"):
            self.add_model()
        else:
            self.request_start()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "eval-add":
            self.add_model()
        elif event.button.id == "eval-start":
            self.request_start()

    def on_eval_model_list_removed(self, event: EvalModelList.Removed) -> None:
        event.stop()
        self.clear_problem("models")

    # -- models ---------------------------------------------------------------------------------

    def add_model(self, submitted: str | None = None) -> ModelSpec | None:
        """The typed (or picked) model as a new row; its label from the model when none is typed.
        `submitted`: the id field's text when Enter was pressed (the field is empty since; it gets
        the text back when the model is refused)."""
        id_field = self.query_one("#eval-model-id", Input)
        typed = (id_field.value if submitted is None else submitted).strip()
        picked = self._picked
        model = picked if picked is not None and clean(picked) == typed else typed
        if not model:
            self.show_problem("models", "Type a model id (or pick one) to add it.", "#eval-model-id")
            id_field.focus()
            return None
        system = self.query_one("#eval-system", Input).value.strip() or None
        label_field = self.query_one("#eval-label", Input)
        taken = self.models.labels
        label = label_field.value.strip()
        if label and label in taken:
            if submitted is not None:
                id_field.value = submitted + id_field.value
            self.show_problem("models", f"The label {label!r} is taken: labels key the results.", "#eval-label")
            label_field.focus()
            return None
        spec = ModelSpec(model, label or default_label(model, system, taken), kind_of(model), system)
        self.models.add_spec(spec)
        for field in (label_field, self.query_one("#eval-system", Input)):
            field.value = ""
        if submitted is None:
            id_field.value = ""
        self._picked = None
        self.clear_problem("models")
        id_field.focus()
        return spec

    # -- the settings -----------------------------------------------------------------------------

    def build_settings(self) -> EvalSettings | None:
        """The settings the form describes, or None with each problem shown at its field."""
        problems: list[_Problem] = []
        raw = self.data_input.path_text.strip()
        data: Path | None = None
        if not raw:
            problems.append(_Problem("data", "Enter the path of a JSONL file to evaluate on.", "#eval-data"))
        else:
            data = Path(raw).expanduser().absolute()
            if not data.is_file():
                problems.append(_Problem("data", f"{data}: no such file", "#eval-data"))
        specs = list(self.models.specs)
        if not specs:
            problems.append(
                _Problem("models", "Add at least one model (a base model with a system prompt is the prompted baseline).", "#eval-model-id")
            )
        grader = self._grader(problems)
        sampling_values = self._sampling(problems)
        for field in FIELDS:
            self.clear_problem(field)
        shown: set[str] = set()
        for problem in problems:
            if problem.field not in shown:  # the first problem of each field
                shown.add(problem.field)
                self.show_problem(problem.field, problem.message, problem.widget)
        if problems or data is None or grader is None or sampling_values is None:
            return None
        temperature, max_tokens, concurrency, limit = sampling_values
        return EvalSettings(
            data_path=str(data),
            data_sha256="",
            models=tuple(specs),
            grader=grader,
            sampling=Sampling(temperature=temperature, max_tokens=max_tokens),
            concurrency=concurrency,
            limit=limit,
            job_id=self.job_id,
        )

    def _grader(self, problems: list[_Problem]) -> GraderChoice | None:
        kind = self.grader_kind()
        threshold: float | None = None
        typed = self.query_one("#eval-pass", Input).value.strip()
        if typed:
            try:
                threshold = float(typed)
            except ValueError:
                problems.append(_Problem("grader", f"Pass at: {typed!r} is not a number", "#eval-pass"))
                return None
        if kind == "string_check":
            operation = self.query_one("#eval-operation", Select).value
            return GraderChoice("string_check", operation=str(operation), pass_threshold=threshold)
        if kind == "text_similarity":
            metric = self.query_one("#eval-metric", Select).value
            return GraderChoice("text_similarity", metric=str(metric), pass_threshold=threshold)
        if kind == "json":
            text = self.query_one("#eval-fields", Input).value
            fields = tuple(f.strip() for f in text.split(",") if f.strip())
            return GraderChoice("json", fields=fields, pass_threshold=threshold)
        if kind == "model":
            judge = self.query_one("#eval-judge", Input).value.strip()
            if not judge:
                problems.append(_Problem("grader", "A model judge needs a judge model.", "#eval-judge"))
                return None
            real = next((m for m in self.model_ids if clean(m) == judge), judge)
            return GraderChoice("model", judge_model=real, pass_threshold=threshold)
        if kind == "custom" and self.custom_grader is not None:
            return GraderChoice("custom", grader=self.custom_grader, pass_threshold=threshold)
        if kind == "file":
            grader = self._grader_file(problems)
            return GraderChoice("custom", grader=grader, pass_threshold=threshold) if grader is not None else None
        return GraderChoice("exact", pass_threshold=threshold)

    def _grader_file(self, problems: list[_Problem]) -> dict[str, Any] | None:
        raw = self.query_one("#eval-grader-file", PathInput).path_text.strip()
        if not raw:
            problems.append(_Problem("grader", "Enter the path of a grader JSON file.", "#eval-grader-file"))
            return None
        path = Path(raw).expanduser()
        try:
            if path.exists() and not path.is_file():  # a folder, or a pipe that would block the read
                raise ValueError("not a regular file")
            if path.stat().st_size > MAX_GRADER_FILE:
                raise ValueError("over 1 MB: not a grader")
            # A regular file of at most 1 MB: read here, well inside a frame.
            grader = json.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            problems.append(_Problem("grader", f"{path}: {exc.strerror or exc}", "#eval-grader-file"))
            return None
        except ValueError as exc:
            problems.append(_Problem("grader", f"{path}: {exc}", "#eval-grader-file"))
            return None
        if not isinstance(grader, dict) or "type" not in grader:
            problems.append(_Problem("grader", f"{path}: not a grader object (a JSON object with a type)", "#eval-grader-file"))
            return None
        return grader

    def _sampling(self, problems: list[_Problem]) -> tuple[float, int, int, int | None] | None:
        def number(widget: str, name: str, kind: type, low: float, high: float | None, default: Any) -> Any:
            typed = self.query_one(widget, Input).value.strip()
            if not typed:
                return default
            try:
                value = kind(typed)
            except ValueError:
                what = "a whole number" if kind is int else "a number"
                problems.append(_Problem("sampling", f"{name}: {typed!r} is not {what}", widget))
                return None
            if value < low or (high is not None and value > high):
                bound = f"from {low:g} to {high:g}" if high is not None else f"at least {low:g}"
                problems.append(_Problem("sampling", f"{name}: {typed} is out of range ({bound})", widget))
                return None
            return value

        temperature = number("#eval-temperature", "Temperature", float, 0.0, 2.0, 0.0)
        max_tokens = number("#eval-max-tokens", "Max tokens", int, 1, None, 256)
        concurrency = number("#eval-concurrency", "Concurrency", int, 1, 64, 4)
        limit = number("#eval-limit", "Limit", int, 1, None, 0)
        if None in (temperature, max_tokens, concurrency, limit):
            return None
        return temperature, max_tokens, concurrency, limit or None

    def request_start(self) -> None:
        self.show_status(None)
        settings = self.build_settings()
        if settings is not None:
            self.post_message(self.StartRequested(settings))
        else:
            self._focus_first_problem()

    # -- problems ---------------------------------------------------------------------------------

    def show_problem(self, field: str, message: str, widget: str | None = None) -> None:
        """`message` under `field` (data, models, grader, sampling), its input marked."""
        if field not in FIELDS:
            field = "data"
        self.problems[field] = message
        note = self.query_one(f"#eval-{field}-note", Static)
        note.update(Text.assemble(("✖ ", "bold red"), safe(message, "red")))
        note.display = True
        for selector in FIELD_INPUTS[field]:
            self.query_one(selector).set_class(widget is None and selector == FIELD_INPUTS[field][0] or selector == widget, "-invalid")

    def clear_problem(self, field: str) -> None:
        self.problems.pop(field, None)
        self.query_one(f"#eval-{field}-note", Static).display = False
        for selector in FIELD_INPUTS[field]:
            self.query_one(selector).remove_class("-invalid")

    def show_service_problem(self, message: str, kind: str = "") -> str:
        """A refusal of `Evaluations.create`, next to the field it is about; returns the field."""
        field = problem_field(message, kind)
        self.show_problem(field, message)
        self._focus_first_problem()
        return field

    def show_status(self, message: str | None, style: str = "red") -> None:
        note = self.query_one("#eval-status-note", Static)
        note.display = bool(message)
        if message:
            glyph = "✖ " if style == "red" else ""
            note.update(Text.assemble((glyph, f"bold {style}"), safe(message, style)))

    def _focus_first_problem(self) -> None:
        for field in FIELDS:
            if field in self.problems:
                marked = [s for s in FIELD_INPUTS[field] if self.query_one(s).has_class("-invalid")]
                target = self.query_one(marked[0] if marked else FIELD_INPUTS[field][0])
                if target.display and target.parent is not None and target.parent.display:
                    target.focus()
                self.query_one(f"#eval-{field}-note").scroll_visible(animate=False)
                return
