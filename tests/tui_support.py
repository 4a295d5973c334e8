"""What the Pilot tests of the app share: the app on a test's own folders, and a settle that
lets workers finish and their messages land (no sleeping)."""

from __future__ import annotations

from tunedeck.core.bootstrap import open_service
from tunedeck.core.paths import AppPaths
from tunedeck.tui.app import TunedeckApp


def make_app(paths: AppPaths, backend=None, **options) -> TunedeckApp:
    """The app on `paths`, with `backend` (a `LocalBackend`) in process when given; the poll
    loop off unless asked for (tests drive polls)."""
    options.setdefault("poll", False)
    return TunedeckApp(lambda: open_service(paths=paths, local_backend=backend), **options)


async def settle(pilot) -> None:
    """Let workers finish and their messages land (no sleeping)."""
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()
    await pilot.pause()
