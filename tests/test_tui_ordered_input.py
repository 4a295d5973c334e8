"""A burst of keys (fast typing, a paste over SSH) lands in a form as if typed slowly."""

from __future__ import annotations

from textual.app import App, ComposeResult
from tui_support import burst

from tunedeck.tui.widgets.ordered_input import OrderedInput


class Form(App):
    def __init__(self, **options) -> None:
        super().__init__()
        self.options = options
        self.submitted: list[str] = []

    def compose(self) -> ComposeResult:
        yield OrderedInput(id="first", **self.options)
        yield OrderedInput(id="second")

    def on_mount(self) -> None:
        self.query_one("#first").focus()

    def on_input_submitted(self, event: OrderedInput.Submitted) -> None:
        self.submitted.append(event.value)


async def test_tab_moves_on_before_the_keys_typed_after_it():
    app = Form()
    async with app.run_test() as pilot:
        await pilot.pause()
        await burst(pilot, "abc", "tab", "def", "shift+tab")
        assert app.query_one("#first", OrderedInput).value == "abc"
        assert app.query_one("#second", OrderedInput).value == "def"
        assert app.focused is app.query_one("#first")


async def test_enter_submits_what_was_typed_before_it():
    app = Form()
    async with app.run_test() as pilot:
        await pilot.pause()
        await burst(pilot, "one", "enter", "two", "enter")
        assert app.submitted == ["one", "onetwo"]  # a plain field keeps its text


async def test_a_field_cleared_on_submit_starts_each_entry_afresh():
    app = Form(clear_on_submit=True)
    async with app.run_test() as pilot:
        await pilot.pause()
        await burst(pilot, "one", "enter", "two", "enter", "thr")
        assert app.submitted == ["one", "two"]
        assert app.query_one("#first", OrderedInput).value == "thr"
