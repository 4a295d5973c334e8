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


async def poll(pilot) -> None:
    """One poll of the API, its messages landed."""
    await pilot.app.poll_now()
    await settle(pilot)


async def open_job(pilot, job_id: str):
    """The job's screen, pushed and polled once it shows."""
    from tunedeck.tui.screens.job import JobScreen

    await poll(pilot)
    pilot.app.push_screen(JobScreen(job_id))
    await settle(pilot)
    await poll(pilot)
    screen = pilot.app.screen
    assert isinstance(screen, JobScreen)
    return screen


def bench_profile(home, backend, monkeypatch) -> None:
    """A config whose default profile "bench" is a compatible endpoint on `backend` (the
    built-in "local" profile is the next one `p` switches to)."""
    config_dir = home / "config"
    config_dir.mkdir(parents=True)
    (config_dir / "config.toml").write_text(
        f'default_profile = "bench"\n[profiles.bench]\nbackend = "compatible"\n'
        f'base_url = "{backend.base_url}"\napi_key_env = "BENCH_KEY"\n',
        encoding="utf-8",
    )
    monkeypatch.setenv("BENCH_KEY", backend.api_key)
