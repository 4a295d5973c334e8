"""The dataset browser with Pilot, on generated files: opening before the index is done,
navigation, error jumping, search, views, actions, and literal display of hostile data.

Nothing sleeps: the index is driven step by step where the test needs it unfinished
(`auto_index=False` + `screen.browser.index_step`), and `settle()` waits for the workers.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
from pathlib import Path

import pytest
from conftest import generate_dataset
from rich.console import Console
from tui_support import settle

from tunedeck.core.bootstrap import open_service
from tunedeck.core.paths import AppPaths
from tunedeck.tui.app import TunedeckApp
from tunedeck.tui.screens.dataset import DatasetScreen
from tunedeck.tui.screens.dataset_prompts import AskScreen, OpenDatasetScreen, WriteFilesScreen
from tunedeck.tui.screens.help import HelpScreen
from tunedeck.tui.screens.launch import LaunchScreen
from tunedeck.tui.textshot import screen_text
from tunedeck.tui.widgets.example_view import RawView, example_renderable
from tunedeck.tui.widgets.issue_list import IssueList

HOSTILE = "[@click=app.quit]ok[/] [/ \x1b]52;c;aGVsbG8=\x07 \x1b]0;pwned\x1b\\ [bold]x"


def make_app(paths: AppPaths) -> TunedeckApp:
    return TunedeckApp(lambda: open_service(paths=paths), poll=False, connect=False)


async def open_screen(pilot, path: Path, **options) -> DatasetScreen:
    await settle(pilot)
    screen = DatasetScreen(path, **options)
    pilot.app.push_screen(screen)
    await settle(pilot)
    return screen


def bad_file(tmp_path: Path, n: int = 120, every: int = 25) -> Path:
    return generate_dataset("sft", n, tmp_path / "train.jsonl", "--bad-every", str(every))


# -- opening, the index, navigation ---------------------------------------------------------------


async def test_the_first_page_shows_before_the_index_is_done(paths, tmp_path):
    path = generate_dataset("sft", 400, tmp_path / "train.jsonl")
    app = make_app(paths)
    async with app.run_test(size=(120, 36)) as pilot:
        screen = await open_screen(pilot, path, auto_index=False, validate=False, first_batch=4096)
        first = screen.browser.index.line_count
        assert not screen.browser.index.complete and 0 < first < 15
        shown = screen_text(app)
        assert "line 1 ·" in shown and "indexing" in shown
        assert f"{first:>4}" in shown and f"{first + 1:>4} " not in shown

        await pilot.press("G")  # the end is not known yet: follow it as the index grows
        await pilot.pause()
        assert screen.browser.describe()["line"] == first
        while not screen.browser.index.complete:
            screen.browser.index_step(16_384)
            await pilot.pause()
        assert screen.browser.describe() == screen.browser.describe() | {"line": 400, "lines": 400, "indexed": True}
        assert "indexing" not in screen_text(app)


async def test_keys_move_through_the_examples(paths, tmp_path):
    path = generate_dataset("sft", 300, tmp_path / "train.jsonl")
    app = make_app(paths)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_screen(pilot, path, validate=False)
        line = lambda: screen.browser.describe()["line"]  # noqa: E731
        await pilot.press("j", "j", "down")
        assert line() == 4
        await pilot.press("k")
        assert line() == 3
        await pilot.press("pagedown")
        page = line() - 3
        assert page >= 5
        await pilot.press("pageup")
        assert line() == 3
        await pilot.press("G")
        assert line() == 300
        await pilot.press("g")
        assert line() == 1
        await pilot.press("colon", *"250", "enter")
        await pilot.pause()
        assert line() == 250
        assert "line 250 ·" in screen_text(app)
        await pilot.press("ctrl+g", *"9999", "enter")
        await pilot.pause()
        assert line() == 300  # past the end: the last line, and a note


async def test_a_jump_past_the_index_waits_for_it(paths, tmp_path):
    path = generate_dataset("sft", 400, tmp_path / "train.jsonl")
    app = make_app(paths)
    async with app.run_test(size=(120, 36)) as pilot:
        screen = await open_screen(pilot, path, auto_index=False, validate=False, first_batch=4096)
        screen.browser.goto_line(350)
        await pilot.pause()
        assert screen.browser.pending_jump == 350 and "line 350: waiting for the index" in screen_text(app)
        while screen.browser.pending_jump is not None:
            screen.browser.index_step(32_768)
            await pilot.pause()
        assert screen.browser.describe()["line"] == 350 and "line 350 ·" in screen_text(app)


# -- validation: errors, jumping, filtering, marking --------------------------------------------------


async def test_errors_are_listed_and_jumped_to(paths, tmp_path):
    path = bad_file(tmp_path)
    app = make_app(paths)
    async with app.run_test(size=(120, 36)) as pilot:
        screen = await open_screen(pilot, path)
        assert screen.browser.report is not None and screen.browser.error_lines == [25, 50, 75, 100]
        issues = screen.query_one(IssueList)
        assert "4 errors" in issues.border_title
        line = lambda: screen.browser.describe()["line"]  # noqa: E731
        await pilot.press("right_square_bracket")
        assert line() == 25
        await pilot.press("right_square_bracket", "right_square_bracket")
        assert line() == 75
        await pilot.press("left_square_bracket")
        assert line() == 50
        await pilot.press("n")  # no search: n goes to the next error
        assert line() == 75
        await pilot.press("N", "N", "N")
        assert line() == 100  # wrapped past the first
        assert "✖ line 100 not_an_object" in screen_text(app)
        await pilot.press("left_square_bracket", "left_square_bracket")
        assert line() == 50
        assert " ✖ messages  no 'messages' key" in screen_text(app)  # the missing field is marked

        await pilot.press("e")
        assert screen.browser.examples.row_count == 4 and line() == 50
        assert "errors only: 4 of 120 lines" in screen_text(app)
        await pilot.press("g")
        assert line() == 25
        await pilot.press("escape")  # leaves the filter, stays on the line
        assert not screen.browser.errors_only and line() == 25 and screen.browser.examples.row_count == 120


async def test_choosing_an_issue_jumps_to_its_line_and_marks_the_field(paths, tmp_path):
    rows = [{"messages": [{"role": "user", "content": f"q{n}"}, {"role": "assistant", "content": "a"}]} for n in range(12)]
    rows[7]["messages"][1]["role"] = "robot"
    path = tmp_path / "train.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    app = make_app(paths)
    async with app.run_test(size=(120, 36)) as pilot:
        screen = await open_screen(pilot, path)
        issues = screen.query_one(IssueList)
        chosen = next(i for i, issue in enumerate(issues.issues) if issue.line == 8)
        await pilot.press("i")
        assert issues.has_focus
        issues.action_move_to(chosen)
        await pilot.press("enter")
        await pilot.pause()
        assert screen.browser.describe()["line"] == 8 and screen.browser.examples.has_focus
        shown = screen_text(app)
        assert "✖ messages[1].role" in shown and "robot" in shown


# -- search ----------------------------------------------------------------------------------------------


async def test_search_counts_every_matching_line_and_n_walks_them(paths, tmp_path):
    path = generate_dataset("sft", 500, tmp_path / "train.jsonl")
    expected = [n for n, raw in enumerate(path.read_bytes().splitlines(), 1) if b"warranty" in raw.lower()]
    app = make_app(paths)
    async with app.run_test(size=(120, 36)) as pilot:
        screen = await open_screen(pilot, path, validate=False)
        await pilot.press("j" ,"j")
        await pilot.press("slash")
        assert isinstance(app.screen, AskScreen)
        await pilot.press(*"warranty", "enter")
        await settle(pilot)
        assert screen.browser.search is not None and screen.browser.search.finished
        assert list(screen.browser.search.lines()) == expected
        first = next(n for n in expected if n >= 3)
        assert screen.browser.describe()["line"] == first  # the first hit from where the cursor was
        assert f"/warranty: {len(expected)} matches" in screen_text(app)
        await pilot.press("n")
        assert screen.browser.describe()["line"] == expected[expected.index(first) + 1]
        await pilot.press("N", "N")
        assert screen.browser.describe()["line"] == expected[expected.index(first) - 1]
        await pilot.press("escape")  # clears the search
        assert screen.browser.search is None and "/warranty" not in screen_text(app)


async def test_escape_cancels_a_running_search(paths, tmp_path):
    path = generate_dataset("sft", 400, tmp_path / "train.jsonl")
    app = make_app(paths)
    async with app.run_test(size=(120, 36)) as pilot:
        # The index stays unfinished, so the search waits for it: it is still running at escape.
        screen = await open_screen(pilot, path, auto_index=False, validate=False, first_batch=4096)
        screen.browser.start_search("billing")
        await pilot.pause()
        assert "esc cancels" in screen_text(app)
        await pilot.press("escape")
        await settle(pilot)
        assert screen.browser.search.finished and screen.browser.search.cancelled
        assert "(cancelled)" in screen_text(app)
        await pilot.press("escape")
        assert screen.browser.search is None


# -- rendering --------------------------------------------------------------------------------------------


async def test_hostile_text_is_shown_literally(paths, tmp_path):
    example = {
        "messages": [
            {"role": "system", "content": HOSTILE},
            {"role": HOSTILE, "content": "q"},
            {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function", "function": {"name": HOSTILE, "arguments": json.dumps({"k": HOSTILE})}}]},
        ]
    }
    path = tmp_path / "[b]x[@click=app.quit].jsonl"
    broken = "{not json " + HOSTILE  # raw control bytes, outside any JSON escaping
    path.write_text(json.dumps(example, ensure_ascii=False) + "\n" + broken + "\n")
    app = make_app(paths)
    async with app.run_test(size=(120, 36)) as pilot:
        screen = await open_screen(pilot, path)
        for keys in ([], ["r"], ["t"], ["escape", "j"], ["r"]):
            await pilot.press(*keys)
            await pilot.pause()
            shown = screen_text(app)
            assert "\x1b" not in shown and "\x07" not in shown, keys
            assert "[b]x[@click=app.quit].jsonl" in shown
        raw = "".join(screen.query_one(RawView).lines)
        assert "[@click=app.quit]ok[/] [/ ␛]52;c;aGVsbG8=␇" in raw and "\x1b" not in raw
        await pilot.press("escape", "k")
        await pilot.pause()
        shown = screen_text(app)
        assert "[@click=app.quit]ok[/] [/ ␛]52;c;aGVsbG8=␇ ␛]0;pwned␛\\ [bold]x" in shown
        assert shown.count("[@click=app.quit]ok[/]") >= 4  # content, role, tool name, arguments
        await pilot.press("j")
        await pilot.pause()
        assert "{not json [@click=app.quit]ok[/] [/ ␛]52" in screen_text(app)
        await pilot.click("#example-view", offset=(14, 2))  # on the fake link: nothing happens
        await pilot.pause()
        assert app.is_running


def rendered(renderable, width: int = 100) -> tuple[str, Console]:
    console = Console(width=width, file=io.StringIO(), record=True, color_system="truecolor")
    console.print(renderable)
    return console.export_text(), console


async def test_dpo_side_by_side_and_weight_zero_dimmed(tmp_path):
    from tunedeck.core.lineindex import LineIndex

    dpo = {
        "input": {"messages": [{"role": "user", "content": "Greet me"}]},
        "preferred_output": [{"role": "assistant", "content": "Hello, friend"}],
        "non_preferred_output": [{"role": "assistant", "content": "Go away"}],
    }
    sft = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "old answer", "weight": 0}, {"role": "assistant", "content": "new answer"}]}
    path = tmp_path / "mixed.jsonl"
    path.write_text(json.dumps(dpo) + "\n" + json.dumps(sft) + "\n")
    index = LineIndex.open(path)

    text, _ = rendered(example_renderable(index, 1, "dpo", [], None, None))
    row = next(line for line in text.splitlines() if "Hello, friend" in line)
    assert "Go away" in row  # preferred and rejected on the same row
    header = next(line for line in text.splitlines() if "preferred" in line)
    assert "✓ preferred" in header and "✗ rejected" in header

    console = Console(width=100, file=io.StringIO(), color_system="truecolor")
    segments = list(console.render(example_renderable(index, 2, "sft", [], None, None)))

    def style_of(words: str):
        return next(seg.style for seg in segments if words in seg.text)

    assert style_of("old answer").dim and style_of("weight 0: not trained").dim
    assert style_of("new answer") is None or not style_of("new answer").dim


@pytest.mark.parametrize("size", [(80, 24), (120, 36)])
async def test_every_view_renders_at_common_sizes(paths, tmp_path, size):
    path = bad_file(tmp_path, n=200, every=40)
    app = make_app(paths)
    async with app.run_test(size=size) as pilot:
        screen = await open_screen(pilot, path)
        for keys, expect in ((), "conversation"), (("r",), "raw"), (("t",), "estimate"), (("t", "question_mark"), "Dataset screen"):
            await pilot.press(*keys)
            await settle(pilot)
            shown = screen_text(app)
            assert expect in shown, keys
            assert all(len(line) <= size[0] for line in shown.splitlines())
        await pilot.press("escape")
        await pilot.press("t")
        await settle(pilot)
        assert "tokens per example" in screen_text(app)
        screen.query_one("#stats").scroll_end(animate=False)
        await pilot.pause()
        shown = screen_text(app)
        assert "messages per example" in shown and "labels (from the last assistant answer)" in shown
        assert "billing" in shown and all(len(line) <= size[0] for line in shown.splitlines())


async def test_help_lists_the_dataset_keys(paths, tmp_path):
    path = generate_dataset("sft", 20, tmp_path / "train.jsonl")
    app = make_app(paths)
    async with app.run_test(size=(120, 36)) as pilot:
        await open_screen(pilot, path, validate=False)
        await pilot.press("question_mark")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        text = "\n".join(f"{k.keys}\t{k.description}" for s in app.screen.sections for k in s.keys)
        for needed in ("Jump to line N", "Search text across the file", "Next line with an error", "Write a copy without the invalid lines"):
            assert needed in text
        assert app.screen.sections[0].title == "Dataset screen"


# -- actions, opening from the app ---------------------------------------------------------------------


async def test_clean_copy_split_and_launch(paths, tmp_path):
    path = bad_file(tmp_path, n=100, every=30)
    original = path.read_bytes()
    app = make_app(paths)
    async with app.run_test(size=(120, 36)) as pilot:
        screen = await open_screen(pilot, path)
        await pilot.press("s")
        assert isinstance(app.screen, WriteFilesScreen)
        # Untick "split the clean lines" (the names offered follow), back to a field, enter:
        await pilot.press("tab", "tab", "tab", "space", "shift+tab")
        assert app.screen.query_one("#write-train").value == str(tmp_path / "train_train.jsonl")
        await pilot.press("enter")  # the bad lines stop the split, and the message says what to do
        await settle(pilot)
        assert not (tmp_path / "train_train.jsonl").exists() and app.screen is screen
        await pilot.press("w", "enter")
        await settle(pilot)
        clean = tmp_path / "train.clean.jsonl"
        assert len(clean.read_bytes().splitlines()) == 97 and path.read_bytes() == original

        screen.open_file(clean)
        await settle(pilot)
        assert screen.browser.report is not None and screen.browser.report.error_count == 0
        await pilot.press("s")
        assert isinstance(app.screen, WriteFilesScreen) and not app.screen.query("#write-use-clean")
        await pilot.press(*"0.2", "enter")
        await settle(pilot)
        train, valid = tmp_path / "train.clean_train.jsonl", tmp_path / "train.clean_validation.jsonl"
        assert len(valid.read_bytes().splitlines()) == 19 or len(valid.read_bytes().splitlines()) == 20
        await pilot.press("l")
        await settle(pilot)
        assert isinstance(app.screen, LaunchScreen)
        assert app.screen.query_one("#training-path").value == str(train)
        assert app.screen.query_one("#validation-path").value == str(valid)


async def test_d_opens_the_browser_from_a_prompt_and_remembers_the_file(paths, tmp_path):
    path = generate_dataset("sft", 30, tmp_path / "train.jsonl")
    app = make_app(paths)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        await pilot.press("d")
        await settle(pilot)
        assert isinstance(app.screen, OpenDatasetScreen) and not app.screen.recent
        await pilot.press(*"nothere.jsonl", "enter")
        assert "no such file" in app.screen.error_text
        app.screen.query_one("#open-path").value = ""
        await pilot.press(*os.path.relpath(path), "enter")
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, DatasetScreen) and screen.browser.path == path
        await pilot.press("o")
        await settle(pilot)
        assert isinstance(app.screen, OpenDatasetScreen) and app.screen.recent == [str(path)]
        await pilot.press("ctrl+o")
        await pilot.pause()
        assert app.screen.query_one("#open-tree").display
        await pilot.press("escape")
        await settle(pilot)
        assert app.screen is screen  # still on the same file
        await pilot.press("escape")
        await settle(pilot)
        assert not isinstance(app.screen, DatasetScreen)


async def test_choosing_a_base_model_reprices_and_recounts(paths, tmp_path, monkeypatch):
    from test_tui_dataset_pricing import openai_profile
    from textual.widgets import Select

    openai_profile(paths, monkeypatch)  # a provider's prices (the local backend charges nothing)
    path = generate_dataset("sft", 60, tmp_path / "train.jsonl")
    app = make_app(paths)
    async with app.run_test(size=(120, 36)) as pilot:
        screen = await open_screen(pilot, path)
        await pilot.press("t")
        await settle(pilot)
        assert screen.browser.report.encoding == "o200k_base" and "at $5.00/1M" in screen_text(app)
        select = screen.query_one("#stats-model", Select)
        select.value = "gpt-4o-mini-2024-07-18"  # the same tokenizer: priced again at once
        await settle(pilot)
        assert "at $3.00/1M" in screen_text(app) and screen.browser.report.encoding == "o200k_base"
        select.value = "gpt-3.5-turbo-0125"  # another tokenizer: the engine counts again
        await settle(pilot)
        assert screen.browser.report.encoding == "cl100k_base" and screen.browser.report.model == "gpt-3.5-turbo-0125"
        assert "at $8.00/1M" in screen_text(app)


def test_background_work_runs_below_the_ui_and_its_errors_come_back():
    import sys

    from tunedeck.tui.widgets.background_work import at_low_priority

    before = os.nice(0)
    after = at_low_priority(lambda: os.nice(0))
    assert os.nice(0) == before  # this thread keeps its priority
    if sys.platform.startswith("linux"):
        assert after == min(19, before + 10)
    with pytest.raises(ZeroDivisionError):
        at_low_priority(lambda: 1 / 0)


async def test_the_cursor_row_stays_in_view_when_the_terminal_shrinks(paths, tmp_path):
    from tunedeck.tui.widgets.example_list import ExampleList

    path = generate_dataset("sft", 300, tmp_path / "train.jsonl")
    app = make_app(paths)
    async with app.run_test(size=(160, 48)) as pilot:
        screen = await open_screen(pilot, path, validate=False)
        examples = screen.query_one(ExampleList)
        await pilot.press(*["j"] * 30)
        assert screen.browser.describe()["line"] == 31
        await pilot.resize_terminal(80, 24)
        await settle(pilot)
        top, height = int(examples.scroll_y), examples.scrollable_content_region.height
        assert top <= examples.cursor < top + height
        assert f"{31:>4} " in screen_text(app)


# -- background work that fails unexpectedly ----------------------------------------------------------


async def finish_failing_workers(pilot) -> None:
    """Like `settle()`, for workers meant to fail (waiting on a failed worker raises its error)."""
    await asyncio.gather(*(worker.wait() for worker in list(pilot.app.workers)), return_exceptions=True)
    await pilot.pause()
    await pilot.pause()


def a_bug(*args, **kwargs):
    raise RuntimeError("a bug, not a bad file")


async def test_workers_failing_unexpectedly_leave_nothing_under_way(paths, tmp_path, monkeypatch):
    from tunedeck.core import datasets, linesearch
    from tunedeck.core.lineindex import LineIndex

    monkeypatch.setattr(LineIndex, "build", a_bug)
    monkeypatch.setattr(datasets, "validate_file", a_bug)
    monkeypatch.setattr(linesearch, "search", a_bug)
    path = generate_dataset("sft", 400, tmp_path / "train.jsonl")
    app = make_app(paths)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        screen = DatasetScreen(path, first_batch=4096)
        app.push_screen(screen)
        await finish_failing_workers(pilot)
        browser = screen.browser
        assert "index stopped at" in browser.status_line and "indexing" not in browser.status_line
        assert "validating" not in browser.status_line and browser.issue_list.unavailable == "validation failed"
        screen.browser.goto_line(350)  # past the index, which will not grow: nothing waits for it
        assert screen.browser.pending_jump is None and screen.browser.describe()["line"] == browser.index.line_count
        screen.browser.start_search("billing")
        await finish_failing_workers(pilot)
        assert screen.browser.search.finished and "esc cancels" not in browser.status_line
        assert browser.step_back() and screen.browser.search is None
        toasts = [n.message for n in app._notifications]
        assert sum("RuntimeError: a bug, not a bad file" in t for t in toasts) == 3, toasts  # index, validation, search
        assert app.is_running


async def test_a_recount_failing_unexpectedly_keeps_the_report(paths, tmp_path, monkeypatch):
    from test_tui_dataset_pricing import openai_profile
    from textual.widgets import Select

    from tunedeck.core import datasets

    openai_profile(paths, monkeypatch)  # a provider's models: one with another tokenizer to pick
    path = generate_dataset("sft", 60, tmp_path / "train.jsonl")
    app = make_app(paths)
    async with app.run_test(size=(120, 36)) as pilot:
        screen = await open_screen(pilot, path)
        await pilot.press("t")
        monkeypatch.setattr(datasets, "validate_file", a_bug)
        screen.query_one("#stats-model", Select).value = "gpt-3.5-turbo-0125"  # another tokenizer: counted again
        await finish_failing_workers(pilot)
        assert screen.browser.validation_fraction is None and "validating" not in screen.browser.status_line
        shown = screen_text(app)
        assert screen.browser.report.encoding == "o200k_base" and "counted with o200k_base: recounting" in shown
        assert "recounting with its tokenizer" not in shown


async def test_a_file_action_failing_unexpectedly_is_reported(paths, tmp_path, monkeypatch):
    from tunedeck.core.datasets import split

    monkeypatch.setattr(split, "split_file", a_bug)
    path = generate_dataset("sft", 30, tmp_path / "train.jsonl")
    app = make_app(paths)
    async with app.run_test(size=(120, 36)) as pilot:
        screen = await open_screen(pilot, path, validate=False)
        await pilot.press("s", "enter")
        await finish_failing_workers(pilot)
        assert any("RuntimeError: a bug, not a bad file" in n.message for n in app._notifications)
        assert app.screen is screen and not screen.written
