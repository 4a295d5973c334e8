"""The evaluation's example list (a virtual list): the cursor's row always shows, below the
header that stays put, however far it moves."""

from __future__ import annotations

from textual.app import App, ComposeResult

from tunedeck.core.evaluate.records import EvalExample, ExampleResult
from tunedeck.core.evaluate.results import ExampleRow
from tunedeck.tui.textshot import screen_text
from tunedeck.tui.widgets.eval_examples import EvalExamples


class ListApp(App):
    def compose(self) -> ComposeResult:
        yield EvalExamples()


def rows(n: int) -> tuple[list[ExampleRow], dict[int, EvalExample]]:
    examples = {i: EvalExample(i, i + 1, [{"role": "user", "content": "q"}], f"answer {i}", {}) for i in range(n)}
    results = [ExampleRow(i, {"m": ExampleResult("m", i, "x", 1.0, True)}) for i in range(n)]
    return results, examples


def shown_lines(app) -> list[str]:
    return screen_text(app).splitlines()


async def test_the_cursor_row_stays_on_screen_under_the_header():
    app = ListApp()
    async with app.run_test(size=(60, 12)) as pilot:
        table = app.query_one(EvalExamples)
        table.show(["m"], *rows(300))
        table.focus()
        await pilot.pause()
        await pilot.press("end")
        assert table.selected_index == 299
        lines = shown_lines(app)
        assert lines[0].split()[:2] == ["line", "m"]  # the header stays
        assert any("answer 299" in line for line in lines)
        await pilot.press("pageup", "up")
        index = table.selected_index
        assert index < 299 and any(f"answer {index}" in line for line in shown_lines(app))
        await pilot.press("home")
        lines = shown_lines(app)
        assert table.selected_index == 0 and "answer 0" in lines[1]  # right under the header, not behind it
