"""The dataset screen's prompts take what is typed right after the key that opens them (a
fast typist, a paste over SSH: `burst` queues every key at once), and the open prompt, split
and clean copy as a user meets them: path completion, recent files, the place to come back
to, where a file is written and never overwriting one silently."""

from __future__ import annotations

from pathlib import Path

from conftest import generate_dataset
from textual import events
from textual.widgets import OptionList
from tui_support import burst, settle

from tunedeck.core.bootstrap import open_service
from tunedeck.core.paths import AppPaths
from tunedeck.tui.app import TunedeckApp
from tunedeck.tui.screens.confirm import ConfirmScreen
from tunedeck.tui.screens.dataset import DatasetScreen
from tunedeck.tui.screens.dataset_prompts import AskScreen, OpenDatasetScreen, WriteFilesScreen
from tunedeck.tui.textshot import screen_text


def make_app(paths: AppPaths) -> TunedeckApp:
    return TunedeckApp(lambda: open_service(paths=paths), poll=False, connect=False)


async def open_screen(pilot, path: Path | None, **options) -> DatasetScreen:
    await settle(pilot)
    screen = DatasetScreen(path, **options)
    pilot.app.push_screen(screen)
    await settle(pilot)
    return screen


# -- typeahead ---------------------------------------------------------------------------------


async def test_a_line_number_typed_in_one_burst_after_colon_is_the_line_jumped_to(paths, tmp_path):
    path = generate_dataset("sft", 300, tmp_path / "train.jsonl")
    app = make_app(paths)
    async with app.run_test(size=(120, 36)) as pilot:
        screen = await open_screen(pilot, path, validate=False)
        await burst(pilot, ":177", "enter")
        assert app.screen is screen
        assert screen.browser.describe()["line"] == 177
        app.post_message(events.Key("ctrl+g", None))  # the other key for it, in the same burst
        await burst(pilot, "42", "enter")
        assert screen.browser.describe()["line"] == 42
        await burst(pilot, ":60", "enter", "j", "j")  # keys after the enter reach the list
        assert app.screen is screen and screen.browser.describe()["line"] == 62


async def test_a_path_typed_in_one_burst_after_d_is_the_file_opened(paths, tmp_path, monkeypatch):
    generate_dataset("sft", 50, tmp_path / "train.jsonl")
    monkeypatch.chdir(tmp_path)
    app = make_app(paths)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        jobs = app.screen
        await burst(pilot, "d", "train.jsonl", "enter")  # `t` would open the playground from the jobs
        screen = app.screen
        assert isinstance(screen, DatasetScreen) and screen is not jobs
        assert screen.browser.path is not None and screen.browser.path.name == "train.jsonl"
        assert len(app.screen_stack) == 2  # one dataset screen, no playground under it


async def test_search_text_typed_in_one_burst_after_slash_is_searched(paths, tmp_path):
    path = generate_dataset("sft", 300, tmp_path / "train.jsonl")
    app = make_app(paths)
    async with app.run_test(size=(120, 36)) as pilot:
        screen = await open_screen(pilot, path, validate=False)
        await burst(pilot, "/warranty", "enter")
        assert app.screen is screen
        search = screen.browser.search
        assert search is not None and search.text == "warranty" and search.finished
        assert search.count > 0 and screen.browser.describe()["line"] in search


async def test_every_prompt_of_the_screen_takes_typeahead(paths, tmp_path):
    path = generate_dataset("sft", 300, tmp_path / "train.jsonl", "--bad-every", "50")
    app = make_app(paths)
    async with app.run_test(size=(120, 36)) as pilot:
        screen = await open_screen(pilot, path)
        await burst(pilot, "s", "0.2")  # the share offered is selected: typing replaces it
        split_prompt = app.screen
        assert isinstance(split_prompt, WriteFilesScreen)
        assert split_prompt.query_one("#write-share").value == "0.2"
        await burst(pilot, "escape", "w", "kept.jsonl")
        assert app.screen is not split_prompt
        assert isinstance(app.screen, WriteFilesScreen)
        assert app.screen.query_one("#write-clean").value == "kept.jsonl"
        await burst(pilot, "escape", ":", "12")
        assert isinstance(app.screen, AskScreen) and app.screen.query_one("#ask-input").value == "12"
        await burst(pilot, "escape")
        assert app.screen is screen


async def test_a_burst_after_o_lands_in_the_path_and_tab_completes_it(paths, tmp_path):
    first = generate_dataset("sft", 50, tmp_path / "first.jsonl")
    other = generate_dataset("sft", 60, tmp_path / "travel.jsonl")
    app = make_app(paths)
    async with app.run_test(size=(120, 36)) as pilot:
        screen = await open_screen(pilot, first, validate=False)
        # "tr" + tab completes to the one file starting so, as a shell does; enter opens it.
        await burst(pilot, "o", str(tmp_path / "tr"), "tab", "enter")
        assert app.screen is screen and screen.browser.path == other


async def test_down_from_the_path_reaches_the_recent_files(paths, tmp_path):
    first = generate_dataset("sft", 50, tmp_path / "first.jsonl")
    second = generate_dataset("sft", 60, tmp_path / "second.jsonl")
    app = make_app(paths)
    async with app.run_test(size=(120, 36)) as pilot:
        screen = await open_screen(pilot, first, validate=False)
        screen.open_file(second)
        await settle(pilot)
        await burst(pilot, "o")
        prompt = app.screen
        assert isinstance(prompt, OpenDatasetScreen) and prompt.recent == [str(second), str(first)]
        await burst(pilot, "down")
        assert isinstance(app.focused, OptionList) and app.focused.highlighted == 0
        await burst(pilot, "up")  # from the top of the list, back to the path
        assert app.focused is prompt.query_one("#open-path")
        await burst(pilot, "down")
        assert isinstance(app.focused, OptionList) and app.focused.highlighted == 0
        await burst(pilot, "down", "enter")  # the second recent file
        assert app.screen is screen and screen.browser.path == first


async def test_with_no_file_open_the_issues_panel_does_not_say_validating(paths):
    app = make_app(paths)
    async with app.run_test(size=(120, 36)) as pilot:
        await open_screen(pilot, None)
        assert isinstance(app.screen, OpenDatasetScreen)
        shown = screen_text(app)
        assert "validating" not in shown and "no file open" in shown


async def test_opening_a_file_again_returns_to_its_line(paths, tmp_path):
    first = generate_dataset("sft", 300, tmp_path / "first.jsonl")
    second = generate_dataset("sft", 60, tmp_path / "second.jsonl")
    app = make_app(paths)
    async with app.run_test(size=(120, 36)) as pilot:
        screen = await open_screen(pilot, first, validate=False)
        await burst(pilot, ":150", "enter")
        screen.open_file(second)  # leaves the first file at line 150
        await settle(pilot)
        assert screen.browser.describe()["line"] == 1  # never seen before: from the top
        await burst(pilot, ":20", "enter")
        await burst(pilot, "o", "down", "down", "enter")  # the first file, from the recent files
        assert screen.browser.path == first and screen.browser.describe()["line"] == 150
        await burst(pilot, ":90", "enter", "o", str(first), "enter")  # the same path typed again
        assert screen.browser.path == first and screen.browser.describe()["line"] == 90

        await burst(pilot, "escape")  # leaving the screen remembers the line too
        assert app.screen is not screen
        again = await open_screen(pilot, first, validate=False)
        assert again.browser.describe()["line"] == 90
        screen = again
        screen.open_file(second)
        await settle(pilot)
        assert screen.browser.describe()["line"] == 20


# -- split and clean copy: where to write, never overwriting silently -------------------------------


async def test_split_asks_where_to_write_and_asks_before_overwriting(paths, tmp_path):
    path = generate_dataset("sft", 100, tmp_path / "train.jsonl")
    app = make_app(paths)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_screen(pilot, path)
        await burst(pilot, "s")
        prompt = app.screen
        assert isinstance(prompt, WriteFilesScreen) and not prompt.query("#write-use-clean")
        train, valid = tmp_path / "train_train.jsonl", tmp_path / "train_validation.jsonl"
        assert prompt.query_one("#write-train").value == str(train)  # next to the source
        assert prompt.query_one("#write-validation").value == str(valid)
        await burst(pilot, "0.2", "tab", "tab")  # past the training file (already whole)
        prompt.query_one("#write-validation").value = "held.jsonl"  # relative: next to the source
        await burst(pilot, "enter")
        held = tmp_path / "held.jsonl"
        assert app.screen is screen and len(held.read_bytes().splitlines()) == 20
        assert len(train.read_bytes().splitlines()) == 80 and not valid.exists()

        held.write_text("mine\n")
        await burst(pilot, "s", "0.2", "tab", "tab")
        app.screen.query_one("#write-validation").value = "held.jsonl"
        before = train.read_bytes()
        await burst(pilot, "enter")
        confirm = app.screen
        assert isinstance(confirm, ConfirmScreen) and "held.jsonl" in confirm.question and "train_train" in confirm.question
        await burst(pilot, "n")  # kept: nothing written
        assert app.screen is screen and held.read_text() == "mine\n" and train.read_bytes() == before
        await burst(pilot, "s", "0.3", "tab", "tab")
        app.screen.query_one("#write-validation").value = "held.jsonl"
        await burst(pilot, "enter")
        await burst(pilot, "y")  # a confirm takes no typeahead: it guards against keys typed too fast
        assert len(held.read_bytes().splitlines()) == 30 and len(train.read_bytes().splitlines()) == 70


async def test_split_the_clean_lines_in_one_step_when_the_file_has_errors(paths, tmp_path):
    path = generate_dataset("sft", 100, tmp_path / "train.jsonl", "--bad-every", "30")
    original = path.read_bytes()
    app = make_app(paths)
    async with app.run_test(size=(120, 36)) as pilot:
        screen = await open_screen(pilot, path)
        assert screen.browser.report.error_count == 3
        await burst(pilot, "s")
        prompt = app.screen
        assert isinstance(prompt, WriteFilesScreen) and prompt.query_one("#write-use-clean").value
        assert prompt.query_one("#write-clean").value == str(tmp_path / "train.clean.jsonl")
        await burst(pilot, "enter")
        clean = tmp_path / "train.clean.jsonl"
        train, valid = tmp_path / "train.clean_train.jsonl", tmp_path / "train.clean_validation.jsonl"
        assert len(clean.read_bytes().splitlines()) == 97 and path.read_bytes() == original
        assert len(train.read_bytes().splitlines()) + len(valid.read_bytes().splitlines()) == 97
        assert screen.written["split"] == [train, valid] and screen.written["clean"] == [clean]


async def test_clean_copy_asks_where_to_write_and_never_overwrites_silently(paths, tmp_path):
    path = generate_dataset("sft", 100, tmp_path / "train.jsonl", "--bad-every", "30")
    app = make_app(paths)
    async with app.run_test(size=(120, 36)) as pilot:
        screen = await open_screen(pilot, path)
        await burst(pilot, "w")
        prompt = app.screen
        assert isinstance(prompt, WriteFilesScreen)
        assert prompt.query_one("#write-clean").value == str(tmp_path / "train.clean.jsonl")
        await burst(pilot, "enter")
        clean = tmp_path / "train.clean.jsonl"
        assert app.screen is screen and len(clean.read_bytes().splitlines()) == 97

        clean.write_text("mine\n")
        await burst(pilot, "w", "enter")
        assert isinstance(app.screen, ConfirmScreen)
        await burst(pilot, "escape")
        assert clean.read_text() == "mine\n"
        await burst(pilot, "w", "enter")
        await burst(pilot, "y")
        assert len(clean.read_bytes().splitlines()) == 97

        await burst(pilot, "w")  # another name, typed over the one offered
        app.screen.query_one("#write-clean").value = str(tmp_path / "kept.jsonl")
        await burst(pilot, "enter")
        assert len((tmp_path / "kept.jsonl").read_bytes().splitlines()) == 97
        assert not list(tmp_path.glob("*.part"))
