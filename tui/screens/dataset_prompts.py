"""The dataset screen's small dialogs: open a file (path, recent files, directory picker),
and a one-line question (line number, search text, validation share)."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DirectoryTree, Input, OptionList, Static
from textual.widgets.option_list import Option

from ..safe_text import one_line, safe
from ..widgets.ordered_input import OrderedInput
from ..widgets.path_input import PathInput

DATA_SUFFIXES = (".jsonl", ".json", ".ndjson", ".txt")


class AskScreen(ModalScreen[str | None]):
    """One question, one line of answer; escape answers None."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="ask.cancel")]

    def __init__(self, question: str, *, value: str = "", placeholder: str = "", input_type: str = "text") -> None:
        super().__init__()
        self.question = question
        self._value = value
        self._placeholder = placeholder
        self._type = input_type

    def compose(self) -> ComposeResult:
        with Vertical(id="ask-box", classes="dialog"):
            yield Static(safe(self.question, "bold"))
            yield OrderedInput(self._value, placeholder=self._placeholder, type=self._type, id="ask-input")  # type: ignore[arg-type]
            yield Static(Text("enter answers · escape cancels", style="dim"))

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.dismiss(event.value.strip() or None)

    def action_cancel(self) -> None:
        self.dismiss(None)


class DataFileTree(DirectoryTree):
    """Folders and data files only; names shown literally (a file may be called `[/]`)."""

    def filter_paths(self, paths: Iterable[Path]) -> Iterable[Path]:
        return [p for p in paths if not p.name.startswith(".") and (self._safe_is_dir(p) or p.suffix.lower() in DATA_SUFFIXES)]

    def process_label(self, label: str | Text) -> Text:
        return one_line(label) if isinstance(label, str) else label


class OpenDatasetScreen(ModalScreen[Path | None]):
    """Type a path, pick a recent file, or browse (ctrl+o) from the working directory."""

    BINDINGS = [
        Binding("escape", "cancel", "Cancel", id="open.cancel"),
        Binding("ctrl+o", "browse", "Browse", id="open.browse", tooltip="Pick the file in a directory tree"),
    ]

    def __init__(self, recent: list[str], start: Path | None = None) -> None:
        super().__init__()
        self.recent = recent
        self.start = start or Path.cwd()
        self.error_text = ""

    def compose(self) -> ComposeResult:
        with Vertical(id="open-box", classes="dialog"):
            yield Static(Text("Open a JSONL dataset", style="bold"))
            yield PathInput(placeholder="path/to/train.jsonl", id="open-path", offered=self.recent)
            yield Static(id="open-error")
            yield Static(Text("recent files" if self.recent else "no recent files yet", style="dim"), id="open-recent-title")
            options = [Option(one_line(path), id=str(n)) for n, path in enumerate(self.recent)]
            yield OptionList(*options, id="open-recent")
            yield Static(Text("enter opens · ctrl+o browses folders · escape cancels", style="dim"), id="open-hint")

    def on_mount(self) -> None:
        self.query_one("#open-recent").display = bool(self.recent)
        self.query_one("#open-path", PathInput).focus()

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

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
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
