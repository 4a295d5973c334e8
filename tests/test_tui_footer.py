"""The footer (tui/widgets/key_footer.py) at 80x24: the screen's most important keys first,
whole keys only, `? Keys` last, and it follows the bindings as they change."""

from __future__ import annotations

import re

from tui_support import launch_job, make_app, running_job, settle

from tunedeck.tui.screens.dataset import DatasetScreen
from tunedeck.tui.screens.evaluate import EvaluateScreen
from tunedeck.tui.screens.launch import LaunchScreen
from tunedeck.tui.textshot import screen_text
from tunedeck.tui.widgets.key_footer import FooterItem, KeyFooter, fit, footer_items


def footer_line(app) -> str:
    return screen_text(app).splitlines()[-1]


def footer_entries(app) -> list[str]:
    """The footer's entries as drawn ("key label"), the help key last."""
    return re.split(r" {2,}", footer_line(app).strip())


def assert_whole_keys(app, help_keys=("?",)) -> list[str]:
    """Every drawn entry is one of the screen's keys with its full or compact label (none cut,
    none made up), the help key is last, and the line fits the terminal."""
    line = footer_line(app)
    assert len(line.rstrip()) <= app.size.width
    entries = footer_entries(app)
    items, help_item = footer_items(app.screen)
    allowed = {f"{i.key_display} {i.label}" for i in items} | {f"{i.key_display} {i.compact_label}" for i in items}
    assert help_item is not None and help_item.key_display in help_keys
    assert entries[-1] == f"{help_item.key_display} Keys", line
    for entry in entries[:-1]:
        assert entry in allowed, (entry, line)
    return entries[:-1]


def test_fit_keeps_whole_items_most_important_first_and_compacts_only_when_needed():
    items = [FooterItem("a", "a", "Alpha long", "Al"), FooterItem("b", "b", "Beta", "Be"), FooterItem("c", "c", "Gamma", "Ga")]
    assert fit(items, 100) == (items, False)  # everything fits with full labels
    chosen, compact = fit(items, 14)  # "a Al  b Be  c Ga" is 16: the last one is left out whole
    assert compact and chosen == items[:2]
    chosen, compact = fit(items, 5)  # only a short one fits: the first that fits, whole
    assert compact and chosen == [items[0]]
    assert fit(items, 2) == ([], True)


async def test_jobs_screen_at_80x24_shows_the_main_keys_whole_and_help_last(paths, manual_backend, sft_file):
    app = make_app(paths, manual_backend)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await launch_job(app, sft_file)
        await app.poll_now()
        await settle(pilot)
        entries = assert_whole_keys(app)
        assert entries[:5] == ["⏎ Open", "n New", "/ Filter", "d Data", "E Eval"], entries
        assert "Datasets" not in footer_line(app)  # compact labels: not all full ones fit


async def test_job_screen_at_80x24_keeps_evaluate_and_follows_pause(paths, manual_backend, sft_file):
    app = make_app(paths, manual_backend)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await running_job(pilot, manual_backend, sft_file)
        entries = assert_whole_keys(app)
        for entry in ("esc Back", "E Eval", "c Cancel", "P Pause"):
            assert entry in entries, entries
        assert "R Resume" not in entries  # check_action hides it while running

        await pilot.press("P")
        await settle(pilot)
        assert screen.job.status == "paused"
        entries = assert_whole_keys(app)  # redrawn when the screen refreshed its bindings
        assert "R Resume" in entries and "P Pause" not in entries, entries


async def test_dataset_screen_at_80x24_shows_split_clean_copy_launch_and_back(paths, sft_file):
    app = make_app(paths, connect=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        app.push_screen(DatasetScreen(sft_file))
        await settle(pilot)
        entries = assert_whole_keys(app)
        assert entries[:5] == ["esc Back", "o Open", "l Launch", "s Split", "w Clean"], entries


async def test_evaluate_screen_at_80x24_offers_start_and_the_help_key_that_works_in_its_form(paths, manual_backend):
    app = make_app(paths, manual_backend)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        app.push_screen(EvaluateScreen())
        await settle(pilot)
        # The form's text field takes `?` as text, so the footer names f1 there.
        entries = assert_whole_keys(app, help_keys=("?", "f1"))
        assert entries[:2] == ["esc Back", "^s Start"], entries


async def test_a_wide_terminal_shows_full_labels_and_a_click_runs_the_key(paths, manual_backend, sft_file):
    app = make_app(paths, manual_backend)
    async with app.run_test(size=(200, 40)) as pilot:
        await settle(pilot)
        entries = assert_whole_keys(app)
        assert "d Datasets" in entries and "E Evaluate" in entries and "n New job" in entries, entries
        footer = app.screen.query_one(KeyFooter)
        x = footer_line(app).index("n New job")
        await pilot.click(KeyFooter, offset=(x, 0))
        await settle(pilot)
        assert isinstance(app.screen, LaunchScreen)
        assert footer.is_attached is True  # the jobs screen's footer stays for its return
