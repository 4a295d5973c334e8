"""One side of the playground: a model's conversation, each answer streamed in as it comes.

The column keeps what it shows (`turns`); the screen keeps each side's history for the
requests. Prompts, answers, errors and model ids are untrusted: `safe`/`one_line` only.
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical, VerticalScroll
from textual.widgets import Static

from ..safe_text import one_line, safe


@dataclass
class Turn:
    prompt: str
    answer: str = ""
    error: str | None = None
    done: bool = False


class PlaygroundColumn(Vertical):
    """A model's side of the conversation: a heading (model, state) and its turns."""

    def __init__(self, side: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.side = side
        self.model = ""
        self.turns: list[Turn] = []

    def compose(self) -> ComposeResult:
        yield Static(classes="playground-heading")
        with VerticalScroll(classes="playground-scroll"):
            yield Static(classes="playground-transcript")

    def on_mount(self) -> None:
        # `is_mounted` turns true only once the Mount handlers have run: draw just after.
        self.call_after_refresh(self._redraw)

    @property
    def answering(self) -> bool:
        return bool(self.turns) and not self.turns[-1].done

    @property
    def text(self) -> str:
        """What the column shows, as plain text (tests read it)."""
        return self.transcript().plain

    def set_model(self, model: str) -> None:
        if model != self.model:
            self.model = model
            self._redraw_heading()

    def start_turn(self, prompt: str) -> None:
        self.turns.append(Turn(prompt))
        self._redraw()

    def add_chunk(self, text: str) -> None:
        if self.turns and not self.turns[-1].done:
            self.turns[-1].answer += text
            self._redraw()

    def finish(self, error: str | None = None) -> None:
        if self.turns and not self.turns[-1].done:
            self.turns[-1].done = True
            self.turns[-1].error = error
            self._redraw()

    def clear(self) -> None:
        self.turns = []
        self._redraw()

    def heading(self) -> Text:
        """The side, its state (kept in view: first), then its model."""
        text = Text(end="", no_wrap=True, overflow="ellipsis")
        text.append(f" {self.side.upper()} ", style="bold reverse")
        if self.answering:
            text.append(" ◌ answering", style="bold yellow")
        elif self.turns and self.turns[-1].error is not None:
            text.append(" ✗ failed", style="bold red")
        text.append(" ")
        text.append_text(one_line(self.model or "(no model)", "bold"))
        return text

    def transcript(self) -> Text:
        text = Text(end="")
        if not self.turns:
            text.append("type a prompt below; enter asks both models", style="dim")
            return text
        for index, turn in enumerate(self.turns):
            if index:
                text.append("\n\n")
            text.append("you › ", style="bold cyan")
            text.append_text(safe(turn.prompt))
            text.append("\n")
            text.append("model › ", style="bold green")
            if turn.answer:
                text.append_text(safe(turn.answer))
            elif turn.done and turn.error is None:
                text.append("(empty answer)", style="dim italic")
            if not turn.done:
                text.append("▍", style="blink")
            if turn.error is not None:
                if turn.answer:
                    text.append("\n")
                text.append("✗ ", style="bold red")
                text.append_text(safe(turn.error, "red"))
        return text

    def _redraw_heading(self) -> None:
        if self.is_mounted:
            self.query_one(".playground-heading", Static).update(self.heading())

    def _redraw(self) -> None:
        if not self.is_mounted:
            return
        self._redraw_heading()
        self.query_one(".playground-transcript", Static).update(self.transcript())
        scroll = self.query_one(".playground-scroll", VerticalScroll)
        scroll.call_after_refresh(scroll.scroll_end, animate=False)  # once the new text is laid out
