"""The app end to end with Pilot, on the real local backend in manual time.

Nothing sleeps: jobs move when the test advances the backend, and the app polls when the
test calls `app.poll_now()` (the app runs with `poll=False`).
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest
from tui_support import bench_profile, make_app, poll, settle

from tunedeck.core.bootstrap import open_service
from tunedeck.tui.app import TunedeckApp
from tunedeck.tui.screens.help import HelpScreen
from tunedeck.tui.screens.job import JobScreen
from tunedeck.tui.screens.jobs import JobsScreen, JobsTable
from tunedeck.tui.screens.launch import LaunchScreen
from tunedeck.tui.screens.preflight import PreflightScreen
from tunedeck.tui.textshot import screen_text

HOSTILE = "loss [@click=app.quit]ok[/] [/ \x1b]52;c;aGVsbG8=\x07 \x1b]0;pwned\x1b\\ done"


async def type_text(pilot, text: str) -> None:
    await pilot.press(*text)


async def open_preflight(pilot, training: Path, validation: Path | None = None) -> PreflightScreen:
    """n → type the path(s) → ctrl+s: the pre-flight of that form, checked.

    The path is typed relative to the working directory (tests chdir to tmp_path): typing
    costs one Pilot round trip per key.
    """
    app = pilot.app
    await pilot.press("n")
    await settle(pilot)
    assert isinstance(app.screen, LaunchScreen)
    await type_text(pilot, os.path.relpath(training))
    if validation is not None:
        app.screen.query_one("#validation-path").focus()
        await type_text(pilot, os.path.relpath(validation))
    await pilot.press("ctrl+s")
    await settle(pilot)
    assert isinstance(app.screen, PreflightScreen), getattr(app.screen, "error_text", "")
    return app.screen


async def launch_through_form(pilot, training: Path, validation: Path | None = None) -> str:
    """The form, its pre-flight, ctrl+s: returns the new job's id (the app shows its screen)."""
    app = pilot.app
    preflight = await open_preflight(pilot, training, validation)
    assert preflight.checked is not None and preflight.checked.preflight.ok, preflight.summary_text
    await pilot.press("ctrl+s")
    await settle(pilot)
    assert isinstance(app.screen, JobScreen), getattr(app.screen, "error_text", "")
    return app.screen.job_id


def table_row(app: TunedeckApp, job_id: str) -> list[str]:
    table = app.screen.query_one(JobsTable)
    return [cell.plain for cell in table.get_row(job_id)]


# -- start-up from the cache ----------------------------------------------------------------


def cached_job(n: int, status: str) -> dict:
    return {
        "id": f"ftjob-cached{n:018d}",
        "object": "fine_tuning.job",
        "model": "tunedeck-ngram",
        "status": status,
        "created_at": int(time.time()) - 60 * n,
        "method": {"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 2}}},
        "fine_tuned_model": f"ft:tunedeck-ngram:cached{n}" if status == "succeeded" else None,
        "error": {},
    }


async def test_jobs_screen_shows_the_cache_without_touching_the_network(paths):
    service = await open_service(paths=paths)
    await service.cache.upsert_jobs("local", [cached_job(1, "running"), cached_job(2, "succeeded")])
    events = [
        {"id": f"ftevent-{i}", "created_at": int(time.time()), "level": "info", "message": f"Step {i}/10",
         "type": "metrics", "data": {"step": i, "total_steps": 10, "train_loss": 2.0 / i}}
        for i in range(1, 5)
    ] + [{"id": "ftevent-5", "created_at": int(time.time()), "level": "warn", "message": HOSTILE, "type": "message"}]
    await service.cache.add_events("local", "ftjob-cached000000000000000001", events)
    await service.close()

    app = make_app(paths, connect=False)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        assert app.state.rows_source == "cache"
        assert app.service is not None and not app.service.is_connected and app.service.api_requests == 0
        table = app.screen.query_one(JobsTable)
        assert table.job_ids == ["ftjob-cached000000000000000001", "ftjob-cached000000000000000002"]
        assert table_row(app, "ftjob-cached000000000000000001")[3] == "running"
        assert "40%" in table_row(app, "ftjob-cached000000000000000001")[4]  # step 4 of 10, from cached metrics
        assert table_row(app, "ftjob-cached000000000000000002")[6] == "ft:tunedeck-ngram:cached2"
        header = app.screen.query_one("#header").header_text().plain
        assert "local · local backend" in header and "offline" in header

        await pilot.press("enter")
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, JobScreen)
        assert len(screen.chart.train_points) == 4
        shown = screen_text(app)
        assert "[@click=app.quit]ok[/] [/" in shown  # literal, not markup
        assert "\x1b" not in shown and "␛]52;c;aGVsbG8=␇" in shown
        await pilot.click("#job-events", offset=(25, 3))  # the fake link does nothing
        await pilot.pause()
        assert app.is_running
        assert app.service.api_requests == 0


async def test_back_from_a_job_the_cursor_is_on_it(paths):
    service = await open_service(paths=paths)
    await service.cache.upsert_jobs("local", [cached_job(n, "succeeded") for n in range(1, 5)])
    await service.close()
    app = make_app(paths, connect=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        table = app.screen.query_one(JobsTable)
        await pilot.press("down", "down", "enter")
        await settle(pilot)
        assert app.screen.job_id == table.job_ids[2]
        await pilot.press("escape")
        await settle(pilot)
        assert table.selected_job_id == table.job_ids[2]
        await pilot.press("up", "question_mark")
        await pilot.pause()
        await pilot.press("escape")  # closing a modal leaves the cursor where the user put it
        await pilot.pause()
        assert table.selected_job_id == table.job_ids[1]


async def test_empty_cache_explains_how_to_launch(paths):
    app = make_app(paths, connect=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        shown = screen_text(app)
        assert "No jobs yet" in shown and "Press n to launch" in shown.replace("\n", " ")


# -- the full loop on the local backend -----------------------------------------------------


async def test_launch_watch_and_finish_a_job(paths, manual_backend, sft_file):
    app = make_app(paths, manual_backend)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        assert app.state.connection_state == "online"
        header = app.screen.query_one("#header").header_text().plain
        assert "local · local backend" in header and "● online" in header

        job_id = await launch_through_form(pilot, sft_file)
        screen = app.screen
        assert screen.job is not None and screen.job.model == "tunedeck-ngram"
        assert job_id in {row.job.id for row in app.state.rows}

        await asyncio.to_thread(manual_backend.advance, job_id, 5)
        await poll(pilot)
        assert screen.job.status == "running"
        first_points = len(screen.chart.train_points)
        assert first_points > 0
        row = next(r for r in app.state.rows if r.job.id == job_id)
        assert row.step == screen.chart.train_points[-1][0]  # the list's progress keeps up with the chart
        assert row.total_steps and 0 < row.progress < 1
        builds, version = screen.chart.build_count, screen.chart.version
        assert builds >= 1
        logged = len(screen.shown_event_ids)
        assert logged > 0

        await asyncio.to_thread(manual_backend.run_until_settled)
        await poll(pilot)
        assert screen.job.status == "succeeded"
        assert len(screen.chart.train_points) > first_points
        assert screen.chart.version > version and screen.chart.build_count > builds  # re-rendered
        assert len(screen.shown_event_ids) > logged
        assert len(set(screen.shown_event_ids)) == len(screen.shown_event_ids)  # no duplicates
        cached = await app.service.cached_events(job_id)
        assert screen.shown_event_ids == [e.id for e in cached if e.type != "metrics"]  # every message, oldest first
        assert screen.folded_metric_count == sum(e.type == "metrics" for e in cached)  # metric points folded
        shown = screen_text(app)
        assert "succeeded" in shown and screen.job.fine_tuned_model in shown
        assert "train" in shown

        await pilot.press("escape")
        await settle(pilot)
        assert isinstance(app.screen, JobsScreen)
        row = table_row(app, job_id)
        assert row[3] == "succeeded" and "100%" in row[4] and row[6].startswith("ft:")


async def test_the_poll_loop_runs_by_itself_and_r_wakes_it(paths, manual_backend, sft_file):
    app = make_app(paths, manual_backend, poll=True)
    async with app.run_test(size=(80, 24)) as pilot:
        first = asyncio.ensure_future(app.next_poll())
        await asyncio.wait_for(first, 10)  # the loop's first poll, right after connecting
        assert app.state.rows_source == "api"
        assert app.poller.next_interval() == 30.0  # nothing runs: the loop now waits 30 s
        before = app.polls
        woken = asyncio.ensure_future(app.next_poll())
        await pilot.press("r")
        await asyncio.wait_for(woken, 10)  # r polled at once, not after 30 s
        assert app.polls == before + 1


async def test_cancel_asks_first(paths, manual_backend, sft_file):
    app = make_app(paths, manual_backend)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        job_id = await launch_through_form(pilot, sft_file)
        await pilot.press("escape")
        await settle(pilot)
        await pilot.press("c")
        await pilot.pause()
        assert "Cancel job" in screen_text(app)
        await pilot.press("n")  # keep it
        await settle(pilot)
        assert app.service is not None
        assert (await app.service.cached_job(job_id)).status != "cancelled"
        await pilot.press("c", "y")
        await settle(pilot)
        await poll(pilot)
        assert table_row(app, job_id)[3] == "cancelled"


async def test_launch_errors_are_shown_literally_in_the_form(paths, manual_backend, tmp_path):
    app = make_app(paths, manual_backend)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("n")
        await settle(pilot)
        form = app.screen
        assert isinstance(form, LaunchScreen)
        assert form.chosen_model() == "tunedeck-ngram"  # the first model the backend lists
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert "Enter the path" in form.error_text
        await type_text(pilot, "no[/]such [@click=app.quit]x.jsonl")
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert isinstance(app.screen, LaunchScreen)
        assert "no such file" in form.error_text
        assert "[/]such [@click=app.quit]x.jsonl" in screen_text(app)



async def test_an_unexpected_worker_error_is_shown_and_the_form_recovers(paths, manual_backend, sft_file, monkeypatch):
    """A bug in an action (not an API answer) ends its worker in ERROR: the app shows the
    error literally, and the launch form unlocks instead of waiting forever."""
    from textual.widgets import Button
    from textual.worker import WorkerFailed

    app = make_app(paths, manual_backend)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        working_launch = app.service.launch

        async def broken_launch(checked, **_):
            raise RuntimeError("disk on fire [@click=app.quit]x[/] \x1b]0;pwned\x07")

        monkeypatch.setattr(app.service, "launch", broken_launch)
        form = await open_preflight(pilot, sft_file)
        await pilot.press("ctrl+s")
        try:
            await app.workers.wait_for_complete()
        except WorkerFailed:  # the launch worker failed: that is the point
            pass
        await pilot.pause()
        await pilot.pause()

        toasts = [n.message for n in app._notifications]
        assert any("RuntimeError: disk on fire [@click=app.quit]x[/] ␛]0;pwned␇" in t for t in toasts), toasts
        assert "disk on fire [@click=app.quit]x[/]" in screen_text(app)  # literal on screen, not markup
        assert app.screen is form and not form.launching
        assert not form.query_one("#launch", Button).disabled
        assert "disk on fire" in form.error_text

        monkeypatch.setattr(app.service, "launch", working_launch)
        await pilot.press("ctrl+s")  # usable again: the next launch goes through
        await settle(pilot)
        assert isinstance(app.screen, JobScreen), form.error_text
        assert app.is_running


async def test_launch_while_offline_says_so_in_the_preflight(paths, sft_file):
    app = make_app(paths, connect=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("n")
        await settle(pilot)
        form = app.screen
        await type_text(pilot, os.path.relpath(sft_file))
        form.query_one("#model-custom").value = "tunedeck-ngram"
        await pilot.press("ctrl+s")
        await settle(pilot)
        preflight = app.screen
        assert isinstance(preflight, PreflightScreen) and preflight.checked.preflight.ok, preflight.summary_text
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert app.screen is preflight
        assert "not connected" in preflight.error_text and not preflight.launching


async def test_the_preflight_blocks_a_file_with_invalid_lines(paths, manual_backend, tmp_path, sft_file):
    """A file the validator rejects never reaches the provider: the pre-flight names the
    line, the launch key does nothing, and no file or job is created."""
    bad = tmp_path / "bad.jsonl"
    lines = sft_file.read_text().splitlines()
    lines[6] = "this is not json [/]"
    bad.write_text("\n".join(lines) + "\n")
    app = make_app(paths, manual_backend)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        preflight = await open_preflight(pilot, bad)
        checked = preflight.checked.preflight
        assert not checked.ok
        assert any("bad.jsonl" in line and "line 7" in line for line in checked.blocking), checked.blocking
        assert "line 7" in screen_text(app) and "this is not json [/]" not in preflight.error_text
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert app.screen is preflight and not preflight.launching
        api = app.service._api
        assert (await api.list_jobs())[0] == []
        assert (await api._client.files.list()).data == []


async def test_an_unreachable_api_shows_in_the_header_and_the_app_goes_on(paths, monkeypatch):
    paths.config_dir.mkdir(parents=True)
    paths.config_file.write_text(
        '[profiles.dead]\nbackend = "compatible"\nbase_url = "http://127.0.0.1:9/v1"\napi_key_env = "TD_TEST_KEY"\n'
    )
    monkeypatch.setenv("TD_TEST_KEY", "k")
    app = TunedeckApp(lambda: open_service("dead", paths=paths), poll=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        assert app.state.connection_state == "online"  # the client is built; nothing was sent yet
        await poll(pilot)
        assert app.state.connection_state == "error"
        header = app.screen.query_one("#header").header_text().plain
        assert "dead · http://127.0.0.1:9/v1" in header and "✖ error" in header
        assert "press r to retry" in screen_text(app)
        assert app.is_running


async def test_a_broken_config_is_reported_not_raised(paths):
    async def broken():
        raise RuntimeError("config.toml: [profiles.x] backend must be one of ... [/]")

    app = TunedeckApp(broken, poll=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        assert app.state.connection_state == "error"
        assert "[profiles.x]" in app.screen.query_one("#header").header_text().plain
        await pilot.press("q")
    assert app.return_code == 0


async def test_q_quits_but_not_inside_an_input(paths):
    app = make_app(paths, connect=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("n")
        await settle(pilot)
        await pilot.press("q")
        await pilot.pause()
        assert app.is_running and app.screen.query_one("#training-path").value == "q"
        await pilot.press("escape")
        await pilot.pause()
        await pilot.press("q")
        await pilot.pause()
    assert app.return_code == 0 and not app.is_running


# -- help, sizes ------------------------------------------------------------------------------


def help_text(app: TunedeckApp) -> str:
    assert isinstance(app.screen, HelpScreen)
    return "\n".join(f"{k.keys}\t{k.description}" for s in app.screen.sections for k in s.keys)


async def test_help_lists_the_current_screens_keys_first(paths):
    app = make_app(paths, connect=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("question_mark")
        await pilot.pause()
        sections = app.screen.sections
        assert sections[0].title == "Jobs screen"
        assert [k.keys for k in sections[0].keys][:3] == ["⏎", "n", "c"]
        assert "Everywhere" in [s.title for s in sections]
        text = help_text(app)
        assert "Launch a fine-tuning job" in text and "Quit tunedeck" in text
        await pilot.press("escape")
        await pilot.press("n")
        await settle(pilot)
        await pilot.press("f1")  # `?` would type into the focused input
        await pilot.pause()
        assert app.screen.sections[0].title == "Launch screen"
        assert "Check everything, then launch" in help_text(app)
        assert "Launch a fine-tuning job" not in help_text(app)


@pytest.mark.parametrize("size", [(80, 24), (120, 36)])
async def test_every_screen_renders_at_common_sizes(paths, manual_backend, sft_file, size):
    app = make_app(paths, manual_backend)
    async with app.run_test(size=size) as pilot:
        await settle(pilot)
        width = size[0]
        for line in screen_text(app).splitlines():
            assert len(line) <= width
        job_id = await launch_through_form(pilot, sft_file)
        await asyncio.to_thread(manual_backend.advance, job_id, 3)
        await poll(pilot)
        text = screen_text(app)
        assert "events" in text and "loss" in text and "hyperparams" in text
        await pilot.press("question_mark")
        await pilot.pause()
        assert "Job screen" in screen_text(app)
        await pilot.press("escape", "escape")
        await settle(pilot)
        text = screen_text(app)
        assert "running" in text
        assert any(job_id[-6:] in line for line in text.splitlines())


async def test_a_job_the_backend_does_not_know_says_not_found(paths, manual_backend):
    app = make_app(paths, manual_backend)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        app.push_screen(JobScreen("ftjob-doesnotexist000000000"))
        await settle(pilot)
        await poll(pilot)
        shown = screen_text(app)
        assert "not found" in shown and "loading" not in shown


async def test_a_validation_file_gives_the_chart_a_validation_curve(paths, manual_backend, sft_file, tmp_path):
    from conftest import generate_dataset

    valid = generate_dataset("sft", 20, tmp_path / "valid.jsonl", "--learnable", "--seed", "9")
    app = make_app(paths, manual_backend)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        await launch_through_form(pilot, sft_file, valid)
        assert app.screen.job.validation_file
        await asyncio.to_thread(manual_backend.run_until_settled)
        await poll(pilot)
        chart = app.screen.chart
        assert chart.train_points and chart.valid_points
        assert "valid" in screen_text(app)


async def test_p_switches_to_the_next_profile(isolated_home, manual_backend, sft_file, monkeypatch):
    bench_profile(isolated_home, manual_backend, monkeypatch)
    seeding = await open_service("bench")
    await seeding.connect()
    from tunedeck.core.launch.request import LaunchRequest

    job = await seeding.launch(LaunchRequest(training_path=sft_file, model="tunedeck-ngram"))
    await seeding.close()

    app = TunedeckApp(poll=False)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        await poll(pilot)
        assert app.state.profile_name == "bench"
        assert [r.job.id for r in app.state.rows] == [job.id]
        await pilot.press("p")
        await settle(pilot)
        assert app.state.profile_name == "local"
        assert app.state.connection_state == "online"
        assert app.state.rows == []
        assert "local · local backend" in app.screen.query_one("#header").header_text().plain
        await pilot.press("p")
        await settle(pilot)
        assert app.state.profile_name == "bench"
        assert [r.job.id for r in app.state.rows] == [job.id]  # its cache, shown again at once
