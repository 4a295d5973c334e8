"""The Job screen with Pilot, on the real local backend in manual time: the metric chart
(live updates, smoothing, log scale, zoom, cursor, epochs, panes), the checkpoints and
copying, pause/resume/cancel, a failed job, the events log (every message kept, metric
points folded, level filter, following after a resize) and the SVG export.

Nothing sleeps: jobs move when the test advances the backend, the app polls when the test
calls `app.poll_now()`.
"""

from __future__ import annotations

import asyncio
import base64
import re
import time

import pytest
from conftest import generate_dataset
from rich.text import Text
from tui_support import launch_job, make_app, open_job, poll, running_job, settle

from tunedeck.core.bootstrap import open_service
from tunedeck.core.records import JobEvent
from tunedeck.tui.messages import EventsArrived
from tunedeck.tui.screens.confirm import ConfirmScreen
from tunedeck.tui.screens.job import JobScreen, svg_path
from tunedeck.tui.textshot import screen_text
from tunedeck.tui.widgets.metric_chart import MetricChart, available_panes

EPOCHS, BATCH = 3, 4  # 40 examples: 10 steps an epoch, 30 in all


async def launch(app, training, validation=None, **hyper) -> str:
    return await launch_job(app, training, validation, **{"n_epochs": EPOCHS, "batch_size": BATCH, **hyper})


def toasts(app) -> list[tuple[str, str]]:
    return [(n.title, n.message) for n in app._notifications]


def footer_keys(app) -> set[str]:
    """The descriptions of the bindings the footer offers now."""
    return {active.binding.description for active in app.screen.active_bindings.values() if active.enabled and active.binding.show}


@pytest.fixture
def valid_file(tmp_path):
    return generate_dataset("sft", 20, tmp_path / "valid.jsonl", "--learnable", "--seed", "9")


# -- the chart --------------------------------------------------------------------------------


async def test_chart_follows_metrics_and_its_keys_smooth_scale_zoom_and_read_values(paths, manual_backend, sft_file, valid_file):
    app = make_app(paths, manual_backend)
    async with app.run_test(size=(160, 48)) as pilot:
        await settle(pilot)
        job_id = await launch(app, sft_file, valid_file)
        screen = await open_job(pilot, job_id)
        chart = screen.chart
        assert chart.has_focus  # the chart's keys work at once

        await asyncio.to_thread(manual_backend.advance, job_id, 12)
        await poll(pilot)
        assert chart.series.last_step() == 12 and chart.series.total_steps == 30
        version, builds = chart.version, chart.build_count
        assert builds >= 1
        shown = screen_text(app)
        assert chart.series.epoch_boundaries(EPOCHS) == [10, 20]
        assert "┆ epoch end" in shown and "┆" in shown.split("┆ epoch end")[1]  # the marker, in the plot too
        assert "⠿ train" in shown and "▞ train EMA" in shown and "• valid" in shown  # markers, not colour alone
        glyphs = [line.glyph for line in chart.plotted() if line.label]
        assert len(set(glyphs)) == len(glyphs)
        tick_line = next(line for line in shown.splitlines() if re.search(r"┴|┬", line))
        labels = shown.splitlines()[shown.splitlines().index(tick_line) + 1]
        assert re.fullmatch(r"[│\s\d]+", labels.split("│")[1] if "│" in labels else labels), labels  # whole steps

        await asyncio.to_thread(manual_backend.advance, job_id, 3)
        await poll(pilot)
        assert chart.series.last_step() == 15 and chart.version > version and chart.build_count > builds

        # Smoothing: on at 0.6, off, on, stronger, weaker; the title says so.
        assert "EMA 0.6" in chart.border_title
        await pilot.press("s")
        assert "EMA off" in chart.border_title and "train EMA" not in chart.legend().plain
        await pilot.press("s", "right_square_bracket")
        assert "EMA 0.7" in chart.border_title
        await pilot.press("left_square_bracket", "left_square_bracket")
        assert chart.strength == 0.5 and "EMA 0.5" in chart.border_title
        smoothed = next(line for line in chart.plotted() if line.label == "train EMA").points
        raw = chart.points("train_loss")
        assert len(smoothed) == len(raw) and smoothed != raw

        # Log scale.
        await pilot.press("L")
        assert chart.log_scale and "log" in chart.border_title
        await pilot.pause()
        assert "log" in screen_text(app)
        await pilot.press("L")
        assert not chart.log_scale

        # The cursor reads every shown series at its step, and the epoch.
        await pilot.press("left", "h")
        assert chart.cursor == 13
        readout = chart.readout().plain
        train_13 = dict(raw)[13]
        assert "cursor step 13/30" in readout and "epoch 1.30/3" in readout
        assert f"⠿ train {train_13:.3f}" in readout
        valid = chart.points("valid_loss")
        last_valid = max(s for s, _ in valid if s <= 13)
        assert "• valid " in readout and (f"@{last_valid}" in readout or last_valid == 13)
        await pilot.press("right", "l", "l")
        assert chart.cursor == 15  # the last step: it stops there
        await pilot.pause()
        assert "cursor step 15/30" in screen_text(app)

        # Zoom around the cursor, out again, reset.
        await pilot.press("left", "left", "left", "left", "left")
        assert chart.cursor == 10
        await pilot.press("plus")
        assert chart.view is not None and chart.view[0] <= 10 <= chart.view[1] and chart.view[1] - chart.view[0] < 14
        narrowed = chart.view
        await pilot.press("plus")
        assert chart.view[1] - chart.view[0] <= narrowed[1] - narrowed[0]
        assert f"steps {chart.view[0]}–{chart.view[1]}" in chart.border_title
        await pilot.press("minus", "minus", "minus")
        assert chart.view is None
        await pilot.press("plus", "0")
        assert chart.view is None
        await pilot.press("end")
        assert chart.cursor is None and "cursor" not in chart.readout().plain


async def test_panes_cycle_through_the_metrics_the_job_reports(paths, manual_backend, sft_file):
    app = make_app(paths, manual_backend)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        job_id = await launch(app, sft_file)
        await asyncio.to_thread(manual_backend.advance, job_id, 4)
        screen = await open_job(pilot, job_id)
        chart = screen.chart
        assert [p.key for p in chart.panes] == ["loss", "accuracy"]
        assert chart.border_title.startswith("loss 1/2")
        await pilot.press("v")
        assert chart.pane.key == "accuracy" and chart.border_title.startswith("token accuracy 2/2")
        await pilot.pause()
        assert "token accuracy" in screen_text(app)
        await pilot.press("v")
        assert chart.pane.key == "loss"
        await pilot.press("V")
        assert chart.pane.key == "accuracy"


def metric_event(step: int, **data) -> JobEvent:
    return JobEvent(f"m{step}", "ftjob-x", 0, "info", "", "metrics", {"step": step, "total_steps": 40, **data})


def test_dpo_and_rft_jobs_get_their_own_panes():
    from tunedeck.core.watch.series import MetricSeries

    dpo = MetricSeries.from_events(
        metric_event(s, train_loss=0.7 - s / 100, train_mean_token_accuracy=0.5, train_mean_reward_margin=s / 10, train_reward_accuracy=0.6)
        for s in range(1, 5)
    )
    assert [p.key for p in available_panes(dpo, "dpo")] == ["loss", "accuracy", "margin", "reward_accuracy"]
    rft = MetricSeries.from_events(
        metric_event(
            s,
            train_reward_mean=s / 40,
            train_mean_reward=s / 40,
            train_reward_std=0.1,
            completion_tokens_mean=20 + s,
            **({"valid_reward_mean": 0.5, "full_valid_mean_reward": 0.5} if s % 2 == 0 else {}),
            scores={"train_reward_mean": s / 40},
        )
        for s in range(1, 9)
    )
    panes = available_panes(rft, "reinforcement")
    assert [p.key for p in panes] == ["reward", "completion"]
    reward = panes[0]
    assert [(c.label, c.column) for c in reward.curves] == [
        ("train", "train_reward_mean"),
        ("train ±sd", "train_reward_std"),
        ("valid", "valid_reward_mean"),
        ("full valid", "full_valid_mean_reward"),
    ]


async def test_an_rft_chart_draws_the_spread_and_skips_a_repeated_series():
    from textual.app import App

    class ChartApp(App):
        def compose(self):
            yield MetricChart()

    events = [
        metric_event(s, train_reward_mean=s / 40, train_reward_std=0.05, **({"valid_reward_mean": 0.5, "full_valid_mean_reward": 0.5} if s % 4 == 0 else {}))
        for s in range(1, 21)
    ]
    app = ChartApp()
    async with app.run_test(size=(100, 24)) as pilot:
        chart = app.query_one(MetricChart)
        chart.set_job("reinforcement", None)
        chart.add_events(events)
        await pilot.pause()
        labels = [line.label for line in chart.plotted()]
        assert labels == ["train", "train EMA", "train ±sd", "", "valid"]  # full valid repeats valid: drawn once
        assert "· train ±sd" in chart.legend().plain
        assert "reward" in chart.border_title


class ChartApp:
    """A bare app holding one MetricChart (built on first use: textual's App is imported late)."""

    @staticmethod
    def make():
        from textual.app import App

        class _App(App):
            def compose(self):
                yield MetricChart()

        return _App()


async def test_each_spread_band_is_drawn_around_its_own_mean_and_the_readout_shows_the_sd():
    events = [metric_event(s, train_reward_mean=0.1, train_reward_std=0.02, valid_reward_mean=0.9, valid_reward_std=0.05) for s in range(1, 30)]
    app = ChartApp.make()
    async with app.run_test(size=(100, 24)) as pilot:
        chart = app.query_one(MetricChart)
        chart.set_job("reinforcement", None)
        chart.add_events(events)
        await pilot.pause()
        lines = chart.plotted()
        bands = [(line.label, round(line.points[0][1], 6)) for line in lines if line.kind == "spread"]
        assert bands == [("train ±sd", 0.12), ("", 0.08), ("valid ±sd", 0.95), ("", 0.85)]
        readout = chart.readout().plain
        assert "· valid ±0.050" in readout and "· train ±0.020" in readout
        assert "0.950" not in readout and "±sd" not in readout
        assert "· valid ±sd" in chart.legend().plain


async def test_distinct_columns_with_equal_values_are_both_drawn_only_aliases_are_merged():
    events = [metric_event(s, train_loss=1 / s, valid_loss=0.5, full_valid_loss=0.5) for s in range(1, 11)]
    app = ChartApp.make()
    async with app.run_test(size=(100, 24)) as pilot:
        chart = app.query_one(MetricChart)
        chart.add_events(events)
        await pilot.pause()
        assert [line.label for line in chart.plotted()] == ["train", "train EMA", "valid", "full valid"]
        chart.set_job("reinforcement", None)
        chart.add_events([metric_event(s, train_reward_mean=0.2, valid_reward_mean=0.4, full_valid_mean_reward=0.41) for s in range(11, 13)])
        assert chart.pane.key == "reward"  # an RFT job's first pane: valid and full valid differ, so both are drawn
        assert [line.label for line in chart.plotted()] == ["train", "train EMA", "valid", "full valid"]


async def test_the_log_scale_says_how_many_values_it_hides():
    events = [metric_event(s, train_mean_reward_margin=s - 13.0) for s in range(1, 31)]  # 13 values ≤ 0
    app = ChartApp.make()
    async with app.run_test(size=(100, 24)) as pilot:
        chart = app.query_one(MetricChart)
        chart.set_job("dpo", None)
        chart.add_events(events)
        await pilot.pause()
        assert "hidden" not in chart.border_title
        chart.toggle_log()
        await pilot.pause()
        assert "log (13 points ≤ 0 hidden)" in chart.border_title
        chart.view = (20, 30)
        chart.toggle_log()
        chart.toggle_log()
        assert chart.border_title.endswith("log · steps 20–30")  # none hidden in view


async def test_a_cursor_key_reuses_the_plot_and_draws_the_cursor_where_plotext_would(monkeypatch):
    from tunedeck.tui.widgets import metric_chart

    events = [metric_event(s, train_loss=1 / s + (s % 7) / 50, **({"valid_loss": 0.3 + s / 500} if s % 10 == 0 else {})) for s in range(1, 400)]
    builds: list[int] = []
    real = metric_chart.build_figure

    def counted(width, height, draw):
        builds.append(1)
        return real(width, height, draw)

    monkeypatch.setattr(metric_chart, "build_figure", counted)
    app = ChartApp.make()
    async with app.run_test(size=(100, 30)) as pilot:
        chart = app.query_one(MetricChart)
        chart.set_job("supervised", 3)
        chart.add_events(events)
        await pilot.pause()
        chart.move_cursor(-5)
        await pilot.pause()
        before = len(builds)
        for delta in (-1, -10, 3, 1, -1):
            chart.move_cursor(delta)
            await pilot.pause()
        assert len(builds) == before  # moving the cursor builds no plotext figure
        width, height = chart.content_size
        figure, bounds = chart._figure(width, height)
        drawn = Text("\n").join(metric_chart.cursor_overlay(figure.split("\n"), chart.cursor, bounds)).plain
        cursor = chart.cursor

        def with_vline(width, height, draw):
            return real(width, height, lambda plt: (draw(plt), plt.vline(cursor, "orange")))

        monkeypatch.setattr(metric_chart, "build_figure", with_vline)
        expected, _ = chart._figure(width, height)
        assert drawn == expected.plain


def test_the_chart_ema_extends_as_points_arrive_and_matches_ema():
    from tunedeck.core.watch.series import ema

    chart = MetricChart()
    chart.add_events([metric_event(s, train_loss=1 / s) for s in range(1, 50)])
    first = next(line.points for line in chart.plotted() if line.kind == "ema")
    assert first == ema(chart.series.values("train_loss"), chart.strength)
    chart.add_events([metric_event(s, train_loss=2 / s) for s in range(50, 60)])  # appended: extended
    assert next(line.points for line in chart.plotted() if line.kind == "ema") == ema(chart.series.values("train_loss"), chart.strength)
    chart.add_events([JobEvent("again", "ftjob-x", 0, "info", "", "metrics", {"step": 5, "train_loss": 9.0})])  # an old step changed
    assert next(line.points for line in chart.plotted() if line.kind == "ema") == ema(chart.series.values("train_loss"), chart.strength)
    chart.change_strength(1)
    assert next(line.points for line in chart.plotted() if line.kind == "ema") == ema(chart.series.values("train_loss"), chart.strength)


# -- the fields, the fine-tuned model, a failed job -----------------------------------------------


def cached_job(job_id: str, status: str, **extra) -> dict:
    return {
        "id": job_id,
        "object": "fine_tuning.job",
        "model": "tunedeck-ngram",
        "status": status,
        "created_at": int(time.time()) - 600,
        "method": {"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 6, "batch_size": 4}}},
        "error": {},
        **extra,
    }


async def test_a_failed_job_says_why_and_offers_no_cancel_or_pause(paths):
    service = await open_service(paths=paths)
    job_id = "ftjob-failed0000000000000000"
    error = {"code": "invalid_training_file", "message": "line 3 is not JSON"}
    await service.cache.upsert_jobs("local", [cached_job(job_id, "failed", error=error)])
    await service.close()
    app = make_app(paths, connect=False)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        app.push_screen(JobScreen(job_id))
        await settle(pilot)
        screen = app.screen
        shown = screen_text(app)
        assert "failed before training: invalid_training_file: line 3 is not JSON" in shown
        assert "no metrics yet" not in shown
        assert "✖ failed before training" in screen.banner.plain
        keys = footer_keys(app)
        assert "Cancel job" not in keys and "Pause" not in keys and "Resume" not in keys
        assert "Cancel job" not in shown
        await pilot.press("c", "P")  # hidden keys do nothing
        await pilot.pause()
        assert app.screen is screen
        await pilot.press("y")
        await pilot.pause()
        # No fine-tuned model: `y` copies the job id, and the toast says which it copied.
        assert app.clipboard == job_id
        assert ("copied the job id (no fine-tuned model yet)", job_id) in toasts(app)


async def test_a_job_loading_or_not_found_offers_no_cancel(paths):
    app = make_app(paths, connect=False)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        screen = JobScreen("ftjob-nowhere000000000000000")
        assert screen.check_action("cancel_job", ()) is False  # still loading: nothing known
        app.push_screen(screen)
        await settle(pilot)
        assert screen.job is None
        assert "Cancel job" not in footer_keys(app)
        await pilot.press("c")
        await pilot.pause()
        assert app.screen is screen


async def test_an_overfitting_job_shows_the_verdict_and_its_advice(paths):
    service = await open_service(paths=paths)
    job_id = "ftjob-overfit000000000000000"
    await service.cache.upsert_jobs("local", [cached_job(job_id, "running")])
    full = {10: 1.0, 20: 0.8, 30: 0.7, 40: 0.8, 50: 0.9, 60: 1.0}
    events = [
        {"id": f"ev{s}", "created_at": int(time.time()), "level": "info", "message": f"Step {s}/60", "type": "metrics",
         "data": {"step": s, "total_steps": 60, "train_loss": 2.0 / s, **({"full_valid_loss": full[s]} if s in full else {})}}
        for s in range(1, 61)
    ]
    await service.cache.add_events("local", job_id, events)
    await service.close()
    app = make_app(paths, connect=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        app.push_screen(JobScreen(job_id))
        await settle(pilot)
        screen = app.screen
        assert screen.verdict is not None and screen.verdict.state == "overfitting", screen.verdict
        assert screen.verdict.best_step == 30
        assert screen.banner.plain.startswith("⚠ overfitting: ") and screen.verdict.advice in screen.banner.plain
        assert "⚠ overfitting" in screen_text(app)
        assert screen.chart.series.epoch_boundaries(6) == [10, 20, 30, 40, 50]
        # The series came built from the worker: every cached point is in it and counted once.
        assert len(screen.chart.series) == 60 and screen.folded_metric_count == 60


async def test_at_80x24_the_chart_takes_the_width_and_the_model_has_its_own_line(paths, manual_backend, sft_file):
    app = make_app(paths, manual_backend)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        job_id = await launch(app, sft_file)
        await asyncio.to_thread(manual_backend.run_until_settled)
        screen = await open_job(pilot, job_id)
        model = screen.job.fine_tuned_model
        assert model
        assert screen.has_class("-narrow")
        assert screen.chart.size.width >= 76  # the fields column is gone; a summary sits above
        assert not screen.query_one("#job-fields").display
        shown = screen_text(app)
        assert f"fine-tuned model {model}" in shown  # in full, on its own line
        assert "hyperparams" in shown and "succeeded" in shown
        for line in shown.splitlines():
            assert len(line) <= 80

        writes: list[str] = []
        driver_write = app._driver.write
        app._driver.write = lambda data: (writes.append(data), driver_write(data))[1]
        await pilot.press("y")
        await pilot.pause()
        assert app.clipboard == model
        assert f"\x1b]52;c;{base64.b64encode(model.encode()).decode()}\a" in writes  # OSC 52: over SSH too
        assert ("copied the fine-tuned model", model) in toasts(app)
        await pilot.press("Y")
        await pilot.pause()
        assert app.clipboard == job_id and ("copied the job id", job_id) in toasts(app)

        await pilot.resize_terminal(160, 48)
        await settle(pilot)
        assert screen.has_class("-wide") and screen.query_one("#job-fields").display
        assert f"fine-tuned model {model}" in screen_text(app)


# -- checkpoints ------------------------------------------------------------------------------------


async def test_checkpoints_are_listed_refreshed_as_they_come_and_copied(paths, manual_backend, sft_file):
    app = make_app(paths, manual_backend)
    async with app.run_test(size=(160, 48)) as pilot:
        await settle(pilot)
        job_id = await launch(app, sft_file)
        screen = await open_job(pilot, job_id)
        table = screen.checkpoint_table
        assert table.checkpoints == [] and "none yet" in table.border_subtitle

        await asyncio.to_thread(manual_backend.advance, job_id, 11)  # past the first epoch's end
        await poll(pilot)
        assert table.checkpoints == []  # the backend publishes them as the job succeeds (as OpenAI does)

        await asyncio.to_thread(manual_backend.run_until_settled)
        await poll(pilot)  # "Checkpoint created" events and the new status: listed again
        await settle(pilot)
        assert screen.job.status == "succeeded"
        steps = [c.step for c in table.checkpoints]
        assert steps == [30, 20, 10]  # newest first
        assert table.row_count == 3 and table.border_title == "checkpoints (3)"
        shown = screen_text(app)
        newest = table.checkpoints[0]
        assert newest.model == screen.job.fine_tuned_model  # the last checkpoint is the model itself
        assert table.checkpoints[1].model.endswith(":ckpt-step-20") and table.checkpoints[1].model in shown
        assert "train" in shown  # its metrics
        cached = await app.service.cached_checkpoints(job_id)
        assert [c.step for c in cached] == [30, 20, 10]

        writes: list[str] = []
        driver_write = app._driver.write
        app._driver.write = lambda data: (writes.append(data), driver_write(data))[1]
        await pilot.press("k")
        assert table.has_focus
        await pilot.press("down", "y")
        await pilot.pause()
        chosen = table.checkpoints[1]
        assert chosen.step == 20
        assert app.clipboard == chosen.model
        assert f"\x1b]52;c;{base64.b64encode(chosen.model.encode()).decode()}\a" in writes
        assert ("copied checkpoint at step 20", chosen.model) in toasts(app)
        await pilot.press("k")
        assert screen.chart.has_focus


async def test_at_80x24_k_swaps_the_events_for_the_checkpoints(paths, manual_backend, sft_file):
    app = make_app(paths, manual_backend)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        job_id = await launch(app, sft_file)
        await asyncio.to_thread(manual_backend.run_until_settled)
        screen = await open_job(pilot, job_id)
        assert not screen.checkpoint_table.display or not screen.checkpoint_table.region.area
        await pilot.press("k")
        await pilot.pause()
        assert screen.checkpoint_table.region.area and not screen.query_one("#job-events-box").region.area
        assert screen.checkpoint_table.has_focus
        assert ":ckpt-step-20" in screen_text(app)
        await pilot.press("k")
        await pilot.pause()
        assert screen.query_one("#job-events-box").region.area and screen.chart.has_focus


# -- pause, resume, cancel -----------------------------------------------------------------------------


async def test_pause_then_resume_change_the_status_and_the_keys_follow_it(paths, manual_backend, sft_file):
    app = make_app(paths, manual_backend)
    async with app.run_test(size=(160, 48)) as pilot:
        screen = await running_job(pilot, manual_backend, sft_file)
        job_id = screen.job_id
        keys = footer_keys(app)
        assert "Pause" in keys and "Cancel job" in keys and "Resume" not in keys

        await pilot.press("R")  # not offered while running: nothing happens
        await settle(pilot)
        assert not [t for t in toasts(app) if t[0] == "resume"]

        await pilot.press("P")
        await settle(pilot)
        assert screen.job.status == "paused"
        assert ("pause", f"pause requested: {job_id} is paused") in toasts(app)
        keys = footer_keys(app)
        assert "Resume" in keys and "Pause" not in keys and "Cancel job" in keys
        await settle(pilot)
        assert [c.step for c in screen.checkpoint_table.checkpoints] == [4]  # the pause saved one
        assert any("paused" in e.message for e in screen.log_widget.messages)

        await pilot.press("R")
        await settle(pilot)
        assert screen.job.status in ("queued", "running")
        assert ("resume", f"resume requested: {job_id} is {screen.job.status}") in toasts(app)
        assert "Pause" not in footer_keys(app) or screen.job.status == "running"
        await asyncio.to_thread(manual_backend.advance, job_id, 1)
        await poll(pilot)
        assert screen.job.status == "running" and "Pause" in footer_keys(app)

        # An answer the API refuses: the toast says what it said.
        app.requests.resume_job(job_id)
        await settle(pilot)
        refused = [t for t in toasts(app) if t[0] == f"cannot resume {job_id}"]
        assert refused and refused[0][1], toasts(app)


async def test_cancel_asks_first_and_a_finished_job_no_longer_offers_it(paths, manual_backend, sft_file):
    app = make_app(paths, manual_backend)
    async with app.run_test(size=(160, 48)) as pilot:
        await settle(pilot)
        job_id = await launch(app, sft_file)
        await asyncio.to_thread(manual_backend.advance, job_id, 2)
        screen = await open_job(pilot, job_id)
        await pilot.press("c")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("n")
        await settle(pilot)
        assert (await app.service.cached_job(job_id)).status == "running"
        await pilot.press("c", "y")
        await settle(pilot)
        await poll(pilot)
        assert screen.job.status == "cancelled"
        keys = footer_keys(app)
        assert "Cancel job" not in keys and "Pause" not in keys and "Resume" not in keys
        assert "Cancel job" not in screen_text(app)


# -- events -----------------------------------------------------------------------------------------------


def message(n: int, level: str = "info") -> JobEvent:
    return JobEvent(f"ftevent-extra-{n}", "", int(time.time()), level, f"extra message {n} at {level}")


async def test_events_keep_every_message_fold_metrics_filter_by_level_and_follow_after_a_resize(paths, manual_backend, sft_file):
    app = make_app(paths, manual_backend)
    async with app.run_test(size=(160, 48)) as pilot:
        await settle(pilot)
        job_id = await launch(app, sft_file)
        await asyncio.to_thread(manual_backend.run_until_settled)
        screen = await open_job(pilot, job_id)
        log = screen.log_widget
        cached = await app.service.cached_events(job_id)
        messages = [e for e in cached if e.type != "metrics"]
        metrics = [e for e in cached if e.type == "metrics"]
        assert len(metrics) == 30
        assert screen.shown_event_ids == [e.id for e in messages]  # every message, none dropped
        assert screen.folded_metric_count == 30 and len(log.lines) >= len(messages)
        assert messages[0].message.startswith("Created fine-tuning job")
        shown = screen_text(app)
        assert "Created fine-tuning job" in shown and "Step 12/30" not in shown  # metric lines are folded
        line = str(screen.query_one("#job-metrics-line").render())
        assert "metrics: step 30/30 · train loss" in line and "(30 points, in the chart)" in line

        # Many messages (a provider's warnings): all kept, the log follows them.
        job = screen.job
        batch = [message(n, "warn" if n % 10 == 0 else "info") for n in range(120)]
        app.post_message(EventsArrived(job, batch))
        await settle(pilot)
        assert len(log.messages) == len(messages) + 120
        assert log.is_vertical_scroll_end and log.following
        assert "extra message 119 at info" in screen_text(app)

        # Resized to 80x24 while at the bottom: still following.
        await pilot.resize_terminal(80, 24)
        await settle(pilot)
        await pilot.pause()
        app.post_message(EventsArrived(job, [message(200), message(201)]))
        await settle(pilot)
        await pilot.pause()
        assert log.following and log.is_vertical_scroll_end
        assert "extra message 201 at info" in screen_text(app)

        # Scrolled up: new events wait below; back at the bottom, it follows again.
        log.scroll_home(animate=False)
        await pilot.pause()
        assert not log.following
        app.post_message(EventsArrived(job, [message(202)]))
        await settle(pilot)
        assert not log.is_vertical_scroll_end and "extra message 202" not in screen_text(app)
        log.scroll_end(animate=False)
        await pilot.pause()
        assert log.following
        app.post_message(EventsArrived(job, [message(203)]))
        await settle(pilot)
        await pilot.pause()
        assert log.is_vertical_scroll_end and "extra message 203 at info" in screen_text(app)

        # The level filter: all → info+ → warn+ → errors → all.
        await pilot.press("f")
        assert log.filter_name == "info+"
        await pilot.press("f")
        assert log.filter_name == "warn+"
        assert [e.id for e in log.shown] == [e.id for e in log.messages if e.level in ("warn", "error")]
        assert len(log.shown) == 12 and len(log.lines) == 12
        await pilot.pause()
        assert "events · warn+ (f)" in screen_text(app)
        await pilot.press("f")
        assert log.filter_name == "errors" and log.shown == [] and len(log.lines) == 0
        await pilot.press("f")
        assert log.filter_name == "all" and len(log.shown) == len(log.messages)
        await pilot.pause()
        await pilot.pause()
        assert log.is_vertical_scroll_end


# -- the SVG export --------------------------------------------------------------------------------------


async def test_e_exports_the_chart_as_svg_without_overwriting(paths, manual_backend, sft_file, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    app = make_app(paths, manual_backend)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        job_id = await launch(app, sft_file)
        await asyncio.to_thread(manual_backend.advance, job_id, 8)
        screen = await open_job(pilot, job_id)
        await pilot.press("e")
        await pilot.pause()
        first = tmp_path / f"{job_id}-loss.svg"
        assert screen.exported == [first] and first.is_file()
        svg = first.read_text()
        assert svg.lstrip().startswith("<svg") and "train" in svg and "loss" in svg
        assert ("chart written", str(first)) in toasts(app)
        await pilot.press("v", "e")
        await pilot.press("v", "e")
        await pilot.pause()
        assert screen.exported[1:] == [tmp_path / f"{job_id}-accuracy.svg", tmp_path / f"{job_id}-loss-1.svg"]
        assert first.read_text() == svg  # never overwritten


def test_svg_names_are_safe_file_names(tmp_path):
    path = svg_path(tmp_path, "ftjob-../../etc/x [y]\x1b]52", "loss")
    assert path.parent == tmp_path and "/" not in path.name and "\x1b" not in path.name
    assert path.name == "ftjob-.._.._etc_x_y_52-loss.svg"
    path.write_text("taken")
    assert svg_path(tmp_path, "ftjob-../../etc/x [y]\x1b]52", "loss").name == "ftjob-.._.._etc_x_y_52-loss-1.svg"
