"""The dataset screen's small dialogs: open a file (path, recent files, directory picker),
a one-line question (line number, search text), and where a split or a clean copy is written.

Each has `take_focus()`: the screen that opens one awaits its mounting and calls it, so keys
typed right behind the opening key land in its field."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Checkbox, DirectoryTree, Input, OptionList, Static
from textual.widgets.option_list import Option

from ..safe_text import clean, one_line, safe
from ..widgets.ordered_input import OrderedInput
from ..widgets.path_input import PathInput

DATA_SUFFIXES = (".jsonl", ".json", ".ndjson", ".txt")


class AnswersAtOnce:
    """A prompt's field whose Enter answers the prompt at once: `Input` would post `Submitted`
    behind the keys already queued, and keys typed after the Enter (`:177⏎j`) would land in
    the prompt instead of the screen beneath it. The screen's `answer_now()` closes it (or
    shows why not) before the next key is read."""

    async def action_submit(self) -> None:
        answer_now = getattr(self.screen, "answer_now", None)  # type: ignore[attr-defined]
        if answer_now is None:
            await super().action_submit()  # type: ignore[misc]
        else:
            answer_now()


class AnswerInput(AnswersAtOnce, OrderedInput):
    pass


class AnswerPathInput(AnswersAtOnce, PathInput):
    pass


class AskScreen(ModalScreen[str | None]):
    """One question, one line of answer; escape answers None."""

    # Escape is a priority binding in each prompt: the prompt closes before the keys typed
    # after it are read, so they reach the screen beneath.
    BINDINGS = [Binding("escape", "cancel", "Cancel", id="ask.cancel", priority=True)]

    def __init__(self, question: str, *, value: str = "", placeholder: str = "", input_type: str = "text") -> None:
        super().__init__()
        self.question = question
        self._value = value
        self._placeholder = placeholder
        self._type = input_type

    def compose(self) -> ComposeResult:
        with Vertical(id="ask-box", classes="dialog"):
            yield Static(safe(self.question, "bold"))
            yield AnswerInput(self._value, placeholder=self._placeholder, type=self._type, id="ask-input")  # type: ignore[arg-type]
            yield Static(Text("enter answers · escape cancels", style="dim"))

    def take_focus(self) -> None:
        """Focus the answer now (not after a refresh): keys queued behind the opening key land there."""
        self.set_focus(self.query_one("#ask-input"))

    def answer_now(self) -> None:
        self.dismiss(self.query_one("#ask-input", Input).value.strip() or None)

    def action_cancel(self) -> None:
        self.dismiss(None)


class DataFileTree(DirectoryTree):
    """Folders and data files only; names shown literally (a file may be called `[/]`)."""

    def filter_paths(self, paths: Iterable[Path]) -> Iterable[Path]:
        return [p for p in paths if not p.name.startswith(".") and (self._safe_is_dir(p) or p.suffix.lower() in DATA_SUFFIXES)]

    def process_label(self, label: str | Text) -> Text:
        return one_line(label) if isinstance(label, str) else label


class OpenDatasetScreen(ModalScreen[Path | None]):
    """Type a path (tab completes it), pick a recent file (down reaches the list), or browse
    (ctrl+o) from the working directory."""

    BINDINGS = [
        Binding("escape", "cancel", "Cancel", id="open.cancel", priority=True),
        Binding("ctrl+o", "browse", "Browse", id="open.browse", tooltip="Pick the file in a directory tree"),
        # A priority binding: it moves focus before the keys typed after it are read.
        Binding("down", "recent", "Recent files", show=False, id="open.recent", priority=True, tooltip="Move to the recent files"),
        Binding("up", "to_path", "Path", show=False, id="open.to_path", priority=True, tooltip="Back to the path (from the first recent file)"),
    ]

    def __init__(self, recent: list[str], start: Path | None = None) -> None:
        super().__init__()
        self.recent = recent
        self.start = start or Path.cwd()
        self.error_text = ""

    def compose(self) -> ComposeResult:
        with Vertical(id="open-box", classes="dialog"):
            yield Static(Text("Open a JSONL dataset", style="bold"))
            yield AnswerPathInput(placeholder="path/to/train.jsonl", id="open-path", offered=self.recent)
            yield Static(id="open-error")
            yield Static(Text("recent files" if self.recent else "no recent files yet", style="dim"), id="open-recent-title")
            options = [Option(one_line(path), id=str(n)) for n, path in enumerate(self.recent)]
            yield OptionList(*options, id="open-recent")
            yield Static(Text("enter opens · tab completes · ↓ recent · ctrl+o browses · esc cancels", style="dim"), id="open-hint")

    def on_mount(self) -> None:
        self.query_one("#open-recent").display = bool(self.recent)
        self.take_focus()  # now: `focus()` would move it back after keys already read moved it on

    def take_focus(self) -> None:
        """Focus the path now (not after a refresh): keys queued behind the opening key land there."""
        self.set_focus(self.query_one("#open-path"))

    async def action_browse(self) -> None:
        # Mounted on demand: a directory tree keeps a loader worker alive while it exists.
        found = self.query("#open-tree")
        if found:
            tree = found.first()
            tree.display = not tree.display
        else:
            tree = DataFileTree(self.start, id="open-tree")
            await self.query_one("#open-box").mount(tree, before="#open-hint")
        if tree.display:
            tree.focus()
        else:
            self.query_one("#open-path", PathInput).focus()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "recent":  # from the path field only: the list and the tree move with down themselves
            return bool(self.recent) and isinstance(self.focused, PathInput)
        if action == "to_path":  # from the top of the recent files only
            recent = self.query_one("#open-recent", OptionList)
            return self.focused is recent and recent.highlighted in (None, 0)
        return True

    def action_to_path(self) -> None:
        self.take_focus()

    def action_recent(self) -> None:
        recent = self.query_one("#open-recent", OptionList)
        if recent.highlighted is None:
            recent.highlighted = 0
        self.set_focus(recent)

    def answer_now(self) -> None:
        self._choose(self.query_one("#open-path", PathInput).path_text.strip())

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        if event.option.id is not None:
            self._choose(self.recent[int(event.option.id)])

    def on_directory_tree_file_selected(self, event: DirectoryTree.FileSelected) -> None:
        event.stop()
        self._choose(str(event.path))

    def _choose(self, raw: str) -> None:
        if not raw:
            self._error("Type the path of a JSONL file (or ctrl+o to browse).")
            return
        path = Path(raw).expanduser().absolute()
        if not path.is_file():
            self._error(f"{path}: no such file")
            return
        self.dismiss(path)

    def _error(self, message: str) -> None:
        self.error_text = message
        self.query_one("#open-error", Static).update(safe(message, "red"))

    def action_cancel(self) -> None:
        self.dismiss(None)


@dataclass(frozen=True)
class WritePlan:
    """What the user asked to write: a clean copy (`clean`), a split (`share` with `train`
    and `validation`), or the clean copy and then a split of it."""

    clean: Path | None = None
    share: float | None = None
    train: Path | None = None
    validation: Path | None = None

    @property
    def targets(self) -> list[Path]:
        return [p for p in (self.clean, self.train, self.validation) if p is not None]


class WriteFilesScreen(ModalScreen[WritePlan | None]):
    """Where a split or a clean copy is written, prefilled with names next to the source.

    `mode` "split": the validation share and both files, and, when `clean_default` is given
    (the file has invalid lines), "split the clean lines": the clean copy is written first
    and split in the same step. `mode` "clean": the clean copy's path alone. A relative path
    is taken from the source's folder. Whether a file is overwritten is asked afterwards."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="write.cancel", priority=True)]

    def __init__(
        self,
        source: Path,
        mode: str,
        *,
        train: Path | None = None,
        validation: Path | None = None,
        clean_default: Path | None = None,
        clean_outputs: tuple[Path, Path] | None = None,
        share: str = "0.1",
    ) -> None:
        super().__init__()
        self.source = source
        self.mode = mode
        self.defaults = {"train": train, "validation": validation, "clean": clean_default}
        self.clean_outputs = clean_outputs
        """The split's names for the clean copy (shown while "split the clean lines" is ticked)."""
        self.share = share
        self.error_text = ""

    def compose(self) -> ComposeResult:
        title = f"Split {self.source.name}" if self.mode == "split" else f"Clean copy of {self.source.name}"
        with Vertical(id="write-box", classes="dialog"):
            yield Static(safe(title, "bold"))
            if self.mode == "split":
                yield Static(Text("share of examples held out for validation", style="dim"))
                yield AnswerInput(self.share, type="number", id="write-share", compact=True)
                yield Static(Text("training file", style="dim"))
                train, validation = self.clean_outputs or (self.defaults["train"], self.defaults["validation"])
                yield AnswerPathInput(str(train), id="write-train", compact=True)
                yield Static(Text("validation file", style="dim"))
                yield AnswerPathInput(str(validation), id="write-validation", compact=True)
                if self.defaults["clean"] is not None:
                    yield Checkbox("split the clean lines (write the clean copy first, then split it)", True, id="write-use-clean", compact=True)
            if self.defaults["clean"] is not None:
                yield Static(Text("clean copy (the file without its invalid lines)", style="dim"), id="write-clean-label")
                yield AnswerPathInput(str(self.defaults["clean"]), id="write-clean", compact=True)
            yield Static(id="write-error")
            yield Static(Text("enter writes · tab moves on (completes a path) · escape cancels", style="dim"))

    def take_focus(self) -> None:
        """Focus the first field now (not after a refresh): keys queued behind the opening key land there."""
        self.set_focus(self.query_one("#write-share" if self.mode == "split" else "#write-clean"))

    def on_checkbox_changed(self, event: Checkbox.Changed) -> None:
        event.stop()
        self.query_one("#write-clean").display = event.value
        self.query_one("#write-clean-label").display = event.value
        # The names offered follow the file split, unless the user typed others.
        raw = (self.defaults["train"], self.defaults["validation"])
        before, after = (raw, self.clean_outputs) if event.value else (self.clean_outputs, raw)
        if before is None or after is None:
            return
        for field_id, old, new in zip(("#write-train", "#write-validation"), before, after):
            field = self.query_one(field_id, PathInput)
            if field.path_text == str(old):
                field.offer([str(new)])
                field.value = clean(str(new))  # shown with its control characters made visible; `path_text` is the real one

    def _path(self, field_id: str, what: str) -> Path | None:
        text = self.query_one(field_id, PathInput).path_text.strip()
        if not text:
            self._error(f"the {what} needs a path")
            return None
        path = Path(text).expanduser()
        return path if path.is_absolute() else self.source.parent / path

    def plan(self) -> WritePlan | None:
        """The answer, or None (with the reason shown) when a field is wrong."""
        clean_path: Path | None = None
        use_clean = self.mode == "clean" or (self.defaults["clean"] is not None and self.query_one("#write-use-clean", Checkbox).value)
        if use_clean:
            clean_path = self._path("#write-clean", "clean copy")
            if clean_path is None:
                return None
        if self.mode == "clean":
            plan = WritePlan(clean=clean_path)
        else:
            raw = self.query_one("#write-share", Input).value.strip()
            try:
                share = float(raw)
            except ValueError:
                share = 0.0
            if not 0 < share < 1:
                self._error("the validation share is a number between 0 and 1, e.g. 0.1")
                return None
            train = self._path("#write-train", "training file")
            validation = self._path("#write-validation", "validation file") if train is not None else None
            if train is None or validation is None:
                return None
            plan = WritePlan(clean=clean_path, share=share, train=train, validation=validation)
        resolved = [p.resolve() for p in plan.targets]
        if self.source.resolve() in resolved:
            self._error(f"{plan.targets[resolved.index(self.source.resolve())]} is the file shown: choose another name")
            return None
        if len(set(resolved)) < len(resolved):
            self._error("each file needs a name of its own")
            return None
        return plan

    def answer_now(self) -> None:
        plan = self.plan()
        if plan is not None:
            self.dismiss(plan)

    def _error(self, message: str) -> None:
        self.error_text = message
        self.query_one("#write-error", Static).update(safe(message, "red"))

    def action_cancel(self) -> None:
        self.dismiss(None)
