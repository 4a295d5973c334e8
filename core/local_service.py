"""The local profile's backend: found running, or started as a background service.

The backend runs in a process of its own (see `tunedeck.backend`'s daemon), never inside
the app, so quitting the app or losing the terminal does not stop training. Started by
the app, it exits by itself once nothing has run and no one has asked anything for
`IDLE_EXIT_S`; started by the user (`tunedeck serve`), it runs until stopped.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from .config import Profile
from .paths import AppPaths

IDLE_EXIT_S = 15 * 60


@dataclass(frozen=True, slots=True)
class LocalEndpoint:
    """Where a local profile's backend listens, with its key. `started`: this call started it."""

    base_url: str
    api_key: str
    pid: int
    started: bool


def serve_command(data_dir: Path, *options: str) -> list[str]:
    """The foreground `tunedeck serve` of `data_dir` that a background service runs, with
    `options` (`--port`, `--idle-exit`...) after it; the app and `serve --detach` build it here.

    `-P`: the service must import the installed tunedeck, not a folder of that name in
    whatever directory the app was started from."""
    return [sys.executable, "-P", "-m", "tunedeck.cli", "serve", "--data-dir", str(data_dir), *options]


def find_or_start(paths: AppPaths, profile: Profile) -> LocalEndpoint:
    """The backend serving `profile`'s data directory; started in the background when none does.

    Blocking (it may wait for a cold start): call it from a thread. Raises the backend's
    `DaemonError` when the service cannot be started."""
    from tunedeck.backend import find_running, load_or_create_api_key, start_detached

    data_dir = paths.local_backend_dir(profile.name)
    running = find_running(data_dir)
    started = running is None
    if running is None:
        # The profile's name: the service reads its settings (model aliases) from the config.
        options = ("--port", str(profile.port), "--time-scale", repr(float(profile.time_scale)), "--profile", profile.name)
        running = start_detached(data_dir, serve_command(data_dir, *options, "--idle-exit", repr(float(IDLE_EXIT_S))))
    return LocalEndpoint(
        base_url=running.base_url, api_key=load_or_create_api_key(data_dir), pid=running.pid, started=started
    )


TRAINING_STATUSES = ("validating_files", "queued", "running")  # not paused: a paused job waits for the user


def still_training_note(where: str, endpoint: LocalEndpoint | None, statuses: list[str]) -> str | None:
    """What a front end says on quitting while jobs still train: that they go on, and where.

    `where`: the profile's destination in words; `endpoint`: the local service, when it is
    one; `statuses`: the jobs' last known statuses."""
    training = sum(1 for status in statuses if status in TRAINING_STATUSES)
    if not training:
        return None
    jobs = "1 job continues" if training == 1 else f"{training} jobs continue"
    if endpoint is None:
        return f"{jobs} on {where} without tunedeck open."
    return (
        f"{jobs} training in the local backend (pid {endpoint.pid}, {endpoint.base_url}) after tunedeck quits.\n"
        "`tunedeck serve status` shows it; `tunedeck serve stop` stops it (unfinished jobs resume at its next start)."
    )
