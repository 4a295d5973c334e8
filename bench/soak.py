#!/usr/bin/env python3
"""Soak of the app's poller against the local backend under injected faults; prints figures.

The scenario of `tests/test_soak.py`, longer and configurable. The local backend trains in
automatic time (in a thread, as the app embeds it) behind a seeded fault plan on the
poller's endpoints (the job list, a job's retrieve, its events): 429 with Retry-After, 500,
503, dropped connections, truncated bodies, slow answers, each on a share of the requests.
Every few calm polls a "storm" of one failing kind outlasts the SDK's retries, so whole polls
fail. Meanwhile `--jobs` jobs are kept in flight for `--seconds` (every 5th one's file fails
validation, every 4th is cancelled mid-training); then no new job starts, and once all are
terminal and a later poll has succeeded, the faults go off and the cache is compared with
the backend event by event.

The poller runs its own `run()` loop; its wait is the bench's (it books each poll, moves the
weather and the jobs, then yields `--interval` seconds instead of the product's 2 s).

usage: .venv/bin/python bench/soak.py [--seconds 60] [--jobs 4] [--seed 7] [--interval 0.1]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import io
import itertools
import os
import random
import resource
import sqlite3
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import openai

from tunedeck.backend import BUILTIN_BASE_MODEL, LocalBackend
from tunedeck.core.bootstrap import open_service
from tunedeck.core.datasets import synth
from tunedeck.core.poller import JobPoller
from tunedeck.core.records import MetricPoint
from tunedeck.core.service import ConnectionChanged, EventsAdded, JobMissing, JobsChanged, PollError

STEP_DELAY_S = 0.05
STORM_FAULTS = 6  # faults per storm: more than one request's tries (1 + the SDK's 2 retries)
CALM_POLLS = 5  # successful polls between two storms
SETTLE_DEADLINE_S = 300.0  # after `--seconds`: for the last jobs to end and a poll to succeed
TERMINAL = ("succeeded", "failed", "cancelled")

LIST_PATH = "/v1/fine_tuning/jobs"
EVENTS_GLOB = "/v1/fine_tuning/jobs/*/events"
RETRIEVE_GLOB = "/v1/fine_tuning/jobs/ftjob-" + "[A-Za-z0-9]" * 24  # a job id, exactly: never its events
ENDPOINTS = {LIST_PATH: "list", EVENTS_GLOB: "events", RETRIEVE_GLOB: "retrieve"}
MISSING_JOB = "ftjob-" + "soakmissing".ljust(24, "0")  # a screen asks for it; the backend never had it

FAILING_KINDS = {  # what the poller reports when a kind outlasts the SDK's retries
    "rate_limit": "rate_limit",
    "server_error": "server",
    "unavailable": "server",
    "drop": "connection",
    "truncate": "connection",
}
WEATHER = {
    "rate_limit": {"probability": 0.05, "retry_after": 0.05},
    "server_error": {"probability": 0.04, "retry_after": 0.05},
    "unavailable": {"probability": 0.04, "retry_after": 0.05},
    "drop": {"probability": 0.03},
    "truncate": {"probability": 0.04},
    "slow": {"probability": 0.05, "delay": 0.2},
}
CLEAN = {"kind": "slow", "delay": 0.0, "probability": 1.0}  # last rule per endpoint: counts the rest


def fault_plan(seed: int) -> dict[str, Any]:
    rules = []
    for path in ENDPOINTS:
        rules += [{"method": "GET", "path": path, "kind": kind, **how} for kind, how in WEATHER.items()]
        rules.append({"method": "GET", "path": path, **CLEAN})
    return {"seed": seed, "rules": rules}


class Faults:
    """`backend.faults` and what it injected by (kind, endpoint); "none": went through untouched."""

    def __init__(self, backend: LocalBackend) -> None:
        self.plan = backend.faults
        self.weather = list(self.plan.rules)
        self._banked: Counter = Counter()

    def storm(self, kind: str, seed: int) -> None:
        template = next(r for r in self.weather if r.kind == kind and r.path == LIST_PATH)
        storm = dataclasses.replace(template, probability=None, every=1, times=STORM_FAULTS)
        self._set([storm, *self.weather], seed)

    def calm(self) -> None:
        self._set([], 0)

    def _set(self, rules: list[Any], seed: int) -> None:
        self._banked += self._current()
        self.plan.set_rules(rules, seed)

    def _current(self) -> Counter:
        counts: Counter = Counter()
        for rule, fired in zip(self.plan.rules, self.plan.fired(), strict=True):
            kind = "none" if rule.kind == CLEAN["kind"] and rule.delay == CLEAN["delay"] else rule.kind
            counts[kind, ENDPOINTS[rule.path]] += fired
        return counts

    def hits(self) -> Counter:
        return self._banked + self._current()


@dataclasses.dataclass
class Storm:
    kind: str
    first_poll: int
    started: float
    kinds_reported: set[str] = dataclasses.field(default_factory=set)
    recovered_at: int | None = None
    recovered_after_s: float | None = None


class Soak:
    def __init__(self, args: argparse.Namespace, workdir: Path, backend: LocalBackend, service, client) -> None:
        self.args, self.workdir, self.backend, self.service, self.client = args, workdir, backend, service, client
        self.faults = Faults(backend)
        self.rng = random.Random(args.seed)
        self.heard: list[Any] = []
        service.subscribe(self.heard.append)
        self.mark = 0
        self.poller = JobPoller(service, wait=self.wait)
        self.outcomes: list[bool] = []
        self.poll_seconds: list[float] = []
        self.poll_started = time.perf_counter()
        self.storms: list[Storm] = []
        self.next_kind = 0
        self.calm_polls = 0
        self.jobs: list[str] = []
        self.to_cancel: set[str] = set()
        self.cancelled: set[str] = set()
        self.finished_jobs: set[str] = set()
        self.launching = True
        self.launcher: asyncio.Future | None = None
        self.ending_at: int | None = None  # polls booked when the last job was seen terminal
        self.done = asyncio.Event()
        self.deadline = time.monotonic() + args.seconds

    # -- the poller's wait ----------------------------------------------------------------------

    async def wait(self, wake: asyncio.Event, seconds: float) -> None:
        self.poll_seconds.append(time.perf_counter() - self.poll_started)
        self._book()
        if self._finished():
            self.done.set()
            await asyncio.Event().wait()  # parked until cancelled
        await self._move_jobs()
        self._move_weather()
        await asyncio.sleep(self.args.interval)
        self.poll_started = time.perf_counter()

    def _book(self) -> None:
        news, self.mark = self.heard[self.mark :], len(self.heard)
        ok = any(isinstance(e, JobsChanged) for e in news)
        self.outcomes.append(ok)
        storm = self.storms[-1] if self.storms else None
        if storm is not None and storm.recovered_at is None:
            storm.kinds_reported.update(e.kind for e in news if isinstance(e, PollError))
            if ok:
                storm.recovered_at = len(self.outcomes) - 1
                storm.recovered_after_s = time.monotonic() - storm.started
        self.calm_polls = self.calm_polls + 1 if ok else 0

    def _finished(self) -> bool:
        if self.launching or self.ending_at is None:
            return False
        if self.storms and self.storms[-1].recovered_at is None:
            return False
        return any(self.outcomes[self.ending_at :]) and self.outcomes[-1]

    def _move_weather(self) -> None:
        storming = self.storms and self.storms[-1].recovered_at is None
        if storming or self.calm_polls < CALM_POLLS or not self.launching:
            return
        kinds = list(FAILING_KINDS)
        kind = kinds[self.next_kind % len(kinds)]
        self.next_kind += 1
        self.storms.append(Storm(kind, len(self.outcomes), time.monotonic()))
        self.faults.storm(kind, self.args.seed + len(self.storms))

    async def _move_jobs(self) -> None:
        rows = {row.job.id: row for row in self.poller.rows or []}
        for job_id in self.to_cancel - self.cancelled:
            row = rows.get(job_id)
            if row is not None and row.job.status == "running" and (row.step or 0) >= 10:
                await self.client.fine_tuning.jobs.cancel(job_id)  # POST: no fault rule matches
                self.cancelled.add(job_id)
        if self.ending_at is None and self.launcher is not None and self.launcher.done():
            self.launching = False
            self.ending_at = len(self.outcomes)  # the polls after this one began with every job ended

    # -- jobs -----------------------------------------------------------------------------------

    async def launch_waves(self) -> None:
        """Waves of `--jobs` jobs until `--seconds` are up (the backend trains two at once, the
        rest queue). A wave ends when the backend's engine says every job has ended: a read
        through the API would meet the faults."""
        while time.monotonic() < self.deadline:
            for _ in range(self.args.jobs):
                await self._create(len(self.jobs))
            await self.backend.run_until_settled_async()

    async def _create(self, n: int) -> str:
        path = self.workdir / f"train-{n}.jsonl"
        flags = ["--learnable", "--seed", str(self.rng.randrange(1000))]
        broken = n % 5 == 4
        if broken:
            flags = ["--bad-every", "5"]
        with contextlib.redirect_stderr(io.StringIO()):
            synth.main(["sft", str(self.rng.randrange(30, 80)), str(path), *flags])
        upload = await self.client.files.create(file=path, purpose="fine-tune")
        hyper = {"n_epochs": self.rng.choice((2, 3)), "batch_size": 1}
        job = await self.client.fine_tuning.jobs.create(
            model=BUILTIN_BASE_MODEL,
            training_file=upload.id,
            method={"type": "supervised", "supervised": {"hyperparameters": hyper}},
        )
        self.jobs.append(job.id)
        if broken:
            self.poller.watch(job.id)  # it may fail between two polls: a screen shows it
        elif n % 4 == 3:
            self.to_cancel.add(job.id)
        return job.id

    # -- the run --------------------------------------------------------------------------------

    async def run(self) -> dict[str, Any]:
        started = time.monotonic()
        self.poller.watch(MISSING_JOB)
        loop = asyncio.create_task(self.poller.run())
        self.launcher = asyncio.ensure_future(self.launch_waves())
        try:
            await asyncio.wait_for(self.done.wait(), self.args.seconds + SETTLE_DEADLINE_S)
        finally:
            loop.cancel()
            await asyncio.gather(loop, return_exceptions=True)
            self.poller.close()
        wall = time.monotonic() - started
        self.faults.calm()
        return await self.check(wall)

    async def check(self, wall: float) -> dict[str, Any]:
        profile = self.service.profile.name
        announced: Counter = Counter()
        order: dict[str, list[str]] = {}
        for event in self.heard:
            if isinstance(event, EventsAdded):
                announced.update(e.id for e in event.events)
                order.setdefault(event.job.id, []).extend(e.id for e in event.events)
        figures: Counter = Counter()
        statuses: Counter = Counter()
        with sqlite3.connect(self.service.cache.path) as db:
            for job_id in self.jobs:
                remote = [e async for e in self.client.fine_tuning.jobs.list_events(job_id, limit=100)][::-1]
                expected = [e.id for e in remote]
                rows = db.execute(
                    "SELECT id FROM events WHERE profile = ? AND job_id = ? ORDER BY seq", (profile, job_id)
                ).fetchall()
                cached = [row[0] for row in rows]
                figures["events checked"] += len(expected)
                figures["duplicates in cache"] += len(cached) - len(set(cached))
                figures["missing from cache"] += len(set(expected) - set(cached))
                figures["not in the backend"] += len(set(cached) - set(expected))
                figures["jobs out of order"] += cached != expected and set(cached) == set(expected)
                figures["jobs announced out of order"] += order.get(job_id, []) != expected
                events = await self.service.cached_events(job_id)
                steps = [m.step for m in map(MetricPoint.from_event, events) if m]
                figures["repeated metrics steps"] += len(steps) - len(set(steps))
                job = await self.client.fine_tuning.jobs.retrieve(job_id)
                local = await self.service.cached_job(job_id)
                figures["status mismatches"] += local is None or local.status != job.status
                statuses[job.status] += 1
        figures["duplicate announcements"] = sum(n - 1 for n in announced.values() if n > 1)
        missing = [e for e in self.heard if isinstance(e, JobMissing)]
        states = [e.state for e in self.heard if isinstance(e, ConnectionChanged)]
        recoveries = sum(1 for a, b in itertools.pairwise(states) if a == "error" and b == "online")
        hits = self.faults.hits()
        by_kind: Counter = Counter()
        by_endpoint: Counter = Counter()
        for (kind, where), n in hits.items():
            by_endpoint[where] += n
            if kind != "none":
                by_kind[kind] += n
        failed_polls = self.outcomes.count(False)
        return {
            "wall_s": wall,
            "jobs": dict(statuses),
            "polls": len(self.outcomes),
            "failed_polls": failed_polls,
            "poll_s": self.poll_seconds,
            "api_calls": self.service.api_requests,
            "http_requests": dict(by_endpoint),
            "faults": dict(by_kind),
            "faults_by_endpoint": {k: v for k, v in sorted(hits.items()) if k[0] != "none"},
            "storms": self.storms,
            "recoveries": recoveries,
            "connection_final": self.service.connection.state,
            "last_poll_ok": self.outcomes[-1],
            "job_missing_said": len(missing),
            "figures": figures,
        }


def peak_rss_mib() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def report(args: argparse.Namespace, r: dict[str, Any]) -> int:
    f = r["figures"]
    print(f"soak: {args.seconds:g} s of launches, --jobs {args.jobs}, --seed {args.seed}, --interval {args.interval:g}")
    print(f"wall time                     {r['wall_s']:.1f} s")
    print(f"jobs                          {sum(r['jobs'].values())} {r['jobs']}")
    polls, ok = r["polls"], r["polls"] - r["failed_polls"]
    durations = sorted(r["poll_s"])
    p50 = statistics.median(durations)
    p95 = durations[int(0.95 * (len(durations) - 1))]
    print(
        f"polls                         {polls} ({ok} ok, {r['failed_polls']} failed); poll time p50 {p50 * 1000:.0f} ms,"
        f" p95 {p95 * 1000:.0f} ms, max {durations[-1] * 1000:.0f} ms"
    )
    print(f"API calls by the poller       {r['api_calls']} (what the app counts; SDK retries not included)")
    http = r["http_requests"]
    print(f"HTTP requests it sent         {sum(http.values())} {http} (SDK retries included)")
    faults = r["faults"]
    print(f"faults injected               {sum(faults.values())} {dict(sorted(faults.items()))}")
    where = ", ".join(f"{kind}@{endpoint} {n}" for (kind, endpoint), n in r["faults_by_endpoint"].items())
    print(f"  by kind@endpoint            {where}")
    storms = r["storms"]
    recovered = [s for s in storms if s.recovered_at is not None]
    reported = sum(1 for s in storms if FAILING_KINDS[s.kind] in s.kinds_reported)
    worst = max((s.recovered_after_s or 0.0) for s in storms) if storms else 0.0
    print(
        f"storms                        {len(storms)} ({reported} reported with their kind, {len(recovered)} recovered"
        f" by themselves, slowest {worst:.1f} s)"
    )
    print(
        f"recoveries (error -> online)  {r['recoveries']}; final state {r['connection_final']}, last poll ok {r['last_poll_ok']}"
    )
    print(f"JobMissing announced          {r['job_missing_said']} (expected 1)")
    print(f"events checked                {f['events checked']}")
    bad = {
        "duplicates in cache": f["duplicates in cache"],
        "duplicate announcements": f["duplicate announcements"],
        "missing from cache": f["missing from cache"],
        "not in the backend": f["not in the backend"],
        "jobs out of order": f["jobs out of order"],
        "jobs announced out of order": f["jobs announced out of order"],
        "repeated metrics steps": f["repeated metrics steps"],
        "status mismatches": f["status mismatches"],
    }
    for name, value in bad.items():
        print(f"{name:<30}{value} (must be 0)")
    print(f"peak RSS                      {peak_rss_mib():.0f} MiB (this process: app core + backend + training)")
    healthy = (
        not any(bad.values())
        and r["connection_final"] == "online"
        and r["last_poll_ok"]
        and len(recovered) == len(storms) == reported
        and r["job_missing_said"] == 1
    )
    print("result".ljust(30) + ("OK" if healthy else "PROBLEMS (see above)"))
    return 0 if healthy else 1


async def soak(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="tunedeck-soak-") as tmp:
        workdir = Path(tmp)
        os.environ["TUNEDECK_HOME"] = str(workdir / "home")  # an isolated config and cache
        backend = LocalBackend(workdir / "backend", step_delay=STEP_DELAY_S, faults=fault_plan(args.seed))
        backend.start()
        client = openai.AsyncOpenAI(base_url=backend.base_url, api_key=backend.api_key, max_retries=0)
        service = await open_service(local_backend=backend)
        try:
            await service.connect()
            result = await Soak(args, workdir, backend, service, client).run()
        finally:
            await service.close()
            await client.close()
            backend.stop()
    return report(args, result)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="how long new jobs keep starting")
    parser.add_argument("--jobs", type=int, default=4, help="jobs in flight at once")
    parser.add_argument("--seed", type=int, default=7, help="the fault plan's and the workload's seed")
    parser.add_argument("--interval", type=float, default=0.1, help="seconds between polls (the product: 2)")
    return asyncio.run(soak(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
