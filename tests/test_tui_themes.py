"""Themes: the app remembers the theme the user picked (across restarts, in the config
folder), `tunedeck --theme NAME` shows one for a run (an unknown name is a clear error, exit
2), and charts stay readable in the low-colour themes and under NO_COLOR: their curves are
told apart by marker, and on a light theme nothing is drawn white."""

from __future__ import annotations

import pytest
from rich.style import Style
from test_tui_widgets import point
from textual.app import App, ComposeResult
from tui_support import make_app, settle

from tunedeck.cli.main import main as cli_main
from tunedeck.core.config import APP_SETTINGS_FILE, saved_theme
from tunedeck.tui.textshot import screen_text
from tunedeck.tui.widgets.compare_chart import CompareChart, Curve, look
from tunedeck.tui.widgets.metric_chart import FULL_LOOK, VALID_LOOK, MetricChart

BRAILLE = range(0x2801, 0x2900)


async def test_the_theme_picked_is_remembered_across_restarts(paths):
    app = make_app(paths, connect=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        assert app.theme == "textual-dark"  # nothing picked yet
        app.theme = "ansi-dark"  # as the command palette's "Change theme" does
        await settle(pilot)
    assert saved_theme(paths.config_dir) == "ansi-dark"
    app = make_app(paths, connect=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        assert app.theme == "ansi-dark"


async def test_a_theme_given_for_the_run_is_shown_and_remembered(paths):
    app = make_app(paths, connect=False, theme="ansi-light")
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        assert app.theme == "ansi-light"
    assert saved_theme(paths.config_dir) == "ansi-light"


async def test_a_damaged_or_unknown_remembered_theme_falls_back_to_the_default(paths):
    paths.config_dir.mkdir(parents=True)
    for content in ("{not json", '{"theme": "no-such-theme"}'):
        (paths.config_dir / APP_SETTINGS_FILE).write_text(content, encoding="utf-8")
        app = make_app(paths, connect=False)
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot)
            assert app.theme == "textual-dark"


def test_an_unknown_theme_on_the_command_line_is_a_clear_error(capsys):
    assert cli_main(["--theme", "solarised-darkk"]) == 2
    err = capsys.readouterr().err
    assert "--theme: no theme named 'solarised-darkk'" in err
    assert "ansi-dark" in err and "ansi-light" in err and "textual-dark" in err  # the valid names
    assert "Traceback" not in err


class ChartsApp(App):
    def compose(self) -> ComposeResult:
        yield MetricChart(id="chart")
        yield CompareChart(id="compare")


def plot_characters(app) -> set[str]:
    return set(screen_text(app))


@pytest.mark.parametrize("theme", ["ansi-dark", "ansi-light"])
@pytest.mark.parametrize("no_color", [False, True])
async def test_charts_tell_their_curves_apart_by_marker_in_low_colour(theme, no_color, monkeypatch):
    if no_color:
        monkeypatch.setenv("NO_COLOR", "1")
    app = ChartsApp()
    async with app.run_test(size=(100, 40)) as pilot:
        app.theme = theme
        chart = app.query_one(MetricChart)
        chart.styles.height = 20
        chart.smoothing = False
        chart.add_events(point(s, 3.0 / s, 3.3 / s if s % 5 == 0 else None, 3.2 / s if s % 20 == 0 else None) for s in range(1, 101))
        curves = [Curve(f"run {i}", tuple((x, i + x / 10) for x in range(30)), *look(i)) for i in range(8)]
        app.query_one(CompareChart).set_curves(curves, x_label="step", y_label="loss")
        await pilot.pause()
        await pilot.pause()
        drawn = chart.render().plain
        # Train: braille dots; validation `•`; full validation `+`: three marks, no colour needed.
        assert any(ord(c) in BRAILLE for c in drawn)
        assert VALID_LOOK[0] in drawn and FULL_LOOK[0] in drawn
        compared = app.query_one(CompareChart).render().plain
        markers = [look(i)[0] for i in range(8)]
        assert len(set(markers)) == 8 and all(marker in compared for marker in markers)
        if theme == "ansi-light":  # nothing drawn white on a light page
            for widget in (chart, app.query_one(CompareChart)):
                styles = [Style.parse(s.style) if isinstance(s.style, str) else s.style for s in widget.render().spans]
                colours = {style.color.number for style in styles if style.color is not None}
                assert not colours & {7, 15}
        assert app.no_color is no_color
