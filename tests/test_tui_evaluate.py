"""The Evaluate screen with Pilot, on the real local backend in manual time: the one-key
evaluation of a job (base vs fine-tuned vs checkpoints on its validation file), the form
(its own checks and the service's, each next to its field; a job without data pre-fills
the models), and a run cancelled mid-way then resumed to the end.

Nothing sleeps: jobs move when the test advances the backend; an evaluation's requests are
held at a gate the test opens when it chooses, and waits end on a condition (`eventually`).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from conftest import eventually, generate_dataset
from tui_support import bench_profile, burst, make_app, open_job, settle

from tunedeck.core.api import Api
from tunedeck.core.evaluate.runner import REFUSED_AFTER
from tunedeck.core.launch.request import LaunchRequest
from tunedeck.tui.screens.eval_results import EvalResultsScreen
from tunedeck.tui.screens.evaluate import EvaluateScreen
from tunedeck.tui.screens.job import JobScreen
from tunedeck.tui.textshot import screen_text
from tunedeck.tui.widgets.eval_form import EvalForm, problem_field
from tunedeck.tui.widgets.eval_form_models import default_label, kind_of

MODEL = "tunedeck-ngram"


@pytest.fixture
def valid_file(tmp_path):
    return generate_dataset("sft", 12, tmp_path / "valid.jsonl", "--learnable", "--seed", "9")


async def trained_job(app, manual_backend, training, validation=None) -> str:
    request = LaunchRequest(
        training_path=training, validation_path=validation, model=MODEL, hyperparameters={"n_epochs": 3, "batch_size": 4}
    )
    job = await app.service.launch(request)
    await asyncio.to_thread(manual_backend.run_until, job.id, "succeeded")
    return job.id


async def wait_for(pilot, check, what: str, timeout: float = 60):
    """Until `check()` holds, letting the app (and its evaluation worker) run between looks."""
    return await eventually(check, what, timeout=timeout, pause=pilot.pause)


def run_of(screen: EvaluateScreen):
    return screen.table.infos.get(screen.run_id) if screen.run_id else None


def finished(screen: EvaluateScreen) -> bool:
    info = run_of(screen)
    return info is not None and info.status == "finished" and info.id not in screen.state.evaluations


class Gate:
    """Holds every chat request after the first `open_for` until `open()`: the test decides
    when an evaluation moves on (a cancel lands while requests are held)."""

    def __init__(self, monkeypatch, open_for: int) -> None:
        self.left = open_for
        self.event = asyncio.Event()
        self.held = 0
        real = Api.chat

        async def chat(api, *args, **kwargs):
            if self.left > 0:
                self.left -= 1
            else:
                self.held += 1
                await self.event.wait()
            return await real(api, *args, **kwargs)

        monkeypatch.setattr(Api, "chat", chat)

    def open(self) -> None:
        self.event.set()


# -- one key on a job --------------------------------------------------------------------------------


async def test_e_on_a_job_evaluates_base_fine_tuned_and_checkpoints(paths, manual_backend, sft_file, valid_file):
    app = make_app(paths, manual_backend)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        job_id = await trained_job(app, manual_backend, sft_file, valid_file)
        job_screen = await open_job(pilot, job_id)
        fine_tuned = job_screen.job.fine_tuned_model
        assert fine_tuned

        await pilot.press("E")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, EvaluateScreen) and screen.job_id == job_id
        await wait_for(pilot, lambda: finished(screen), "the job's evaluation to finish")
        await wait_for(pilot, lambda: screen.summaries.get(screen.run_id), "its scores")

        info = run_of(screen)
        settings = info.settings
        assert settings.job_id == job_id
        assert Path(settings.data_path).read_bytes() == valid_file.read_bytes()  # the job's validation file
        assert [(m.label, m.kind) for m in settings.models] == [
            ("base", "base"), ("fine-tuned", "fine_tuned"), ("step 10", "checkpoint"), ("step 20", "checkpoint"),
        ]  # fmt: skip
        assert settings.models[0].model == MODEL and settings.models[1].model == fine_tuned
        assert info.examples == 12 and info.done == info.total == 48

        assert screen.table.selected_run_id == info.id and screen.table.has_focus  # the cursor on the run it started
        shown = screen.panel.text
        assert "finished" in shown and "48/48 answers" in shown
        summary = screen.summaries[info.id]
        assert [s.key for s in summary.scores] == ["base", "fine-tuned", "step 10", "step 20"]
        for score in summary.scores:  # a score per model, on the screen
            assert score.mean is not None
            assert f"{score.key} {score.mean:.2f}" in shown
        text = screen_text(app)
        assert "✔ finished" in text and Path(settings.data_path).name[:10] in text
        assert not app.state.evaluations

        await pilot.press("escape")  # back to the job; the run stays in the list
        await pilot.pause()
        assert app.screen is job_screen


async def test_a_job_without_validation_data_fills_the_form_with_its_models(paths, manual_backend, sft_file, valid_file):
    app = make_app(paths, manual_backend)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        job_id = await trained_job(app, manual_backend, sft_file)  # no validation file
        await open_job(pilot, job_id)
        await pilot.press("E")
        screen = app.screen
        assert isinstance(screen, EvaluateScreen)
        form = screen.form
        await wait_for(pilot, lambda: len(form.models.specs) >= 2, "the job's models in the form")
        assert "no validation file" in form.problems["data"]
        assert [s.label for s in form.models.specs] == ["base", "fine-tuned", "step 10", "step 20"]
        assert form.job_id == job_id and form.data_input.has_focus
        assert "no validation file" in screen_text(app)
        assert screen.runs == []  # nothing was started

        await pilot.press(*str(valid_file))  # only the dataset is left to pick
        assert "data" not in form.problems  # typing clears the note
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: finished(screen), "the evaluation to finish")
        info = run_of(screen)
        assert info.settings.job_id == job_id and len(info.settings.models) == 4 and info.done == 48


# -- the form ------------------------------------------------------------------------------------------


async def test_the_form_shows_each_problem_next_to_its_field(paths, manual_backend, tmp_path, valid_file):
    app = make_app(paths, manual_backend)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("E")  # no job selected: the Evaluate screen itself
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, EvaluateScreen) and screen.job_id is None
        form: EvalForm = screen.form
        assert form.data_input.has_focus  # no runs yet: the form first
        assert "No evaluations yet" in screen_text(app)

        await pilot.press(*"missing.jsonl")
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert "missing.jsonl: no such file" in form.problems["data"]
        assert "at least one model" in form.problems["models"]
        assert form.query_one("#eval-data-note").display and form.data_input.has_class("-invalid")
        assert form.data_input.has_focus

        form.query_one("#eval-model-id").focus()
        await pilot.press(*MODEL, "enter")  # enter adds the typed model
        await pilot.pause()
        assert [(s.model, s.label, s.kind) for s in form.models.specs] == [(MODEL, MODEL, "base")]
        assert "models" not in form.problems
        form.query_one("#eval-model-id").value = MODEL
        form.query_one("#eval-system").value = "Answer in one word."
        form.add_model()  # the prompted baseline: the same base model with a system prompt
        assert form.models.specs[1].label == f"{MODEL} + prompt" and form.models.specs[1].system_prompt

        bad = tmp_path / "bad.jsonl"
        bad.write_text("not json\n{\"also\": \"no messages\"}\n")
        form.data_input.value = str(bad)
        form.query_one("#eval-concurrency").value = "lots"
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert "'lots' is not a whole number" in form.problems["sampling"]
        assert form.query_one("#eval-concurrency").has_class("-invalid")
        assert "data" not in form.problems  # the file exists: the service judges its rows

        form.query_one("#eval-concurrency").value = "2"
        await pilot.press("ctrl+s")  # the service refuses the file: said under the dataset field
        await wait_for(pilot, lambda: "data" in form.problems, "the service's refusal")
        assert "bad.jsonl" in form.problems["data"]
        assert form.query_one("#eval-data-note").display
        assert "bad.jsonl" in screen_text(app)
        assert screen.runs == [] and not app.state.evaluations

        form.data_input.value = str(valid_file)
        form.query_one("#eval-grader").value = "json"
        form.query_one("#eval-fields").value = "a b"
        await pilot.press("ctrl+s")  # a grader the service refuses: said under the grader
        await wait_for(pilot, lambda: "grader" in form.problems, "the grader's refusal")
        assert "a b" in form.problems["grader"] and "data" not in form.problems

        form.query_one("#eval-grader").value = "text_similarity"
        await pilot.pause()
        assert form.query_one("#eval-metric-row").display and not form.query_one("#eval-fields-row").display
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: screen.runs and finished(screen), "the run to finish")
        info = run_of(screen)
        assert [m.label for m in info.settings.models] == [MODEL, f"{MODEL} + prompt"]
        assert info.settings.grader.kind == "text_similarity" and info.settings.concurrency == 2
        for line in screen_text(app).splitlines():
            assert len(line) <= 80


def test_labels_kinds_and_where_a_refusal_belongs():
    assert kind_of("ft:m:org::abc") == "fine_tuned" and kind_of("ft:m:org::abc:ckpt-step-20") == "checkpoint"
    assert kind_of("gpt-4.1-mini") == "base"
    assert default_label("ft:m:org::abc:ckpt-step-20", None) == "step 20"
    assert default_label("ft:m:org::abc", None) == "abc"
    assert default_label("gpt-4.1-mini", "Be brief.", ["gpt-4.1-mini + prompt"]) == "gpt-4.1-mini + prompt 2"
    assert problem_field("grader: string_check operation 'x' is not one of eq") == "grader"
    assert problem_field("two models are labelled 'a': each needs a label of its own") == "models"
    assert problem_field("concurrency must be a whole number from 1 to 64, not 0") == "sampling"
    assert problem_field("/tmp/x.jsonl:3 (messages): no assistant message") == "data"


# -- cancel and resume ---------------------------------------------------------------------------------


async def test_cancel_keeps_the_answers_and_resume_finishes_the_run(paths, manual_backend, valid_file, monkeypatch):
    app = make_app(paths, manual_backend)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        gate = Gate(monkeypatch, open_for=5)
        screen = EvaluateScreen()
        app.push_screen(screen)
        await settle(pilot)
        form = screen.form
        form.data_input.value = str(valid_file)
        form.query_one("#eval-model-id").value = MODEL
        form.add_model()
        form.query_one("#eval-concurrency").value = "1"
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: gate.held and screen.run_id in app.state.evaluations, "the run to reach the gate")
        await wait_for(pilot, lambda: app.state.evaluations[screen.run_id].done == 5, "five answers stored")
        run_id = screen.run_id
        assert screen.table.selected_run_id == run_id
        shown = screen.panel.text
        assert "5/12 answers" in shown and "ETA" in shown and "c cancels" in shown
        assert "▶ running 41%" in screen_text(app)  # 5 of 12

        screen.table.focus()
        await pilot.press("c")  # no question: nothing is lost
        await wait_for(pilot, lambda: run_of(screen) and run_of(screen).status == "cancelled", "the cancel")
        info = run_of(screen)
        assert info.done == 5 and run_id not in app.state.evaluations
        assert "R resumes it" in screen.panel.text
        assert screen.check_action("resume_run", ()) and not screen.check_action("cancel_run", ())

        await pilot.press("enter")  # a cancelled run's results: what it answered so far
        await wait_for(pilot, lambda: isinstance(app.screen, EvalResultsScreen) and app.screen.loads, "its results")
        assert app.screen.info.id == run_id and len(app.screen.results) == 5
        await pilot.press("escape")
        await pilot.pause()
        assert app.screen is screen

        gate.open()
        await pilot.press("R")
        await wait_for(pilot, lambda: finished(screen), "the resumed run to finish")
        info = run_of(screen)
        assert info.id == run_id and info.done == info.total == 12 and info.errors == 0
        results = await app.service.evaluations.results(run_id)
        assert sorted(r.example_index for r in results) == list(range(12))  # each asked once, none lost
        assert not screen.check_action("resume_run", ())


# -- failures and hostile text ---------------------------------------------------------------------------

HOSTILE = "[@click=app.quit]x[/] osc52\x1b]52;c;aGk=\x07 bidi\u202eevil [bold"
RAW = ("\x1b", "\x07", "\u202e")


async def test_failed_answers_rerun_with_f_and_hostile_names_show_literally(
    paths, manual_backend, tmp_path, valid_file, monkeypatch
):
    data = tmp_path / f"data {HOSTILE.replace('/', '')}.jsonl"
    data.write_bytes(valid_file.read_bytes())
    app = make_app(paths, manual_backend)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        screen = EvaluateScreen()
        app.push_screen(screen)
        await settle(pilot)
        form = screen.form
        form.set_data_path(str(data))  # as a recent dataset is offered
        form.query_one("#eval-model-id").value = "no-such-model " + HOSTILE
        form.query_one("#eval-label").value = "label " + HOSTILE
        form.add_model()
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: finished(screen), "the run to finish")
        info = run_of(screen)
        assert info.errors == info.total == 12  # every request refused: kept as errors, the run ends
        assert "12 errors" in screen.panel.text and "F re-runs the failed" in screen.panel.text
        shown = screen_text(app)
        for char in RAW:
            assert char not in shown, [line for line in shown.splitlines() if char in line]
        assert "[@click=app.quit]x" in shown and "␛]52;c;aGk=␇" in shown  # literal, made visible
        assert app.screen is screen  # no markup action ran

        assert screen.check_action("retry_failed", ()) and not screen.check_action("resume_run", ())
        asked: list[str] = []
        real_chat = Api.chat

        async def chat(api, model, *args, **kwargs):
            asked.append(model)
            return await real_chat(api, model, *args, **kwargs)

        monkeypatch.setattr(Api, "chat", chat)
        screen.table.focus()
        await pilot.press("F")
        await wait_for(pilot, lambda: asked, "the failed examples asked again")
        await wait_for(pilot, lambda: finished(screen) and screen.table.infos[info.id].done == 12, "the re-run to finish")
        # asked again until the model is refused the same way REFUSED_AFTER times (those in
        # flight by then answer too); the rest keep that refusal without a request
        assert REFUSED_AFTER <= len(asked) < 12
        assert run_of(screen).errors == 12
        for note in app._notifications:
            assert not note.markup


# -- leaving the screen, offline ---------------------------------------------------------------------------


async def test_a_run_goes_on_after_leaving_the_screen_and_says_when_it_ends(paths, manual_backend, valid_file, monkeypatch):
    app = make_app(paths, manual_backend)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        gate = Gate(monkeypatch, open_for=2)
        screen = EvaluateScreen()
        app.push_screen(screen)
        await settle(pilot)
        screen.form.data_input.value = str(valid_file)
        screen.form.query_one("#eval-model-id").value = MODEL
        screen.form.add_model()
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: gate.held, "the run to reach the gate")
        run_id = screen.run_id
        await pilot.press("escape")  # the Jobs screen: the run is the app's, not the screen's
        await pilot.pause()
        assert app.screen is not screen and run_id in app.state.evaluations
        gate.open()
        await wait_for(pilot, lambda: run_id not in app.state.evaluations, "the run to end")
        assert ("evaluation", f"{run_id} finished") in [(n.title, n.message) for n in app._notifications]
        info = await app.service.evaluations.run_info(run_id)
        assert info.status == "finished" and info.done == 12


async def test_offline_the_form_says_so_and_starts_nothing(paths, valid_file):
    app = make_app(paths, connect=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("E")
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, EvaluateScreen)
        screen.form.data_input.value = str(valid_file)
        screen.form.query_one("#eval-model-id").value = MODEL
        screen.form.add_model()
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert "not connected" in screen.status_text and "press r to retry" in screen.status_text
        assert screen.form.query_one("#eval-status-note").display
        assert await app.service.evaluations.runs() == [] and not app.state.evaluations


async def test_e_on_a_job_asks_first_where_the_provider_bills_each_answer(paths, manual_backend, sft_file, valid_file):
    from dataclasses import replace

    from tunedeck.tui.screens.confirm import ConfirmScreen

    app = make_app(paths, manual_backend)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        job_id = await trained_job(app, manual_backend, sft_file, valid_file)
        await open_job(pilot, job_id)
        service = app.service
        service.profile = replace(service.profile, backend="openai")  # a provider that bills answers

        await pilot.press("E")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen) and "bills" in app.screen.question
        await pilot.press("n")
        screen = app.screen
        assert isinstance(screen, EvaluateScreen)
        await wait_for(pilot, lambda: len(screen.form.models.specs) == 4, "the job's models in the form")
        await settle(pilot)
        assert screen.runs == [] and "not started" in screen.status_text  # nothing asked, nothing billed

        await pilot.press("escape")
        await pilot.pause()
        await pilot.press("E")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("y")
        screen = app.screen
        assert isinstance(screen, EvaluateScreen)
        await wait_for(pilot, lambda: finished(screen), "the evaluation to finish once agreed")
        assert run_of(screen).settings.job_id == job_id


async def test_switching_profile_mid_run_cancels_the_run_cleanly(isolated_home, manual_backend, valid_file, monkeypatch):
    from tunedeck.core.bootstrap import open_service
    from tunedeck.core.evaluate.records import EvalSettings, ModelSpec
    from tunedeck.tui.app import TunedeckApp
    from tunedeck.tui.screens.confirm import ConfirmScreen

    bench_profile(isolated_home, manual_backend, monkeypatch)
    gate = Gate(monkeypatch, open_for=3)
    app = TunedeckApp(poll=False)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        settings = EvalSettings(str(valid_file), "", (ModelSpec(MODEL, "base", "base"),), concurrency=1)
        app.requests.start_evaluation(settings)
        await wait_for(pilot, lambda: gate.held == 1, "a request held mid-run")
        (run_id,) = app.state.evaluations

        await pilot.press("p")  # asks first: the running evaluation would stop
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen) and "1 evaluation is running" in app.screen.question
        await pilot.press("n")
        await pilot.pause()
        assert app.state.profile_name == "bench" and run_id in app.state.evaluations

        await pilot.press("p")
        await pilot.pause()
        await pilot.press("y")  # to the local profile: the run stops first, its answers kept
        await settle(pilot)
        assert app.state.profile_name == "local"
        failures = [n for n in app._notifications if "unexpected" in str(n.message)]
        assert not failures
    gate.open()

    bench = await open_service("bench")
    try:
        info = await bench.evaluations.run_info(run_id)
        assert info.status == "cancelled" and info.done == 3  # resumable, nothing lost
    finally:
        await bench.close()


# -- keys in the form, a second start, runs already going --------------------------------------------


async def test_fast_typing_adds_each_model_and_one_start_makes_one_run(paths, manual_backend, valid_file, monkeypatch):
    app = make_app(paths, manual_backend)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        gate = Gate(monkeypatch, open_for=0)  # the run stays going while the keys land
        screen = EvaluateScreen()
        app.push_screen(screen)
        await settle(pilot)
        form = screen.form
        form.data_input.value = str(valid_file)
        form.query_one("#eval-model-id").focus()
        # Enter, the next id and ctrl+s (twice) in one burst, as a terminal delivers fast typing
        await burst(pilot, MODEL, "enter", "ft:other", "enter", "ctrl+s", "ctrl+s")
        await wait_for(pilot, lambda: gate.held and screen._starting is None, "the run going")
        await pilot.press("ctrl+s")  # once more, the run going: shown, not started again
        await pilot.pause()
        assert "already running" in screen.status_text
        gate.open()
        await wait_for(pilot, lambda: screen.runs and finished(screen), "the run to finish")
        assert [s.model for s in run_of(screen).settings.models] == [MODEL, "ft:other"]
        assert len(await app.service.evaluations.runs()) == 1  # one run for three ctrl+s
        assert screen.summaries[run_of(screen).id] is not None

        reads: list[str] = []
        evaluations = app.service.evaluations
        summary = evaluations.summary

        async def counted(run_id: str):
            reads.append(run_id)
            return await summary(run_id)

        monkeypatch.setattr(evaluations, "summary", counted)
        loads = screen.loads
        screen._load_runs()
        await wait_for(pilot, lambda: screen.loads > loads, "the runs read again")
        assert reads == []  # no answer since the last read: its scores are kept, not worked out again

        profile = app.state.profile_name
        form.models.focus()  # not a text field: the app's letters would leave or switch profile
        await pilot.press("t", "d", "p", "q")
        await pilot.pause()
        assert app.screen is screen and app.is_running and app.state.profile_name == profile
        assert not app.check_action("quit", ()) and not app.check_action("switch_profile", ())
        screen.table.focus()  # from the runs, q quits again
        await pilot.pause()
        assert app.check_action("quit", ()) and app.check_action("playground", ())


async def test_e_on_a_job_already_evaluating_shows_that_run(paths, manual_backend, sft_file, valid_file, monkeypatch):
    app = make_app(paths, manual_backend)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        job_id = await trained_job(app, manual_backend, sft_file, valid_file)
        await open_job(pilot, job_id)
        gate = Gate(monkeypatch, open_for=1)
        await pilot.press("E")
        first = app.screen
        assert isinstance(first, EvaluateScreen)
        await wait_for(pilot, lambda: gate.held and first.run_id, "the job's run held mid-way")
        run_id = first.run_id
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, JobScreen)
        await pilot.press("E")  # the same evaluation again: the running one is shown
        second = app.screen
        assert isinstance(second, EvaluateScreen) and second is not first
        await wait_for(pilot, lambda: second.run_id == run_id, "the running run selected")
        assert list(app.state.evaluations) == [run_id]
        assert len(await app.service.evaluations.runs()) == 1
        gate.open()
        await wait_for(pilot, lambda: finished(second), "the run to finish")


async def test_another_runs_failure_is_said_on_the_screen(paths, manual_backend):
    app = make_app(paths, manual_backend)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        screen = EvaluateScreen()
        app.push_screen(screen)
        await settle(pilot)
        app.requests.resume_evaluation("eval-nosuch")  # not this screen's request
        await wait_for(pilot, lambda: "eval-nosuch" in screen.status_text, "the failure on the screen")
        assert "no evaluation eval-nosuch" in screen.status_text
        assert any(n.title == "evaluation eval-nosuch" for n in app._notifications)
