"""The RFT grader editor: pick a type, edit its JSON with the problems shown as you type, see
which `{{item.*}}` fields the dataset's rows have, test-run it on a row and an answer, save
and load graders by name. Dismisses with the grader (ctrl+s, when it has no errors) or None.

The checking, the starting graders, the saved files and the test run are core's
(`tunedeck.core.launch.graders`); this screen shows them. Rows are sampled once, in a
thread, when it opens; the check then runs on the UI thread 0.2 s after typing stops (no
I/O: a few hundred dict lookups). The test run awaits the `run_grader` it was given (the
provider's `graders/run`), in a worker that posts its answer as a message.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import Button, Input, OptionList, Select, Static, TextArea
from textual.widgets.option_list import Option
from textual.worker import Worker

from tunedeck.core.launch.graders import (
    GRADER_TYPES,
    LOCAL_CODE,
    GraderCheck,
    GraderRun,
    RowSample,
    check_grader_text,
    dataset_fields,
    editor_text,
    name_problem,
    row_at,
    sample_rows,
    save_grader,
    saved_graders,
    template_for,
    test_run,
)
from tunedeck.core.paths import AppPaths

from ..safe_text import clean, one_line, safe
from ..state import pass_on_failure
from ..widgets.key_footer import KeyFooter
from ..widgets.ordered_input import OrderedInput
from .confirm import ConfirmScreen
from .dataset_prompts import AskScreen

CHECK_DELAY_S = 0.2
"""The check runs this long after the last keystroke."""
SAMPLED_ROWS = 200

RunGrader = Callable[[dict, str, dict], Awaitable[dict]]


@dataclass(eq=False, repr=False)
class RowsSampled(Message):
    """The dataset's first rows were read (`error` says why not)."""

    rows: RowSample | None
    error: str = ""


@dataclass(eq=False, repr=False)
class GraderTested(Message):
    """A test run answered (`error`: the row could not be read, so nothing ran)."""

    run: GraderRun | None
    line: int | None
    error: str = ""


class GraderEditorScreen(Screen[dict | None]):
    BINDINGS = [
        Binding("ctrl+s", "use", "Use", id="grader.use", tooltip="Use this grader (when it has no errors)"),
        Binding("ctrl+t", "run_test", "Test run", id="grader.run", tooltip="Grade the sample answer on the row"),
        Binding("ctrl+n", "save", "Save as", id="grader.save", tooltip="Save this grader under a name"),
        Binding("ctrl+o", "load", "Load", id="grader.load", tooltip="Load a saved grader"),
        Binding("escape", "back", "Back", id="grader.back", tooltip="Back without a grader"),
    ]

    HELP = "Grader: edit an RFT grader's JSON, check its fields against the dataset, test-run it."

    def __init__(
        self,
        dataset_path: Path | None,
        grader: dict | None,
        run_grader: RunGrader | None,
        paths: AppPaths | None,
    ) -> None:
        super().__init__()
        self.dataset_path = dataset_path
        self.paths = paths
        self._run_grader = run_grader
        self.rows: RowSample = RowSample()
        self.rows_note = "no dataset" if dataset_path is None else "reading rows…"
        if grader is not None:
            self._text = editor_text(grader)
            kind = grader.get("type")
            self._shown_type = kind if kind in GRADER_TYPES else GRADER_TYPES[0]
            self._template_text: str | None = None
        else:
            self._shown_type = GRADER_TYPES[0]
            self._text = editor_text(template_for(self._shown_type, []))
            self._template_text = self._text
        self._pristine_text = self._text
        """The text last put in by the screen (a template, the given or a loaded grader)."""
        self._saved_name: str | None = None
        self._check_timer: Timer | None = None
        self.check: GraderCheck = check_grader_text(self._text, self.rows)
        self.last_run: GraderRun | None = None
        self._saved: dict[str, dict] = {}
        """The saved graders the load list shows, by name."""
        self.status_text = ""
        """The last status line (plain text; tests read it)."""

    # -- layout -----------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield Static(self._title(), id="grader-title")
        with VerticalScroll(id="grader-body"):
            with Horizontal(id="grader-type-row"):
                yield Select(
                    [(kind, kind) for kind in GRADER_TYPES], value=self._shown_type, allow_blank=False, id="grader-type"
                )
                yield Button("Use  ctrl+s", id="grader-use", variant="primary")
                yield Button("Back  esc", id="grader-back")
            yield Static(id="grader-status")
            yield OptionList(id="grader-saved")
            with Horizontal(id="grader-edit-row"):
                yield self._text_area()
                with VerticalScroll(id="grader-side"):
                    yield Static(id="grader-problems")
                    yield Static(id="grader-references")
            with Horizontal(id="grader-run-row"):
                yield OrderedInput(placeholder="row", type="integer", id="grader-line", tooltip="Line of the dataset (from 1)")
                yield OrderedInput(placeholder="a sample answer to grade", id="grader-sample")
                yield Button("Test run  ctrl+t", id="grader-run")
            yield Static(id="grader-result")
        yield KeyFooter()

    def _text_area(self) -> TextArea:
        area = TextArea(self._text, id="grader-text", show_line_numbers=True, soft_wrap=False)
        if "json" in area.available_languages:  # highlighting needs the tree-sitter extra
            area.language = "json"
        return area

    def on_mount(self) -> None:
        self.query_one("#grader-saved", OptionList).display = False
        self.query_one("#grader-status", Static).display = False
        self._show_check()
        hint = Text("ctrl+t grades the sample answer on the row (the first row when empty)", style="dim")
        self._show_result(hint, reveal=False)
        self.query_one("#grader-text", TextArea).focus()
        if self.dataset_path is not None:
            self.sample_dataset(self.dataset_path)

    def _title(self) -> Text:
        where = one_line(self.dataset_path.name) if self.dataset_path is not None else Text("no dataset")
        return Text.assemble(("Grader", "bold"), " · ", where, " · ", (self.rows_note, "dim"))

    @property
    def text(self) -> str:
        return self.query_one("#grader-text", TextArea).text

    # -- the dataset's rows -------------------------------------------------------------------

    @work(thread=True, exclusive=True, group="grader-rows", exit_on_error=False, description="read the dataset's rows")
    def sample_dataset(self, path: Path) -> None:
        try:
            rows = sample_rows(path, SAMPLED_ROWS)
        except OSError as exc:
            self.post_message(RowsSampled(None, f"cannot read {path.name}: {exc.strerror or exc}"))
            return
        self.post_message(RowsSampled(rows))

    def on_rows_sampled(self, message: RowsSampled) -> None:
        if message.rows is None:
            self.rows_note = message.error
        else:
            self.rows = message.rows
            more = "" if self.rows.complete else " (the first)"
            bad = f", {self.rows.skipped} bad lines skipped" if self.rows.skipped else ""
            self.rows_note = f"{len(self.rows)} rows read{more}{bad}"
            if self._is_untouched_template():  # now it can name one of the dataset's fields
                self._put_text(editor_text(template_for(self._shown_type, dataset_fields(self.rows))), template=True)
        self.query_one("#grader-title", Static).update(self._title())
        self.check_now()

    # -- checking as you type --------------------------------------------------------------------

    def on_text_area_changed(self, event: TextArea.Changed) -> None:
        event.stop()
        if self._check_timer is not None:
            self._check_timer.stop()
        self._check_timer = self.set_timer(CHECK_DELAY_S, self.check_now)

    @property
    def check_pending(self) -> bool:
        """A check is waiting for typing to pause."""
        return self._check_timer is not None

    def check_now(self) -> GraderCheck:
        """Check the text now (the timer calls this; so do ctrl+s and tests)."""
        if self._check_timer is not None:
            self._check_timer.stop()
            self._check_timer = None
        self.check = check_grader_text(self.text, self.rows)
        grader = self.check.grader
        kind = grader.get("type") if grader is not None else None
        if kind in GRADER_TYPES and kind != self._shown_type:
            self._show_type(kind)  # the select follows a type typed into the JSON
        self._show_check()
        return self.check

    def _show_check(self) -> None:
        check = self.check
        problems = Text()
        for error in check.errors:
            problems.append_text(safe(f"✗ {error}\n", "red"))
        for warning in check.warnings:
            problems.append_text(safe(f"! {warning}\n", "yellow"))
        if not check.errors and not check.warnings:
            problems.append("✓ no problems", style="green")
        problems.rstrip()
        self.query_one("#grader-problems", Static).update(problems)
        self.query_one("#grader-references", Static).update(self._references_text())

    def _references_text(self) -> Text:
        text = Text("fields read\n", style="bold")
        grader = self.check.grader or {}
        if not self.check.references:
            reads_code = grader.get("type") == "python"
            text.append("python reads the row in its code" if reads_code else "no {{item.*}} fields", style="dim")
            return text
        for reference in self.check.references:
            if not reference.of_rows:
                style, count = "dim", "not checked (no rows)"
            else:
                everywhere = reference.found_in == reference.of_rows
                style = "green" if everywhere else "red" if not reference.found_in else "yellow"
                count = f"{reference.found_in}/{reference.of_rows} rows"
            text.append_text(safe(reference.path))
            text.append(f"  {count}\n", style=style)
        text.rstrip()
        return text

    # -- the type -------------------------------------------------------------------------------

    def on_select_changed(self, event: Select.Changed) -> None:
        event.stop()
        chosen = event.value
        if not isinstance(chosen, str) or chosen == self._shown_type:
            return  # the screen set it (or nothing changed)
        if self._is_untouched_template():
            self._put_template(chosen)
            return
        before = self._shown_type

        def answered(replace: bool | None) -> None:
            if replace:
                self._put_template(chosen)
            else:
                self._show_type(before)

        question = f"Replace the grader you edited with a new {chosen} grader?"
        self.app.push_screen(ConfirmScreen(question, yes_label="Replace", no_label="Keep"), answered)

    def _is_untouched_template(self) -> bool:
        return self._template_text is not None and self.text == self._template_text

    def _put_template(self, kind: str) -> None:
        self._show_type(kind)
        self._put_text(editor_text(template_for(kind, dataset_fields(self.rows))), template=True)
        self.check_now()

    def _show_type(self, kind: str) -> None:
        self._shown_type = kind  # first: the Changed this posts then reads as the screen's own
        select = self.query_one("#grader-type", Select)
        if select.value != kind:
            select.value = kind

    def _put_text(self, text: str, *, template: bool) -> None:
        self.query_one("#grader-text", TextArea).load_text(text)
        self._pristine_text = text
        self._template_text = text if template else None

    # -- test run -------------------------------------------------------------------------------

    def action_run_test(self) -> None:
        check = self.check_now()
        if check.grader is None:
            self._show_result(safe(f"not run: fix the JSON first ({'; '.join(check.errors)})", "red"))
            return
        typed = self.query_one("#grader-line", Input).value.strip()
        sample = self.query_one("#grader-sample", Input).value
        line: int | None = None
        item: dict[str, Any] | None = {}
        if typed:
            line = int(typed) if typed.lstrip("-").isdigit() else 0
            if line < 1:
                self._show_result(Text("not run: rows are numbered from 1", style="red"))
                return
            if self.dataset_path is None:
                self._show_result(Text("not run: there is no dataset to take the row from", style="red"))
                return
            item = self.rows.row_at(line)  # None: not among the sampled rows, the worker reads it
        elif self.rows:
            line, item = self.rows.lines[0], self.rows[0]
        where = f"row {line}" if line is not None else "an empty item"
        self._show_result(Text(f"grading on {where}…", style="dim"))
        self.grade_sample(check.grader, sample, item, line)

    @work(exclusive=True, exit_on_error=False, group="grader-run", description="test-run the grader")
    async def grade_sample(self, grader: dict, sample: str, item: dict | None, line: int | None) -> None:
        if item is None:
            assert self.dataset_path is not None and line is not None
            try:
                item = await asyncio.to_thread(row_at, self.dataset_path, line)
            except (OSError, ValueError) as exc:
                self.post_message(GraderTested(None, line, f"row {line}: {exc}"))
                return
        self.post_message(GraderTested(await test_run(self._run_grader, grader, sample, item), line))

    def on_grader_tested(self, message: GraderTested) -> None:
        if message.run is None:
            self._show_result(safe(f"not run: {message.error}", "red"))
            return
        self.last_run = message.run
        self._show_result(_run_text(message.run, message.line))

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if pass_on_failure(self, event) and event.worker.group == "grader-run":
            self._show_result(safe(f"the test run failed: {event.worker.error}", "red"))

    def _show_result(self, text: Text, *, reveal: bool = True) -> None:
        result = self.query_one("#grader-result", Static)
        result.update(text)
        if reveal:  # on a short terminal the result is below the fold (once it is laid out)
            self.call_after_refresh(result.scroll_visible, animate=False)

    # -- saving and loading ------------------------------------------------------------------------

    def action_save(self) -> None:
        if self.paths is None:
            self._status("saving needs the app's config folder", "yellow")
            return
        grader = self.check_now().grader
        if grader is None:
            self._status("fix the JSON before saving it", "red")
            return
        suggested = self._saved_name or (grader.get("name") if isinstance(grader.get("name"), str) else "")
        if suggested and name_problem(suggested) is not None:
            suggested = ""
        ask = AskScreen("Save this grader as", value=clean(suggested), placeholder="a name: letters, digits, _ . -")
        self.app.push_screen(ask, lambda name: self._save_as(name, grader))

    def _save_as(self, name: str | None, grader: dict) -> None:
        if name is None or self.paths is None:
            return
        problem = name_problem(name)
        if problem is not None:
            self._status(f"not saved: {problem}", "red")
            return
        if name != self._saved_name and name in saved_graders(self.paths).graders:
            def answered(replace: bool | None) -> None:
                if replace:
                    self._write(name, grader)

            self.app.push_screen(ConfirmScreen(f"Replace the saved grader {name!r}?", yes_label="Replace"), answered)
            return
        self._write(name, grader)

    def _write(self, name: str, grader: dict) -> None:
        assert self.paths is not None
        try:
            path = save_grader(self.paths, name, grader)
        except (OSError, ValueError) as exc:
            self._status(f"not saved: {exc}", "red")
            return
        self._saved_name = name
        self._pristine_text = self.text
        self._template_text = None
        self._status(f"saved as {name} ({path})", "green")

    def action_load(self) -> None:
        if self.paths is None:
            self._status("saved graders need the app's config folder", "yellow")
            return
        saved = saved_graders(self.paths)
        self._saved = saved.graders
        if saved.errors:
            self._status("could not read: " + "; ".join(saved.errors), "yellow")
        elif not saved.graders:
            self._status("no saved graders yet (ctrl+n saves this one)", "yellow")
        listing = self.query_one("#grader-saved", OptionList)
        listing.clear_options()
        listing.add_options([Option(one_line(name), id=name) for name in saved.graders])
        listing.display = bool(saved.graders)
        if saved.graders:
            listing.highlighted = 0
            listing.focus()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        name = event.option.id
        grader = self._saved.get(name) if name is not None else None
        if grader is None:
            return
        self._hide_saved()
        if self.text == self._pristine_text:
            self._load(name, grader)
            return

        def answered(replace: bool | None) -> None:
            if replace:
                self._load(name, grader)

        question = f"Replace the grader you edited with the saved grader {name!r}?"
        self.app.push_screen(ConfirmScreen(question, yes_label="Replace", no_label="Keep"), answered)

    def _load(self, name: str, grader: dict) -> None:
        self._put_text(editor_text(grader), template=False)
        self._saved_name = name
        self._status(f"loaded {name}", "green")
        self.check_now()

    def _hide_saved(self) -> None:
        self.query_one("#grader-saved", OptionList).display = False
        self.query_one("#grader-text", TextArea).focus()

    # -- leaving -----------------------------------------------------------------------------------

    def action_use(self) -> None:
        check = self.check_now()
        if check.ok:
            self.dismiss(check.grader)
            return
        count = len(check.errors)
        self._status(f"{count} problem{'s' if count != 1 else ''} to fix before this grader can be used", "red")

    def action_back(self) -> None:
        if self.query_one("#grader-saved", OptionList).display:
            self._hide_saved()
            return
        self.dismiss(None)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        actions = {"grader-use": self.action_use, "grader-back": self.action_back, "grader-run": self.action_run_test}
        action = actions.get(event.button.id or "")
        if action is not None:
            action()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.action_run_test()

    def _status(self, message: str, style: str) -> None:
        self.status_text = message
        status = self.query_one("#grader-status", Static)
        status.update(safe(message, style))
        status.display = True
        self.call_after_refresh(status.scroll_visible, animate=False)


def _run_text(run: GraderRun, line: int | None) -> Text:
    where = f"row {line}" if line is not None else "an empty item"
    ran = "the local grader code" if run.source == LOCAL_CODE else "the provider"
    if run.reward is None:
        return Text.assemble(("not run", "bold red"), f" ({where}, {ran}): ", safe(run.message, "red"))
    text = Text.assemble(("reward ", "bold"), (f"{run.reward:.4g}", "bold green" if run.reward > 0 else "bold"))
    seconds = f" in {run.seconds:.3g} s" if run.seconds is not None else ""
    text.append(f" · {where} · ran on {ran}{seconds}", style="dim")
    for name, score in run.scores.items():
        text.append("\n  ")
        text.append_text(one_line(name))
        text.append(f"  {score:.4g}")
    if run.errors:
        text.append_text(safe("\nerrors: " + ", ".join(run.errors), "red"))
    if run.message:
        text.append_text(safe("\n" + run.message, "dim"))
    return text
