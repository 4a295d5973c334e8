"""`tunedeck serve`: the local backend, in the foreground or as a background service.

    tunedeck serve [--host H] [--port P] [--data-dir D] ...   foreground, until Ctrl-C
    tunedeck serve --detach ...                               in the background; survives the terminal
    tunedeck serve status [--json]                            is it running, where, which jobs
    tunedeck serve stop                                       stop it (unfinished jobs resume at the next start)
    tunedeck serve --print-key                                the API key SDK users pass as api_key

The app starts the same background service by itself when it needs one, so `--detach` is
for people who drive the backend from their own scripts.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

from tunedeck.core.text import strip_controls

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
ACTIVE_STATUSES = ("validating_files", "queued", "running", "pausing")
STATUS_TIMEOUT_S = 5.0


def add_serve_parser(commands: Any) -> None:
    serve = commands.add_parser(
        "serve",
        help="run the local fine-tuning backend (foreground, --detach, status, stop)",
        description="Run the local fine-tuning backend. Without an action it serves in the foreground.",
    )
    serve.add_argument(
        "action",
        nargs="?",
        choices=("status", "stop"),
        help="status: say whether it runs and where; stop: stop the background service",
    )
    serve.add_argument(
        "--detach", action="store_true", help="run in the background; it keeps training after you log out"
    )
    serve.add_argument("--stop", action="store_true", help="stop the running service (same as `serve stop`)")
    serve.add_argument("--status", action="store_true", help="same as `serve status`")
    serve.add_argument("--print-key", action="store_true", help="print the API key (for OPENAI_API_KEY) and exit")
    serve.add_argument("--json", action="store_true", help="status as JSON")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8765)
    serve.add_argument("--data-dir", type=Path, help="where jobs, files and models are kept")
    serve.add_argument(
        "--profile",
        default="local",
        help="the local profile whose settings (model_aliases) it serves with (default: local)",
    )
    serve.add_argument(
        "--alias",
        action="append",
        default=[],
        metavar="NAME=MODEL",
        help="answer to NAME as MODEL, e.g. gpt-4o-mini-2024-07-18=tunedeck-ngram (adds to the profile's model_aliases)",
    )
    serve.add_argument(
        "--ray-address",
        metavar="ADDRESS",
        help="run transformer jobs on this Ray cluster: auto, HOST:PORT or ray://HOST:PORT "
        "(default: the profile's ray_address; none: this machine)",
    )
    serve.add_argument("--time-scale", type=float, default=1.0, help="stretch job durations (demos)")
    serve.add_argument(
        "--idle-exit",
        type=float,
        metavar="SECONDS",
        help="exit once no job has been active and no request has come for SECONDS",
    )
    serve.add_argument(
        "--training-not-available",
        action="store_true",
        help="answer job creation with OpenAI's 403 training_not_available (rehearse a blocked organisation)",
    )
    serve.add_argument("--faults", type=Path, metavar="FILE", help="inject faults from a JSON or TOML plan")
    serve.add_argument(
        "--allow-host",
        action="append",
        default=[],
        metavar="NAME",
        help="answer requests for this Host name too (besides loopback names and the bound address)",
    )
    serve.add_argument(
        "--allow-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="let web pages from this origin call it, e.g. http://localhost:3000 (none by default)",
    )
    serve.add_argument(
        "--storage-limit-gb",
        type=float,
        default=100.0,
        metavar="GB",
        help="disk budget for uploads and trained models (default 100)",
    )


def run_serve(args: argparse.Namespace) -> int:
    from tunedeck.backend import ApiKeyFileError

    try:
        return _run(args)
    except ApiKeyFileError as exc:
        _fail(str(exc))
        return EXIT_FAILED


def _run(args: argparse.Namespace) -> int:
    from tunedeck.core.paths import AppPaths

    # By default the same store as the app's `local` profile: a running `tunedeck` attaches to it.
    paths = AppPaths.discover()
    data_dir: Path = args.data_dir or paths.local_backend_dir("local")
    if args.print_key:
        from tunedeck.backend import load_or_create_api_key

        print(load_or_create_api_key(data_dir))
        return EXIT_OK
    if args.action == "status" or args.status:
        return _status(data_dir, args.json)
    if args.action == "stop" or args.stop:
        return _stop(data_dir)
    if args.detach:
        return _detach(data_dir, args)
    return _foreground(data_dir, paths, args)


def model_aliases(args: argparse.Namespace, paths: Any) -> dict[str, str]:
    """The profile's `model_aliases` from the config, then each `--alias NAME=MODEL` over them.
    Raises `ValueError` naming what is wrong (the config, or a flag)."""
    aliases = dict(_local_profile(args, paths).model_aliases)
    for flag in args.alias:
        name, sep, model = flag.partition("=")
        if not sep or not name.strip() or not model.strip():
            raise ValueError(f"--alias {flag!r}: expected NAME=MODEL, e.g. gpt-4o-mini-2024-07-18=tunedeck-ngram")
        aliases[name.strip()] = model.strip()
    return aliases


def ray_address(args: argparse.Namespace, paths: Any) -> str | None:
    """`--ray-address`, else the profile's `ray_address`, else None (this machine)."""
    return args.ray_address or _local_profile(args, paths).ray_address


def _local_profile(args: argparse.Namespace, paths: Any) -> Any:
    from tunedeck.core.config import ConfigError, load_config

    try:
        profile = load_config(paths.config_file).profile(args.profile)
    except ConfigError as exc:
        raise ValueError(str(exc)) from None
    if profile.backend != "local":
        raise ValueError(f"--profile {args.profile}: not a local profile (its backend is {profile.backend})")
    return profile


def _foreground(data_dir: Path, paths: Any, args: argparse.Namespace) -> int:
    from tunedeck.backend import AliasError, BackendBusy, FaultConfigError, default_models_dirs, serve

    try:
        aliases = model_aliases(args, paths)
        cluster = ray_address(args, paths)
    except ValueError as exc:
        _fail(str(exc))
        return EXIT_USAGE
    try:
        serve(
            data_dir=data_dir,
            host=args.host,
            port=args.port,
            time_scale=args.time_scale,
            training_not_available=args.training_not_available,
            faults=args.faults,
            models_dirs=default_models_dirs(paths.models_dir),
            idle_exit=args.idle_exit,
            allowed_hosts=args.allow_host,
            allowed_origins=args.allow_origin,
            storage_limit_bytes=int(args.storage_limit_gb * 2**30),
            model_aliases=aliases,
            ray_address=cluster,
        )
    except AliasError as exc:
        _fail(f"model aliases: {exc}")
        return EXIT_USAGE
    except FaultConfigError as exc:
        _fail(f"--faults: {exc}")
        return EXIT_USAGE
    except BackendBusy as busy:
        _fail(str(busy))
        return EXIT_FAILED
    except OSError as exc:
        _fail(f"cannot serve on {args.host}:{args.port}: {exc.strerror or exc}")
        return EXIT_FAILED
    return EXIT_OK


def _detach(data_dir: Path, args: argparse.Namespace) -> int:
    from tunedeck.backend import DaemonError, api_key_file, find_running, start_detached
    from tunedeck.core.local_service import serve_command

    running = find_running(data_dir)
    if running is not None:
        _say(f"already running at {running.base_url} (pid {running.pid}); log: {running.log_file}")
        return EXIT_OK
    options = ["--host", args.host, "--port", str(args.port), "--time-scale", repr(args.time_scale)]
    if args.idle_exit is not None:
        options += ["--idle-exit", repr(args.idle_exit)]
    if args.training_not_available:
        options.append("--training-not-available")
    options += ["--profile", args.profile, *(f"--alias={flag}" for flag in args.alias)]
    if args.ray_address:
        options += ["--ray-address", args.ray_address]
    if args.faults is not None:
        options += ["--faults", str(args.faults.resolve())]
    for host in args.allow_host:
        options += ["--allow-host", host]
    for origin in args.allow_origin:
        options += ["--allow-origin", origin]
    options += ["--storage-limit-gb", repr(args.storage_limit_gb)]
    command = serve_command(data_dir, *options)
    try:
        running = start_detached(data_dir, command)
    except DaemonError as exc:
        _fail(str(exc))
        return EXIT_FAILED
    _say(f"tunedeck local backend at {running.base_url} (pid {running.pid}), in the background")
    _say(f"log: {running.log_file}")
    _say(f"key: {api_key_file(data_dir)}  (export OPENAI_API_KEY=$(tunedeck serve --print-key))")
    _say("stop it with: tunedeck serve stop")
    return EXIT_OK


def _stop(data_dir: Path) -> int:
    from tunedeck.backend import DaemonError, stop_running

    try:
        stopped = stop_running(data_dir)
    except DaemonError as exc:
        _fail(str(exc))
        return EXIT_FAILED
    if stopped is None:
        _say(f"not running (data: {data_dir})")
        return EXIT_OK
    _say(f"stopped the local backend (pid {stopped.pid}); unfinished jobs resume when it starts again")
    return EXIT_OK


def _status(data_dir: Path, as_json: bool) -> int:
    from tunedeck.backend import api_key_file, find_running, load_or_create_api_key

    running = find_running(data_dir)
    report: dict[str, Any] = {"running": running is not None, "data_dir": str(data_dir)}
    if running is not None:
        report.update(base_url=running.base_url, pid=running.pid, log_file=str(running.log_file))
        report["key_file"] = str(api_key_file(data_dir))
        report["jobs"], report["jobs_error"] = _job_counts(running.base_url, load_or_create_api_key(data_dir))
    if as_json:
        print(json.dumps(report, indent=2))
        return EXIT_OK if running is not None else EXIT_FAILED
    if running is None:
        _say(f"not running (data: {data_dir})")
        return EXIT_FAILED
    _say(f"running at {running.base_url} (pid {running.pid})")
    _say(f"data: {data_dir}")
    _say(f"log:  {running.log_file}")
    _say(f"key:  {report['key_file']}")
    if report["jobs_error"]:
        _say(f"jobs: cannot ask it ({report['jobs_error']})")
    else:
        counts = report["jobs"]
        active = ", ".join(f"{counts[s]} {s}" for s in ACTIVE_STATUSES if counts.get(s))
        _say(f"jobs: {active or 'none active'} ({sum(counts.values())} in all)")
    return EXIT_OK


def _job_counts(base_url: str, api_key: str) -> tuple[dict[str, int], str | None]:
    """Jobs by status, read from the service itself (newest 100: what is active is recent)."""
    request = urllib.request.Request(
        f"{base_url}/fine_tuning/jobs?limit=100", headers={"Authorization": f"Bearer {api_key}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=STATUS_TIMEOUT_S) as answer:
            body = json.load(answer)
    except (OSError, ValueError) as exc:
        return {}, str(getattr(exc, "reason", None) or exc)
    return dict(Counter(str(job.get("status")) for job in body.get("data", []))), None


def _fail(message: str) -> None:
    print(f"tunedeck: {strip_controls(message)}", file=sys.stderr)


def _say(line: str) -> None:
    print(strip_controls(line))
