"""Contextual help: the keys that work on the current screen first, then global ones."""

from __future__ import annotations

from dataclasses import dataclass, replace

from rich.table import Table
from rich.text import Text
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Static


@dataclass(frozen=True)
class KeyHelp:
    keys: str
    description: str


@dataclass(frozen=True)
class HelpSection:
    title: str
    keys: list[KeyHelp]


def help_sections(screen: Screen) -> list[HelpSection]:
    """The keys that work on `screen`: its own first, then global ones, then the focused widget's.

    The screen's own `BINDINGS` are listed even where a focused widget answers the same
    key (the jobs table answers enter by opening the job, as the screen would). Keys bound
    to the same action on the same node are shown together ("q, ctrl+q").
    """
    app = screen.app
    groups: dict[str, dict[tuple[int, str], list[str]]] = {"screen": {}, "app": {}, "widget": {}}
    descriptions: dict[tuple[int, str], str] = {}

    def add(group: str, node: object, binding: Binding) -> None:
        description = binding.description or binding.tooltip
        if not description:
            return
        ident = (id(node), binding.action)
        keys = groups[group].setdefault(ident, [])
        shown = app.get_key_display(binding)
        if shown not in keys:
            keys.append(shown)
        if not descriptions.get(ident) or binding.tooltip:
            descriptions[ident] = binding.tooltip if binding.tooltip and group != "widget" else description

    for binding in type(screen).BINDINGS:
        if isinstance(binding, Binding):
            for key in binding.key.split(","):
                add("screen", screen, replace(binding, key=key.strip()))
    for active in screen.active_bindings.values():
        node = active.node
        group = "app" if isinstance(node, App) else "screen" if node is screen else "widget"
        add(group, node, active.binding)

    screen_name = type(screen).__name__.removesuffix("Screen") or "This"
    titles = {"screen": f"{screen_name} screen", "app": "Everywhere", "widget": "Focused widget"}
    sections = []
    for group, items in groups.items():
        keys = [KeyHelp(", ".join(k), descriptions[ident]) for ident, k in items.items()]
        if keys:
            sections.append(HelpSection(titles[group], keys))
    return sections


class HelpScreen(ModalScreen[None]):
    BINDINGS = [
        Binding("escape", "close", "Close", id="help.close"),
        Binding("question_mark", "close", "Close", show=False, id="help.close_q"),
        Binding("q", "close", "Close", show=False, id="help.close_qq"),
        Binding("f1", "close", "Close", show=False, id="help.close_f1"),
    ]

    def __init__(self, sections: list[HelpSection], intro: str = "") -> None:
        super().__init__()
        self.sections = sections
        self.intro = intro

    def compose(self) -> ComposeResult:
        with Vertical(id="help-box"):
            with VerticalScroll(id="help-scroll"):
                if self.intro:
                    yield Static(Text(self.intro, style="italic"), id="help-intro")
                yield Static(self._render_table(), id="help-keys")
            yield Static(Text("escape closes", style="dim"), id="help-hint")

    def on_mount(self) -> None:
        self.query_one("#help-box").border_title = "Keys"

    def _render_table(self) -> Table:
        table = Table.grid(padding=(0, 2))
        table.add_column("key", style="bold", no_wrap=True)
        table.add_column("what")
        first = True
        for section in self.sections:
            if not first:
                table.add_row("", "")
            first = False
            table.add_row(Text(section.title, style="bold underline"), "")
            for item in section.keys:
                table.add_row(Text(item.keys, style="bold cyan"), Text(item.description))
        return table

    def action_close(self) -> None:
        self.dismiss(None)
