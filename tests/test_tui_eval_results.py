"""The evaluation results screen, on the real local backend: a finished run made through
`service.evaluations` (the untrained base model answers a polite guess and fails every example; the
fine-tuned one answers labels and passes most), its scores, filters, side-by-side answers,
failure notes written by the fine-tuned model, and the Markdown export."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import openai
import pytest
from conftest import generate_dataset
from tui_support import make_app, settle

from tunedeck.backend import BUILTIN_BASE_MODEL, LocalBackend
from tunedeck.core.evaluate.records import EvalSettings, ModelSpec
from tunedeck.tui.screens.eval_results import EvalResultsScreen, report_path, write_new
from tunedeck.tui.screens.pick import PickScreen
from tunedeck.tui.screens.playground import PlaygroundScreen
from tunedeck.tui.textshot import screen_text
from tunedeck.tui.widgets.eval_answers import AnswersView

EXAMPLES = 16


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One backend with one SFT job on 300 learnable tickets, and held-out tickets to
    evaluate on; shared by the module (training is the slow part)."""
    folder = tmp_path_factory.mktemp("eval-results")
    backend = LocalBackend(folder / "backend", auto_advance=False)
    client = openai.OpenAI(base_url=backend.start(), api_key=backend.api_key, max_retries=0)
    training = generate_dataset("sft", 300, folder / "train.jsonl", "--learnable")
    held_out = with_wrong_references(
        generate_dataset("sft", EXAMPLES, folder / "held_out.jsonl", "--learnable", "--seed", "99")
    )
    file = client.files.create(file=training, purpose="fine-tune")
    job = client.fine_tuning.jobs.create(model=BUILTIN_BASE_MODEL, training_file=file.id, seed=3)
    backend.run_until_settled()
    job = client.fine_tuning.jobs.retrieve(job.id)
    assert job.status == "succeeded"
    yield backend, job.fine_tuned_model, held_out
    client.close()
    backend.stop()


def with_wrong_references(path: Path) -> Path:
    """Every fourth row's reference replaced by a label no model gives: the fine-tuned model
    fails those (it passes the rest), so every filter has a count of its own."""
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    for number, row in enumerate(rows):
        if number % 4 == 3:
            row["messages"][-1]["content"] = "escalate"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


async def wait_for(pilot, check, what: str, rounds: int = 500):
    """Let the app run until `check()` holds (bounded: no sleeping and hoping)."""
    for _ in range(rounds):
        if check():
            return
        await pilot.pause(0.02)
    raise AssertionError(f"never happened: {what}")


async def finished_run(app, fine_tuned: str, data: Path, system: str | None = None):
    """A run of base vs fine-tuned on the held-out tickets, created and run through the service."""
    evaluations = app.service.evaluations
    settings = EvalSettings(
        data_path=str(data),
        data_sha256="",
        models=(ModelSpec(BUILTIN_BASE_MODEL, "base", "base", system), ModelSpec(fine_tuned, "fine-tuned", "fine_tuned")),
    )
    info = await evaluations.create(settings)
    info = await evaluations.execute(info.id)
    assert info.status == "finished" and info.done == 2 * EXAMPLES
    results = await evaluations.results(info.id)
    tuned_passes = {r.example_index for r in results if r.model_key == "fine-tuned" and r.passed}
    base_passes = {r.example_index for r in results if r.model_key == "base" and r.passed}
    assert not base_passes  # the untrained base model's guesses are no labels
    assert 0 < len(tuned_passes) < EXAMPLES, "the fine-tuned model should pass some examples, not all"
    return info, results, tuned_passes


async def open_results(pilot, run_id: str) -> EvalResultsScreen:
    screen = EvalResultsScreen(run_id)
    await pilot.app.push_screen(screen)
    await wait_for(pilot, lambda: screen.loads >= 1, "the run to load")
    await settle(pilot)
    return screen


def no_unexpected_errors(app) -> None:
    assert not [n.message for n in app._notifications if "unexpected" in (n.title or "")]


async def start(pilot):
    await settle(pilot)
    assert pilot.app.state.connection_state == "online"


async def test_scores_and_the_selected_example_side_by_side(paths, trained):
    backend, fine_tuned, data = trained
    app = make_app(paths, backend)
    async with app.run_test(size=(120, 36)) as pilot:
        await start(pilot)
        info, results, tuned_passes = await finished_run(app, fine_tuned, data, system="Answer with the category.")
        screen = await open_results(pilot, info.id[:8])  # a prefix of the id opens it too
        assert screen.info is not None and screen.info.id == info.id
        shown = screen_text(app)
        assert "finished" in shown and "exact" in shown
        assert f"{len(tuned_passes)}/{EXAMPLES}" in shown  # the fine-tuned pass count
        assert f"0/{EXAMPLES}" in shown  # the base model's
        assert "$0" in shown  # the local backend costs nothing
        assert f"fine-tuned passes {len(tuned_passes)} examples base fails" in shown  # the paired comparison

        # Put the cursor on an example the fine-tuned model passed.
        target = min(tuned_passes)
        await pilot.press(*["down"] * screen.table.shown.index(target))
        await settle(pilot)
        assert screen.table.selected_index == target
        by_model = {r.model_key: r for r in results if r.example_index == target}
        example = screen.examples[target]
        view = screen.query_one("#eval-answers").view
        assert isinstance(view, AnswersView) and view.side_by_side(screen.query_one("#eval-answers").size.width)
        shown = screen_text(app)
        assert example.reference in shown and by_model["fine-tuned"].answer == example.reference
        assert by_model["base"].answer[:20] in shown  # the base model's guess
        assert any("base" in line and "fine-tuned" in line and "score" in line for line in shown.splitlines())
        assert f"line {example.line}" in shown

        await pilot.press("y")  # the answers, copied
        await settle(pilot)
        copied = app.clipboard
        assert example.reference in copied and f"fine-tuned ({fine_tuned})" in copied

        await pilot.press("t")  # the playground, on the run's two models
        await settle(pilot)
        assert isinstance(app.screen, PlaygroundScreen)
        assert app.screen.model_field("a").value == BUILTIN_BASE_MODEL
        assert app.screen.model_field("b").value == fine_tuned
        assert app.screen.query_one("#playground-system").value == "Answer with the category."  # the baseline's
        no_unexpected_errors(app)


async def test_narrow_the_answers_stack_and_the_screen_fits(paths, trained):
    backend, fine_tuned, data = trained
    app = make_app(paths, backend)
    async with app.run_test(size=(80, 24)) as pilot:
        await start(pilot)
        info, results, tuned_passes = await finished_run(app, fine_tuned, data)
        screen = await open_results(pilot, info.id)
        target = min(tuned_passes)
        await pilot.press(*["down"] * screen.table.shown.index(target))
        await settle(pilot)
        answers = screen.query_one("#eval-answers")
        assert not answers.view.side_by_side(answers.size.width)
        shown = screen_text(app)
        for line in shown.splitlines():
            assert len(line) <= 80
        assert "✓" in shown and "✗" in shown  # the marks read without colour


async def test_each_filter_shows_its_rows(paths, trained):
    backend, fine_tuned, data = trained
    app = make_app(paths, backend)
    async with app.run_test(size=(120, 36)) as pilot:
        await start(pilot)
        info, results, tuned_passes = await finished_run(app, fine_tuned, data)
        screen = await open_results(pilot, info.id)
        everything = set(range(EXAMPLES))
        expected = {
            "all": everything,
            "failures": everything,  # base fails every example
            "disagreements": tuned_passes,  # base fails, fine-tuned passes
            "flipped": tuned_passes,  # fine-tuning flipped them
        }
        assert screen.counts == {name: len(rows) for name, rows in expected.items()}
        for name in ("all", "failures", "disagreements", "flipped"):
            assert screen.filter == name
            assert {row.index for row in screen.rows} == expected[name], name
            assert screen.table.shown == sorted(expected[name])
            assert screen.table.row_count == len(expected[name])
            status = screen.query_one("#eval-filter").render()
            assert f"{len(tuned_passes)}" in str(status)
            await pilot.press("f")
            await settle(pilot)
        assert screen.filter == "all"

        # The run moving on (the app announces it) reads it again.
        loads = screen.loads
        app.state.eval_progressed.publish(SimpleNamespace(run_id=info.id))
        await wait_for(pilot, lambda: screen.loads > loads, "a reload")
        app.state.eval_progressed.publish(SimpleNamespace(run_id="another-run"))
        await settle(pilot)
        assert screen.loads == loads + 1
        no_unexpected_errors(app)


async def test_failure_notes_are_written_shown_and_kept(paths, trained, monkeypatch):
    backend, fine_tuned, data = trained
    app = make_app(paths, backend)
    async with app.run_test(size=(120, 36)) as pilot:
        await start(pilot)
        info, _, _ = await finished_run(app, fine_tuned, data)
        evaluations, asked = app.service.evaluations, []
        analyse = evaluations.analyse

        async def recorded(run_id, model, model_key=None):
            asked.append(model_key)
            return await analyse(run_id, model, model_key)

        monkeypatch.setattr(evaluations, "analyse", recorded)
        screen = await open_results(pilot, info.id)
        await pilot.press("a")
        await wait_for(pilot, lambda: isinstance(app.screen, PickScreen), "whose failures")
        assert app.screen.names == ["fine-tuned", "base"]  # both failed some; the fine-tuned model first
        await pilot.press("down", "enter")  # the base model's failures
        await wait_for(pilot, lambda: isinstance(app.screen, PickScreen) and app.screen.names != ["fine-tuned", "base"], "the model picker")
        picker = app.screen
        assert fine_tuned in picker.names
        await pilot.press(*["down"] * picker.names.index(fine_tuned), "enter")
        await wait_for(pilot, lambda: screen.asking is None and screen.notes_shown, "the notes")
        stored = await app.service.evaluations.run_info(info.id)
        assert stored.notes and stored.notes_model == fine_tuned and asked == ["base"]
        assert screen.notes_shown == stored.notes  # the fine-tuned model answers a label, deterministically
        assert screen.showing_notes
        shown = screen_text(app)
        assert "failure notes by" in shown and stored.notes in shown

        await pilot.press("escape")  # reopened: the notes are there again
        await settle(pilot)
        screen = await open_results(pilot, info.id)
        assert screen.notes_shown == stored.notes
        assert "notes by" in str(screen.query_one("#eval-filter").render())
        await pilot.press("n")
        await settle(pilot)
        assert screen.showing_notes and stored.notes in screen_text(app)
        await pilot.press("n")
        await settle(pilot)
        assert not screen.showing_notes
        no_unexpected_errors(app)


async def test_no_model_to_write_notes_says_how_to_get_one(paths, trained, monkeypatch):
    backend, fine_tuned, data = trained
    app = make_app(paths, backend)
    async with app.run_test(size=(120, 36)) as pilot:
        await start(pilot)
        info, _, _ = await finished_run(app, fine_tuned, data)

        async def none() -> list[str]:
            return []

        # The local backend always serves its base model, which can be asked: a profile that
        # serves nothing suitable is this (the service's own message is what shows).
        monkeypatch.setattr(app.service.evaluations, "analysis_models", none)
        screen = await open_results(pilot, info.id)
        await pilot.press("a")
        await wait_for(pilot, lambda: isinstance(app.screen, PickScreen), "whose failures")
        await pilot.press("enter")
        await wait_for(pilot, lambda: screen.analysis_error is not None, "the refusal")
        assert "no model that can write failure notes" in screen.analysis_error
        assert not isinstance(app.screen, PickScreen) and screen.showing_notes
        assert "no model that can write" in screen_text(app).replace("\n", " ")
        assert (await app.service.evaluations.run_info(info.id)).notes is None


async def test_export_writes_markdown_and_never_overwrites(paths, trained, tmp_path):
    backend, fine_tuned, data = trained
    app = make_app(paths, backend)
    async with app.run_test(size=(120, 36)) as pilot:
        await start(pilot)
        info, _, tuned_passes = await finished_run(app, fine_tuned, data)
        screen = await open_results(pilot, info.id)
        await pilot.press("x")
        await wait_for(pilot, lambda: screen.exported is not None, "the export")
        first = screen.exported
        assert first == Path.cwd() / f"{info.id}.md" and first.parent == tmp_path
        report = first.read_text()
        assert "fine-tuned" in report and fine_tuned in report and BUILTIN_BASE_MODEL in report
        assert f"{len(tuned_passes)}" in report
        screen.exported = None
        await pilot.press("x")
        await wait_for(pilot, lambda: screen.exported is not None, "the second export")
        assert screen.exported == tmp_path / f"{info.id}-1.md"
        assert first.read_text() == report  # the first one untouched
        no_unexpected_errors(app)


async def test_a_changed_data_file_still_shows_the_answers(paths, trained, tmp_path):
    backend, fine_tuned, data = trained
    copy = tmp_path / "data.jsonl"
    copy.write_text(data.read_text())
    app = make_app(paths, backend)
    async with app.run_test(size=(120, 36)) as pilot:
        await start(pilot)
        info, results, _ = await finished_run(app, fine_tuned, copy)
        copy.write_text(copy.read_text() + copy.read_text().splitlines()[0] + "\n")  # changed since the run
        screen = await open_results(pilot, info.id)
        assert screen.examples_error and "changed since" in screen.examples_error
        assert screen.table.row_count == EXAMPLES  # the results are still listed
        shown = screen_text(app)
        assert "data not readable" in shown and "could not be read again" in shown
        first = {r.model_key: r for r in results if r.example_index == 0}
        assert first["base"].answer[:20] in shown and first["fine-tuned"].answer in shown


async def test_skipped_rows_are_counted_and_listed_with_their_line(paths, trained, tmp_path):
    from tunedeck.tui.screens.listing import ListingScreen

    backend, fine_tuned, data = trained
    copy = tmp_path / "data.jsonl"
    copy.write_text(data.read_text() + "not json\n" + json.dumps({"messages": [{"role": "user", "content": 7}]}) + "\n")
    app = make_app(paths, backend)
    async with app.run_test(size=(120, 36)) as pilot:
        await start(pilot)
        info, _, _ = await finished_run(app, fine_tuned, copy)
        screen = await open_results(pilot, info.id)
        assert "2 rows skipped (s lists them)" in screen_text(app)
        await pilot.press("s")
        await wait_for(pilot, lambda: isinstance(app.screen, ListingScreen), "the skipped rows")
        shown = screen_text(app)
        assert f"line {EXAMPLES + 1}:" in shown and f"line {EXAMPLES + 2} (messages[0].content)" in shown
        await pilot.press("escape")
        await settle(pilot)
        assert app.screen is screen


async def test_an_unknown_run_says_so(paths):
    app = make_app(paths, connect=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        screen = await open_results(pilot, "eval-nope")
        assert screen.info is None and "no evaluation" in (screen.load_error or "")
        assert "no evaluation" in screen_text(app)
        await pilot.press("f", "x", "y", "a", "t", "s")  # nothing to act on: each says so, none fails
        await settle(pilot)
        assert app.screen is screen
        no_unexpected_errors(app)


def test_report_names_are_safe_and_numbered(tmp_path):
    assert report_path(tmp_path, "../../etc/passwd") == tmp_path / "etc_passwd.md"
    path = report_path(tmp_path, "eval-1")
    assert write_new(path, "a") == path
    assert write_new(path, "b") == tmp_path / "eval-1-1.md"
    assert write_new(path, "c") == tmp_path / "eval-1-2.md"
    assert path.read_text() == "a"


def test_hostile_text_is_shown_literally():
    from rich.console import Console

    from tunedeck.core.evaluate.records import EvalExample, ExampleResult
    from tunedeck.tui.widgets.eval_answers import answers_for_clipboard

    hostile = "[@click=app.quit]x[/] \x1b]52;c;aGk=\x07 \u202egnp.exe"
    example = EvalExample(0, 3, [{"role": "user", "content": hostile}], hostile, {})
    models = (ModelSpec(hostile, hostile, "base"), ModelSpec("m", "fine-tuned", "fine_tuned"))
    results = {
        hostile: ExampleResult(hostile, 0, hostile, 0.0, False, {hostile: 0.5}),
        "fine-tuned": ExampleResult("fine-tuned", 0, None, None, None, error=hostile, error_kind="request"),
    }
    for width in (80, 140):  # stacked and side by side
        console = Console(width=width, file=None, force_terminal=False, color_system=None, record=True)
        with console.capture() as captured:
            console.print(AnswersView(example, models, results))
        out = captured.get()
        assert "\x1b" not in out and "\u202e" not in out and "\x07" not in out
        assert "[@click=app.quit]x[/]" in out  # markup stays text
        assert "␛]52;c;aGk=␇" in out and "request error" in out
    assert "\x1b" in answers_for_clipboard(example, models, results)  # the clipboard gets the text as it is



async def test_filters_are_worked_out_off_the_loop_and_resizes_fit_once(paths, trained, monkeypatch):
    import threading

    from tunedeck.core.evaluate import results as results_module

    backend, fine_tuned, data = trained
    threads: list[str] = []
    real = results_module.example_rows

    def example_rows(*args, **kwargs):
        threads.append(threading.current_thread().name)
        return real(*args, **kwargs)

    monkeypatch.setattr(results_module, "example_rows", example_rows)
    app = make_app(paths, backend)
    async with app.run_test(size=(120, 36)) as pilot:
        await start(pilot)
        info, _, _ = await finished_run(app, fine_tuned, data)
        screen = await open_results(pilot, info.id)
        assert threads and threading.main_thread().name not in threads  # all four filters, in a thread
        asked = len(threads)
        for _ in range(4):
            await pilot.press("f")  # only swaps the lists
        await settle(pilot)
        assert len(threads) == asked and screen.filter == "all"

        await pilot.resize_terminal(100, 36)
        await wait_for(pilot, lambda: screen.fits and not screen._resize_timer, "the fit to the new size")
        fits = screen.fits
        for _ in range(4):  # a drag: many sizes in a row, one fit once it rests
            screen.on_resize()
        await wait_for(pilot, lambda: screen.fits > fits, "the fit after the resize")
        await settle(pilot)
        assert screen.fits == fits + 1 and len(threads) == asked
        no_unexpected_errors(app)


async def test_answers_arriving_read_the_run_at_most_once_a_second(paths, trained):
    from tunedeck.core.evaluate.records import EvalProgress
    from tunedeck.tui.messages import EvalProgressed

    backend, fine_tuned, data = trained
    app = make_app(paths, backend)
    async with app.run_test(size=(120, 36)) as pilot:
        await start(pilot)
        info, _, _ = await finished_run(app, fine_tuned, data)
        screen = await open_results(pilot, info.id)
        loads = screen.loads
        for _ in range(5):  # a burst of progress reports
            app.state.eval_progressed.publish(EvalProgressed(EvalProgress(info.id, info.done, info.total, 0, 0.0, None)))
        await wait_for(pilot, lambda: screen.loads > loads, "the timed read")
        await settle(pilot)
        assert screen.loads == loads + 1 and screen._reload_timer is None
