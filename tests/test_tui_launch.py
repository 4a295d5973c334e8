"""The launch form, its pre-flight and the launch, driven as a user drives them, against the
real local backend in manual time (its fault rules drop connections and answers)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import openai
from conftest import generate_dataset
from tui_support import make_app, settle

from tunedeck.backend.http.faults import plan_from_dict
from tunedeck.core.paths import AppPaths
from tunedeck.tui.screens.dataset import DatasetScreen
from tunedeck.tui.screens.dataset_prompts import AskScreen
from tunedeck.tui.screens.grader_editor import GraderEditorScreen
from tunedeck.tui.screens.job import JobScreen
from tunedeck.tui.screens.launch import FIELDS, LaunchScreen, field_id
from tunedeck.tui.screens.pick import PickScreen
from tunedeck.tui.screens.preflight import PreflightScreen
from tunedeck.tui.textshot import screen_text


async def open_form(pilot, training: Path | None = None) -> LaunchScreen:
    await settle(pilot)
    await pilot.press("n")
    await settle(pilot)
    form = pilot.app.screen
    assert isinstance(form, LaunchScreen)
    if training is not None:
        form.query_one("#training-path").value = os.path.relpath(training)
        await settle(pilot)
    return form


def choose_method(form: LaunchScreen, method: str) -> None:
    for button in form.query("#method RadioButton"):
        if button.name == method:
            button.value = True


def shown_rows(form: LaunchScreen) -> set[str]:
    return {spec.key for spec in FIELDS if form.query_one(f"#row-{field_id(spec.key)}").display}


async def to_preflight(pilot) -> PreflightScreen:
    await pilot.press("ctrl+s")
    await settle(pilot)
    screen = pilot.app.screen
    assert isinstance(screen, PreflightScreen), getattr(screen, "error_text", "")
    assert screen.checked is not None, screen.error_text
    return screen


def set_faults(backend, *rules: dict) -> None:
    backend.faults.set_rules([plan_from_dict({"rules": [r]}).rules[0] for r in rules])


async def server_files(backend) -> list:
    client = openai.AsyncOpenAI(base_url=backend.base_url, api_key=backend.api_key, max_retries=0)
    try:
        return (await client.files.list()).data
    finally:
        await client.close()


async def server_jobs(backend) -> list:
    client = openai.AsyncOpenAI(base_url=backend.base_url, api_key=backend.api_key, max_retries=0)
    try:
        return [job async for job in client.fine_tuning.jobs.list()]
    finally:
        await client.close()


# -- the form ----------------------------------------------------------------------------------


async def test_fields_appear_and_vanish_with_the_method(paths, manual_backend):
    app = make_app(paths, manual_backend)
    async with app.run_test(size=(120, 36)) as pilot:
        form = await open_form(pilot)
        select = form.query_one("#model-select")
        assert select.value == "tunedeck-ngram" and select.prompt == "choose a base model"  # no stale "loading…"
        common = {"n_epochs", "batch_size", "learning_rate_multiplier", "suffix", "seed", "metadata"}
        local_options = {"training_type", "lora_rank", "lora_alpha", "lora_dropout", "max_length", "device", "devices",
                         "sharding"}
        assert shown_rows(form) == common | local_options  # SFT on the local backend: no W&B
        assert not form.query_one("#grader-row").display

        choose_method(form, "dpo")
        await settle(pilot)
        assert shown_rows(form) == common | local_options | {"beta"}

        choose_method(form, "reinforcement")
        await settle(pilot)
        rft = {"reasoning_effort", "compute_multiplier", "eval_interval", "eval_samples", "max_completion_tokens"}
        assert shown_rows(form) == common | local_options | rft
        assert form.query_one("#grader-row").display and form.query_one("#schema-row").display

        choose_method(form, "supervised")
        await settle(pilot)
        assert "beta" not in shown_rows(form) and not form.query_one("#grader-row").display


async def test_values_are_checked_as_they_are_typed(paths, manual_backend, sft_file):
    app = make_app(paths, manual_backend)
    async with app.run_test(size=(80, 24)) as pilot:
        form = await open_form(pilot, sft_file)
        epochs = form.query_one(f"#{field_id('n_epochs')}")
        epochs.focus()
        await pilot.press("9", "9")
        await settle(pilot)
        assert any(p.startswith("Epochs:") and "1 to 50" in p for p in form.problems), form.problems
        assert not any(p.startswith("Epochs: Epochs") for p in form.problems), form.problems  # its label once
        assert epochs.has_class("-invalid")
        await pilot.press("backspace", "backspace", "x")
        await settle(pilot)
        assert any("Epochs" in p and "'x'" in p for p in form.problems), form.problems
        await pilot.press("backspace", "3")
        form.query_one(f"#{field_id('suffix')}").value = "no spaces allowed"
        form.query_one(f"#{field_id('metadata')}").value = "team=ml, oops"
        await settle(pilot)
        assert not epochs.has_class("-invalid")
        assert any("metadata" in p and "oops" in p for p in form.problems), form.problems
        form.query_one(f"#{field_id('metadata')}").value = "team=ml"
        await settle(pilot)
        assert any(p.startswith("Suffix:") for p in form.problems), form.problems
        form.query_one(f"#{field_id('suffix')}").value = "support-v2"
        await settle(pilot)
        assert form.problems == []
        request, _ = form.build_request()
        assert request.hyperparameters == {"n_epochs": 3} and request.metadata == {"team": "ml"}


async def test_launching_from_the_browser_carries_format_and_errors(paths, manual_backend, tmp_path):
    """`l` on a DPO file selects DPO; on a file with invalid lines the form says so and the
    pre-flight blocks: nothing is uploaded."""
    dpo = generate_dataset("dpo", 40, tmp_path / "prefs.jsonl")
    app = make_app(paths, manual_backend)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        app.push_screen(DatasetScreen(dpo))
        await settle(pilot)
        await pilot.press("l")
        await settle(pilot)
        form = app.screen
        assert isinstance(form, LaunchScreen) and form.chosen_method() == "dpo"
        assert "DPO format" in screen_text(app)
        await pilot.press("escape", "escape")
        await settle(pilot)

        bad = generate_dataset("sft", 60, tmp_path / "bad.jsonl", "--bad-every", "5")
        app.push_screen(DatasetScreen(bad))
        await settle(pilot)
        await pilot.press("l")
        await settle(pilot)
        form = app.screen
        assert isinstance(form, LaunchScreen) and form.chosen_method() == "supervised"
        errors = form.report.error_count
        assert errors > 0 and f"{errors:,} invalid line(s)" in screen_text(app)
        preflight = await to_preflight(pilot)
        assert not preflight.checked.preflight.ok
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert app.screen is preflight
        assert await server_files(manual_backend) == []


async def test_the_rft_grader_is_edited_and_test_run_from_the_form(paths, manual_backend, tmp_path):
    rft = generate_dataset("rft", 30, tmp_path / "rft.jsonl")
    app = make_app(paths, manual_backend)
    async with app.run_test(size=(120, 36)) as pilot:
        form = await open_form(pilot, rft)
        choose_method(form, "reinforcement")
        await settle(pilot)
        preflight = await to_preflight(pilot)
        assert any("grader" in line for line in preflight.checked.preflight.blocking)
        await pilot.press("escape")
        await settle(pilot)

        await pilot.press("ctrl+g")
        await settle(pilot)
        editor = app.screen
        assert isinstance(editor, GraderEditorScreen)
        await pilot.press("ctrl+t")
        await settle(pilot)
        assert "reward" in screen_text(app)
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert app.screen is form and form.grader is not None and form.grader["type"] == "string_check"
        preflight = await to_preflight(pilot)
        assert preflight.checked.preflight.ok, preflight.checked.preflight.blocking
        body = preflight.checked.preflight.request_body
        assert body["method"]["reinforcement"]["grader"] == form.grader
        assert "reasoning_effort" not in body["method"]["reinforcement"]["hyperparameters"]  # left to the server
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert isinstance(app.screen, JobScreen), preflight.error_text


# -- the launch --------------------------------------------------------------------------------


async def test_an_upload_cut_off_mid_way_resumes_on_the_next_try(paths, manual_backend, tmp_path):
    train = generate_dataset("sft", 60, tmp_path / "train.jsonl")
    size = train.stat().st_size
    part = 2048
    app = make_app(paths, manual_backend)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        app.service.upload_sizes = (1024, part)  # parts of 2 KB instead of 64 MB
        api = app.service._api
        api._client = api._client.with_options(max_retries=0)  # the drop reaches the app, not an SDK retry
        set_faults(manual_backend, {"method": "POST", "path": "/v1/uploads/*/parts", "kind": "drop", "every": 4, "times": 1})
        await open_form(pilot, train)
        preflight = await to_preflight(pilot)
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert app.screen is preflight and not preflight.launching
        assert "resume" in preflight.error_text, preflight.error_text

        sent: list[int] = []
        preflight.state.launch_progressed.subscribe(
            preflight, lambda m: sent.append(m.progress.upload.resumed_from if m.progress.upload else 0)
        )
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert isinstance(app.screen, JobScreen), preflight.error_text
        assert max(sent) == 3 * part  # the second try started after the three parts the server had
        files = await server_files(manual_backend)
        assert len(files) == 1 and files[0].bytes == size


async def test_an_identical_file_is_reused_and_the_user_is_told(paths, manual_backend, sft_file):
    app = make_app(paths, manual_backend)
    async with app.run_test(size=(120, 36)) as pilot:
        for attempt in range(2):
            await open_form(pilot, sft_file)
            await to_preflight(pilot)
            await pilot.press("ctrl+s")
            await settle(pilot)
            assert isinstance(app.screen, JobScreen)
            await pilot.press("escape")
            await settle(pilot)
        assert len(await server_files(manual_backend)) == 1
        assert len(await server_jobs(manual_backend)) == 2
        toasts = [n.message for n in app._notifications]
        assert any("reused file-" in t for t in toasts), toasts


async def test_a_create_whose_answer_is_lost_makes_one_job_and_shows_it(paths, manual_backend, sft_file):
    app = make_app(paths, manual_backend)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        set_faults(
            manual_backend,
            {"method": "POST", "path": "/v1/fine_tuning/jobs", "kind": "drop", "after_handling": True, "times": 1},
        )
        await open_form(pilot, sft_file)
        await to_preflight(pilot)
        await pilot.press("ctrl+s")
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, JobScreen)
        jobs = await server_jobs(manual_backend)
        assert [job.id for job in jobs] == [screen.job_id]
        await pilot.press("escape")
        await settle(pilot)
        assert [row.job.id for row in app.state.rows] == [screen.job_id]


async def test_training_not_available_keeps_the_form_for_another_profile(paths, manual_backend, sft_file):
    """The provider's 403 is shown as what it is; `p` opens the next profile with the same
    form, filled as it was."""
    paths.config_dir.mkdir(parents=True)
    paths.config_file.write_text(
        'default_profile = "local"\n[profiles.local]\nbackend = "local"\n'
        '[profiles.other]\nbackend = "compatible"\nbase_url = "http://127.0.0.1:9/v1"\napi_key_env = "TD_TEST_KEY"\n'
    )
    manual_backend.faults.training_not_available = True
    app = make_app(paths, manual_backend)
    async with app.run_test(size=(120, 36)) as pilot:
        form = await open_form(pilot, sft_file)
        form.query_one(f"#{field_id('suffix')}").value = "keepme"
        await settle(pilot)
        preflight = await to_preflight(pilot)
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert preflight.unavailable and "can no longer create fine-tuning jobs" in screen_text(app)

        switched: list = []
        app.switch_profile = lambda keep_launch=None: switched.append(keep_launch)
        await pilot.press("p")
        await settle(pilot)
        assert len(switched) == 1 and switched[0].suffix == "keepme" and switched[0].training_path == sft_file


async def test_switching_profile_reopens_the_form_filled(manual_backend, sft_file, monkeypatch):
    from tunedeck.core.launch.request import LaunchRequest

    monkeypatch.setenv("TD_TEST_KEY", "k")
    home = AppPaths.discover()  # the isolated home: where switching reads the config
    home.config_dir.mkdir(parents=True)
    home.config_file.write_text(
        'default_profile = "local"\n[profiles.local]\nbackend = "local"\n'
        '[profiles.other]\nbackend = "compatible"\nbase_url = "http://127.0.0.1:9/v1"\napi_key_env = "TD_TEST_KEY"\n'
    )
    app = make_app(home, manual_backend, connect=False)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        request = LaunchRequest(training_path=sft_file, model="gpt-4.1-mini-2025-04-14", suffix="keepme")
        app.switch_profile(keep_launch=request)
        await settle(pilot)
        assert app.state.profile_name == "other"
        form = app.screen
        assert isinstance(form, LaunchScreen)
        assert form.query_one(f"#{field_id('suffix')}").value == "keepme"
        assert form.query_one("#training-path").path_text == str(sft_file)
        assert not form.query_one(f"#row-{field_id('lora_rank')}").display  # not the local backend now


# -- presets and launching again ---------------------------------------------------------------


async def test_a_preset_saves_the_form_and_fills_a_new_one(paths, manual_backend, sft_file):
    app = make_app(paths, manual_backend)
    async with app.run_test(size=(120, 36)) as pilot:
        form = await open_form(pilot, sft_file)
        choose_method(form, "dpo")
        form.query_one(f"#{field_id('beta')}").value = "0.25"
        form.query_one(f"#{field_id('seed')}").value = "42"
        await settle(pilot)
        await pilot.press("ctrl+n")
        await settle(pilot)
        assert isinstance(app.screen, AskScreen)
        await pilot.press(*"nightly", "enter")
        await settle(pilot)
        stored = json.loads((paths.config_dir / "presets.json").read_text())
        assert "nightly" in json.dumps(stored)
        await pilot.press("escape")
        await settle(pilot)

        form = await open_form(pilot)
        await pilot.press("ctrl+l")
        await settle(pilot)
        assert isinstance(app.screen, PickScreen)
        await pilot.press("enter")
        await settle(pilot)
        form = app.screen
        assert isinstance(form, LaunchScreen) and form.chosen_method() == "dpo"
        assert form.query_one(f"#{field_id('beta')}").value == "0.25"
        assert form.query_one(f"#{field_id('seed')}").value == "42"
        assert form.query_one("#training-path").path_text == str(sft_file)


async def test_launch_again_fills_the_form_from_the_job(paths, manual_backend, sft_file):
    app = make_app(paths, manual_backend)
    async with app.run_test(size=(120, 36)) as pilot:
        form = await open_form(pilot, sft_file)
        form.query_one(f"#{field_id('n_epochs')}").value = "2"
        form.query_one(f"#{field_id('suffix')}").value = "again"
        form.query_one(f"#{field_id('lora_rank')}").value = "8"
        await settle(pilot)
        await to_preflight(pilot)
        await pilot.press("ctrl+s")
        await settle(pilot)
        job_screen = app.screen
        assert isinstance(job_screen, JobScreen)
        await pilot.press("a")
        await settle(pilot)
        again = app.screen
        assert isinstance(again, LaunchScreen)
        assert again.query_one("#training-path").path_text == job_screen.job.raw["training_file"]
        assert again.query_one(f"#{field_id('n_epochs')}").value == "2"
        assert again.query_one(f"#{field_id('suffix')}").value == "again"
        assert again.query_one(f"#{field_id('lora_rank')}").value == "8"
        preflight = await to_preflight(pilot)
        assert preflight.checked.preflight.ok  # a file on the provider: a warning, not a block
        assert preflight.checked.preflight.warnings  # the file cannot be checked here
        await pilot.press("ctrl+s")  # warnings: asks first
        await settle(pilot)
        await pilot.press("y")
        await settle(pilot)
        assert isinstance(app.screen, JobScreen), preflight.error_text
        assert app.screen.job_id != job_screen.job_id
        assert len(await server_files(manual_backend)) == 1  # the same file id, not a new upload


async def test_a_file_changed_after_its_preflight_is_not_sent(paths, manual_backend, tmp_path):
    """What was checked is what is sent: a file edited between the pre-flight and the launch
    is refused, and checking it again finds the new error."""
    train = generate_dataset("sft", 40, tmp_path / "train.jsonl")
    app = make_app(paths, manual_backend)
    async with app.run_test(size=(120, 36)) as pilot:
        await open_form(pilot, train)
        preflight = await to_preflight(pilot)
        assert preflight.checked.preflight.ok
        with train.open("a") as f:
            f.write("not json\n")
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert app.screen is preflight
        assert "changed since the pre-flight" in preflight.error_text
        assert await server_files(manual_backend) == []
        await pilot.press("escape")
        await settle(pilot)
        preflight = await to_preflight(pilot)
        assert any("line 41" in line for line in preflight.checked.preflight.blocking)


async def test_a_file_big_enough_for_worker_processes_is_checked_in_the_app(paths, manual_backend, tmp_path):
    """Over 8 MiB the validator scans in worker processes, which inside the app need the
    resource tracker started first (the app's stderr has no file descriptor)."""
    from tunedeck.core.datasets.validate import PARALLEL_MIN_BYTES

    block = generate_dataset("sft", 200, tmp_path / "block.jsonl").read_bytes()
    big = tmp_path / "big.jsonl"
    big.write_bytes(block * (PARALLEL_MIN_BYTES // len(block) + 2))
    app = make_app(paths, manual_backend)
    async with app.run_test(size=(120, 36)) as pilot:
        await open_form(pilot, big)
        preflight = await to_preflight(pilot)
        checked = preflight.checked.preflight
        assert checked.ok, checked.blocking
        assert checked.training_examples == 200 * (PARALLEL_MIN_BYTES // len(block) + 2)


async def test_a_hostile_model_id_in_the_retirement_warning_is_shown_literally(paths, manual_backend):
    import datetime

    from tunedeck.core.launch.models import ModelChoice
    from tunedeck.tui.messages import ModelsLoaded

    hostile = "m\x1b]52;c;aGk=\x07[@click=app.quit]x[/]"
    soon = (datetime.date.today() + datetime.timedelta(days=10)).isoformat()
    app = make_app(paths, manual_backend)
    async with app.run_test(size=(120, 36)) as pilot:
        form = await open_form(pilot)
        app.post_message(ModelsLoaded([ModelChoice(id=hostile, shutdown_date=soon, fine_tunable=True)]))
        await settle(pilot)
        form.query_one("#model-select").value = hostile
        await settle(pilot)
        note = str(form.query_one("#model-note").render())
        assert "retires on" in note and "[@click=app.quit]x[/]" in note
        assert "\x1b" not in note and "\x07" not in note


async def test_the_rft_answer_format_is_edited_as_json_and_sent(paths, manual_backend, tmp_path):
    from textual.widgets import TextArea

    from tunedeck.tui.screens.json_editor import JsonEditorScreen

    rft = generate_dataset("rft", 30, tmp_path / "rft.jsonl")
    app = make_app(paths, manual_backend)
    async with app.run_test(size=(120, 36)) as pilot:
        form = await open_form(pilot, rft)
        choose_method(form, "reinforcement")
        await settle(pilot)
        await pilot.click("#edit-schema")
        await settle(pilot)
        editor = app.screen
        assert isinstance(editor, JsonEditorScreen)
        area = editor.query_one(TextArea)
        area.text = '{"type": "json_schema", "json_schema": {"name": "label", "schema": {"type": "object"}'
        await settle(pilot)
        assert "line 1" in editor.error_text  # the missing brace, with where
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert app.screen is editor  # not taken while it does not parse
        area.text += "}}"
        await settle(pilot)
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert app.screen is form and form.response_format["json_schema"]["name"] == "label"
        await pilot.press("ctrl+g")
        await settle(pilot)
        await pilot.press("ctrl+s")  # the editor's template grader, as is
        await settle(pilot)
        preflight = await to_preflight(pilot)
        body = preflight.checked.preflight.request_body
        assert body["method"]["reinforcement"]["response_format"] == form.response_format
