"""A damaged, truncated or locked cache file: moved aside and replaced, or reported with the
process that holds it; never a traceback, never a hang. The command-line tests run the real
`tunedeck` in a subprocess under a timeout, since a hang is the failure they guard against."""

from __future__ import annotations

import os
import sqlite3
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import run_cli

from tunedeck.core.cache import Cache, CacheError

CLI_TIMEOUT_S = 60


def job(job_id: str, created_at: int = 1) -> dict:
    return {"id": job_id, "object": "fine_tuning.job", "created_at": created_at, "model": "m", "status": "succeeded"}


def metrics(job_id: str, n: int) -> list[dict]:
    return [
        {"id": f"{job_id}-ev{i}", "type": "metrics", "message": f"Step {i}", "data": {"step": i, "train_loss": 0.5}}
        for i in range(n)
    ]


async def write_cache(path: Path, jobs: int = 3, events: int = 400) -> None:
    cache = await Cache.open(path)
    for i in range(jobs):
        await cache.upsert_jobs("local", [job(f"ftjob-{i}", i)])
        await cache.add_events("local", f"ftjob-{i}", metrics(f"ftjob-{i}", events))
    await cache.close()  # the last connection checkpoints the WAL into the file


def damaged_copies(path: Path) -> list[Path]:
    return sorted(p for p in path.parent.iterdir() if ".damaged-" in p.name)


# -- the cache itself ------------------------------------------------------------------------


@pytest.mark.parametrize("damage", ["garbage", "truncated", "short"])
async def test_a_damaged_file_is_moved_aside_and_a_fresh_cache_opens(tmp_path, damage):
    path = tmp_path / "cache" / "cache.sqlite3"
    await write_cache(path)
    original = path.read_bytes()
    if damage == "garbage":
        path.write_bytes(os.urandom(5000))
    elif damage == "truncated":
        path.write_bytes(original[: len(original) // 2])
    else:
        path.write_bytes(original[:100])
    kept = path.read_bytes()

    cache = await Cache.open(path)
    try:
        assert await cache.jobs("local") == []  # fresh: refilled by the next refresh
        await cache.upsert_jobs("local", [job("ftjob-new")])
        assert [j["id"] for j in await cache.jobs("local")] == ["ftjob-new"]
    finally:
        await cache.close()
    (moved,) = damaged_copies(path)
    assert moved.read_bytes() == kept and moved.name.startswith("cache.sqlite3.damaged-")
    assert cache.recovery_note and str(path) in cache.recovery_note and str(moved) in cache.recovery_note


async def test_damage_met_after_opening_is_replaced_at_that_read(tmp_path):
    path = tmp_path / "cache.sqlite3"
    await write_cache(path)
    data = bytearray(path.read_bytes())
    page = 4096
    assert len(data) > 6 * page
    data[3 * page : len(data) - page] = os.urandom(len(data) - 4 * page)  # page 1 (header, schema) intact
    path.write_bytes(bytes(data))

    cache = await Cache.open(path)  # nothing read yet: open runs no integrity check
    try:
        assert cache.recovery_note is None
        assert await cache.events("local", "ftjob-2") == []
        assert cache.recovery_note and str(path) in cache.recovery_note
        assert len(damaged_copies(path)) == 1
        assert await cache.add_events("local", "ftjob-2", metrics("ftjob-2", 3)) == 3  # writes go to the fresh file
    finally:
        await cache.close()


async def test_the_wal_goes_aside_with_its_file(tmp_path):
    path = tmp_path / "cache.sqlite3"
    await write_cache(path)
    holder = sqlite3.connect(path)  # keeps the -wal and -shm files in place
    holder.execute("INSERT INTO meta VALUES ('k', 'v')")
    holder.commit()
    assert Path(f"{path}-wal").exists()
    path.write_bytes(os.urandom(8192))
    try:
        cache = await Cache.open(path)
        await cache.close()
    finally:
        holder.close()
    names = {p.name.rsplit(".damaged-", 1)[1][15:] for p in damaged_copies(path)}  # after the time stamp
    assert {"", "-wal"} <= names


async def test_file_and_folder_are_private_when_created(tmp_path):
    path = tmp_path / "home" / "cache" / "cache.sqlite3"
    cache = await Cache.open(path)
    await cache.upsert_jobs("local", [job("ftjob-a")])
    try:
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert stat.S_IMODE(Path(f"{path}-wal").stat().st_mode) == 0o600
    finally:
        await cache.close()


# -- locks ---------------------------------------------------------------------------------------

HOLDER = """
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None)
if sys.argv[2] == "exclusive-mode":
    db.execute("PRAGMA locking_mode=EXCLUSIVE")  # readers are shut out too
db.execute("BEGIN EXCLUSIVE")
print("holding", flush=True)
sys.stdin.read()
"""


class Holder:
    """A second process holding the cache in an exclusive transaction until closed."""

    def __init__(self, path: Path, mode: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", HOLDER, str(path), mode], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert self.process.stdout.readline().strip() == "holding"
        self.pid = self.process.pid

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=20)
        self.process.stdout.close()


async def test_a_write_blocked_by_another_process_names_it(tmp_path):
    path = tmp_path / "cache.sqlite3"
    await write_cache(path, jobs=1, events=1)
    holder = Holder(path, "transaction")
    try:
        cache = await Cache.open(path, busy_timeout=0.2)
        try:
            assert len(await cache.jobs("local")) == 1  # WAL: a writer does not block readers
            started = time.monotonic()
            with pytest.raises(CacheError) as info:
                await cache.upsert_jobs("local", [job("ftjob-b")])
            assert time.monotonic() - started < 10
        finally:
            await cache.close()
    finally:
        holder.close()
    message = str(info.value)
    assert str(path) in message and "locked" in message
    if sys.platform == "linux":
        assert f"pid {holder.pid}" in message
    assert not damaged_copies(path)  # a locked file is never taken for a damaged one


async def test_open_blocked_by_an_exclusive_holder_names_it(tmp_path):
    path = tmp_path / "cache.sqlite3"
    await write_cache(path, jobs=1, events=1)
    holder = Holder(path, "exclusive-mode")
    try:
        with pytest.raises(CacheError) as info:
            await Cache.open(path, busy_timeout=0.2)
    finally:
        holder.close()
    assert str(path) in str(info.value)
    if sys.platform == "linux":
        assert f"pid {holder.pid}" in str(info.value)


# -- the command line ------------------------------------------------------------------------------


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
@pytest.mark.parametrize("offline", [True, False], ids=["offline", "online"])
def test_jobs_list_survives_a_damaged_cache_and_names_the_file(tmp_path, damage, offline):
    import asyncio

    home = tmp_path / "home"
    path = home / "cache" / "cache.sqlite3"
    asyncio.run(write_cache(path, jobs=2, events=50))
    data = path.read_bytes()
    path.write_bytes(os.urandom(4096) if damage == "garbage" else data[: len(data) // 3])
    # Online, the local profile starts its background backend: conftest's `isolated_home` stops it.
    done = run_cli("jobs", "list", *(["--offline"] if offline else []), home=home, timeout=CLI_TIMEOUT_S)
    assert "Traceback" not in done.stderr
    assert done.returncode == 0, done.stderr
    (moved,) = damaged_copies(path)
    assert str(path) in done.stderr and str(moved) in done.stderr


def test_jobs_list_reports_a_locked_cache_with_its_holder(tmp_path):
    import asyncio

    home = tmp_path / "home"
    path = home / "cache" / "cache.sqlite3"
    asyncio.run(write_cache(path, jobs=1, events=1))
    holder = Holder(path, "exclusive-mode")
    try:
        started = time.monotonic()
        done = run_cli("jobs", "list", "--offline", home=home, timeout=CLI_TIMEOUT_S)
        took = time.monotonic() - started
    finally:
        holder.close()
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert str(path) in done.stderr and "locked" in done.stderr
    if sys.platform == "linux":
        assert f"pid {holder.pid}" in done.stderr
    assert took < 30  # the busy timeout (2.5 s) and the process start, not a hang
    assert not damaged_copies(path)


async def test_the_app_says_its_cache_was_damaged_and_where_it_went(tmp_path):
    from tunedeck.core.bootstrap import open_service
    from tunedeck.core.paths import AppPaths
    from tunedeck.tui.app import TunedeckApp

    paths = AppPaths(config_dir=tmp_path / "config", cache_dir=tmp_path / "cache", data_dir=tmp_path / "data")
    paths.cache_dir.mkdir(parents=True)
    paths.cache_db().write_bytes(b"not a database at all" * 100)
    app = TunedeckApp(lambda: open_service(paths=paths), poll=False, connect=False)
    async with app.run_test(size=(100, 30)) as pilot:
        await app.workers.wait_for_complete()
        await pilot.pause()
        (moved,) = damaged_copies(paths.cache_db())
        toasts = [n for n in app._notifications if n.title == "cache"]
        assert len(toasts) == 1 and str(moved) in toasts[0].message and toasts[0].severity == "warning"
        assert app.state.rows == [] and app.is_running  # a fresh, empty cache; the app goes on
