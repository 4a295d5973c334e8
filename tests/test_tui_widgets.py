"""The TUI's small parts on their own: literal text, the metric chart, the jobs table."""

from __future__ import annotations

import time

import pytest
from rich.text import Text
from textual.app import App, ComposeResult
from textual.widgets import RichLog, Static

from tunedeck.core.records import Job, JobEvent, JobRow
from tunedeck.tui.formatting import progress_text
from tunedeck.tui.safe_text import one_line, safe
from tunedeck.tui.screens.jobs import JobsTable, short_id
from tunedeck.tui.textshot import screen_text
from tunedeck.tui.widgets.metric_chart import MetricChart, thin

HOSTILE = "step 3 [@click=app.quit]click me[/] [/ [link=https://x.test]x \x1b]52;c;aGVsbG8=\x07 \x1b[31mred \x9b2J \u202eevil"


def test_safe_keeps_markup_literal_and_neutralises_control_characters():
    text = safe(HOSTILE)
    assert isinstance(text, Text)
    assert "[@click=app.quit]" in text.plain
    assert "[/" in text.plain and "[link=https://x.test]" in text.plain
    assert not text.spans  # nothing was parsed into styles or actions
    for bad in ("\x1b", "\x07", "\x9b", "\u202e"):
        assert bad not in text.plain
    assert "␛]52;c;aGVsbG8=␇" in text.plain  # visible placeholders, so the user sees what came


def test_one_line_flattens_newlines_and_tabs_but_safe_keeps_them():
    assert one_line("a\nb\tc").plain == "a b c"
    assert safe("a\nb\tc").plain == "a\nb\tc"
    assert safe(None).plain == ""


class LiteralApp(App):
    def compose(self) -> ComposeResult:
        yield Static(safe(HOSTILE), id="static")
        yield RichLog(id="log", markup=False)

    def on_mount(self) -> None:
        self.query_one(RichLog).write(safe(HOSTILE))


async def test_hostile_text_renders_literally_in_widgets():
    app = LiteralApp()
    async with app.run_test(size=(200, 10)) as pilot:
        await pilot.pause()
        shown = screen_text(app)
        assert shown.count("[@click=app.quit]click me[/]") == 2
        assert "\x1b]52" not in shown and "\x07" not in shown
        await pilot.click("#static", offset=(10, 0))  # clicking the fake link runs nothing
        await pilot.pause()
        assert app.is_running


# -- metric chart ---------------------------------------------------------------------------


def point(step: int, train: float | None = None, valid: float | None = None, full: float | None = None) -> JobEvent:
    data = {"step": step, "total_steps": 100, "train_loss": train, "valid_loss": valid, "full_valid_loss": full}
    data = {key: value for key, value in data.items() if value is not None}
    return JobEvent(f"ev-{step}-{train}-{valid}-{full}", "ftjob-x", 0, "info", f"Step {step}", "metrics", data)


class ChartApp(App):
    def compose(self) -> ComposeResult:
        yield MetricChart(id="chart")


async def test_chart_without_points_says_so():
    app = ChartApp()
    async with app.run_test(size=(60, 16)) as pilot:
        await pilot.pause()
        assert "no metrics yet" in screen_text(app)
        assert app.query_one(MetricChart).build_count == 0


@pytest.mark.parametrize("points", [1, 2, 300])
@pytest.mark.parametrize("size", [(1, 1), (3, 2), (10, 3), (23, 5), (40, 10), (120, 36)])
async def test_chart_survives_any_size_and_point_count(points, size):
    app = ChartApp()
    async with app.run_test(size=size) as pilot:
        chart = app.query_one(MetricChart)
        chart.set_job("supervised", 3)
        chart.add_events(point(s, 3.0 / s, 3.3 / s if s % 5 == 0 else None, 3.2 / s if s % 50 == 0 else None) for s in range(1, points + 1))
        await pilot.pause()
        chart.move_cursor(-1)
        chart.zoom(0.5)
        chart.toggle_log()
        await pilot.pause()
        screen_text(app)
        assert len(chart.train_points) == points


async def test_chart_builds_once_per_data_version_size_and_option():
    app = ChartApp()
    async with app.run_test(size=(80, 20)) as pilot:
        chart = app.query_one(MetricChart)
        chart.add_events([point(1, 2.0), point(2, 1.5, 1.7)])
        await pilot.pause()
        assert chart.build_count == 1
        for _ in range(5):
            chart.refresh()
            await pilot.pause()
        assert chart.build_count == 1  # repaints reuse the cached drawing
        version = chart.version
        assert chart.add_events([point(2, 1.5, 1.7)]) == 0  # duplicates change nothing
        assert chart.version == version
        chart.add_events([point(3, 1.2)])
        await pilot.pause()
        assert chart.build_count == 2 and chart.version == version + 1
        await pilot.resize_terminal(100, 24)
        await pilot.pause()
        assert chart.build_count == 3
        chart.toggle_smoothing()  # an option the user changed: drawn again, once
        await pilot.pause()
        await pilot.pause()
        assert chart.build_count == 4
        assert chart.valid_points == [(2, 1.7)]
        assert "train" in screen_text(app) and "valid" in screen_text(app)


def test_thin_keeps_about_the_limit_and_the_last_point():
    points = [(i, float(i)) for i in range(1, 1001)]
    thinned = thin(points, 100)
    assert len(thinned) <= 101 and thinned[-1] == (1000, 1000.0) and thinned[0] == (1, 1.0)
    assert thin(points[:5], 100) == points[:5]


# -- jobs table -------------------------------------------------------------------------------


def job_row(n: int, status: str = "running", step: int | None = None) -> JobRow:
    job = Job(id=f"ftjob-{n:024d}", model="m[/]", status=status, created_at=int(time.time()) - n)
    return JobRow(job, step=step, total_steps=10 if step else None)


def test_progress_cell():
    assert progress_text(job_row(1, step=6)).plain == "███░░  60%"
    assert progress_text(job_row(1, "succeeded")).plain == "█████ 100%"
    assert progress_text(job_row(1)).plain == "-"
    assert short_id("ftjob-abcdefghijklmnopqrstuvwx") == "ftjob-abc…stuvwx"


class TableApp(App):
    def compose(self) -> ComposeResult:
        yield JobsTable(id="table")


async def test_table_updates_in_place_keeps_the_cursor_and_skips_no_ops():
    app = TableApp()
    async with app.run_test(size=(160, 20)) as pilot:
        table = app.query_one(JobsTable)
        table.clock = lambda: 1_750_000_000.0  # the test's time: elapsed and ETA hold still
        rows = [job_row(n, step=n) for n in range(1, 6)]
        table.show_rows(rows)
        table.move_cursor(row=2)
        await pilot.pause()
        assert table.selected_job_id == rows[2].job.id
        table.show_rows(rows)  # same data: nothing rewritten
        assert table.cell_updates == 0
        rows[2] = job_row(3, "succeeded")
        table.show_rows(rows)
        assert table.cell_updates == 4  # status, progress, elapsed and ETA only
        newest = job_row(0)
        table.show_rows([newest, *rows])  # a new job on top: the cursor stays on its job
        await pilot.pause()
        assert table.job_ids[0] == newest.job.id
        assert table.selected_job_id == rows[2].job.id
        table.show_rows(rows[1:])  # two gone
        assert newest.job.id not in table.job_ids and rows[0].job.id not in table.job_ids
        assert table.selected_job_id == rows[2].job.id
        assert "m[/]" in screen_text(app)


async def test_an_rft_job_without_loss_is_charted_by_its_rewards():
    events = [
        JobEvent("e%d" % s, "ftjob-x", 0, "info", "", "metrics", {"step": s, "total_steps": 40, "train_mean_reward": s / 40})
        for s in range(1, 31)
    ] + [JobEvent("v", "ftjob-x", 0, "info", "", "metrics", {"step": 30, "total_steps": 40, "valid_reward_mean": 0.6})]
    app = ChartApp()
    async with app.run_test(size=(80, 20)) as pilot:
        chart = app.query_one(MetricChart)
        chart.set_job("reinforcement", None)
        chart.add_events(events)
        await pilot.pause()
        assert chart.metric_name == "reward"
        assert chart.points("train_mean_reward")[-1] == (30, 0.75)
        assert chart.points("valid_reward_mean") == [(30, 0.6)]
        assert "• valid 0.600" in chart.latest_text().plain
        assert "train" in screen_text(app)


class SteadyTableApp(App):
    def compose(self) -> ComposeResult:
        from tunedeck.tui.widgets.steady_table import SteadyTable

        yield SteadyTable(zebra_stripes=True, cursor_type="row")


async def test_a_changed_cell_renders_again_alone():
    """One changed cell costs one cell's rendering, not the whole table's (DataTable renders
    every visible cell again after any change); what shows is the new value."""
    from tunedeck.tui.widgets.steady_table import SteadyTable

    app = SteadyTableApp()
    async with app.run_test(size=(120, 30)) as pilot:
        table = app.query_one(SteadyTable)
        for column in range(8):
            table.add_column(f"c{column}", key=f"c{column}")
        for row in range(20):
            table.add_row(*[Text(f"r{row}c{column}") for column in range(8)], key=f"r{row}")
        await pilot.pause()
        first = table.cells_rendered
        assert first >= 20 * 8  # everything was drawn once

        table.update_cell("r5", "c3", Text("R5C3"))  # as wide as before: only its row is painted
        await pilot.pause()
        assert table.cells_rendered - first == 1
        assert "R5C3" in screen_text(app) and "r5c3" not in screen_text(app)

        table.update_cell("r5", "c3", Text("fresh and wide"), update_width=True)  # wider: the column grows
        await pilot.pause()
        await pilot.pause()
        lines = screen_text(app).splitlines()
        header = next(line for line in lines if "c4" in line)
        for row in (0, 5, 6, 19):  # every line moved with the wider column, not only the changed one
            line = next(line for line in lines if f"r{row}c0" in line)
            assert line.index(f"r{row}c4") == header.index("c4"), line
        assert "fresh and wide" in screen_text(app)
        wide = header.index("c4")

        table.update_cell("r5", "c3", Text("r5c3"), update_width=True)  # its widest cell narrower: it shrinks
        await pilot.pause()
        await pilot.pause()
        lines = screen_text(app).splitlines()
        header = next(line for line in lines if "c4" in line)
        assert header.index("c4") < wide - 5
        for row in (0, 5, 19):
            line = next(line for line in lines if f"r{row}c0" in line)
            assert line.index(f"r{row}c4") == header.index("c4"), line
        first = table.cells_rendered - 1  # the rest counts from here

        table.move_cursor(row=2)  # the cursor's old and new rows are drawn again, nothing else
        await pilot.pause()
        assert table.cells_rendered - first - 1 == 2 * 8

        table.add_row(*[Text("new") for _ in range(8)], key="r20")
        await pilot.pause()
        assert table.cells_rendered - first > 20 * 8  # rows moved: all drawn again


class CheckpointTableApp(App):
    CSS = "CheckpointTable { border: round white; }"

    def compose(self) -> ComposeResult:
        from tunedeck.tui.widgets.checkpoint_table import CheckpointTable

        yield CheckpointTable()


async def test_the_checkpoints_note_shows_an_api_error_literally():
    """The empty table's note carries what the API answered: brackets are text, not markup
    (`[/]` would raise; `[step]` would vanish)."""
    from tunedeck.tui.widgets.checkpoint_table import CheckpointTable

    app = CheckpointTableApp()
    async with app.run_test(size=(100, 10)) as pilot:
        table = app.query_one(CheckpointTable)
        table.show([], "checkpoints: param [step] bad [/] [link=http://x]click[/link]")
        await pilot.pause()
        assert "param [step] bad [/]" in screen_text(app)
