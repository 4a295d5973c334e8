"""A key goes only where a profile the user configured sends it, or where they agreed once.

The built-in `openai` profile exists whenever OPENAI_API_KEY is set; here OPENAI_BASE_URL
points it (as the SDK itself honours that variable) at a recording server written in the
test, which must hear nothing, and no key, until the user agrees."""

from __future__ import annotations

import stat

import pytest
from aiohttp import web
from conftest import run_cli
from threaded_api import ThreadedApi

from tunedeck.core.bootstrap import open_service
from tunedeck.core.config import load_config
from tunedeck.core.consent import CONSENT_FILE, give_consent, needs_consent
from tunedeck.core.paths import AppPaths

KEY = "sk-meant-for-a-compatible-endpoint"


class RecordingApi(ThreadedApi):
    """An empty OpenAI-shaped API; records each request's Authorization."""

    def __init__(self) -> None:
        self.authorizations: list[str | None] = []
        super().__init__({("GET", "/v1/fine_tuning/jobs"): self._empty_list, ("GET", "/v1/models"): self._empty_list})

    async def _empty_list(self, request: web.Request) -> web.Response:
        self.authorizations.append(request.headers.get("Authorization"))
        return web.json_response({"object": "list", "data": [], "has_more": False})


@pytest.fixture
def api(monkeypatch):
    with RecordingApi() as server:
        monkeypatch.setenv("OPENAI_API_KEY", KEY)
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        yield server


def test_the_question_names_the_variable_and_the_real_destination(api):
    paths = AppPaths.discover()
    config = load_config(paths.config_file)
    builtin = config.profile("openai")
    host = api.base_url.split("/")[2]
    question = needs_consent(builtin, paths)
    assert question is not None and "$OPENAI_API_KEY" in question and host in question
    assert "api.openai.com" in needs_consent(builtin, paths, environ={"OPENAI_API_KEY": KEY})

    give_consent(builtin, paths)
    assert needs_consent(builtin, paths) is None
    saved = paths.config_dir / CONSENT_FILE
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600 and KEY not in saved.read_text(encoding="utf-8")
    # Agreeing for one destination says nothing about another.
    assert needs_consent(builtin, paths, environ={"OPENAI_API_KEY": KEY}) is not None


def test_a_profile_the_user_configured_never_asks(api):
    paths = AppPaths.discover()
    paths.config_dir.mkdir(parents=True)
    paths.config_file.write_text(f'[profiles.mine]\nbackend = "compatible"\nbase_url = "{api.base_url}"\n')
    config = load_config(paths.config_file)
    assert needs_consent(config.profile("mine"), paths) is None
    assert needs_consent(config.profile("openai"), paths) is not None  # the built-in one beside it still asks


async def test_nothing_is_sent_before_the_user_agrees(api):
    service = await open_service("openai")
    try:
        await service.connect()
        assert service.connection.state == "consent" and not service.is_connected
        assert api.authorizations == []
        await service.give_consent_and_connect()
        assert service.connection.state == "online"
        await service.refresh_jobs()
        assert api.authorizations == [f"Bearer {KEY}"]
    finally:
        await service.close()
    again = await open_service("openai")  # remembered: the next start does not ask
    try:
        await again.connect()
        assert again.connection.state == "online"
    finally:
        await again.close()


def test_the_cli_asks_how_to_agree_and_sends_nothing_until_then(api):
    refused = run_cli("jobs", "list")
    assert refused.returncode == 0 and "tunedeck profiles --confirm openai" in refused.stderr
    assert api.authorizations == []
    agreed = run_cli("profiles", "--confirm", "openai")
    assert agreed.returncode == 0 and "may now send $OPENAI_API_KEY" in agreed.stdout
    listed = run_cli("jobs", "list")
    assert listed.returncode == 0, listed.stderr
    assert api.authorizations and set(api.authorizations) == {f"Bearer {KEY}"}


async def test_the_app_asks_and_connects_only_on_yes(api):
    from tunedeck.tui.app import TunedeckApp
    from tunedeck.tui.screens.confirm import ConfirmScreen

    app = TunedeckApp(profile="openai", poll=False)
    async with app.run_test(size=(120, 36)) as pilot:
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen) and "$OPENAI_API_KEY" in app.screen.question
        await pilot.press("n")
        await pilot.pause()
        assert app.state.connection_state == "offline" and "not sent" in app.state.connection_detail
        assert api.authorizations == []

        await pilot.press("r")  # asks again
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("y")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert app.state.connection_state == "online"
        await app.poll_now()
        assert api.authorizations and set(api.authorizations) == {f"Bearer {KEY}"}
