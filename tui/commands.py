"""The command palette's tunedeck commands: every action the current context offers, from
its bindings.

The bindings are the one source of truth: the focused widget's chain (the widget, its
containers, the screen) and the app's. A binding is a command when it names an action for
the user (it has an `id`, a tooltip, or shows in the footer); cursor moves and Textual's own
widget keys are not. A command whose `check_action` says no (False or None) is left out, so
the palette offers what the keys would do right now. Picking one runs the action in the node
that owns the binding, as its key would.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.content import Content

if TYPE_CHECKING:  # pragma: no cover
    from textual.binding import Binding
    from textual.dom import DOMNode
    from textual.screen import Screen

PALETTE_ACTION = "command_palette"


@dataclass(frozen=True)
class ContextCommand:
    """One action the palette offers: its title, keys, help and the node it runs in."""

    title: str
    keys: tuple[str, ...]
    help: str
    action: str
    node: DOMNode

    @property
    def key_text(self) -> str:
        return ", ".join(self.keys)


def is_command(binding: Binding) -> bool:
    """Whether a binding is an action for the user rather than a cursor move."""
    if not binding.description or binding.action in {PALETTE_ACTION, "app.command_palette"}:
        return False
    return bool(binding.id or binding.tooltip or binding.show)


def context_commands(screen: Screen) -> list[ContextCommand]:
    """The commands `screen` offers now: the focused widget's chain first (innermost first),
    then the screen's, then the app's; one per action and node, with its keys.

    A key bound to a command nearer the focus wins, as it does when pressed, so a command
    whose keys are all taken by a nearer one is listed without a key. A nearer cursor move
    does not take a key: the jobs table answers enter by opening the job, as the screen's
    enter would, so the screen's Open keeps its key (the footer and `?` say the same)."""
    app = screen.app
    focused = screen.focused
    chain: list[DOMNode] = list(focused.ancestors_with_self) if focused is not None else [screen, app]
    if app not in chain:  # pragma: no cover - ancestors always end at the app
        chain.append(app)
    taken: set[str] = set()
    refused: set[tuple[int, str]] = set()
    found: dict[tuple[int, str], tuple[Binding, DOMNode, list[str]]] = {}
    for node in chain:
        node_keys: set[str] = set()
        for key, binding in node._bindings:
            if not is_command(binding):
                continue
            node_keys.add(key)
            ident = (id(node), binding.action)
            if ident in refused:
                continue
            if ident not in found:
                if not app._check_action_state(binding.action, node):
                    refused.add(ident)
                    continue
                found[ident] = (binding, node, [])
            first, _, keys = found[ident]
            if binding.tooltip and not first.tooltip:
                found[ident] = (binding, node, keys)
            shown = app.get_key_display(binding)
            if key not in taken and shown not in keys:
                keys.append(shown)
        taken |= node_keys
    return [
        ContextCommand(binding.description, tuple(keys), binding.tooltip or binding.description, binding.action, node)
        for binding, node, keys in found.values()
    ]


class ContextCommands(Provider):
    """The palette's provider of the current context's actions (see the module docstring)."""

    async def startup(self) -> None:
        self._commands = context_commands(self.screen)

    def _display(self, command: ContextCommand, title: Content | str) -> Content:
        shown = Content(title) if isinstance(title, str) else title
        if command.keys:
            shown = shown + Content("  ") + Content.styled(command.key_text, "bold")
        return shown

    def _run(self, command: ContextCommand):
        return partial(self.app.run_action, command.action, command.node)

    async def discover(self) -> Hits:
        for command in self._commands:
            yield DiscoveryHit(
                self._display(command, command.title),
                self._run(command),
                text=f"{command.title} {command.key_text}",
                help=command.help,
            )

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for command in self._commands:
            score = max(matcher.match(command.title), matcher.match(command.help) * 0.5)
            if score > 0:
                yield Hit(
                    score,
                    self._display(command, matcher.highlight(command.title)),
                    self._run(command),
                    text=f"{command.title} {command.key_text}",
                    help=command.help,
                )
