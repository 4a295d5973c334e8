"""The jobs list's keys: the cursor starts on the newest job and stays there as rows arrive
(a restart on the same cache, then the API's newer jobs) until the user moves it; Home/End
and g/G go to the first and last row (not sideways); y/Y copy a job's names."""

from __future__ import annotations

from test_tui_jobs_table import FLEET, NOW, job_json, seed, table_of
from tui_support import make_app, settle

from tunedeck.tui.messages import JobsLoaded
from tunedeck.tui.screens.job import JobScreen

NEWEST = job_json("zeta", "running", created=NOW - 60)


def toasts(app) -> list[tuple[str, str]]:
    return [(n.title, n.message) for n in app._notifications]


async def arrive(pilot, jobs: list[dict]) -> None:
    """`jobs` reach the cache and the app hears of them as a poll's answer."""
    app = pilot.app
    await app.service.cache.upsert_jobs("local", jobs)
    app.post_message(JobsLoaded(await app.poller.read_cache(), source="api"))
    await settle(pilot)


async def test_after_a_restart_the_cursor_is_on_the_newest_job_even_one_the_cache_lacked(paths):
    await seed(paths)
    app = make_app(paths, connect=False)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        await pilot.press("down", "down")  # left on an older job when the app closed
        assert table_of(app).selected_job_id == "ftjob-gamma"
    app = make_app(paths, connect=False)  # a restart on the same cache
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        assert table_of(app).selected_job_id == "ftjob-alpha"
        await arrive(pilot, [NEWEST])  # launched while the app was closed: first in the list
        assert table_of(app).job_ids[0] == "ftjob-zeta"
        assert table_of(app).selected_job_id == "ftjob-zeta"
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, JobScreen) and app.screen.job_id == "ftjob-zeta"


async def test_once_the_user_moves_the_cursor_new_rows_leave_it_on_their_job(paths):
    await seed(paths)
    app = make_app(paths, connect=False)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        await pilot.press("down")
        assert table_of(app).selected_job_id == "ftjob-beta"
        await arrive(pilot, [NEWEST])
        assert table_of(app).selected_job_id == "ftjob-beta"


async def test_end_and_home_go_to_the_last_and_first_job(paths):
    await seed(paths)
    app = make_app(paths, connect=False)
    async with app.run_test(size=(80, 24)) as pilot:  # narrow: the table could scroll sideways
        await settle(pilot)
        table = table_of(app)
        await pilot.press("end")
        assert table.selected_job_id == "ftjob-delta" and table.scroll_x == 0
        await pilot.press("home")
        assert table.selected_job_id == "ftjob-alpha"
        await pilot.press("G")
        assert table.selected_job_id == "ftjob-delta"
        await pilot.press("g")
        assert table.selected_job_id == "ftjob-alpha"


async def test_y_copies_the_fine_tuned_model_or_else_the_job_id_and_Y_the_job_id(paths):
    await seed(paths)
    app = make_app(paths, connect=False)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        await pilot.press("y")  # alpha is running: no fine-tuned model yet
        assert app.clipboard == "ftjob-alpha"
        assert toasts(app)[-1] == ("copied the job id (no fine-tuned model yet)", "ftjob-alpha")
        await pilot.press("down", "y")  # beta succeeded
        model = next(job["fine_tuned_model"] for job in FLEET if job["id"] == "ftjob-beta")
        assert app.clipboard == model
        assert toasts(app)[-1] == ("copied the fine-tuned model", model)
        await pilot.press("Y")
        assert app.clipboard == "ftjob-beta"
        assert toasts(app)[-1] == ("copied the job id", "ftjob-beta")


async def test_copy_with_every_job_filtered_out_copies_nothing(paths):
    await seed(paths)
    app = make_app(paths, connect=False)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        await pilot.press("slash", *"nothing-like-this", "enter", "y")
        await settle(pilot)
        assert app.clipboard == ""
        assert toasts(app)[-1] == ("", "no job selected")


async def test_a_toast_sits_inside_the_panels_never_on_their_borders(paths):
    from textual.widgets._toast import Toast

    await seed(paths)
    app = make_app(paths, connect=False)
    async with app.run_test(size=(80, 24), notifications=True) as pilot:  # toasts drawn
        await settle(pilot)
        await pilot.press("down", "enter")  # beta: its panels reach the footer
        await settle(pilot)
        assert isinstance(app.screen, JobScreen)
        bottom_border = app.screen.query_one("#job-events-box").region.bottom - 1
        right_border = app.size.width - 1
        before = [app.screen.get_widget_at(right_border, y)[0] for y in range(app.size.height)]
        await pilot.press("y")
        await settle(pilot)
        await pilot.pause()  # the toast rack shows its toasts a moment after the notice
        toast = app.screen.query_one(Toast)
        assert toast.region.bottom <= bottom_border  # above the last panel's bottom border
        assert toast.region.right <= right_border  # clear of the right border
        assert toast.styles.border_top[0] and toast.styles.border_left[0]  # framed all round
        # The panels' right border column is never under a toast.
        assert [app.screen.get_widget_at(right_border, y)[0] for y in range(app.size.height)] == before
