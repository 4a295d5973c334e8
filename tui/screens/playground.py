"""Playground: one prompt to two models at once, each answer streamed into its own column.

The typical use is a fine-tuned model against its base: given a job (or nothing, while a
job with a fine-tuned model is the current one) both fields are filled from it. Each side
keeps its own conversation (its answers, not the other's, go back to it on the next turn),
so a multi-turn chat shows how the two drift apart. Enter sends; `ctrl+l` starts over;
`ctrl+o` picks the focused side's model from the profile's list; temperature and max
tokens are fields. Every request runs in a worker per side (`service.evaluations.
chat_stream`) that posts its chunks; a failure shows in its own column only.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.message import Message
from textual.screen import Screen
from textual.suggester import SuggestFromList
from textual.widgets import Input, Static
from textual.worker import Worker

from ..safe_text import clean
from ..state import AppState, host, pass_on_failure
from ..widgets.header import AppHeader
from ..widgets.key_footer import KeyFooter
from ..widgets.ordered_input import OrderedInput
from ..widgets.playground_column import PlaygroundColumn

if TYPE_CHECKING:  # pragma: no cover
    from tunedeck.core.evaluate.records import Sampling
    from tunedeck.core.launch.models import ModelChoice
    from tunedeck.core.records import Job

    from ..messages import ModelsLoaded

SIDES = ("a", "b")
DEFAULT_TEMPERATURE = 0.0
DEFAULT_MAX_TOKENS = 256
WORKERS = "playground-"
"""Each side's worker group is this plus the side."""


@dataclass(eq=False, repr=False)
class PlaygroundChunk(Message):
    """Text a model streamed for the turn `generation` of side `side`."""

    side: str
    generation: int
    text: str


@dataclass(eq=False, repr=False)
class PlaygroundAnswered(Message):
    """A side's turn ended: its whole `answer`, or `error` (shown in that column)."""

    side: str
    generation: int
    answer: str
    error: str | None = None


def models_for_job(job: Job) -> list[str]:
    """Base then fine-tuned: the pair a job is tried with (the base alone before it finished)."""
    return [job.model, job.fine_tuned_model] if job.fine_tuned_model else [job.model]


def model_ids(choices: list[ModelChoice] | None) -> list[str]:
    return [choice.id for choice in choices or []]


def parse_sampling(temperature: str, max_tokens: str) -> tuple[float, int]:
    """The fields' values; ValueError naming the field that is wrong."""
    try:
        temp = float(temperature.strip() or DEFAULT_TEMPERATURE)
    except ValueError:
        raise ValueError("temperature must be a number from 0 to 2") from None
    if not 0 <= temp <= 2:
        raise ValueError("temperature must be a number from 0 to 2")
    try:
        tokens = int(max_tokens.strip() or DEFAULT_MAX_TOKENS)
    except ValueError:
        raise ValueError("max tokens must be a whole number of at least 1") from None
    if tokens < 1:
        raise ValueError("max tokens must be a whole number of at least 1")
    return temp, tokens


class PlaygroundScreen(Screen):
    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back", id="playground.back"),
        Binding("ctrl+l", "clear", "Clear", id="playground.clear", tooltip="Start both conversations over"),
        Binding("ctrl+o", "pick_model", "Pick model", id="playground.pick", tooltip="Pick the focused side's model"),
    ]

    HELP = (
        "Playground: the same prompt to two models at once (a fine-tuned model and its base, "
        "typically), each answer streamed into its own column; each side keeps its own "
        "conversation. Enter sends, ctrl+l clears, ctrl+o picks a model from the list."
    )

    def __init__(self, models: list[str] | None = None, system_prompt: str | None = None) -> None:
        super().__init__()
        self.initial_models = list(models or [])
        self.system_prompt = system_prompt or ""
        self.histories: dict[str, list[dict[str, Any]]] = {side: [] for side in SIDES}
        """Each side's conversation as sent: its own answers only."""
        self.pending: dict[str, dict[str, Any] | None] = {side: None for side in SIDES}
        self.generation = 0
        self._models_requested = False

    def compose(self) -> ComposeResult:
        yield AppHeader("Playground", id="header")
        with Horizontal(id="playground-models"):
            for side in SIDES:
                yield Static(Text(f" {side.upper()} ", style="bold reverse"), classes="playground-label")
                yield OrderedInput(
                    placeholder="model (type, or ctrl+o picks)", id=f"playground-model-{side}", compact=True
                )
        with Horizontal(id="playground-settings"):
            yield Static("system ", classes="playground-label")
            yield OrderedInput(clean(self.system_prompt), placeholder="system prompt (optional)", id="playground-system", compact=True)
            yield Static(" temperature ", classes="playground-label")
            yield OrderedInput(str(DEFAULT_TEMPERATURE), type="number", id="playground-temperature", compact=True)
            yield Static(" max tokens ", classes="playground-label")
            yield OrderedInput(str(DEFAULT_MAX_TOKENS), type="integer", id="playground-max-tokens", compact=True)
        with Horizontal(id="playground-columns"):
            for side in SIDES:
                yield PlaygroundColumn(side, id=f"playground-column-{side}")
        with Horizontal(id="playground-ask"):
            yield Static(Text("› ", style="bold"), classes="playground-label")
            yield OrderedInput(placeholder="ask both models · enter sends · ctrl+l clears", id="playground-prompt", compact=True)
        yield KeyFooter()

    @property
    def state(self) -> AppState:
        return host(self).state

    def column(self, side: str) -> PlaygroundColumn:
        return self.query_one(f"#playground-column-{side}", PlaygroundColumn)

    def model_field(self, side: str) -> Input:
        return self.query_one(f"#playground-model-{side}", Input)

    def on_mount(self) -> None:
        state = self.state
        models = self.initial_models
        if not models and state.current_job_id is not None:
            row = state.row(state.current_job_id)
            if row is not None and row.job.fine_tuned_model:
                models = models_for_job(row.job)
        for side, model in zip(SIDES, models):
            self.model_field(side).value = clean(model)
            self.column(side).set_model(clean(model))
        state.models_listed.subscribe(self, self._models_listed)
        state.changed.subscribe(self, lambda _: self._maybe_list_models())
        if state.model_choices is not None:
            self._offer(model_ids(state.model_choices))
        self._maybe_list_models()
        target = "#playground-prompt" if len(models) >= 2 else f"#playground-model-{SIDES[min(len(models), 1)]}"
        self.query_one(target, Input).focus()

    def _maybe_list_models(self) -> None:
        """Ask for the profile's models once, as soon as it is connected (the suggestions)."""
        state = self.state
        if state.model_choices is None and state.connected and not self._models_requested:
            self._models_requested = True
            host(self).requests.load_models()

    def _models_listed(self, message: ModelsLoaded) -> None:
        if message.error is None:
            self._offer(model_ids(self.state.model_choices))

    def _offer(self, ids: list[str]) -> None:
        for side in SIDES:
            self.model_field(side).suggester = SuggestFromList(ids, case_sensitive=False)

    # -- asking -----------------------------------------------------------------------------

    def on_input_changed(self, event: Input.Changed) -> None:
        for side in SIDES:
            if event.input.id == f"playground-model-{side}":
                self.column(side).set_model(clean(event.value.strip()))

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        if event.input.id != "playground-prompt":
            self.query_one("#playground-prompt", Input).focus()
            return
        if self.send(event.value):
            event.input.value = ""

    def send(self, prompt: str) -> bool:
        """Ask both sides `prompt` (each with its own history); False when nothing was sent."""
        if not prompt.strip():
            return False
        if any(self.column(side).answering for side in SIDES):
            self.notify("still answering: wait for both, or ctrl+l to start over", markup=False)
            return False
        try:
            temperature, max_tokens = parse_sampling(
                self.query_one("#playground-temperature", Input).value,
                self.query_one("#playground-max-tokens", Input).value,
            )
        except ValueError as exc:
            self.notify(str(exc), severity="error", markup=False)
            return False
        from tunedeck.core.evaluate.records import Sampling

        sampling = Sampling(temperature=temperature, max_tokens=max_tokens)
        system = self.query_one("#playground-system", Input).value.strip()
        self.generation += 1
        for side in SIDES:
            model = self.model_field(side).value.strip()
            column = self.column(side)
            column.set_model(clean(model))
            column.start_turn(prompt)
            if not model:
                column.finish(f"no model: type one in field {side.upper()}")
                continue
            user = {"role": "user", "content": prompt}
            self.pending[side] = user
            messages = ([{"role": "system", "content": system}] if system else []) + self.histories[side] + [user]
            self.run_worker(
                partial(self._ask, side, self.generation, model, messages, sampling),
                group=WORKERS + side,
                exclusive=True,
                exit_on_error=False,
                description=f"ask {model}",
            )
        return True

    async def _ask(self, side: str, generation: int, model: str, messages: list[dict[str, Any]], sampling: Sampling) -> None:
        from tunedeck.core.api import ApiError
        from tunedeck.core.service import ServiceError

        service = self.state.service
        if service is None:
            self.post_message(PlaygroundAnswered(side, generation, "", "the profile is not open yet"))
            return
        parts: list[str] = []
        try:
            stream = service.evaluations.chat_stream(model, messages, sampling)
            if inspect.isawaitable(stream):
                stream = await stream
            async for chunk in stream:
                if chunk:
                    parts.append(chunk)
                    self.post_message(PlaygroundChunk(side, generation, chunk))
        except ServiceError as exc:
            self.post_message(PlaygroundAnswered(side, generation, "".join(parts), str(exc)))
        except ApiError as exc:
            self.post_message(PlaygroundAnswered(side, generation, "".join(parts), exc.message))
        else:
            self.post_message(PlaygroundAnswered(side, generation, "".join(parts)))

    def on_playground_chunk(self, message: PlaygroundChunk) -> None:
        message.stop()
        if message.generation == self.generation:
            self.column(message.side).add_chunk(message.text)

    def on_playground_answered(self, message: PlaygroundAnswered) -> None:
        message.stop()
        if message.generation != self.generation:
            return  # cleared since
        side = message.side
        self.column(side).finish(message.error)
        user, self.pending[side] = self.pending[side], None
        if message.error is None and user is not None:  # a failed turn is not part of the conversation
            self.histories[side] += [user, {"role": "assistant", "content": message.answer}]

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if pass_on_failure(self, event):
            side = (event.worker.group or "").removeprefix(WORKERS)
            if side in SIDES:
                self.pending[side] = None
                self.column(side).finish("failed: see the error")

    # -- keys -------------------------------------------------------------------------------

    def action_clear(self) -> None:
        for side in SIDES:
            self.workers.cancel_group(self, WORKERS + side)
            self.histories[side] = []
            self.pending[side] = None
            self.column(side).clear()
        self.generation += 1
        self.query_one("#playground-prompt", Input).focus()

    def action_pick_model(self) -> None:
        focused = self.focused
        side = next((s for s in SIDES if focused is not None and focused.id == f"playground-model-{s}"), SIDES[0])
        ids = model_ids(self.state.model_choices)
        if not ids:
            self.notify("no models listed yet: type one", markup=False)
            self._models_requested = False  # ask again
            self._maybe_list_models()
            return
        from .pick import PickScreen

        def picked(model: str | None) -> None:
            if model:
                field = self.model_field(side)
                field.value = clean(model)
                field.focus()

        current = self.model_field(side).value.strip()
        labels = {model: f"{'▶ ' if model == current else '  '}{model}" for model in ids}
        self.app.push_screen(PickScreen(f"Model {side.upper()}", labels), picked)
