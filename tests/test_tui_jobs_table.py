"""The jobs table: filter, sort, marks, time and money with a fixed clock, the overfitting
marker, stale rows offline, and the widths it fits. Time is driven by `table.clock`."""

from __future__ import annotations

import asyncio

from textual import events
from textual.app import App, ComposeResult
from tui_support import make_app, settle

from tunedeck.core.bootstrap import open_service
from tunedeck.core.datasets.models import model_info
from tunedeck.core.records import Job, JobRow
from tunedeck.core.watch.overfit import Verdict
from tunedeck.tui.screens.compare import CompareScreen
from tunedeck.tui.screens.jobs import JobsScreen
from tunedeck.tui.textshot import screen_text
from tunedeck.tui.widgets.jobs_table import JobsTable

NOW = 1_750_000_000.0
PRICED = "gpt-4o-mini-2024-07-18"


def job_json(name: str, status: str, *, created: float = NOW - 3600, model: str = "tunedeck-ngram", method: str = "supervised",
             suffix: str | None = None, ft: str | None = None, n_epochs: int = 2, finished: float | None = None,
             trained_tokens: int | None = None) -> dict:
    return {
        "id": f"ftjob-{name}",
        "object": "fine_tuning.job",
        "model": model,
        "status": status,
        "created_at": int(created),
        "finished_at": int(finished) if finished else None,
        "method": {"type": method, method: {"hyperparameters": {"n_epochs": n_epochs}}},
        "user_provided_suffix": suffix,
        "fine_tuned_model": ft,
        "trained_tokens": trained_tokens,
        "error": {},
    }


def metrics(job_id: str, steps: range, total: int) -> list[dict]:
    return [
        {"id": f"{job_id}-m{s}", "created_at": int(NOW), "level": "info", "message": f"Step {s}/{total}",
         "type": "metrics", "data": {"step": s, "total_steps": total, "train_loss": 2.0 / s}}
        for s in steps
    ]


FLEET = [
    job_json("alpha", "running", created=NOW - 600, suffix="support-v2"),
    job_json("beta", "succeeded", created=NOW - 1200, method="dpo", ft="ft:tunedeck-ngram:beta:ftjob-beta", finished=NOW - 700),
    job_json("gamma", "failed", created=NOW - 1800, finished=NOW - 1700),
    job_json("delta", "succeeded", created=NOW - 2400, ft="ft:tunedeck-ngram:support-v1:ftjob-delta", finished=NOW - 2000),
]


async def seed(paths, jobs=FLEET, *, fetched_at: float | None = None, verdicts: dict[str, Verdict] | None = None) -> None:
    service = await open_service(paths=paths)
    await service.cache.upsert_jobs("local", jobs, fetched_at=fetched_at)
    await service.cache.add_events("local", "ftjob-alpha", metrics("ftjob-alpha", range(1, 7), 10))
    for job_id, verdict in (verdicts or {}).items():
        await service.cache.set_verdict("local", job_id, verdict.to_json())
    await service.close()


def table_of(app) -> JobsTable:
    return app.screen.query_one(JobsTable)


def cells(app, job_id: str) -> dict[str, str]:
    return table_of(app).cell_texts(job_id)


# -- filter -----------------------------------------------------------------------------------


async def test_filter_keeps_the_keys_typed_right_after_the_slash(paths):
    await seed(paths)
    app = make_app(paths, connect=False)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        table = table_of(app)
        assert table.job_ids == ["ftjob-alpha", "ftjob-beta", "ftjob-gamma", "ftjob-delta"]
        # One burst, as a fast typist's terminal delivers it: nothing waits between the keys.
        for char in "/support":
            app.post_message(events.Key("slash" if char == "/" else char, char))
        await settle(pilot)
        field = app.screen.filter_input
        assert field.value == "support" and app.focused is field
        assert table.job_ids == ["ftjob-alpha", "ftjob-delta"]  # a suffix; a fine-tuned model's name
        assert 'filter "support": 2 shown' in screen_text(app)

        await pilot.press("escape")
        await settle(pilot)
        assert table.filter_text == "" and not field.display and app.focused is table
        assert len(table.job_ids) == 4

        for query, expected in (("dpo", ["ftjob-beta"]), ("failed", ["ftjob-gamma"]), ("ftjob-del", ["ftjob-delta"]),
                                ("ngram:beta", ["ftjob-beta"]), ("succeeded support", ["ftjob-delta"])):
            await pilot.press("slash", *query)
            await settle(pilot)
            assert table.job_ids == expected, query
            await pilot.press("escape")
            await settle(pilot)

        await pilot.press("slash", "q", "q")  # nothing matches: said, and "q" did not quit
        await settle(pilot)
        assert app.is_running and table.job_ids == []
        assert "No job matches" in screen_text(app)
        await pilot.press("enter")  # keeps the filter, back to the table
        await settle(pilot)
        assert table.filter_text == "qq"
        await pilot.press("escape")
        await settle(pilot)
        assert len(table.job_ids) == 4


# -- sort -------------------------------------------------------------------------------------


def header_label(table: JobsTable, key: str) -> str:
    return table.columns[key].label.plain


async def test_sort_cycles_reverses_and_follows_header_clicks(paths):
    await seed(paths)
    app = make_app(paths, connect=False)
    async with app.run_test(size=(200, 40)) as pilot:
        await settle(pilot)
        table = table_of(app)
        assert header_label(table, "created") == "created ▼"  # newest first
        await pilot.press("s")
        await settle(pilot)
        assert table.sort_by == ("status", False)
        assert table.job_ids == ["ftjob-alpha", "ftjob-gamma", "ftjob-beta", "ftjob-delta"]  # running, failed, succeeded
        assert header_label(table, "status") == "status ▲" and header_label(table, "created") == "created"
        assert "sort: status ▲" in screen_text(app)
        await pilot.press("S")
        await settle(pilot)
        assert table.job_ids == ["ftjob-beta", "ftjob-delta", "ftjob-gamma", "ftjob-alpha"]  # ties stay newest first
        assert header_label(table, "status") == "status ▼"

        # A click on a header sorts on it; a second click reverses.
        x = sum(table.columns[key].get_render_width(table) for key in table.shown_columns[: table.shown_columns.index("id")])
        await pilot.click("#jobs-table", offset=(x + 2, 0))
        await settle(pilot)
        assert table.sort_by == ("id", False)
        assert table.job_ids == ["ftjob-alpha", "ftjob-beta", "ftjob-delta", "ftjob-gamma"]
        await pilot.click("#jobs-table", offset=(x + 2, 0))
        await settle(pilot)
        assert table.sort_by == ("id", True)
        assert table.job_ids == ["ftjob-gamma", "ftjob-delta", "ftjob-beta", "ftjob-alpha"]

        table.move_cursor(row=1)
        selected = table.selected_job_id
        await pilot.press("s")  # the cursor stays on its job through a new order
        await settle(pilot)
        assert table.selected_job_id == selected


# -- marks and compare ------------------------------------------------------------------------


async def test_marks_then_compare_opens_with_the_marked_jobs(paths):
    await seed(paths)
    app = make_app(paths, connect=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        table = table_of(app)
        await pilot.press("space")
        await settle(pilot)
        assert cells(app, "ftjob-alpha")["mark"] == "◆" and table.marks == ["ftjob-alpha"]
        await pilot.press("C")
        await settle(pilot)
        assert isinstance(app.screen, JobsScreen)
        assert any("Mark two or more jobs" in n.message for n in app._notifications)

        await pilot.press("down", "down", "m", "up", "m", "m")  # m marks too; a second press unmarks
        await settle(pilot)
        assert table.marks == ["ftjob-alpha", "ftjob-gamma"]
        assert cells(app, "ftjob-beta")["mark"] == " "
        assert "2 marked" in screen_text(app)
        await pilot.press("C")
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, CompareScreen) and screen.job_ids == ["ftjob-alpha", "ftjob-gamma"]
        await pilot.press("escape")
        await settle(pilot)
        assert table_of(app).marks == ["ftjob-alpha", "ftjob-gamma"]  # still marked on return


# -- offline: stale rows ----------------------------------------------------------------------


async def test_offline_unfinished_rows_are_marked_with_their_age(paths):
    await seed(paths, fetched_at=NOW - 3 * 3600 - 120)
    app = make_app(paths, connect=False)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        table = table_of(app)
        table.clock = lambda: NOW
        table.refresh_rows()
        app.screen._update_note()
        await pilot.pause()
        assert table.stale
        running = cells(app, "ftjob-alpha")
        assert running["status"] == "running"
        assert running["progress"].startswith("? ") and running["progress"].endswith(" 3h ago")
        assert "60%" in running["progress"]
        done = cells(app, "ftjob-beta")["progress"]  # a finished job cannot have moved on
        assert done.startswith("✓ ") and "ago" not in done
        assert "cached, fetched 3h ago" in screen_text(app)


# -- a bare table: time, money, markers, widths --------------------------------------------------


class TableApp(App):
    def compose(self) -> ComposeResult:
        yield JobsTable(id="table")


def row(name: str, status: str, *, step: int | None = None, total: int | None = None, verdict: Verdict | None = None,
        estimated_tokens: int | None = None, **job) -> JobRow:
    return JobRow(Job.from_api(job_json(name, status, **job)), step=step, total_steps=total, verdict=verdict,
                  estimated_tokens=estimated_tokens, n_epochs=job.get("n_epochs", 2))


async def test_elapsed_eta_tokens_and_cost_follow_the_clock():
    price = model_info(PRICED).usd_per_1m_training_tokens
    rows = [
        row("run", "running", step=30, total=100, created=NOW - 600, model=PRICED, estimated_tokens=1_000_000),
        row("done", "succeeded", created=NOW - 7200, finished=NOW - 3500, model=PRICED, trained_tokens=2_000_000),
        row("odd", "running", step=5, total=10, created=NOW - 60, model="someone-elses-model"),
    ]
    app = TableApp()
    async with app.run_test(size=(200, 20)) as pilot:
        table = app.query_one(JobsTable)
        table.clock = lambda: NOW
        table.show_rows(rows)
        await pilot.pause()
        run = table.cell_texts("ftjob-run")
        assert run["elapsed"] == "10m" and run["eta"] == "23m"  # 600 s for 30 steps: 1400 s for 70 more
        assert run["cost"] == f"~${0.3 * price:.2f}" and run["tokens"] == "~300.0k"
        assert run["progress"] == "▶ █░░░░  30% e1/2"
        done = table.cell_texts("ftjob-done")
        assert done["elapsed"] == "1h01m" and done["eta"] == "-"
        assert done["cost"] == f"${2 * price:.2f}" and done["tokens"] == "2.0M"
        assert table.cell_texts("ftjob-odd")["cost"] == "unknown"

        table.clock = lambda: NOW + 60
        table.refresh_rows()
        assert table.cell_texts("ftjob-run")["elapsed"] == "11m"
        assert table.cell_texts("ftjob-done")["elapsed"] == "1h01m"  # finished: its time stands

        table.local = True
        table.refresh_rows()
        assert table.cell_texts("ftjob-odd")["cost"] == "$0 (local)"


async def test_a_job_is_100_percent_only_when_it_succeeded():
    app = TableApp()
    async with app.run_test(size=(160, 20)) as pilot:
        table = app.query_one(JobsTable)
        table.clock = lambda: NOW
        # The last step's metrics are in while the list still says running.
        table.show_rows([row("fin", "running", step=20, total=20)])
        await pilot.pause()
        shown = table.cell_texts("ftjob-fin")
        assert shown["status"] == "running" and "100%" not in shown["progress"] and "99%" in shown["progress"]
        assert shown["progress"].startswith("▶ ████░")
        table.show_rows([row("fin", "succeeded", step=20, total=20)])
        shown = table.cell_texts("ftjob-fin")
        assert shown["status"] == "succeeded" and shown["progress"] == "✓ █████ 100% e2/2"
        table.show_rows([row("fin", "failed", step=20, total=20)])
        shown = table.cell_texts("ftjob-fin")
        assert shown["progress"].startswith("✖ ") and "100%" not in shown["progress"]


async def test_the_overfitting_marker_comes_from_the_rows_verdict():
    alarm = Verdict("overfitting", fired_at_step=40, best_step=30, best_metric="valid_loss", best_value=0.4,
                    advice="stop now: validation loss has risen 12% since step 30; use the checkpoint at step 30")
    rows = [
        row("hot", "running", step=50, total=100, verdict=alarm),
        row("warm", "running", step=50, total=100, verdict=Verdict("watch")),
        row("cool", "running", step=50, total=100, verdict=Verdict("ok")),
        row("new", "running", step=1, total=100),
    ]
    app = TableApp()
    async with app.run_test(size=(80, 20)) as pilot:  # the marker stays at 80 columns
        table = app.query_one(JobsTable)
        table.clock = lambda: NOW
        table.compact = True
        table.show_rows(rows)
        await pilot.pause()
        assert "watch" in table.shown_columns
        assert [table.cell_texts(f"ftjob-{n}")["watch"] for n in ("hot", "warm", "cool", "new")] == ["⚠ overfit", "~ watch", "", ""]
        assert "⚠ overfit" in screen_text(app)
        table.sort_on("watch")
        assert table.job_ids[:2] == ["ftjob-hot", "ftjob-warm"]


async def test_narrow_keeps_the_key_columns_and_never_cuts_a_name_silently():
    long_ft = "ft:gpt-4o-mini-2024-07-18:my-org:support-assistant-v2:AbC123xY"
    rows = [
        row(f"j{n}", "succeeded", model=PRICED, ft=long_ft, finished=NOW, trained_tokens=10_000) for n in range(3)
    ] + [row("r", "running", step=3, total=9, model=PRICED)]
    for width in (80, 100, 160, 240):
        app = TableApp()
        async with app.run_test(size=(width, 20)) as pilot:
            table = app.query_one(JobsTable)
            table.clock = lambda: NOW
            table.compact = width < 110
            table.show_rows(rows)
            await pilot.pause()
            assert {"mark", "id", "model", "status", "progress"} <= set(table.shown_columns), width
            for line in screen_text(app).splitlines():
                assert len(line) <= width
            if "fine_tuned_model" in table.shown_columns:
                name = table.cell_texts("ftjob-j0")["fine_tuned_model"]
                assert name == long_ft or ("…" in name and name.startswith("ft:gpt-4o") and name.endswith("AbC123xY")), (width, name)
            if width >= 240:
                assert table.cell_texts("ftjob-j0")["fine_tuned_model"] == long_ft
                assert set(table.shown_columns) == {c for c in table.columns}


# -- the real thing: a job finishing on the local backend ----------------------------------------


async def test_a_finishing_job_never_shows_running_100(paths, manual_backend, sft_file):
    from tunedeck.core.launch.request import LaunchRequest

    app = make_app(paths, manual_backend)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        job = await app.service.launch(LaunchRequest(training_path=sft_file, model="tunedeck-ngram"))
        seen: list[tuple[str, str]] = []
        for _ in range(60):
            await asyncio.to_thread(manual_backend.advance, job.id, 3)
            await app.poll_now()
            await settle(pilot)
            shown = cells(app, job.id)
            seen.append((shown["status"], shown["progress"]))
            assert not (shown["status"] != "succeeded" and "100%" in shown["progress"]), seen
            if shown["status"] == "succeeded":
                break
        assert seen[-1][0] == "succeeded" and "100%" in seen[-1][1], seen
        assert any(status == "running" for status, _ in seen)


async def test_cancel_is_offered_only_for_a_job_that_can_still_change(paths):
    await seed(paths)
    app = make_app(paths, connect=False)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        assert table_of(app).selected_job_id == "ftjob-alpha"  # running
        assert "c Cancel" in screen_text(app).splitlines()[-1]
        await pilot.press("down")  # succeeded
        await settle(pilot)
        assert "c Cancel" not in screen_text(app).splitlines()[-1]
        await pilot.press("c")  # nothing to cancel: nothing asked
        await settle(pilot)
        assert isinstance(app.screen, JobsScreen)


async def test_cancel_is_not_offered_with_no_job_selected(paths):
    await seed(paths, jobs=[])
    app = make_app(paths, connect=False)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        assert table_of(app).selected_job_id is None
        assert "c Cancel" not in screen_text(app).splitlines()[-1]
        await pilot.press("c")  # nothing selected: no "no job selected" toast either
        await settle(pilot)
        assert isinstance(app.screen, JobsScreen)
        assert not any("no job selected" in n.message for n in app._notifications)


async def test_cancel_follows_a_filter_that_hides_every_job(paths):
    await seed(paths)
    app = make_app(paths, connect=False)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        assert "c Cancel" in screen_text(app).splitlines()[-1]  # alpha is running
        await pilot.press("slash", *"nothing-like-this", "enter")
        await settle(pilot)
        assert table_of(app).selected_job_id is None
        assert "c Cancel" not in screen_text(app).splitlines()[-1]
        await pilot.press("escape")
        await settle(pilot)
        assert table_of(app).selected_job_id == "ftjob-alpha"
        assert "c Cancel" in screen_text(app).splitlines()[-1]
