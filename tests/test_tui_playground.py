"""The playground: one prompt to two models at once, each answer streamed into its own column
through `service.evaluations.chat_stream`, on the real local backend with a model it trained
(the untrained base model guesses a polite non-answer, the fine-tuned model a ticket's label)."""

from __future__ import annotations

import json

import openai
import pytest
from conftest import generate_dataset
from tui_support import make_app, settle

from tunedeck.backend import BUILTIN_BASE_MODEL, LocalBackend
from tunedeck.tui.screens.pick import PickScreen
from tunedeck.tui.screens.playground import PlaygroundScreen, parse_sampling
from tunedeck.tui.textshot import screen_text

LABELS = ("billing", "shipping", "account", "technical", "returns", "other")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One backend with one SFT job on 300 learnable tickets, shared by the module."""
    folder = tmp_path_factory.mktemp("playground")
    backend = LocalBackend(folder / "backend", auto_advance=False)
    client = openai.OpenAI(base_url=backend.start(), api_key=backend.api_key, max_retries=0)
    training = generate_dataset("sft", 300, folder / "train.jsonl", "--learnable")
    held_out = generate_dataset("sft", 4, folder / "held_out.jsonl", "--learnable", "--seed", "99")
    file = client.files.create(file=training, purpose="fine-tune")
    job = client.fine_tuning.jobs.create(model=BUILTIN_BASE_MODEL, training_file=file.id, seed=3)
    backend.run_until_settled()
    job = client.fine_tuning.jobs.retrieve(job.id)
    assert job.status == "succeeded"
    rows = [json.loads(line) for line in held_out.read_text().splitlines()]
    tickets = [(row["messages"][0]["content"], row["messages"][1]["content"]) for row in rows]  # (system, first ticket)
    yield backend, job.fine_tuned_model, tickets
    client.close()
    backend.stop()


async def wait_for(pilot, check, what: str, rounds: int = 400):
    """Let the app run until `check()` holds (bounded: no sleeping and hoping)."""
    for _ in range(rounds):
        if check():
            return
        await pilot.pause(0.02)
    raise AssertionError(f"never happened: {what}")


async def open_playground(pilot, models) -> PlaygroundScreen:
    await settle(pilot)
    assert pilot.app.state.connection_state == "online"
    await pilot.app.push_screen(PlaygroundScreen(models))
    await settle(pilot)
    screen = pilot.app.screen
    assert isinstance(screen, PlaygroundScreen)
    return screen


async def ask(pilot, screen: PlaygroundScreen, system: str, prompt: str) -> None:
    screen.query_one("#playground-system").value = system
    field = screen.query_one("#playground-prompt")
    field.focus()
    field.value = prompt
    await pilot.press("enter")


def done(screen: PlaygroundScreen) -> bool:
    return not any(screen.column(side).answering for side in ("a", "b"))


async def test_both_columns_get_their_streamed_answers_and_keep_their_conversations(paths, trained):
    backend, fine_tuned, tickets = trained
    app = make_app(paths, backend)
    async with app.run_test(size=(120, 36)) as pilot:
        screen = await open_playground(pilot, [BUILTIN_BASE_MODEL, fine_tuned])
        assert screen.model_field("a").value == BUILTIN_BASE_MODEL and screen.model_field("b").value == fine_tuned
        assert app.focused is screen.query_one("#playground-prompt")  # both filled: ready to ask

        system, ticket = tickets[0]
        await ask(pilot, screen, system, ticket)
        await wait_for(pilot, lambda: done(screen), "both answers")
        base, tuned = screen.column("a"), screen.column("b")
        assert screen.query_one("#playground-prompt").value == ""  # sent
        assert [t.error for t in base.turns] == [None] and [t.error for t in tuned.turns] == [None]
        guess = base.turns[0].answer
        assert guess and guess not in LABELS  # the untrained base model guesses, politely and uselessly
        assert tuned.turns[0].answer in LABELS  # the fine-tuned one answers a label
        assert guess in base.text and tuned.turns[0].answer in tuned.text
        await wait_for(pilot, lambda: f"model › {tuned.turns[0].answer}" in screen_text(app), "the answer in view")
        assert f"model › {guess[:20]}" in screen_text(app)

        # A second turn: each side is sent its own conversation (its answers, not the other's).
        system2, ticket2 = tickets[1]
        await ask(pilot, screen, system, ticket2)
        await wait_for(pilot, lambda: done(screen), "the second answers")
        assert len(tuned.turns) == 2 and tuned.turns[1].answer in LABELS
        assert [m["role"] for m in screen.histories["b"]] == ["user", "assistant", "user", "assistant"]
        assert screen.histories["b"][1]["content"] == tuned.turns[0].answer
        assert screen.histories["a"][1]["content"] == guess

        await pilot.press("ctrl+l")  # start over
        await settle(pilot)
        assert screen.histories == {"a": [], "b": []} and not tuned.turns and not base.turns
        assert "type a prompt below" in tuned.text

        await pilot.press("escape")
        await settle(pilot)
        assert not isinstance(app.screen, PlaygroundScreen)


async def test_an_unknown_model_fails_in_its_own_column_while_the_other_answers(paths, trained):
    backend, fine_tuned, tickets = trained
    app = make_app(paths, backend)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_playground(pilot, ["ft:tunedeck-ngram:local::nope", fine_tuned])
        system, ticket = tickets[2]
        await ask(pilot, screen, system, ticket)
        await wait_for(pilot, lambda: done(screen), "both sides to end")
        unknown, tuned = screen.column("a"), screen.column("b")
        assert unknown.turns[0].error and "nope" in unknown.turns[0].error
        assert tuned.turns[0].error is None and tuned.turns[0].answer in LABELS
        assert screen.histories["a"] == []  # a failed turn is not part of that side's conversation
        assert len(screen.histories["b"]) == 2
        await wait_for(pilot, lambda: f"model › {tuned.turns[0].answer}" in screen_text(app), "the answer in view")
        shown = screen_text(app)
        assert "✗ failed" in shown and "✗ " + unknown.turns[0].error in unknown.text  # the error, in its column
        for line in shown.splitlines():
            assert len(line) <= 80

        # The next turn still goes to both; the unknown side is asked afresh (and fails again).
        screen.model_field("a").value = fine_tuned
        await ask(pilot, screen, system, tickets[3][1])
        await wait_for(pilot, lambda: done(screen), "the second turn")
        assert unknown.turns[1].error is None and unknown.turns[1].answer in LABELS
        assert not [n.message for n in app._notifications if "unexpected" in (n.title or "")]


async def test_the_fields_are_checked_before_anything_is_sent(paths, trained):
    backend, fine_tuned, tickets = trained
    app = make_app(paths, backend)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await open_playground(pilot, [fine_tuned])
        assert screen.model_field("a").value == fine_tuned and screen.model_field("b").value == ""
        assert app.focused is screen.model_field("b")  # the empty side is where to type
        screen.query_one("#playground-temperature").value = "9"
        await ask(pilot, screen, tickets[0][0], tickets[0][1])
        await settle(pilot)
        assert not screen.column("a").turns  # nothing sent: the temperature is out of range
        assert screen.query_one("#playground-prompt").value == tickets[0][1]  # kept to send again

        screen.query_one("#playground-temperature").value = "0"
        await ask(pilot, screen, tickets[0][0], tickets[0][1])
        await wait_for(pilot, lambda: done(screen), "the answer")
        assert screen.column("a").turns[0].answer in LABELS
        assert "no model" in (screen.column("b").turns[0].error or "")  # side B had none

        # ctrl+o picks side B's model from the profile's list (listed when the screen opened).
        await wait_for(pilot, lambda: app.state.model_choices is not None, "the model list")
        screen.model_field("b").focus()
        await pilot.press("ctrl+o")
        await wait_for(pilot, lambda: isinstance(app.screen, PickScreen), "the model picker")
        names = app.screen.names
        assert BUILTIN_BASE_MODEL in names and fine_tuned in names
        await pilot.press(*["down"] * names.index(BUILTIN_BASE_MODEL), "enter")
        await settle(pilot)
        assert app.screen is screen and screen.model_field("b").value == BUILTIN_BASE_MODEL
        assert screen.column("b").model == BUILTIN_BASE_MODEL


def test_sampling_fields():
    assert parse_sampling("0.7", "64") == (0.7, 64)
    assert parse_sampling("", "") == (0.0, 256)
    for temperature, tokens in (("-1", "5"), ("x", "5"), ("1", "0"), ("1", "1.5")):
        with pytest.raises(ValueError):
            parse_sampling(temperature, tokens)


async def test_t_opens_the_playground_drawn_at_once_even_with_no_models(paths, manual_backend):
    app = make_app(paths, manual_backend)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        await pilot.press("t")
        await settle(pilot)
        assert isinstance(app.screen, PlaygroundScreen)
        shown = screen_text(app)  # what is drawn, not what the column would say
        assert shown.count("type a prompt below") == 2
