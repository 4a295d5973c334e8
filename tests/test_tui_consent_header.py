"""The app's header for a built-in profile: where its key would really go (the SDK honours
OPENAI_BASE_URL), and, once the user declines, that it was not sent."""

from __future__ import annotations

from test_consent import KEY, RecordingApi

from tunedeck.tui.app import TunedeckApp
from tunedeck.tui.screens.confirm import ConfirmScreen


async def test_the_header_names_the_real_destination_and_that_the_key_was_not_sent(monkeypatch):
    with RecordingApi() as api:
        monkeypatch.setenv("OPENAI_API_KEY", KEY)
        monkeypatch.setenv("OPENAI_BASE_URL", api.base_url)
        app = TunedeckApp(profile="openai", poll=False)
        async with app.run_test(size=(160, 36)) as pilot:
            await app.workers.wait_for_complete()
            await pilot.pause()
            assert isinstance(app.screen, ConfirmScreen)
            await pilot.press("n")
            await pilot.pause()
            header = app.screen.query_one("#header").header_text().plain
            assert f"openai · {api.base_url}" in header and "○ offline: the key was not sent" in header, header
        assert api.authorizations == []
