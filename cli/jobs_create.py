"""`tunedeck jobs create`: the launch form's headless twin.

The same request (`LaunchRequest`), the same pre-flight (printed, or as JSON with
`--dry-run --json`), the same upload reuse and resumable parts, the same create that is
never duplicated. Progress goes to stderr, the result to stdout. Exit 0: launched (or a
dry run that would launch); 1: the pre-flight blocks or the API refuses; 2: usage.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from tunedeck.core.text import strip_controls

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

# flag -> hyperparameter name
HYPERPARAMETER_FLAGS = {
    "epochs": "n_epochs",
    "batch_size": "batch_size",
    "lr_multiplier": "learning_rate_multiplier",
    "beta": "beta",
    "reasoning_effort": "reasoning_effort",
    "compute_multiplier": "compute_multiplier",
    "eval_interval": "eval_interval",
    "eval_samples": "eval_samples",
}


class UsageError(Exception):
    """Arguments that cannot make a request; the message names the flag."""


def add_create_parser(jobs: Any) -> None:
    create = jobs.add_parser(
        "create",
        help="check, upload and create a fine-tuning job (the launch form, headless)",
        description="Check the files for the method (the pre-flight), upload them once, create the job once.",
    )
    create.add_argument(
        "--method", choices=("sft", "dpo", "rft"), default=None, help="default: the training file's format"
    )
    create.add_argument("--model", help="base model, ft: model or checkpoint (required unless --preset gives one)")
    create.add_argument("--train", metavar="FILE", help="training JSONL, or the id of a file on the provider (file-…)")
    create.add_argument("--validation", metavar="FILE", help="validation JSONL, or a file id")
    create.add_argument("--epochs", metavar="N", help="1-50 or auto")
    create.add_argument("--batch-size", metavar="N", help="1-256 or auto")
    create.add_argument("--lr-multiplier", metavar="X", help="> 0 or auto")
    create.add_argument("--beta", metavar="B", help="DPO: (0, 2] or auto")
    create.add_argument("--reasoning-effort", metavar="E", help="RFT: default, low, medium or high")
    create.add_argument("--compute-multiplier", metavar="X", help="RFT: (0.00001, 10] or auto")
    create.add_argument("--eval-interval", metavar="N", help="RFT: steps between evaluations, or auto")
    create.add_argument("--eval-samples", metavar="N", help="RFT: samples per evaluation, or auto")
    create.add_argument("--grader", metavar="FILE.json", help="RFT: the grader (a grader object, or {\"grader\": ...})")
    create.add_argument("--response-format", metavar="FILE.json", help="RFT: the answers' response_format")
    create.add_argument("--suffix", help="up to 64 letters, digits, . _ - (in the model's name)")
    create.add_argument("--seed", metavar="N", help="0-2147483647")
    create.add_argument("--metadata", metavar="KEY=VALUE", action="append", default=[], help="repeatable")
    create.add_argument("--wandb-project", metavar="NAME", help="Weights & Biases integration (OpenAI)")
    create.add_argument(
        "--option", metavar="KEY=VALUE", action="append", default=[],
        help="a tunedeck option for the local backend, e.g. training_type=lora, lora_rank=8 (repeatable)",
    )
    create.add_argument("--preset", metavar="NAME", help="start from a preset saved in the app (flags override it)")
    create.add_argument("--dry-run", action="store_true", help="print the pre-flight; upload and create nothing")
    create.add_argument("--strict", action="store_true", help="treat the pre-flight's warnings as blocking")
    create.add_argument("--json", action="store_true", help="print JSON")


def build_request(args: argparse.Namespace, presets: dict[str, Any] | None = None) -> Any:
    """The `LaunchRequest` the flags describe; raises `UsageError`."""
    from dataclasses import replace

    from tunedeck.core.datasets.jobrules import parse_value
    from tunedeck.core.launch.request import FORMAT_METHODS, LaunchRequest

    base = LaunchRequest()
    if args.preset:
        if not presets or args.preset not in presets:
            known = ", ".join(sorted(presets or {})) or "none saved yet"
            raise UsageError(f"--preset: no preset named {args.preset!r} ({known})")
        base = presets[args.preset]
    changes: dict[str, Any] = {}
    if args.train:
        changes.update(_file("--train", args.train, "training"))
    if args.validation:
        changes.update(_file("--validation", args.validation, "validation"))
    if base.training_path is None and not base.training_file_id and not changes.get("training_file_id") and (
        changes.get("training_path") is None
    ):
        raise UsageError("--train FILE is required")
    if args.model:
        changes["model"] = args.model
    elif not base.model:
        raise UsageError("--model is required")
    if args.method:
        changes["method"] = FORMAT_METHODS[args.method]
    elif not args.preset:
        training = changes.get("training_path") or base.training_path
        if training is None:
            raise UsageError("--method is required with a file id (its format cannot be read here)")
        changes["method"] = _detected_method(training)
    hyper = dict(base.hyperparameters)
    for flag, name in HYPERPARAMETER_FLAGS.items():
        text = getattr(args, flag)
        if text is None:
            continue
        try:
            hyper[name] = parse_value(name, text)
        except ValueError as exc:
            raise UsageError(f"--{flag.replace('_', '-')}: {exc}") from None
    changes["hyperparameters"] = hyper
    if args.seed is not None:
        try:
            changes["seed"] = parse_value("seed", args.seed)
        except ValueError as exc:
            raise UsageError(f"--seed: {exc}") from None
    if args.suffix is not None:
        changes["suffix"] = args.suffix
    if args.metadata:
        changes["metadata"] = {**base.metadata, **_pairs("--metadata", args.metadata)}
    if args.wandb_project:
        changes["wandb"] = {**(base.wandb or {}), "project": args.wandb_project}
    if args.option:
        options = dict(base.options)
        for key, text in _pairs("--option", args.option).items():
            try:
                value = parse_value(f"options.{key}", text)
            except ValueError as exc:
                raise UsageError(f"--option {key}: {exc}") from None
            if value is not None:
                options[key] = value
        changes["options"] = options
    method = changes.get("method", base.method)
    for flag, given in (("--grader", args.grader), ("--response-format", args.response_format)):
        if given and method != "reinforcement":
            raise UsageError(f"{flag} applies to RFT only (--method rft)")
    if args.grader:
        grader = _json_file("--grader", args.grader)
        changes["grader"] = grader.get("grader", grader) if isinstance(grader.get("grader"), dict) else grader
    if args.response_format:
        changes["response_format"] = _json_file("--response-format", args.response_format)
    return replace(base, **changes)


def _file(flag: str, text: str, role: str) -> dict[str, Any]:
    path = Path(text).expanduser()
    if text.startswith("file-") and not path.exists():
        return {f"{role}_file_id": text, f"{role}_path": None}
    if not path.is_file():
        raise UsageError(f"{flag}: {path}: no such file")
    return {f"{role}_path": path.absolute(), f"{role}_file_id": None}


def _detected_method(path: Path | None) -> str:
    """The method the training file's format calls for (SFT when it cannot be told)."""
    if path is None:
        return "supervised"
    from tunedeck.core.datasets.validate import detect_format
    from tunedeck.core.launch.request import FORMAT_METHODS

    return FORMAT_METHODS.get(detect_format(path) or "sft", "supervised")


def _pairs(flag: str, items: list[str]) -> dict[str, str]:
    pairs = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"{flag}: {item!r} is not KEY=VALUE")
        pairs[key.strip()] = value.strip()
    return pairs


def _json_file(flag: str, text: str) -> dict[str, Any]:
    path = Path(text).expanduser()
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UsageError(f"{flag}: {path}: {exc.strerror or exc}") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise UsageError(f"{flag}: {path} is not JSON ({exc})") from None
    if not isinstance(value, dict):
        raise UsageError(f"{flag}: {path} must hold a JSON object")
    return value


async def run_create(service: Any, args: argparse.Namespace) -> int:
    """The pre-flight, then (unless --dry-run) the launch. `service` is open (and connected
    unless it could not be)."""
    from tunedeck.core.api import ApiError
    from tunedeck.core.launch.presets import PresetError, load_presets
    from tunedeck.core.service import ServiceError

    try:
        presets = load_presets(service.paths) if args.preset and service.paths is not None else None
        request = build_request(args, presets)
    except UsageError as exc:
        _err(str(exc))
        return EXIT_USAGE
    except PresetError as exc:
        _err(str(exc))
        return EXIT_USAGE
    try:
        checked = await service.preflight(request)
    except ServiceError as exc:
        _err(str(exc))
        return EXIT_FAILED
    preflight = checked.preflight
    blocked = not preflight.ok or (args.strict and bool(preflight.warnings))
    if args.dry_run:
        if args.json:
            print(json.dumps({"profile": service.profile.name, "dry_run": True, "preflight": preflight.to_json()}, indent=2))
        else:
            for line in preflight.render_text(problems=True):
                print(line)
            print()
            print(json.dumps(preflight.request_body, indent=2, ensure_ascii=False))
        return EXIT_FAILED if blocked else EXIT_OK
    for line in preflight.render_text(problems=True):
        _err(line, prefix="")
    if blocked:
        if args.strict and preflight.ok:
            _err("--strict: the warnings above block the launch")
        return EXIT_FAILED
    if not service.is_connected:
        _err(f"not connected to {service.profile.describe()}: {service.connection.detail}")
        return EXIT_FAILED
    progress = _ProgressLine()
    try:
        job = await service.launch(checked, progress=progress)
    except ApiError as exc:
        progress.end()
        _err(exc.message)
        if exc.kind == "training_not_available":
            _err("this organisation can no longer create fine-tuning jobs on this provider; "
                 "try another profile: tunedeck --profile NAME jobs create ... (tunedeck profiles lists them)")
        return EXIT_FAILED
    except ServiceError as exc:
        progress.end()
        _err(str(exc))
        return EXIT_FAILED
    progress.end()
    if args.json:
        print(json.dumps({"profile": service.profile.name, "job": job.raw, "preflight": preflight.to_json()}, indent=2))
    else:
        print(strip_controls(f"created {job.id} ({job.status}): tunedeck jobs show {job.id}"))
    return EXIT_OK


class _ProgressLine:
    """Upload progress on stderr: rewritten in place on a terminal, a line per phase otherwise."""

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()
        self.last_phase: tuple[str, str] | None = None
        self.drawn = False

    def __call__(self, progress: Any) -> None:
        line = strip_controls(progress.describe())
        phase = (progress.role, progress.upload.phase if progress.upload is not None else "create")
        if self.tty:
            print("\r\x1b[2K" + line, end="", file=sys.stderr, flush=True)
            self.drawn = True
        elif phase != self.last_phase:
            print(line, file=sys.stderr, flush=True)
        self.last_phase = phase

    def end(self) -> None:
        if self.drawn:
            print(file=sys.stderr)
            self.drawn = False


def _err(message: str, prefix: str = "tunedeck: ") -> None:
    print(prefix + strip_controls(message), file=sys.stderr)
