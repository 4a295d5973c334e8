"""The footer: the screen's most important keys first, whole keys only, and `? Keys` last.

Textual's `Footer` lays every shown binding out in binding-chain order and lets the last one
run off the edge (`d Da▏` at 80 columns), so a screen's main actions (split, clean copy,
launch) never showed on a small terminal. This footer picks what fits, most important
first (`FOOTER_ORDER`, `APP_ORDER`), switches to the compact labels (`COMPACT_LABELS`) when
the full ones do not all fit, leaves a key out whole rather than cut it, and always ends
with the help key, which lists them all.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from rich.cells import cell_len
from rich.text import Text
from textual import events
from textual.app import App
from textual.binding import ActiveBinding
from textual.widget import Widget

if TYPE_CHECKING:  # pragma: no cover
    from textual.binding import Binding
    from textual.screen import Screen

HELP_ACTION = "help"
PALETTE_ACTION = "command_palette"

FOOTER_ORDER: dict[str, tuple[str, ...]] = {
    "JobsScreen": ("jobs.open", "jobs.launch", "jobs.filter", "app.datasets", "app.evaluate", "jobs.cancel",
                   "jobs.compare", "jobs.mark", "jobs.sort"),
    "JobScreen": ("job.back", "job.evaluate", "job.cancel", "job.pause", "job.resume", "job.copy_model",
                  "job.launch_again", "job.pane", "job.checkpoints", "job.smooth"),
    "DatasetScreen": ("dataset.back", "dataset.open", "dataset.launch", "dataset.split", "dataset.clean",
                      "dataset.search", "dataset.goto", "dataset.next_error", "dataset.errors_only", "dataset.raw",
                      "dataset.stats"),
    "EvaluateScreen": ("evaluate.back", "evaluate.start", "evaluate.results", "evaluate.new", "evaluate.cancel",
                       "evaluate.resume", "evaluate.retry"),
    "EvalResultsScreen": ("eval_results.back", "eval_results.filter", "eval_results.analyse", "eval_results.notes",
                          "eval_results.export", "eval_results.copy"),
    "LaunchScreen": ("launch.back", "launch.preflight", "launch.pick", "launch.grader", "launch.load_preset",
                     "launch.save_preset"),
    "PreflightScreen": ("preflight.back", "preflight.launch"),
    "GraderEditorScreen": ("grader.back", "grader.use", "grader.run"),
    "CompareScreen": ("compare.back", "compare.metric"),
    "ComputeScreen": ("compute.back", "compute.open"),
    "PlaygroundScreen": ("playground.back", "playground.pick"),
}
"""Which keys matter most on each screen (by class name), most important first: they show
before the screen's other keys. The app's keys follow in `APP_ORDER`; anything else shown
comes last, in binding-chain order (focused widget, screen, app). The command palette
(`tui/commands.py`) and `?` list every key, so leaving one out of the footer hides nothing."""

APP_ORDER: tuple[str, ...] = ("app.datasets", "app.evaluate", PALETTE_ACTION, "app.playground", "app.refresh",
                              "app.profile", "app.quit")
"""The app's keys, after the screen's own."""

COMPACT_LABELS: dict[str, str] = {
    "jobs.launch": "New",
    "jobs.cancel": "Cancel",
    "app.datasets": "Data",
    "app.evaluate": "Eval",
    "app.playground": "Try",
    "job.evaluate": "Eval",
    "job.cancel": "Cancel",
    "job.copy_model": "Copy",
    "job.launch_again": "Again",
    "job.checkpoints": "Ckpts",
    "dataset.clean": "Clean",
    "dataset.next_error": "Error",
    "dataset.errors_only": "Errors",
    "evaluate.cancel": "Cancel",
    "evaluate.retry": "Retry",
    "launch.preflight": "Check",
    "launch.pick": "File",
    "launch.save_preset": "Save",
    "preflight.back": "Back",
    "grader.run": "Test",
    "playground.pick": "Model",
}
"""The label a key gets when the full labels do not all fit (binding id → label); a key
not listed keeps the first word of its description."""

GAP = "  "


@dataclass(frozen=True)
class FooterItem:
    """One key the footer may show."""

    key: str
    """The key pressed when the item is clicked."""
    key_display: str
    label: str
    compact_label: str

    def width(self, compact: bool) -> int:
        return cell_len(self.key_display) + 1 + cell_len(self.compact_label if compact else self.label)


def binding_ref(binding: Binding) -> str:
    """The name the tables know a binding by: its id (Textual's palette key has none: its action)."""
    return binding.id or binding.action


def importance(screen: Screen, ref: str, from_app: bool, order: int) -> tuple[int, int]:
    """Sort key of a shown binding: the screen's listed keys, its other keys, the app's
    listed keys, the rest."""
    listed = FOOTER_ORDER.get(type(screen).__name__, ())
    if ref in listed:
        return (0, listed.index(ref))
    if not from_app:
        return (1, order)
    if ref in APP_ORDER:
        return (2, APP_ORDER.index(ref))
    return (3, order)


def shadowed_screen_keys(screen: Screen, active_bindings: dict[str, ActiveBinding]) -> list[ActiveBinding]:
    """The screen's shown keys that a focused widget answers with a hidden binding of its own
    (the jobs table's enter opens the job, as the screen's would): still the screen's keys
    to the user, so the footer shows them (the help screen lists them too)."""
    shadowed = []
    for key, binding in screen._bindings:
        active = active_bindings.get(key)
        if not binding.show or active is None or active.node is screen or active.binding.show:
            continue
        state = screen.app._check_action_state(binding.action, screen)
        if state is not False:
            shadowed.append(ActiveBinding(screen, binding, bool(state), binding.tooltip))
    return shadowed


def footer_items(screen: Screen) -> tuple[list[FooterItem], FooterItem | None]:
    """The keys `screen` offers now in order of importance, and the help key (shown last).

    A binding that `check_action` hides or disables is left out; an action bound to several
    keys shows its first (so `:` not `ctrl+g`)."""
    app = screen.app
    seen: set[tuple[int, str]] = set()
    candidates: list[tuple[tuple[int, int], FooterItem]] = []
    help_item: FooterItem | None = None
    active_bindings = screen.active_bindings
    for order, active in enumerate([*active_bindings.values(), *shadowed_screen_keys(screen, active_bindings)]):
        binding = active.binding
        from_app = isinstance(active.node, App)
        if binding.action == HELP_ACTION and from_app:
            if help_item is None:
                help_item = FooterItem(binding.key, app.get_key_display(binding), "Keys", "Keys")
            continue
        ref = binding_ref(binding)
        if not active.enabled or not (binding.show or ref == PALETTE_ACTION):
            continue
        ident = (id(active.node), binding.action)
        if ident in seen:
            continue
        seen.add(ident)
        label = "Palette" if ref == PALETTE_ACTION else binding.description or binding.action
        compact_label = COMPACT_LABELS.get(ref) or label.split()[0]
        candidates.append((importance(screen, ref, from_app, order), FooterItem(binding.key, app.get_key_display(binding), label, compact_label)))
    candidates.sort(key=lambda candidate: candidate[0])
    return [item for _, item in candidates], help_item


def take(items: list[FooterItem], width: int, compact: bool) -> list[FooterItem]:
    """The items that fit in `width` cells, most important first; one that does not fit is
    left out whole and a later, shorter one may take its place."""
    chosen: list[FooterItem] = []
    used = 0
    for item in items:
        needed = item.width(compact) + (len(GAP) if chosen else 0)
        if used + needed <= width:
            chosen.append(item)
            used += needed
    return chosen


def fit(items: list[FooterItem], width: int) -> tuple[list[FooterItem], bool]:
    """The items shown in `width` cells and whether with their compact labels: the full
    labels when every item fits with them, else the compact ones (more keys fit)."""
    full = take(items, width, compact=False)
    if len(full) == len(items):
        return full, False
    return take(items, width, compact=True), True


class KeyFooter(Widget, can_focus=False):
    """One line of the keys that matter most here; refreshed whenever the bindings change."""

    COMPONENT_CLASSES = {"key-footer--key", "key-footer--label"}

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self._spans: list[tuple[int, int, str]] = []

    def on_mount(self) -> None:
        self.screen.bindings_updated_signal.subscribe(self, self._bindings_changed)

    def on_unmount(self) -> None:
        self.screen.bindings_updated_signal.unsubscribe(self)

    def _bindings_changed(self, _screen: Screen) -> None:
        self.refresh()

    def shown(self) -> tuple[list[FooterItem], bool, FooterItem | None]:
        """What the footer shows at its width: the keys, whether compact, the help key."""
        items, help_item = footer_items(self.screen)
        width = self.size.width - 1  # a space before the first key
        if help_item is not None:
            width -= help_item.width(False) + len(GAP) + 1  # and after the help key
        chosen, compact = fit(items, max(width, 0))
        return chosen, compact, help_item

    def render(self) -> Text:
        chosen, compact, help_item = self.shown()
        key_style = self.get_component_rich_style("key-footer--key")
        label_style = self.get_component_rich_style("key-footer--label")
        text = Text(" ", no_wrap=True, overflow="crop", end="")
        spans: list[tuple[int, int, str]] = []

        def add(item: FooterItem, label: str) -> None:
            start = text.cell_len
            text.append(item.key_display, key_style)
            text.append(" ")
            text.append(label, label_style)
            spans.append((start, text.cell_len, item.key))

        for index, item in enumerate(chosen):
            if index:
                text.append(GAP)
            add(item, item.compact_label if compact else item.label)
        if help_item is not None:
            padding = self.size.width - 1 - text.cell_len - help_item.width(False)
            text.append(" " * max(padding, len(GAP) if chosen else 0))
            add(help_item, help_item.label)
        self._spans = spans
        return text

    def on_click(self, event: events.Click) -> None:
        for start, end, key in self._spans:
            if start <= event.x < end:
                event.stop()
                self.app.simulate_key(key)
                return
