"""Shared fixtures: an isolated home, generated datasets, and the real local backend in
manual time (jobs advance only when a test says so; nothing sleeps)."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import io
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tunedeck.core.datasets import synth


@pytest.fixture(autouse=True)
def isolated_home(tmp_path, monkeypatch):
    """Nothing a test runs may read or write the real config, cache or keys."""
    home = tmp_path / "home"
    monkeypatch.setenv("TUNEDECK_HOME", str(home))
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    # The transformer trainer's model catalog: an empty Hugging Face cache, no models folder.
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.delenv("TUNEDECK_MODELS_DIR", raising=False)
    yield home
    _stop_background_backends(tmp_path)


def _stop_background_backends(root: Path) -> None:
    """A background backend a test started (the app starts one per local profile) must not
    outlive the test: it would keep its port and its process after the suite. Each one
    publishes an endpoint file in its data directory while it serves."""
    from tunedeck.backend import find_running, stop_running

    for endpoint in root.rglob("endpoint.json"):
        running = find_running(endpoint.parent)
        if running is not None and running.pid != os.getpid():  # never the test process's own backend
            stop_running(endpoint.parent, timeout=30)


@pytest.fixture
def paths(tmp_path, monkeypatch):
    """The app's folders under the test's own, with the test's folder as working directory
    (the launch form and the dataset prompts take paths relative to it)."""
    from tunedeck.core.paths import AppPaths

    monkeypatch.chdir(tmp_path)
    return AppPaths(config_dir=tmp_path / "config", cache_dir=tmp_path / "cache", data_dir=tmp_path / "data")


def run_cli(*argv: str, home: Path | None = None, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    """`python -m tunedeck.cli ARGV` in a process of its own (the isolated home unless `home`
    says another), bounded by `timeout`: several of the bugs these runs catch were hangs."""
    env = {**os.environ, **({"TUNEDECK_HOME": str(home)} if home is not None else {})}
    return subprocess.run(
        [sys.executable, "-m", "tunedeck.cli", *argv], capture_output=True, text=True, env=env, timeout=timeout
    )


async def eventually(check: Callable[[], Any], what: str, timeout: float = 90, pause: Callable[[], Any] | None = None):
    """Await until `check()` (sync or async) gives something truthy, and return it; fail naming
    `what` at the deadline. `pause()` lets the app (or the loop) run between looks. For waits
    on other processes, whose time a test cannot drive."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        await (pause() if pause is not None else asyncio.sleep(0.1))


async def launch_and_finish(backend, path) -> str:
    """A job of the built-in model on `path`, launched through the service and trained to the
    end on the manual `backend`; its id (the CLI's tests read it back)."""
    from tunedeck.backend import BUILTIN_BASE_MODEL
    from tunedeck.core.bootstrap import open_service
    from tunedeck.core.launch.request import LaunchRequest

    service = await open_service(local_backend=backend)
    await service.connect()
    job = await service.launch(LaunchRequest(training_path=path, model=BUILTIN_BASE_MODEL))
    await asyncio.to_thread(backend.run_until_settled)
    await service.close()
    return job.id


def generate_dataset(kind: str, n: int, out: Path, *extra: str) -> Path:
    """Write a synthetic dataset (`tunedeck.core.datasets.synth`, its command-line flags);
    the planted line numbers it reports stay out of the test's captured output."""
    with contextlib.redirect_stderr(io.StringIO()):
        synth.main([kind, str(n), str(out), *extra])
    return out


@pytest.fixture
def sft_file(tmp_path) -> Path:
    return generate_dataset("sft", 40, tmp_path / "train.jsonl", "--learnable")


@pytest.fixture
def manual_backend(tmp_path):
    """The real local backend on loopback, advancing jobs only when told."""
    from tunedeck.backend import LocalBackend

    backend = LocalBackend(data_dir=tmp_path / "backend", auto_advance=False)
    backend.start()
    yield backend
    backend.stop()


CLOCK_START = 1_750_000_000


class FakeClock:
    """The backend's time, moved only by the test (`clock.now = ...`)."""

    def __init__(self, start: float = CLOCK_START) -> None:
        self.now = float(start)

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def backend(tmp_path, clock):
    """The local backend in the test's own event loop, in manual time, on the fake clock."""
    from tunedeck.backend import LocalBackend

    local = LocalBackend(tmp_path / "backend", auto_advance=False, clock=clock)
    await local.start_async()
    yield local
    await local.stop_async()


def _sdk(kind: str, backend):
    """The real SDK pointed at a backend, with its key and retries off so errors surface as they are."""
    import openai

    return getattr(openai, kind)(base_url=backend.base_url, api_key=backend.api_key, max_retries=0)


@pytest.fixture
async def client(backend):
    sdk = _sdk("AsyncOpenAI", backend)
    yield sdk
    await sdk.close()


@pytest.fixture
def threaded_backend(tmp_path, clock):
    """The same backend in a thread of its own, for tests that use the blocking SDK."""
    from tunedeck.backend import LocalBackend

    local = LocalBackend(tmp_path / "backend", auto_advance=False, clock=clock)
    local.start()
    yield local
    local.stop()


@pytest.fixture
def sync_client(threaded_backend):
    sdk = _sdk("OpenAI", threaded_backend)
    yield sdk
    sdk.close()


@pytest.fixture
async def threaded_aclient(threaded_backend):
    sdk = _sdk("AsyncOpenAI", threaded_backend)
    yield sdk
    await sdk.close()
