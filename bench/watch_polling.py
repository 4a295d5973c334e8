#!/usr/bin/env python3
"""What watching many running jobs costs: API requests per minute and UI stalls; prints figures.

`--jobs` jobs (50) run on the local backend for the whole measurement: the backend runs in a
child process in manual time, each job is one step in (running) before the measurement, and
a driver thread trains one step of one job at a time, in turn, `--steps-per-second` steps a
second in all (10: each job gets a new metrics event about every 5 s). The app runs headless
(Textual's `run_test`, 160x48, the Jobs screen) with its real poll loop and real waits; the
first `--watch` jobs are followed as an open Job screen would have them followed. `--core`
runs the poller's loop alone on an asyncio loop instead of the app.

For `--seconds` (60), from the first poll after every job was seen (the polls until then,
which read each job once, are counted apart), it counts:
- requests: the API calls the poller made (`service.api_requests`), and the HTTP requests the
  backend answered per endpoint (job list, events, retrieve; SDK retries included);
- naive polling: every job's retrieve and events every 2 s (50 jobs: 3,000 a minute), and
  the ratio;
- UI stall: how late a 10 ms ticker on the app's event loop runs (p50, p99, max).
Then the driver stops, one last poll reads every job, and the cache is checked against the
backend job by job: the cached event ids equal the backend's (none lost, none twice, same
order), also straight from SQLite (duplicates kept), and each event was announced once.

usage: .venv/bin/python bench/watch_polling.py [--seconds 60] [--jobs 50] [--steps-per-second 10]
       [--watch 1] [--core]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import platform
import sqlite3
import statistics
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import openai

from tunedeck.backend import BUILTIN_BASE_MODEL, LocalBackend
from tunedeck.core.datasets.synth import write_dataset

NAIVE_INTERVAL_S = 2.0  # naive polling: each job's retrieve and events every 2 s
TICK_S = 0.01  # the stall probe's period
EXAMPLES = 40  # per job: 40 examples × 20 epochs, batch 1: 800 steps, far more than a run trains
EPOCHS = 20

# The backend counts the requests it answers per endpoint: a fault rule that "slows" each by
# nothing fires on every matching request, and the plan counts how often each rule fired.
ENDPOINTS = {
    "list": "/v1/fine_tuning/jobs",
    "events": "/v1/fine_tuning/jobs/*/events",
    "retrieve": "/v1/fine_tuning/jobs/ftjob-" + "[A-Za-z0-9]" * 24,
    "other": "*",
}
COUNTING_PLAN = {
    "seed": 0,
    "rules": [
        {"method": "GET" if name != "other" else "*", "path": path, "kind": "slow", "delay": 0.0, "probability": 1.0}
        for name, path in ENDPOINTS.items()
    ],
}


# -- the backend, in a child process ----------------------------------------------------------------


def serve_manual(data_dir: str, pipe: Any) -> None:
    """The local backend in manual time; trains steps and reports request counts on command."""
    backend = LocalBackend(Path(data_dir), auto_advance=False, faults=COUNTING_PLAN)
    pipe.send((backend.start(), backend.api_key))
    try:
        while True:
            command, *args = pipe.recv()
            if command == "advance":
                backend.advance(*args)
                pipe.send(None)
            elif command == "counts":
                pipe.send(dict(zip(ENDPOINTS, backend.faults.fired(), strict=True)))
            else:
                return
    finally:
        backend.stop()


class Backend:
    """The parent's end: the child's URL and key, and its commands (one caller at a time)."""

    def __init__(self, data_dir: Path) -> None:
        context = multiprocessing.get_context("spawn")
        self._pipe, child_end = context.Pipe()
        self._child = context.Process(target=serve_manual, args=(str(data_dir), child_end), daemon=True)
        self._child.start()
        self.base_url, self.api_key = self._pipe.recv()
        self._lock = threading.Lock()

    def advance(self, job_id: str, steps: int = 1) -> None:
        with self._lock:
            self._pipe.send(("advance", job_id, steps))
            self._pipe.recv()

    def counts(self) -> Counter:
        with self._lock:
            self._pipe.send(("counts",))
            return Counter(self._pipe.recv())

    def stop(self) -> None:
        with self._lock:
            self._pipe.send(("stop",))
        self._child.join(timeout=30)


class Trainer(threading.Thread):
    """Trains one step of one job at a time, in turn, at a steady rate, until stopped."""

    def __init__(self, backend: Backend, job_ids: list[str], steps_per_second: float) -> None:
        super().__init__(daemon=True)
        self.backend, self.job_ids, self.period = backend, job_ids, 1.0 / steps_per_second
        self.stopped = threading.Event()
        self.steps = 0

    def run(self) -> None:
        next_at = time.monotonic()
        while not self.stopped.is_set():
            self.backend.advance(self.job_ids[self.steps % len(self.job_ids)], 1)
            self.steps += 1
            next_at += self.period
            self.stopped.wait(max(0.0, next_at - time.monotonic()))


# -- the stall probe ----------------------------------------------------------------------------------


class StallProbe:
    """A 10 ms ticker on the event loop; its lateness is what a key press would wait."""

    def __init__(self) -> None:
        self.lags: list[float] = []
        self.worst = (0.0, 0.0)  # (lag, seconds into the measurement)
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._tick())

    async def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        while True:
            began = loop.time()
            await asyncio.sleep(TICK_S)
            lag = max(0.0, loop.time() - began - TICK_S)
            self.lags.append(lag)
            if lag > self.worst[0]:
                self.worst = (lag, began - start)

    async def stop(self) -> list[float]:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        return sorted(self.lags)


def percentile(values: list[float], share: float) -> float:
    return values[min(len(values) - 1, int(share * (len(values) - 1)))] if values else float("nan")


# -- the run ------------------------------------------------------------------------------------------


async def create_jobs(backend: Backend, dataset: Path, count: int) -> list[str]:
    client = openai.AsyncOpenAI(base_url=backend.base_url, api_key=backend.api_key, max_retries=0)
    try:
        upload = await client.files.create(file=dataset, purpose="fine-tune")
        method = {"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": EPOCHS, "batch_size": 1}}}
        ids = [
            (await client.fine_tuning.jobs.create(model=BUILTIN_BASE_MODEL, training_file=upload.id, method=method)).id
            for _ in range(count)
        ]
    finally:
        await client.close()
    for job_id in ids:  # validated, started, one step in: running
        await asyncio.to_thread(backend.advance, job_id, 1)
    return ids


async def backend_event_ids(client: openai.AsyncOpenAI, job_id: str) -> list[str]:
    newest_first = [event.id async for event in client.fine_tuning.jobs.list_events(job_id, limit=1000)]
    return newest_first[::-1]


def raw_event_ids(cache_path: Path, profile: str, job_id: str) -> list[str]:
    with sqlite3.connect(cache_path) as db:
        rows = db.execute(
            "SELECT id FROM events WHERE profile = ? AND job_id = ? ORDER BY seq", (profile, job_id)
        ).fetchall()
    return [row[0] for row in rows]


async def check_cache(service: Any, backend: Backend, job_ids: list[str], announced: dict[str, list[str]]) -> str:
    """Every job's cached events against the backend's; one line saying what differs."""
    client = openai.AsyncOpenAI(base_url=backend.base_url, api_key=backend.api_key, max_retries=0)
    lost = doubled = misordered = checked = 0
    try:
        for job_id in job_ids:
            expected = await backend_event_ids(client, job_id)
            cached = [e.id for e in await service.cached_events(job_id)]
            raw = raw_event_ids(service.cache.path, service.profile.name, job_id)
            heard = announced.get(job_id, [])
            lost += len(set(expected) - set(cached))
            doubled += (len(raw) - len(set(raw))) + (len(heard) - len(set(heard)))
            misordered += cached != expected and set(cached) == set(expected)
            checked += len(expected)
    finally:
        await client.close()
    verdict = "OK" if not (lost or doubled or misordered) else "MISMATCH"
    return (
        f"{verdict}: {checked} events of {len(job_ids)} jobs checked; {lost} lost, {doubled} duplicated "
        f"(in the cache or announced twice), {misordered} jobs out of order"
    )


async def measure(args: argparse.Namespace, workdir: Path) -> None:
    from tunedeck.core.bootstrap import open_service
    from tunedeck.core.paths import AppPaths
    from tunedeck.core.poller import JobPoller
    from tunedeck.core.service import EventsAdded

    dataset = workdir / "train.jsonl"
    write_dataset("sft", EXAMPLES, dataset, learnable=True)
    backend = Backend(workdir / "backend")
    try:
        began = time.perf_counter()
        job_ids = await create_jobs(backend, dataset, args.jobs)
        print(
            f"{len(job_ids)} jobs running on the local backend (manual time) after {time.perf_counter() - began:.1f} s"
        )
        endpoint = SimpleNamespace(base_url=backend.base_url, api_key=backend.api_key)
        paths = AppPaths(config_dir=workdir / "config", cache_dir=workdir / "cache", data_dir=workdir / "data")
        announced: dict[str, list[str]] = {}

        def heard(event: Any) -> None:
            if isinstance(event, EventsAdded):
                announced.setdefault(event.job.id, []).extend(e.id for e in event.events)

        async def window(service: Any, poller: JobPoller) -> dict[str, Any]:
            """The measurement, once the polls have seen every job (a fresh cache learns the
            list 20, 40, 80 jobs deep; a warm one reads every running job in its first poll)."""
            while not set(job_ids) <= {row.job.id for row in poller.rows or []}:
                await poller.next_poll()
            first = {"api": service.api_requests, "http": backend.counts(), "polls": poller.polls}
            for job_id in job_ids[: args.watch]:
                poller.watch(job_id)
            poller.request()
            trainer = Trainer(backend, job_ids, args.steps_per_second)
            probe = StallProbe()
            start = {
                "api": service.api_requests,
                "http": backend.counts(),
                "polls": poller.polls,
                "events": poller.events_requests,
                "retrieves": poller.retrieve_requests,
                "lists": poller.list_requests,
            }
            started = time.perf_counter()
            probe.start()
            trainer.start()
            await asyncio.sleep(args.seconds)
            trainer.stopped.set()
            lags = await probe.stop()
            elapsed = time.perf_counter() - started
            end_http = backend.counts()
            await asyncio.to_thread(trainer.join, 10)
            return {
                "elapsed": elapsed,
                "first": first,
                "api": service.api_requests - start["api"],
                "http": end_http - start["http"],
                "polls": poller.polls - start["polls"],
                "lists": poller.list_requests - start["lists"],
                "events": poller.events_requests - start["events"],
                "retrieves": poller.retrieve_requests - start["retrieves"],
                "lags": lags,
                "worst_at": probe.worst[1],
                "steps": trainer.steps,
            }

        if args.core:
            service = await open_service(paths=paths, local_backend=endpoint)
            service.subscribe(heard)
            await service.connect()
            poller = JobPoller(service)
            first = poller.next_poll()
            loop = asyncio.ensure_future(poller.run())
            try:
                await first
                figures = await window(service, poller)
                await poller.poll_now()  # the last poll: every job once, after the last step
                check = await check_cache(service, backend, job_ids, announced)
            finally:
                loop.cancel()
                await asyncio.gather(loop, return_exceptions=True)
                poller.close()
                await service.close()
        else:
            from tunedeck.tui.app import TunedeckApp

            app = TunedeckApp(lambda: open_service(paths=paths, local_backend=endpoint), poll=True)
            async with app.run_test(size=(160, 48)):
                while app.poller is None or app.service is None:
                    await asyncio.sleep(0.05)
                app.service.subscribe(heard)
                await app.next_poll()
                figures = await window(app.service, app.poller)
                await app.poller.poll_now()
                check = await check_cache(app.service, backend, job_ids, announced)
        report(args, figures, check, len(job_ids))
    finally:
        backend.stop()


def report(args: argparse.Namespace, f: dict[str, Any], check: str, jobs: int) -> None:
    minutes = f["elapsed"] / 60
    naive = jobs * 2 * f["elapsed"] / NAIVE_INTERVAL_S
    http = f["http"]
    sent = http["list"] + http["events"] + http["retrieve"]
    lags = f["lags"]
    first_http = f["first"]["http"]
    print(
        f"before the measurement ({f['first']['polls']} polls until every job was seen, each job read once): "
        f"{f['first']['api']} API calls ({first_http['list']} list, {first_http['events']} events, "
        f"{first_http['retrieve']} retrieve)"
    )
    print(
        f"measured {f['elapsed']:.1f} s ({'poller loop' if args.core else 'app, Jobs screen, 160x48'}), "
        f"{jobs} running jobs, {args.watch} watched, {f['steps']} steps trained, {f['polls']} polls"
    )
    print(
        f"  poller: {f['api']} API calls = {f['api'] / minutes:.0f}/min "
        f"({f['lists']} list, {f['events']} events, {f['retrieves']} retrieve)"
    )
    print(
        f"  backend: {sent} HTTP requests = {sent / minutes:.0f}/min "
        f"(list {http['list']}, events {http['events']}, retrieve {http['retrieve']}; SDK retries included)"
    )
    print(
        f"  naive (each job: retrieve + events every {NAIVE_INTERVAL_S:g} s): {naive:.0f} = {naive / minutes:.0f}/min; "
        f"ratio {sent / naive:.3f} (1/{naive / max(sent, 1):.1f})"
    )
    print(
        f"  UI stall ({TICK_S * 1000:.0f} ms ticker, {len(lags)} ticks): p50 {percentile(lags, 0.5) * 1000:.1f} ms, "
        f"p99 {percentile(lags, 0.99) * 1000:.1f} ms, max {(lags[-1] if lags else float('nan')) * 1000:.1f} ms "
        f"(at {f['worst_at']:.1f} s), "
        f"mean {statistics.fmean(lags) * 1000 if lags else float('nan'):.1f} ms"
    )
    print(f"cache check after a last poll: {check}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="measurement length (default 60)")
    parser.add_argument("--jobs", type=int, default=50, help="running jobs (default 50)")
    parser.add_argument("--steps-per-second", type=float, default=10.0, help="steps trained a second, all jobs")
    parser.add_argument("--watch", type=int, default=1, help="jobs followed as an open Job screen (default 1)")
    parser.add_argument("--core", action="store_true", help="the poller's loop alone, without the app")
    args = parser.parse_args()
    print(
        f"tunedeck watch polling benchmark: Python {platform.python_version()}, {platform.machine()}, "
        f"{os.cpu_count()} CPUs, openai {openai.__version__}"
    )
    with tempfile.TemporaryDirectory(prefix="tunedeck-bench-") as temporary:
        # Nothing this run does may read or write the user's own config, cache or keys.
        os.environ["TUNEDECK_HOME"] = str(Path(temporary) / "home")
        os.environ.pop("OPENAI_API_KEY", None)
        os.environ.pop("OPENAI_BASE_URL", None)
        asyncio.run(measure(args, Path(temporary)))


if __name__ == "__main__":
    main()
