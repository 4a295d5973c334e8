"""The Compare screen: marked jobs' curves overlaid (by step or epoch, raw or normalised,
any metric), and their settings and results side by side with the differences marked."""

from __future__ import annotations

from tui_support import make_app, settle

from tunedeck.core.bootstrap import open_service
from tunedeck.tui.screens.compare import CompareScreen
from tunedeck.tui.screens.pick import PickScreen
from tunedeck.tui.textshot import screen_text
from tunedeck.tui.widgets.compare_chart import CompareChart, Curve, axis_ticks, integer_ticks

NOW = 1_750_000_000


def job_json(name: str, n_epochs: int, lr: float, created: int) -> dict:
    return {
        "id": f"ftjob-{name}",
        "object": "fine_tuning.job",
        "model": "tunedeck-ngram",
        "status": "succeeded",
        "created_at": created,
        "finished_at": created + 100,
        "method": {"type": "supervised", "supervised": {"hyperparameters": {
            "n_epochs": n_epochs, "batch_size": 1, "learning_rate_multiplier": lr}}},
        "fine_tuned_model": f"ft:tunedeck-ngram:{name}",
        "error": {},
    }


def curve(job_id: str, total: int, start: float) -> list[dict]:
    events = []
    for step in range(1, total + 1):
        data = {"step": step, "total_steps": total, "train_loss": start / step}
        if step % 5 == 0:
            data["valid_loss"] = start / step + 0.1
        events.append({"id": f"{job_id}-{step}", "created_at": NOW, "level": "info", "message": f"Step {step}",
                       "type": "metrics", "data": data})
    return events


async def seed(paths) -> None:
    service = await open_service(paths=paths)
    await service.cache.upsert_jobs("local", [job_json("short", 2, 1.0, NOW), job_json("long", 4, 2.0, NOW - 100)])
    await service.cache.add_events("local", "ftjob-short", curve("ftjob-short", 20, 2.0))
    await service.cache.add_events("local", "ftjob-long", curve("ftjob-long", 40, 4.0))
    await service.close()


async def open_compare(pilot) -> CompareScreen:
    await pilot.press("space", "down", "space", "C")
    await settle(pilot)
    screen = pilot.app.screen
    assert isinstance(screen, CompareScreen)
    return screen


async def test_compare_overlays_the_curves_and_the_toggles_change_them(paths):
    await seed(paths)
    app = make_app(paths, connect=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        screen = await open_compare(pilot)
        assert screen.job_ids == ["ftjob-short", "ftjob-long"]
        assert screen.metric == "valid_loss"  # both have one: it says which generalises
        short, long = screen.curves
        assert [x for x, _ in short.points] == [5.0, 10.0, 15.0, 20.0]
        assert max(x for x, _ in long.points) == 40.0
        assert short.marker != long.marker  # apart without colour
        build = screen.chart.build_count
        assert build >= 1

        await pilot.press("e")  # by epoch: both end at their epoch count
        await settle(pilot)
        short, long = screen.curves
        assert screen.by == "epoch"
        assert short.points[-1][0] == 2.0 and long.points[-1][0] == 4.0
        assert short.points[0][0] == 0.5  # step 5 of 10 per epoch
        assert screen.chart.build_count > build

        await pilot.press("n")  # normalised: each starts at 1
        await settle(pilot)
        short, long = screen.curves
        assert short.points[0][1] == 1.0 and long.points[0][1] == 1.0
        assert short.points[-1][1] < 1.0
        assert "÷ first value" in screen_text(app)

        await pilot.press("e", "n")
        await settle(pilot)
        assert screen.curves[0].points[0] == (5.0, 0.5)  # back to raw, by step: 2.0 / 5 + 0.1

        await pilot.press("right_square_bracket")  # the next metric
        await settle(pilot)
        assert screen.metric != "valid_loss"
        await pilot.press("m")
        await settle(pilot)
        assert isinstance(app.screen, PickScreen)
        picks = app.screen.names
        assert "train_loss" in picks and "valid_loss" in picks
        await pilot.press("escape")
        await settle(pilot)
        screen.set_metric("train_loss")
        await pilot.pause()
        assert len(screen.curves[0].points) == 20 and len(screen.curves[1].points) == 40

        shown = screen_text(app)
        legend = screen.query_one("#compare-legend").render().plain
        assert "ftjob-short" in legend and "ftjob-long" in legend
        assert short.marker in legend and long.marker in legend
        assert "metric train_loss" in shown


async def test_the_table_marks_what_differs(paths):
    await seed(paths)
    app = make_app(paths, connect=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        screen = await open_compare(pilot)
        comparison = screen.comparison
        assert comparison is not None and comparison.job_ids == ("ftjob-short", "ftjob-long")
        differing = {row.label for row in comparison.settings if row.differs}
        same = {row.label for row in comparison.settings if not row.differs}
        assert any("epoch" in label for label in differing) and "model" in same
        shown = screen_text(app)
        lines = shown.splitlines()
        assert any("≠" in line and "epoch" in line for line in lines), shown
        table = screen.query_one("#compare-table")
        labels = [table.get_row_at(i)[0] for i in range(table.row_count)]
        marked = [label for label in labels if label.plain.startswith("≠")]
        assert {label.plain for label in marked} >= {"≠ n_epochs", "≠ learning_rate_multiplier"}
        assert all(any("reverse" in str(span.style) for span in label.spans) for label in marked)  # seen without colour
        assert not any(label.plain == "≠ model" for label in labels)


async def test_compare_at_80_columns_and_follows_new_metrics(paths):
    await seed(paths)
    app = make_app(paths, connect=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        screen = await open_compare(pilot)
        for line in screen_text(app).splitlines():
            assert len(line) <= 80
        loads = screen.loads
        service = app.service
        await service.cache.add_events("local", "ftjob-short", [
            {"id": "late", "created_at": NOW, "level": "info", "message": "Step 25", "type": "metrics",
             "data": {"step": 25, "total_steps": 25, "valid_loss": 0.05}}
        ])
        app.state.show_rows(await service.cached_rows(), "cache")  # what a poll would announce
        await settle(pilot)
        assert screen.loads == loads + 1
        assert screen.curves[0].points[-1] == (25.0, 0.05)


def test_ticks_are_whole_numbers():
    assert integer_ticks(1, 329, 5) == [100, 200, 300]
    ticks = integer_ticks(0.5, 4.0, 4)
    assert ticks == [1, 2, 3, 4]
    assert all(isinstance(t, int) for t in integer_ticks(3, 17, 6))


async def test_a_poll_keeps_the_table_cursor_and_scroll(paths):
    await seed(paths)
    app = make_app(paths, connect=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        screen = await open_compare(pilot)
        table = screen.query_one("#compare-table")
        rows = table.row_count
        await pilot.press(*["down"] * (rows - 3))
        await settle(pilot)
        cursor, scroll = table.cursor_row, table.scroll_y
        assert cursor == rows - 3 and scroll > 0  # well down a table taller than its room
        before = [table.get_row_at(i) for i in range(rows)]

        loads = screen.loads
        service = app.service
        await service.cache.add_events("local", "ftjob-short", [
            {"id": "late", "created_at": NOW, "level": "info", "message": "Step 25", "type": "metrics",
             "data": {"step": 25, "total_steps": 25, "train_loss": 0.01, "valid_loss": 0.05}}
        ])
        app.state.show_rows(await service.cached_rows(), "cache")  # what a poll would announce
        await settle(pilot)
        assert screen.loads == loads + 1
        after = [table.get_row_at(i) for i in range(table.row_count)]
        assert [[c.plain for c in r] for r in after] != [[c.plain for c in r] for r in before]  # the job moved on
        assert (table.cursor_row, table.scroll_y) == (cursor, scroll)

        app.state.show_rows(await service.cached_rows(), "cache")  # a poll with nothing new
        await settle(pilot)
        assert screen.loads == loads + 1
        assert (table.cursor_row, table.scroll_y) == (cursor, scroll)


def test_ticks_under_one_epoch_are_fractions_inside_the_range():
    ticks = axis_ticks(0.1, 0.5, 6)
    assert ticks == [0.1, 0.2, 0.3, 0.4, 0.5]
    assert axis_ticks(0.05, 0.95, 3) == [0.25, 0.5, 0.75]
    assert axis_ticks(0.1, 0.1, 6) == [0.1]  # one point: its own tick, not 0
    for low, high, count in ((0.02, 0.3, 2), (0.6, 0.9, 4), (5.1, 9.9, 2), (1, 329, 5), (0.5, 4.0, 4)):
        ticks = axis_ticks(low, high, count)
        assert ticks and all(low <= t <= high for t in ticks), (low, high, ticks)
    assert axis_ticks(0.5, 4.0, 4) == [1, 2, 3, 4]  # a range of a unit or more: whole numbers


def test_an_early_run_by_epoch_has_ticks_on_the_axis():
    chart = CompareChart()
    early = Curve("ftjob-a", ((0.1, 2.0), (0.2, 1.8), (0.3, 1.5), (0.4, 1.4)), "•", "cyan")
    chart.set_curves([early], x_label="epoch", y_label="train_loss")
    drawn = chart._build(60, 12).plain.splitlines()
    tick_line = next(line for line in drawn if "0.2" in line)
    assert "0.4" in tick_line
    assert " 0 " not in tick_line and not tick_line.lstrip().startswith("0 ")
