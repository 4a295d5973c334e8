"""The grader editor screen with Pilot, mounted alone in a small app: the type, the check as
you type, test runs (on a recording `run_grader`, and on the real local backend), saving
and loading, and what it dismisses with. Nothing sleeps: the check is run when the test says
(`check_now`, what the 0.2 s timer calls), workers are awaited."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from textual.app import App
from textual.widgets import Input, OptionList, Select, Static, TextArea

import tunedeck.tui
from tunedeck.core.bootstrap import open_service
from tunedeck.core.launch.graders import GRADER_TYPES, editor_text, template_for
from tunedeck.core.paths import AppPaths
from tunedeck.tui.screens.confirm import ConfirmScreen
from tunedeck.tui.screens.dataset_prompts import AskScreen
from tunedeck.tui.screens.grader_editor import GraderEditorScreen
from tunedeck.tui.textshot import screen_text

APP_CSS = Path(tunedeck.tui.__file__).parent / "app.tcss"
ROWS = 205  # more than the screen samples (200): a later row is read when asked for


class EditorApp(App):
    """Just the screen, on the app's stylesheet; `results` collects what it dismisses with."""

    CSS_PATH = APP_CSS

    def __init__(self, editor: GraderEditorScreen) -> None:
        super().__init__()
        self.editor = editor
        self.results: list[dict | None] = []

    def on_mount(self) -> None:
        self.push_screen(self.editor, self.results.append)


class RecordingRun:
    """A stand-in for the provider's `graders/run`: records each call, answers `response`."""

    def __init__(self, response: dict) -> None:
        self.response = response
        self.calls: list[tuple[dict, str, dict]] = []

    async def __call__(self, grader: dict, sample: str, item: dict) -> dict:
        self.calls.append((grader, sample, item))
        return self.response


@pytest.fixture
def dataset(tmp_path) -> Path:
    path = tmp_path / "rft.jsonl"
    rows = [{"messages": [{"role": "user", "content": f"line {n}?"}], "answer": str(n)} for n in range(1, ROWS + 1)]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


@pytest.fixture
def paths(tmp_path) -> AppPaths:
    return AppPaths(config_dir=tmp_path / "config", cache_dir=tmp_path / "cache", data_dir=tmp_path / "data")


@pytest.fixture
async def service(manual_backend):
    service = await open_service(local_backend=manual_backend)
    await service.connect()
    yield service
    await service.close()


async def settle(pilot) -> None:
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()
    await pilot.pause()


async def opened(pilot) -> GraderEditorScreen:
    await settle(pilot)  # the rows are sampled
    screen = pilot.app.screen
    assert isinstance(screen, GraderEditorScreen)
    return screen


def shown(screen, selector: str) -> str:
    content = screen.query_one(selector, Static).content
    return getattr(content, "plain", str(content))


async def choose_type(pilot, kind: str) -> None:
    """Open the type list and pick `kind` with the keys."""
    select = pilot.app.screen.query_one("#grader-type", Select)
    steps = GRADER_TYPES.index(kind) - GRADER_TYPES.index(select.value)
    select.focus()
    await pilot.press("enter")
    await pilot.press(*(["down"] * steps if steps > 0 else ["up"] * -steps), "enter")
    await pilot.pause()
    await pilot.pause()


async def type_at(pilot, row: int, column: int, keys: str) -> None:
    area = pilot.app.screen.query_one("#grader-text", TextArea)
    area.focus()
    area.cursor_location = (row, column)
    await pilot.press(*keys)


def line_of(screen: GraderEditorScreen, needle: str) -> tuple[int, int]:
    """(row, column just after `needle`) in the editor's text."""
    for row, line in enumerate(screen.text.splitlines()):
        if needle in line:
            return row, line.index(needle) + len(needle)
    raise AssertionError(f"{needle!r} is not in the grader")


async def test_the_type_swaps_an_untouched_template_and_asks_once_edited(dataset, paths):
    app = EditorApp(GraderEditorScreen(dataset, None, None, paths))
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await opened(pilot)
        # the starting grader reads the dataset's own field
        assert json.loads(screen.text) == template_for("string_check", ["messages", "answer"])
        assert "200 rows read (the first)" in shown(screen, "#grader-title")

        await choose_type(pilot, "text_similarity")
        assert app.screen is screen and json.loads(screen.text)["type"] == "text_similarity"

        await type_at(pilot, *line_of(screen, '"similarity'), "z")
        await choose_type(pilot, "multi")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("n")
        await pilot.pause()
        assert app.screen is screen and screen.query_one("#grader-type", Select).value == "text_similarity"
        assert json.loads(screen.text)["name"] == "similarityz"  # the edit is kept

        await choose_type(pilot, "multi")
        await pilot.press("y")
        await pilot.pause()
        assert json.loads(screen.text) == template_for("multi", ["answer"])


async def test_typing_a_bad_reference_shows_the_problem(dataset, paths):
    app = EditorApp(GraderEditorScreen(dataset, None, None, paths))
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await opened(pilot)
        assert shown(screen, "#grader-problems") == "✓ no problems"
        assert "item.answer  200/200 rows" in shown(screen, "#grader-references")

        await type_at(pilot, *line_of(screen, "{{item.answer"), "s")
        assert screen.check_pending  # checked when typing pauses, not at each key
        screen.check_now()
        problem = "✗ item.answers: in none of the 200 rows read; did you mean item.answer?"
        assert shown(screen, "#grader-problems") == problem
        assert "item.answers  0/200 rows" in shown(screen, "#grader-references")

        await type_at(pilot, *line_of(screen, '"input": "{{sample.output_text'), "x")
        screen.check_now()
        assert "got {{sample.output_textx}}" in shown(screen, "#grader-problems")
        await type_at(pilot, *line_of(screen, '"type": "string_check'), "x")  # a typed type is checked too
        screen.check_now()
        assert "grader.type: expected one of string_check" in shown(screen, "#grader-problems")


async def test_a_test_run_shows_reward_and_sub_scores(dataset, paths):
    scores = {"exact": 1.0, "close": 0.5}
    errors = {"invalid_variable_error": False, "other_error": True}
    metadata = {"name": "combined", "type": "multi", "execution_time": 0.002, "scores": scores, "errors": errors}
    run = RecordingRun({"reward": 0.75, "metadata": metadata, "sub_rewards": scores})
    app = EditorApp(GraderEditorScreen(dataset, template_for("multi", ["answer"]), run, paths))
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await opened(pilot)
        screen.query_one("#grader-line", Input).focus()
        await pilot.press("2", "tab", "4", "ctrl+t")
        await settle(pilot)
        grader, sample, item = run.calls[0]
        assert grader == template_for("multi", ["answer"]) and sample == "4" and item["answer"] == "2"
        result = shown(screen, "#grader-result")
        assert result.startswith("reward 0.75 · row 2 · ran on the provider in 0.002 s")
        assert "\n  exact  1\n  close  0.5\nerrors: other_error" in result

        screen.query_one("#grader-line", Input).value = "203"  # beyond the sampled rows: read on demand
        await pilot.press("ctrl+t")
        await settle(pilot)
        assert run.calls[-1][2]["answer"] == "203"

        screen.query_one("#grader-line", Input).value = "999"
        await pilot.press("ctrl+t")
        await settle(pilot)
        assert shown(screen, "#grader-result") == f"not run: row 999: the file has {ROWS} lines"
        assert len(run.calls) == 2


async def test_test_runs_on_the_real_local_backend(dataset, paths, service):
    app = EditorApp(GraderEditorScreen(dataset, None, service._api.run_grader, paths))
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await opened(pilot)
        await choose_type(pilot, "multi")
        screen.query_one("#grader-sample", Input).focus()
        await pilot.press("1", "enter")  # enter in the answer runs it too
        await settle(pilot)
        result = shown(screen, "#grader-result")
        assert result.startswith("reward 1 · row 1 · ran on the provider")
        assert "\n  exact  1\n  close  1" in result

        await choose_type(pilot, "python")
        await pilot.press("ctrl+t")
        await settle(pilot)
        assert shown(screen, "#grader-result").startswith("reward ")  # the user's code, run by the backend

        await choose_type(pilot, "score_model")
        await pilot.press("ctrl+t")
        await settle(pilot)
        result = shown(screen, "#grader-result")  # asked of a model the local backend does not serve
        assert result.startswith("reward 0") and "model_grader_server_error" in result and "HTTP 404" in result
        assert app.screen is screen  # a refusal is an answer, not a crash


async def test_save_then_load_a_grader(dataset, paths):
    folder = paths.config_dir / "graders"
    folder.mkdir(parents=True)
    (folder / "broken.json").write_text("{")
    app = EditorApp(GraderEditorScreen(dataset, None, None, paths))
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await opened(pilot)
        saved_text = screen.text
        await pilot.press("ctrl+n")
        await pilot.pause()
        assert isinstance(app.screen, AskScreen)
        assert app.screen.query_one(Input).value == "exact_match"  # the grader's own name, offered
        await pilot.press("ctrl+u", *"mine", "enter")
        await pilot.pause()
        assert screen.status_text.startswith("saved as mine")
        assert json.loads((folder / "mine.json").read_text()) == json.loads(saved_text)

        await type_at(pilot, *line_of(screen, '"exact_match'), "z")
        await pilot.press("ctrl+o")
        await pilot.pause()
        listing = screen.query_one("#grader-saved", OptionList)
        assert listing.display and listing.option_count == 1 and listing.get_option_at_index(0).id == "mine"
        assert screen.status_text.startswith("could not read: broken.json: damaged, not JSON")
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen)  # the edit would be lost: asked first
        await pilot.press("y")
        await pilot.pause()
        assert screen.text == saved_text and screen.status_text == "loaded mine"
        assert not listing.display


async def test_ctrl_s_dismisses_with_the_grader_and_errors_block_it(dataset, paths):
    app = EditorApp(GraderEditorScreen(dataset, None, None, paths))
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await opened(pilot)
        await type_at(pilot, 0, 1, "x")  # `{x`: not JSON
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert app.screen is screen and app.results == []
        assert screen.status_text == "1 problem to fix before this grader can be used"
        assert shown(screen, "#grader-problems").startswith("✗ not JSON: Expecting property name")

        await pilot.press("backspace", "ctrl+s")
        await pilot.pause()
        assert app.results == [template_for("string_check", ["answer"])]


async def test_escape_leaves_with_none_and_a_given_grader_is_shown(paths):
    given = {**template_for("text_similarity", []), "name": "mine \x1b]52;c;aGk=\x07\u202e"}
    app = EditorApp(GraderEditorScreen(None, given, None, paths))
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await opened(pilot)
        assert json.loads(screen.text) == given and screen.text == editor_text(given)
        assert screen.query_one("#grader-type", Select).value == "text_similarity"
        assert "item.reference_answer  not checked (no rows)" in shown(screen, "#grader-references")
        terminal = screen_text(app)
        assert "no dataset" in terminal and not {"\x1b", "\x07", "\u202e"} & set(terminal)
        await pilot.press("ctrl+t")  # no dataset: graded on an empty item, by the local code
        await settle(pilot)
        assert shown(screen, "#grader-result").startswith("reward 0 · an empty item · ran on the local grader code")
        await pilot.press("escape")
        await pilot.pause()
        assert app.results == [None]
