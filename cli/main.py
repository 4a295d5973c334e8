"""The `tunedeck` command: the full-screen app, and its headless twins for scripts.

Headless commands print data only on stdout (JSON with --json), diagnostics on stderr, and
exit 0 on success, 1 when the API or the data says no, 2 on usage or configuration errors.
Output into a pipe its reader closed (`tunedeck jobs list | head`) ends quietly with 0, as
Unix tools do: `main` handles that once for every command.
Nothing here imports Textual unless the full-screen app is started.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any, Sequence

from tunedeck.cli.data import add_data_parser, run_data
from tunedeck.cli.evaluate import add_eval_parser, connect_online, run_eval
from tunedeck.cli.jobs_create import add_create_parser, run_create
from tunedeck.cli.jobs_watch import WATCH_COMMANDS, add_watch_parsers, metrics_summary, run_watch_command
from tunedeck.cli.serve import add_serve_parser, run_serve
from tunedeck.core import __version__
from tunedeck.core.api import ApiError
from tunedeck.core.config import ConfigError
from tunedeck.core.describe import job_fields, local_time
from tunedeck.core.records import Checkpoint, Job, JobEvent, JobRow, MetricPoint
from tunedeck.core.service import Service, ServiceError
from tunedeck.core.text import strip_controls

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tunedeck", description="The fine-tuning loop in a terminal.")
    parser.add_argument("--version", action="version", version=f"tunedeck {__version__}")
    parser.add_argument("--profile", help="profile to use (default: the config's default, or local)")
    parser.add_argument("--theme", help="the app's colour theme, e.g. ansi-dark or ansi-light (remembered; default: the one last picked)")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    add_serve_parser(commands)

    jobs = commands.add_parser("jobs", help="list and inspect fine-tuning jobs").add_subparsers(
        dest="jobs_command", metavar="ACTION", required=True
    )
    listing = jobs.add_parser("list", help="every job of the profile, newest first")
    listing.add_argument("--json", action="store_true", help="print JSON")
    listing.add_argument("--offline", action="store_true", help="only what is cached; no network")
    show = jobs.add_parser("show", help="one job: its fields, messages, overfitting verdict and checkpoints")
    show.add_argument("job_id")
    show.add_argument("--json", action="store_true", help="print JSON")
    show.add_argument("--offline", action="store_true", help="only what is cached; no network")
    add_create_parser(jobs)
    add_watch_parsers(jobs)

    commands.add_parser("paths", help="print where config, cache and data live")
    models = commands.add_parser(
        "models",
        help="the base models the profile offers to fine-tune, as the launch form lists them",
        description="Ask the profile's provider for its models (the launch form's list). "
        "--on-disk instead lists the open models found on this machine for the local backend's "
        "transformer trainer, offline.",
    )
    models.add_argument("--json", action="store_true", help="print JSON")
    models.add_argument(
        "--on-disk", action="store_true", help="the open models found on disk and where they were looked for (offline)"
    )
    compute = commands.add_parser(
        "compute",
        help="the devices the profile's tunedeck backend trains on, and the job holding each",
        description="Ask the profile's backend for its training devices (GPUs, the CPU), which job "
        "holds each and which jobs wait for one. Only a tunedeck backend reports them.",
    )
    compute.add_argument("--json", action="store_true", help="print JSON")
    profiles = commands.add_parser("profiles", help="list the configured profiles")
    profiles.add_argument(
        "--confirm",
        metavar="NAME",
        help="agree once that the built-in profile NAME may send its key where it says",
    )
    add_data_parser(commands)
    add_eval_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code = _run(args)
        if args.command is not None:
            sys.stdout.flush()  # a pipe closed early fails here, where it can still be caught, not at exit
        return code
    except BrokenPipeError:  # `tunedeck jobs list | head`: the reader has what it wanted
        quiet_stdout()
        return EXIT_OK


def quiet_stdout() -> None:
    """Point stdout at the null device, so that exiting does not fail again flushing the
    output still buffered for the closed pipe (Python would print that on stderr)."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # no file descriptor (a captured stdout)
        pass


def _run(args: argparse.Namespace) -> int:
    try:
        if args.command is None:
            return _run_app(args.profile, args.theme)
        if args.command == "serve":
            return run_serve(args)
        if args.command == "paths":
            return _print_paths()
        if args.command == "models":
            return _print_local_models(args.json) if args.on_disk else asyncio.run(_models(args))
        if args.command == "compute":
            return asyncio.run(_compute(args))
        if args.command == "profiles":
            return _confirm_profile(args.confirm) if args.confirm else _print_profiles()
        if args.command == "data":
            return run_data(args)
        if args.command == "eval":
            return asyncio.run(run_eval(args, args.profile))
        return asyncio.run(_jobs(args))
    except ConfigError as exc:
        _fail(f"config: {exc}")
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130


def _fail(message: str) -> None:
    print(f"tunedeck: {strip_controls(message)}", file=sys.stderr)


def _say(line: str) -> None:
    """Print human-readable output; API text in it may carry terminal escapes."""
    print(strip_controls(line))


def _run_app(profile: str | None, theme: str | None = None) -> int:
    from tunedeck.core.bootstrap import load_app_config

    load_app_config().profile(profile)  # a bad config or profile is reported before the screen opens
    from tunedeck.tui.app import run_app

    return run_app(profile, theme)


def _print_paths() -> int:
    from tunedeck.core.paths import AppPaths

    paths = AppPaths.discover()
    print(f"config file:  {paths.config_file}")
    print(f"cache:        {paths.cache_db()}")
    print(f"data:         {paths.data_dir}")
    print(
        f"models:       {paths.models_dir}  (open models for the transformer trainer; $TUNEDECK_MODELS_DIR overrides)"
    )
    return EXIT_OK


def _print_local_models(as_json: bool) -> int:
    from tunedeck.backend import default_models_dirs, models_report
    from tunedeck.core.paths import AppPaths

    report = models_report(default_models_dirs(AppPaths.discover().models_dir))
    install_command = report.pop("install_command")
    if as_json:
        print(json.dumps(report, indent=2))
        return EXIT_OK
    for source in report["models"]:
        _say(f"{source['name']}  ({source['origin']})")
    if not report["models"]:
        _say("no open models found on disk")
    _say("looked in: " + "; ".join(report["searched"]))
    if report["missing_packages"]:
        _say(f"to train them: {install_command} (missing: {', '.join(report['missing_packages'])})")
    return EXIT_OK


async def _ask_online(args: argparse.Namespace, doing: str, failing: str, ask: Any) -> tuple[Any, Any] | None:
    """Open the profile, connect, and `await ask(service)`: (service, answer), or None once
    what went wrong is said ("cannot {failing}: ..."). The service is closed either way."""
    from tunedeck.core.bootstrap import open_service
    from tunedeck.core.cache import CacheError

    try:
        service = await open_service(args.profile)
    except CacheError as exc:
        _fail(str(exc))
        return None
    try:
        if not await connect_online(service, doing):
            return None
        return service, await ask(service)
    except (ApiError, ServiceError, CacheError) as exc:
        _fail(f"cannot {failing}: {exc}")
        return None
    finally:
        await service.close()


async def _compute(args: argparse.Namespace) -> int:
    """The backend's devices and the job holding each (`Service.compute`)."""
    asked = await _ask_online(args, "ask for the backend's devices", "list devices", lambda service: service.compute())
    if asked is None:
        return EXIT_FAILED
    _, view = asked
    if args.json:
        print(json.dumps(view.as_json(), indent=2))
        return EXIT_OK
    if view.cluster is not None:
        _say(view.cluster.text)
    width = max((len(d.id) for d in view.devices), default=6)
    for device in view.devices:
        holder = device.job or "free"
        _say(f"{device.id:<{width}}  {device.kind:<13}  {device.memory_text:>7}  {holder}  {device.name}")
    if not view.devices and view.cluster is None:
        _say("the backend reports no devices")
    if view.waiting:
        _say("waiting for a device: " + ", ".join(view.waiting))
    return EXIT_OK


async def _models(args: argparse.Namespace) -> int:
    """The provider's models as the launch form offers them (`Service.model_choices`)."""
    import dataclasses
    import datetime as dt

    asked = await _ask_online(args, "list models", "list models", lambda service: service.model_choices())
    if asked is None:
        return EXIT_FAILED
    service, choices = asked
    today = dt.date.today()
    if args.json:
        models = [{**dataclasses.asdict(c), "label": c.label(today)} for c in choices]
        print(json.dumps({"profile": service.profile.name, "models": models}, indent=2))
        return EXIT_OK
    for choice in choices:
        _say(choice.label(today))
    if not choices:
        _say(f"{service.profile.describe()} lists no models")
    if service.profile.backend == "local":
        _say("(open models on this machine, and where they were looked for: tunedeck models --on-disk)")
    return EXIT_OK


def _print_profiles() -> int:
    from tunedeck.core.bootstrap import load_app_config

    config = load_app_config()
    for name, profile in sorted(config.profiles.items()):
        marker = "*" if name == config.default_profile else " "
        origin = "  (built in)" if profile.builtin and profile.backend != "local" else ""
        print(f"{marker} {name:<16} {profile.backend:<11} {profile.describe()}{origin}")
    return EXIT_OK


def _confirm_profile(name: str) -> int:
    from tunedeck.core.bootstrap import load_app_config
    from tunedeck.core.consent import destination, give_consent, needs_consent
    from tunedeck.core.paths import AppPaths

    paths = AppPaths.discover()
    profile = load_app_config(paths).profile(name)
    if needs_consent(profile, paths) is None:
        _say(f"profile {name!r} needs no confirmation (configured by you, agreed before, or no key to send)")
        return EXIT_OK
    give_consent(profile, paths)
    _say(f"profile {name!r} may now send ${profile.key_env} to {destination(profile)}")
    return EXIT_OK


async def _jobs(args: argparse.Namespace) -> int:
    from tunedeck.core.bootstrap import open_service
    from tunedeck.core.cache import CacheError
    from tunedeck.core.service import Notice, PollError

    try:
        service = await open_service(args.profile)
    except CacheError as exc:
        _fail(str(exc))
        return EXIT_FAILED
    # Warnings the core publishes while it works (a list whose paging never ends) go to stderr.
    service.subscribe(lambda event: _fail(event.message) if isinstance(event, (PollError, Notice)) else None)
    told = service.cache.recovery_note
    if told:
        _fail(told)
    try:
        if not getattr(args, "offline", False):
            await service.connect()
            if service.connection.state == "consent":
                _fail(f"{service.connection.detail} To agree: tunedeck profiles --confirm {service.profile.name}")
                _fail("not sent; showing cached data")
            elif service.connection.state != "online":
                _fail(f"{service.connection.detail}; showing cached data")
        if args.jobs_command == "create":
            return await run_create(service, args)
        if args.jobs_command == "list":
            return await _jobs_list(service, args)
        if args.jobs_command in WATCH_COMMANDS:
            return await run_watch_command(service, args)
        return await _jobs_show(service, args)
    except (ApiError, ServiceError, CacheError) as exc:
        _fail(str(exc))
        return EXIT_FAILED
    finally:  # damage met after opening was told as a Notice, above
        await service.close()


async def _jobs_list(service: Service, args: argparse.Namespace) -> int:
    rows = await service.refresh_all_jobs() if service.is_connected else await service.cached_rows()
    if args.json:
        print(json.dumps({"profile": service.profile.name, "jobs": [_row_json(r) for r in rows]}, indent=2))
        return EXIT_OK
    if not rows:
        print("no jobs yet")
        return EXIT_OK
    print(f"{'ID':<32} {'MODEL':<24} {'METHOD':<6} {'STATUS':<16} {'PROGRESS':>8}  {'CREATED':<16}  FINE-TUNED MODEL")
    for row in rows:
        job = row.job
        progress = f"{row.progress:.0%}" if row.progress is not None else "-"
        _say(
            f"{job.id:<32} {job.model:<24} {job.method_label:<6} {job.status:<16} {progress:>8}  "
            f"{local_time(job.created_at):<16}  {job.fine_tuned_model or '-'}"
        )
    return EXIT_OK


async def _jobs_show(service: Service, args: argparse.Namespace) -> int:
    checkpoints: list[Checkpoint] | None = None
    if service.is_connected:
        known = await service.refresh_job(args.job_id)
        # The checkpoints before the events: the verdict names the best step among those kept.
        try:
            checkpoints = await service.checkpoints(args.job_id)
        except ApiError as exc:  # a provider without checkpoints: what the cache holds
            _fail(f"checkpoints: {exc.message}")
        await service.follow(args.job_id, known=known)
    job = await service.cached_job(args.job_id)
    if job is None:
        _fail(f"no job {args.job_id!r} in profile {service.profile.name!r}")
        return EXIT_FAILED
    if checkpoints is None:
        checkpoints = await service.cached_checkpoints(args.job_id)
    events = await service.cached_events(args.job_id)
    verdict = await service.verdict(args.job_id)
    if args.json:
        metrics = [m for m in map(MetricPoint.from_event, events) if m is not None]
        shown = _show_json(service, job, events, metrics)
        shown["overfitting"] = verdict.to_json() if verdict is not None else None
        shown["checkpoints"] = [c.raw for c in checkpoints]
        print(json.dumps(shown, indent=2))
        return EXIT_OK
    for label, value in job_fields(job):
        _say(f"{label + ':':<12} {value}")
    if verdict is not None:
        _say(f"{'overfitting:':<12} {verdict.state}: {verdict.advice}")
    for checkpoint in checkpoints:
        _say(f"{'checkpoint:':<12} step {checkpoint.step}  {checkpoint.model}")
    print()
    # Metrics are one event per step: they have their own command (`jobs metrics`).
    for event in events:
        if event.type != "metrics":
            _say(f"{local_time(event.created_at)}  {event.level:<5} {event.message}")
    print()
    _say(metrics_summary(await service.cached_series(args.job_id), job.id))
    return EXIT_OK


def _row_json(row: JobRow) -> dict[str, Any]:
    job = row.job
    return {
        "id": job.id,
        "model": job.model,
        "method": job.method,
        "status": job.status,
        "progress": row.progress,
        "step": row.step,
        "total_steps": row.total_steps,
        "created_at": job.created_at,
        "finished_at": job.finished_at,
        "fine_tuned_model": job.fine_tuned_model,
        "overfitting": row.verdict.to_json() if row.verdict is not None else None,
    }


def _show_json(service: Service, job: Job, events: list[JobEvent], metrics: list[MetricPoint]) -> dict[str, Any]:
    return {
        "profile": service.profile.name,
        "job": job.raw,
        "events": [e.to_api() for e in events],
        "metrics": [
            {
                "step": m.step,
                "total_steps": m.total_steps,
                "train_loss": m.train_loss,
                "valid_loss": m.valid_loss,
                "full_valid_loss": m.full_valid_loss,
                "train_mean_token_accuracy": m.train_accuracy,
                "valid_mean_token_accuracy": m.valid_accuracy,
            }
            for m in metrics
        ],
    }


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
