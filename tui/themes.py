"""The app's theme: the one the user last picked (`--theme NAME`, or the command palette's
"Change theme"), remembered in the config folder (`core/config.py`).

Every built-in Textual theme works, the low-colour `ansi-dark` and `ansi-light` (the
terminal's own 16 colours) included; the charts tell their curves apart by marker, not by
colour alone, so they stay readable there and under `NO_COLOR=1`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from textual.app import App

from tunedeck.core.config import save_theme, saved_theme

if TYPE_CHECKING:  # pragma: no cover
    from tunedeck.core.paths import AppPaths


def theme_names() -> list[str]:
    """The themes `--theme` takes (Textual's built-in ones)."""
    from textual.theme import BUILTIN_THEMES

    return sorted(BUILTIN_THEMES)


def unknown_theme(name: str) -> str | None:
    """Why `name` cannot be used as a theme (None: it can), naming the ones that can."""
    names = theme_names()
    if name in names:
        return None
    return f"--theme: no theme named {name!r} (known: {', '.join(names)})"


def remember_theme(app: App[Any], paths: AppPaths | None, chosen: str | None) -> None:
    """Show `chosen` (`--theme`), else the theme last picked; from then on remember every
    change. Once per app: a profile switch opens another service on the same folders."""
    if paths is None or getattr(app, "_theme_remembered", False):
        return
    app._theme_remembered = True  # type: ignore[attr-defined]
    name = chosen or saved_theme(paths.config_dir)
    if name and name in app.available_themes:  # a hand-edited, unknown name: the default
        app.theme = name

    def picked(theme: Any) -> None:
        try:
            save_theme(paths.config_dir, theme.name)
        except OSError as exc:  # a read-only config folder: the choice lasts this run
            app.notify(f"{paths.config_dir}: {exc.strerror or exc}", title="theme not remembered", markup=False)

    app.theme_changed_signal.subscribe(app, picked)
    if app.theme == name and name != saved_theme(paths.config_dir):
        picked(app.current_theme)  # `--theme` is a pick too
