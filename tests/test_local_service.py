"""The local backend as a background service: training outlives the app and the terminal,
the next start attaches to it, and a backend that went away is taken over without the user.

These run real processes (the service is a `tunedeck serve` in a session of its own), so
they wait on what those processes do, each wait bounded by a deadline.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

import openai
import pytest
from conftest import eventually, run_cli

from tunedeck.backend import BUILTIN_BASE_MODEL, find_running, load_or_create_api_key, stop_running
from tunedeck.core.bootstrap import open_service
from tunedeck.core.launch.request import LaunchRequest
from tunedeck.core.paths import AppPaths
from tunedeck.core.service import ConnectionChanged

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX sessions and signals")



def _slow_local_profile(home: Path, time_scale: float = 2.0) -> None:
    """Steps of 0.1 s: a job long enough to quit, kill or restart things in the middle of it."""
    config = home / "config" / "config.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(f'[profiles.local]\nbackend = "local"\ntime_scale = {time_scale}\n', encoding="utf-8")


def _metric_steps(client: openai.OpenAI, job_id: str) -> list[int]:
    events = client.fine_tuning.jobs.list_events(job_id, limit=1000).data
    return sorted(e.data["step"] for e in events if e.type == "metrics" and e.data)


def _client(data_dir: Path) -> openai.OpenAI:
    running = find_running(data_dir)
    assert running is not None
    return openai.OpenAI(base_url=running.base_url, api_key=load_or_create_api_key(data_dir), max_retries=0)


def test_serve_detach_status_and_stop(isolated_home):
    started = run_cli("serve", "--detach", "--port", "0")
    assert started.returncode == 0, started.stderr
    assert "in the background" in started.stdout and "serve stop" in started.stdout

    status = run_cli("serve", "status", "--json")
    report = json.loads(status.stdout)
    assert status.returncode == 0 and report["running"] is True
    pid = report["pid"]
    assert os.getsid(pid) == pid  # a session of its own: no terminal hang-up reaches it
    assert report["jobs"] == {} and report["jobs_error"] is None
    assert Path(report["log_file"]).is_file()

    again = run_cli("serve", "--detach", "--port", "0")
    assert again.returncode == 0 and f"already running at {report['base_url']} (pid {pid})" in again.stdout

    key = run_cli("serve", "--print-key").stdout.strip()
    models = openai.OpenAI(base_url=report["base_url"], api_key=key, max_retries=0).models.list()
    assert BUILTIN_BASE_MODEL in {m.id for m in models.data}

    stopped = run_cli("serve", "stop")
    assert stopped.returncode == 0 and f"pid {pid}" in stopped.stdout
    after = run_cli("serve", "status")
    assert after.returncode == 1 and "not running" in after.stdout
    assert run_cli("serve", "stop").stdout.startswith("not running")


async def test_training_outlives_the_app_and_the_next_start_attaches(isolated_home, sft_file):
    _slow_local_profile(isolated_home)
    paths = AppPaths.discover()
    data_dir = paths.local_backend_dir("local")
    first = await open_service()
    await first.connect()
    assert first.connection.state == "online" and first.local_endpoint is not None
    assert first.local_endpoint.started
    pid = first.local_endpoint.pid
    job = await first.launch(LaunchRequest(training_path=sft_file, model=BUILTIN_BASE_MODEL))
    client = _client(data_dir)

    async def steps_beyond(n: int):
        steps = await asyncio.to_thread(_metric_steps, client, job.id)
        return steps if steps and steps[-1] > n else None

    await eventually(lambda: steps_beyond(1), "the job's first steps")
    await first.close()  # the app quits

    seen = _metric_steps(client, job.id)[-1]
    await eventually(lambda: steps_beyond(seen), "training to go on while the app is closed")
    assert find_running(data_dir).pid == pid

    second = await open_service()
    await second.connect()
    try:
        assert second.local_endpoint is not None and not second.local_endpoint.started
        assert second.local_endpoint.pid == pid  # attached, not a second backend

        async def finished():
            return (await second.refresh_job(job.id)).status == "succeeded"

        await eventually(finished, "the job to finish")
        await second.sync_events(job.id)
        cached = [e for e in await second.cached_events(job.id) if e.type == "metrics"]
        steps = [e.data["step"] for e in cached]
        assert steps == list(range(1, len(steps) + 1))  # every step once, none lost
    finally:
        await second.close()


async def test_the_app_takes_over_when_its_backend_stops(isolated_home, sft_file):
    service = await open_service()
    await service.connect()
    heard: list[ConnectionChanged] = []
    service.subscribe(lambda event: heard.append(event) if isinstance(event, ConnectionChanged) else None)
    data_dir = AppPaths.discover().local_backend_dir("local")
    try:
        old = service.local_endpoint
        assert old is not None
        assert stop_running(data_dir).pid == old.pid  # `tunedeck serve stop`, or the user's serve ending

        await service.refresh_jobs()  # the next poll: it notices, starts one, and answers

        new = service.local_endpoint
        assert new is not None and new.started and new.pid != old.pid
        assert find_running(data_dir).pid == new.pid
        assert [e.state for e in heard] == ["connecting", "online"]
        assert "reconnected" in heard[-1].detail and new.base_url in heard[-1].detail
        job = await service.launch(LaunchRequest(training_path=sft_file, model=BUILTIN_BASE_MODEL))
        assert job.status in ("validating_files", "queued")
    finally:
        await service.close()


async def test_a_killed_backend_is_restarted_and_its_job_resumes(isolated_home, sft_file):
    _slow_local_profile(isolated_home)
    service = await open_service()
    await service.connect()
    data_dir = AppPaths.discover().local_backend_dir("local")
    try:
        job = await service.launch(LaunchRequest(training_path=sft_file, model=BUILTIN_BASE_MODEL))
        client = _client(data_dir)

        async def trained_some():
            return len(await asyncio.to_thread(_metric_steps, client, job.id)) >= 3

        await eventually(trained_some, "a few steps before the crash")
        os.kill(service.local_endpoint.pid, signal.SIGKILL)  # a crash: no chance to pause or save

        async def finished():
            return (await service.refresh_job(job.id)).status == "succeeded"

        await eventually(finished, "the restarted backend to finish the job")
        assert service.local_endpoint.started
        await service.sync_events(job.id)
        steps = [e.data["step"] for e in await service.cached_events(job.id) if e.type == "metrics"]
        assert steps == list(range(1, len(steps) + 1))  # no step twice after the restart
    finally:
        await service.close()


def test_quitting_says_which_jobs_go_on_and_where():
    from tunedeck.core.local_service import LocalEndpoint, still_training_note

    endpoint = LocalEndpoint("http://127.0.0.1:5000/v1", "k", 4242, started=False)
    assert still_training_note("local backend", endpoint, ["succeeded", "failed"]) is None
    assert still_training_note("local backend", endpoint, ["paused"]) is None
    note = still_training_note("local backend", endpoint, ["running", "queued", "succeeded"])
    assert note.startswith("2 jobs continue training in the local backend (pid 4242, http://127.0.0.1:5000/v1)")
    assert "tunedeck serve stop" in note
    assert still_training_note("api.openai.com", None, ["running"]) == (
        "1 job continues on api.openai.com without tunedeck open."
    )


async def test_the_app_reconnects_by_itself_and_says_on_quit_that_training_goes_on(isolated_home, sft_file):
    from tunedeck.tui.app import TunedeckApp

    _slow_local_profile(isolated_home)
    data_dir = AppPaths.discover().local_backend_dir("local")
    app = TunedeckApp(poll=False)
    async with app.run_test(size=(120, 36)) as pilot:

        async def state(wanted: str):
            await pilot.pause()
            return app.state.connection_state == wanted

        await eventually(lambda: state("online"), "the app to connect")
        first = app.service.local_endpoint
        stop_running(data_dir)  # the backend the app attached to goes away

        async def reconnected():
            return await state("online") and app.service.local_endpoint.pid != first.pid

        await pilot.press("r")
        await eventually(reconnected, "a reconnect")
        assert "reconnected" in app.state.connection_detail
        await app.service.launch(LaunchRequest(training_path=sft_file, model=BUILTIN_BASE_MODEL))
        await pilot.press("r")
        await eventually(lambda: _has_rows(pilot, app), "the job in the list")
        await pilot.press("q")
    assert app.exit_note is not None and app.exit_note.startswith("1 job continues training in the local backend")
    assert find_running(data_dir) is not None  # quitting left it training


async def _has_rows(pilot, app) -> bool:
    await pilot.pause()
    return bool(app.state.rows)


async def test_a_background_backend_with_nothing_to_do_exits_by_itself(isolated_home):
    started = run_cli("serve", "--detach", "--port", "0", "--idle-exit", "1")
    assert started.returncode == 0, started.stderr
    data_dir = AppPaths.discover().local_backend_dir("local")
    running = find_running(data_dir)
    assert running is not None

    async def gone():
        return find_running(data_dir) is None

    await eventually(gone, "the idle backend to exit", timeout=30)
    assert "idle for 1 s with no job to train: stopping" in running.log_file.read_text(encoding="utf-8")


async def test_a_key_file_that_holds_no_key_is_named_not_a_traceback(isolated_home):
    data_dir = AppPaths.discover().local_backend_dir("local")
    data_dir.mkdir(parents=True)
    (data_dir / "api-key").write_bytes(b"\xff\xfe not a key")
    printed = run_cli("serve", "--print-key")
    assert printed.returncode == 1 and "Traceback" not in printed.stderr
    assert str(data_dir / "api-key") in printed.stderr and "delete it" in printed.stderr

    service = await open_service()
    try:
        await service.connect()
        assert service.connection.state == "error" and str(data_dir / "api-key") in service.connection.detail
    finally:
        await service.close()
