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


KEY_CHARACTERS = {"enter": "\r", "tab": "\t", "shift+tab": None, "escape": "\x1b", "backspace": "\x7f", "space": " ",
                  "up": None, "down": None, "left": None, "right": None, "home": None, "end": None, "ctrl+s": None}
"""The key names `burst` sends as one key (anything else is typed character by character)."""


async def burst(pilot, *keys: str) -> None:
    """Keys as a fast typist's terminal (or a paste over SSH) delivers them: all queued at once,
    nothing waits between them (`pilot.press` lets the app catch up after each key). A key is
    a name in KEY_CHARACTERS or a string typed character by character."""
    from textual import events
    from textual.keys import _character_to_key

    for key in keys:
        if key in KEY_CHARACTERS:
            pilot.app.post_message(events.Key(key, KEY_CHARACTERS[key]))
            continue
        for char in key:
            pilot.app.post_message(events.Key(char if char.isalnum() else _character_to_key(char), char))
    await settle(pilot)


async def launch_job(app, training, validation=None, **hyper) -> str:
    """A job of the built-in model on `training` (3 epochs, batch 4 unless `hyper` says
    otherwise), launched through the service as the launch form does; its id."""
    from tunedeck.core.launch.request import LaunchRequest

    hyperparameters = {"n_epochs": 3, "batch_size": 4, **hyper}
    request = LaunchRequest(
        training_path=training, validation_path=validation, model="tunedeck-ngram", hyperparameters=hyperparameters
    )
    return (await app.service.launch(request)).id


async def running_job(pilot, backend, training):
    """A job launched on `training` and four steps into training on the manual `backend`,
    its screen open."""
    import asyncio

    await settle(pilot)
    job_id = await launch_job(pilot.app, training)
    await asyncio.to_thread(backend.advance, job_id, 4)
    screen = await open_job(pilot, job_id)
    assert screen.job.status == "running"
    return screen
