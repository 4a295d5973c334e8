"""`tunedeck jobs watch | metrics | compare | pause | resume | cancel`: watching jobs headless.

`watch` follows one job until it ends, a line per new message event and per metrics step,
and exits with the job's outcome (0 succeeded, 1 failed or cancelled). `metrics` prints
every metric column, one row per step (`--csv` for a file). `compare` sets jobs side by
side (`core/watch/compare.py`). `pause`, `resume` and `cancel` print the job's new status.
Data goes to stdout, diagnostics to stderr; text from the API passes `strip_controls`.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from tunedeck.core.api import ApiError
from tunedeck.core.describe import local_time
from tunedeck.core.text import strip_controls

if TYPE_CHECKING:  # pragma: no cover
    from tunedeck.core.records import Job, JobEvent
    from tunedeck.core.service import Service
    from tunedeck.core.watch.overfit import Verdict
    from tunedeck.core.watch.series import MetricSeries

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
WATCH_INTERVAL_S = 2.0
MIN_WATCH_INTERVAL_S = 0.5  # faster polls only load the API (and its rate limits)
WATCH_COMMANDS = ("watch", "metrics", "compare", "pause", "resume", "cancel")
# Failures a long watch rides out (the next poll tries again); others end it.
PASSING_FAILURES = ("connection", "server", "rate_limit")

Sleep = Callable[[float], Awaitable[Any]]
Print = Callable[[str], None]


def _interval_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value >= MIN_WATCH_INTERVAL_S:  # also refuses nan
        raise argparse.ArgumentTypeError(f"the interval must be at least {MIN_WATCH_INTERVAL_S:g} seconds, not {text}")
    if value == float("inf"):
        raise argparse.ArgumentTypeError("the interval must be a finite number of seconds")
    return value


def add_watch_parsers(jobs: Any) -> None:
    watch = jobs.add_parser(
        "watch",
        help="follow a job until it ends: its messages and a line per metrics step",
        description="Exit 0 when the job succeeds, 1 when it fails or is cancelled.",
    )
    watch.add_argument("job_id")
    watch.add_argument(
        "--interval",
        type=_interval_seconds,
        default=WATCH_INTERVAL_S,
        metavar="S",
        help=f"seconds between polls (at least {MIN_WATCH_INTERVAL_S:g})",
    )
    metrics = jobs.add_parser("metrics", help="every metric of a job, one row per step")
    metrics.add_argument("job_id")
    metrics.add_argument("--csv", action="store_true", help="print CSV (header step,<columns>)")
    metrics.add_argument("--offline", action="store_true", help="only what is cached; no network")
    compare = jobs.add_parser("compare", help="jobs side by side: settings and final/best metrics")
    compare.add_argument("job_ids", nargs="+", metavar="ID", help="two or more jobs")
    compare.add_argument("--json", action="store_true", help="print JSON")
    compare.add_argument("--offline", action="store_true", help="only what is cached; no network")
    for action, what in (
        ("pause", "pause a running job (it is checkpointed first)"),
        ("resume", "resume a paused job"),
        ("cancel", "cancel a job"),
    ):
        parser = jobs.add_parser(
            action,
            help=what,
            description="Print the job's new status. Exit 1 when the job is unknown, already finished, "
            "or the provider refuses (a provider without pause).",
        )
        parser.add_argument("job_id")
        parser.add_argument("--json", action="store_true", help="print JSON: the profile, the action and the job")


async def run_watch_command(service: Service, args: argparse.Namespace) -> int:
    """One of `WATCH_COMMANDS`; API errors propagate (the caller prints them, exit 1)."""
    command = args.jobs_command
    if command == "metrics":
        return await jobs_metrics(service, args.job_id, as_csv=args.csv)
    if command == "compare":
        return await jobs_compare(service, args.job_ids, as_json=args.json)
    if not service.is_connected:
        _fail(f"cannot {command} {args.job_id}: not connected to {service.profile.describe()}")
        return EXIT_FAILED
    if command == "watch":
        return await watch_job(service, args.job_id, interval=args.interval)
    return await job_action(service, command, args.job_id, as_json=args.json)


# -- pause, resume, cancel ----------------------------------------------------------------

ACTION_PAST = {"pause": "paused", "resume": "resumed", "cancel": "cancelled"}
# A provider answers these for an endpoint it does not have (the job itself was found first).
NO_ENDPOINT_STATUSES = (404, 405, 501)


async def job_action(service: Service, action: str, job_id: str, *, as_json: bool = False) -> int:
    """Pause, resume or cancel `job_id` through the service, as the app's keys do.

    The job is read first, so an unknown job, a finished one, or a resume of a job that is
    not paused is told in words instead of the provider's HTTP error; a provider that has
    no such endpoint for a job it knows is told so. Every refusal exits 1."""
    try:
        job = await service.refresh_job(job_id)
    except ApiError as exc:
        if exc.kind == "not_found":
            _fail(f"no job {job_id!r} in profile {service.profile.name!r}")
            return EXIT_FAILED
        raise
    refusal = _refusal(job, action)
    if refusal is not None:
        _fail(refusal)
        return EXIT_FAILED
    act = {"pause": service.pause, "resume": service.resume, "cancel": service.cancel}[action]
    try:
        job = await act(job_id)
    except ApiError as exc:
        if exc.status in NO_ENDPOINT_STATUSES and action != "cancel":
            _fail(
                f"cannot {action} {job_id}: the provider of profile {service.profile.name!r} "
                f"({service.profile.describe()}) has no {action} for jobs ({exc.message})"
            )
            return EXIT_FAILED
        _fail(f"cannot {action} {job_id}: {exc.message}")
        return EXIT_FAILED
    if as_json:
        print(json.dumps({"profile": service.profile.name, "action": action, "job": job.raw}, indent=2))
    else:
        _say(f"{job.id} {job.status}")
    return EXIT_OK


def _refusal(job: Job, action: str) -> str | None:
    """Why `action` cannot apply to `job` as it is now (None: ask the provider)."""
    if job.is_terminal:
        return f"job {job.id} already {job.status}: a finished job cannot be {ACTION_PAST[action]}"
    if action == "resume" and job.status != "paused":
        return f"job {job.id} is {job.status}, not paused: there is nothing to resume"
    if action == "pause" and job.status == "paused":
        return f"job {job.id} is already paused (resume it with: tunedeck jobs resume {job.id})"
    return None


# -- watch --------------------------------------------------------------------------------


async def watch_job(
    service: Service,
    job_id: str,
    *,
    interval: float = WATCH_INTERVAL_S,
    sleep: Sleep = asyncio.sleep,
    out: Print | None = None,
    err: Print | None = None,
) -> int:
    """Follow `job_id` until it ends; 0 when it succeeded, 1 when it failed or was cancelled.

    Prints its cached messages first, then each new message and metrics step as polls find
    them, and the detector's advice each time it newly says overfitting. `sleep(interval)`
    paces the polls (tests pass one that moves the backend on instead of waiting)."""
    from tunedeck.core.service import JobAlert

    say = out or _say
    warn = err or _fail
    alarms: list[JobAlert] = []
    unsubscribe = service.subscribe(
        lambda event: (
            alarms.append(event)
            if isinstance(event, JobAlert) and event.kind == "overfitting" and event.job_id == job_id
            else None
        )
    )
    try:
        job = await service.refresh_job(job_id)
        say(f"{job.id}  {job.model}  {job.method_label}  {job.status}")
        told = await _replay_cached(service, job_id, say)
        while True:
            try:
                for event in await service.follow(job_id, known=job):
                    line = event_line(event)
                    if line is not None:
                        say(line)
            except ApiError as exc:
                if exc.kind not in PASSING_FAILURES:
                    raise
                warn(f"{exc.message}; trying again in {interval:g} s")
            for alarm in alarms:  # published once per change; the replay may have told this one
                if alarm.message != told:
                    say(f"! overfitting: {alarm.message}")
                    told = alarm.message
            alarms.clear()
            if job.is_terminal:
                return _ended(job, say, warn)
            await sleep(interval)
            try:
                job = await service.refresh_job(job_id)
            except ApiError as exc:
                if exc.kind not in PASSING_FAILURES:
                    raise
                warn(f"{exc.message}; trying again in {interval:g} s")
    finally:
        unsubscribe()


async def _replay_cached(service: Service, job_id: str, say: Print) -> str | None:
    """What the cache already holds: every message, the newest metrics step, the verdict
    when it alarms (later alarms are the service's alerts). Returns the advice printed."""
    events = await service.cached_events(job_id)
    for event in events:
        if event.type != "metrics":
            say(event_line(event) or "")
    last_metrics = next((e for e in reversed(events) if e.type == "metrics"), None)
    if last_metrics is not None:
        say(event_line(last_metrics) or "")
    verdict = await service.verdict(job_id) if events else None
    if verdict is not None and verdict.alarm:
        say(f"! overfitting: {verdict.advice}")
        return verdict.advice
    return None


def _ended(job: Job, say: Print, warn: Print) -> int:
    if job.status == "succeeded":
        say(f"{job.id} succeeded: {job.fine_tuned_model or 'no model name given'}")
        return EXIT_OK
    say(f"{job.id} {job.status}")
    if job.error_code or job.error_message:
        warn(f"{job.id}: {job.error_code or 'error'}: {job.error_message or ''}".rstrip(": "))
    return EXIT_FAILED


def event_line(event: JobEvent) -> str | None:
    """A message event as `time level message`; a metrics event as `step s/t  name value ...`
    (its top-level numbers); None for a metrics event without a step."""
    if event.type != "metrics":
        return f"{local_time(event.created_at, seconds=True)}  {event.level:<5} {event.message}"
    data = event.data
    step = data.get("step")
    if not isinstance(step, int) or isinstance(step, bool):
        return None
    total = data.get("total_steps")
    head = f"step {step}/{total}" if isinstance(total, int) and not isinstance(total, bool) else f"step {step}"
    values = [
        f"{key} {_number(value)}"
        for key, value in data.items()
        if key not in ("step", "total_steps") and isinstance(value, (int, float)) and not isinstance(value, bool)
    ]
    return "  ".join([f"{local_time(event.created_at, seconds=True)}  {head}", *values])


def _number(value: float) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


# -- metrics ------------------------------------------------------------------------------


async def jobs_metrics(service: Service, job_id: str, *, as_csv: bool) -> int:
    if service.is_connected:
        await service.follow(job_id)
    elif await service.cached_job(job_id) is None:
        _fail(f"no job {job_id!r} in profile {service.profile.name!r}")
        return EXIT_FAILED
    series = await service.cached_series(job_id)
    if as_csv:
        buffer = io.StringIO()
        series.write_csv(buffer)
        sys.stdout.write(strip_controls(buffer.getvalue()))
        return EXIT_OK
    if not series.steps:
        _say("no metrics yet")
        return EXIT_OK
    for line in metrics_table(series):
        _say(line)
    return EXIT_OK


def metrics_table(series: MetricSeries) -> list[str]:
    """Every column of `series` as aligned text: a header, then one line per step ("-": not measured)."""
    columns = ["step", *series.columns]
    cells = [[_cell(row.get(column)) for column in columns] for row in series.rows()]
    widths = [max(len(column), *(len(line[i]) for line in cells)) for i, column in enumerate(columns)]
    lines = ["  ".join(column.rjust(width) for column, width in zip(columns, widths))]
    lines += ["  ".join(cell.rjust(width) for cell, width in zip(line, widths)) for line in cells]
    return lines


def _cell(value: float | int | None) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and not value.is_integer():
        return f"{value:.4g}"
    return str(int(value))


def metrics_summary(series: MetricSeries, job_id: str) -> str:
    """One line for `jobs show`: how many steps and the newest values of the main columns."""
    if not series.steps:
        return "metrics: none yet"
    last = series.last_step()
    total = f"/{series.total_steps}" if series.total_steps else ""
    main = [c for c in series.columns if "." not in c][:4]
    values = ", ".join(f"{c} {_cell(series.latest(c))}" for c in main)
    return f"metrics: {len(series.steps)} steps, last {last}{total}: {values} (all: tunedeck jobs metrics {job_id})"


# -- compare ------------------------------------------------------------------------------


async def jobs_compare(service: Service, job_ids: Sequence[str], *, as_json: bool) -> int:
    from tunedeck.core.watch.compare import compare

    if len(dict.fromkeys(job_ids)) < 2:  # a job named twice is still one job
        _fail("compare takes two or more different job ids")
        return EXIT_USAGE
    jobs: list[Job] = []
    series: dict[str, MetricSeries] = {}
    verdicts: dict[str, Verdict] = {}
    for job_id in dict.fromkeys(job_ids):
        if service.is_connected:
            await service.follow(job_id)
        job = await service.cached_job(job_id)
        if job is None:
            _fail(f"no job {job_id!r} in profile {service.profile.name!r}")
            return EXIT_FAILED
        jobs.append(job)
        series[job_id] = await service.cached_series(job_id)
        verdict = await service.verdict(job_id)
        if verdict is not None:
            verdicts[job_id] = verdict
    comparison = compare(jobs, series, verdicts)
    if as_json:
        print(json.dumps(comparison.to_json(), indent=2))
        return EXIT_OK
    header = ("", *comparison.job_ids)
    body = [(f"{'*' if row.differs else ' '} {row.label}", *row.values) for row in comparison.settings]
    results = [(f"{'*' if row.differs else ' '} {row.label}", *row.values) for row in comparison.results]
    table = [header, *body, *results]
    widths = [max(len(str(line[i])) for line in table) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(str(cell).ljust(width) for cell, width in zip(cells, widths)).rstrip()

    _say(line(header))
    _say("settings")
    for row in body:
        _say(line(row))
    _say("results")
    for row in results:
        _say(line(row))
    _say("(* differs)")
    return EXIT_OK


def _fail(message: str) -> None:
    print(f"tunedeck: {strip_controls(message)}", file=sys.stderr)


def _say(line: str) -> None:
    print(strip_controls(line))
