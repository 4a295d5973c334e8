"""`tunedeck data ...`: validate, stats, split and convert JSONL training data, headless.

    tunedeck data validate PATH [--method sft|dpo|rft|auto] [--model MODEL] [--grader FILE]
                                [--validation-file FILE] [--json] [--max-errors N]
    tunedeck data stats PATH [--method ...] [--model MODEL] [--json]
    tunedeck data split PATH --validation 0.1 [--seed S] [--train-out F] [--validation-out F] [--force] [--json]
    tunedeck data convert PATH [-o OUT] [--system TEXT] [--prompt-suffix S] [--completion-suffix S]
                               [--no-strip] [--force] [--json]   (a file in a chat format already: exit 0, nothing written)

Data (the report, JSON with --json) goes to stdout, diagnostics to stderr. Exit codes:
0 the file is acceptable / the command did its work, 1 the data has errors, 2 usage or I/O
errors. Dataset text is untrusted: human output passes through `strip_controls`.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from tunedeck.core.text import strip_controls

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
METHOD_CHOICES = ("auto", "sft", "dpo", "rft")
LABEL_WIDTH = 40  # a label longer than this is cut in the split table


def add_data_parser(commands: Any) -> None:
    """Register `data` and its actions on the top-level subparsers."""
    data = commands.add_parser("data", help="validate, inspect, split and convert JSONL training data")
    actions = data.add_subparsers(dest="data_command", metavar="ACTION", required=True)

    validate = actions.add_parser("validate", help="find every error of a training file, with line and field")
    _common(validate)
    validate.add_argument("--grader", metavar="FILE", help="RFT grader JSON: every {{item.x}} it reads must exist in every row")
    validate.add_argument("--validation-file", metavar="FILE", help="also check this validation file, and overlap with it")
    validate.add_argument("--max-errors", type=int, default=20, metavar="N", help="errors listed in the human output (default 20)")
    validate.add_argument("--workers", type=int, default=None, metavar="N", help="processes for large files (default 2)")

    stats = actions.add_parser("stats", help="token counts, distributions and the cost estimate of a file")
    _common(stats)
    stats.add_argument("--workers", type=int, default=None, metavar="N", help=argparse.SUPPRESS)

    split = actions.add_parser("split", help="split into training and validation files, duplicates kept on one side")
    split.add_argument("path", metavar="PATH")
    split.add_argument("--validation", type=float, default=0.1, metavar="SHARE", help="share for validation (default 0.1)")
    split.add_argument("--seed", type=int, default=0, help="the same seed gives the same split (default 0)")
    split.add_argument("--train-out", metavar="FILE", help="default: PATH's name + _train.jsonl")
    split.add_argument("--validation-out", metavar="FILE", help="default: PATH's name + _validation.jsonl")
    split.add_argument("--force", action="store_true", help="overwrite existing output files")
    split.add_argument("--json", action="store_true", help="print JSON")

    convert = actions.add_parser("convert", help="legacy prompt/completion data to the chat format")
    convert.add_argument("path", metavar="PATH")
    convert.add_argument("-o", "--output", metavar="FILE", help="default: PATH's name + _chat.jsonl")
    convert.add_argument("--system", metavar="TEXT", help="a system message to put first in every example")
    convert.add_argument("--prompt-suffix", default="", metavar="S", help="separator to remove from the end of prompts")
    convert.add_argument("--completion-suffix", default="", metavar="S", help="stop sequence to remove from completions")
    convert.add_argument("--no-strip", action="store_true", help="keep surrounding whitespace")
    convert.add_argument("--force", action="store_true", help="overwrite the output file")
    convert.add_argument("--json", action="store_true", help="print JSON")


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", metavar="PATH")
    parser.add_argument("--method", choices=METHOD_CHOICES, default="auto", help="fine-tuning method (default: detect)")
    parser.add_argument("--model", metavar="MODEL", help="base model: tokenizer, context limit, price (default per method)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def run_data(args: argparse.Namespace) -> int:
    try:
        if args.data_command == "validate":
            return _validate(args)
        if args.data_command == "stats":
            return _stats(args)
        if args.data_command == "split":
            return _split(args)
        return _convert(args)
    except KeyboardInterrupt:
        _fail("interrupted")
        return 130


def _fail(message: str) -> None:
    text = f"tunedeck: {strip_controls(message)}"
    print(text.encode("utf-8", "backslashreplace").decode("utf-8"), file=sys.stderr)


def _emit(text: str) -> None:
    """Print to stdout; unpaired surrogates (from file names or data) become backslash escapes
    instead of an encoding error."""
    print(text.encode("utf-8", "backslashreplace").decode("utf-8"))


def _say(line: str) -> None:
    _emit(strip_controls(line))


class _Progress:
    """A percentage on stderr, only when stderr is a terminal and the file is large."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.active = sys.stderr.isatty()
        self.shown = False

    def __call__(self, done: int, total: int) -> None:
        if not self.active or total < 20_000_000:
            return
        self.shown = True
        print(f"\r{self.label} {done * 100 // max(total, 1):3d}%", end="", file=sys.stderr, flush=True)

    def clear(self) -> None:
        if self.shown:
            print("\r" + " " * (len(self.label) + 6) + "\r", end="", file=sys.stderr, flush=True)


def _run_validation(args: argparse.Namespace, label: str) -> Any:
    """The report, or an exit code for usage and I/O errors (already explained on stderr)."""
    from tunedeck.core.datasets import DatasetIOError, GraderError, validate_file

    progress = _Progress(label)
    try:
        report = validate_file(
            args.path,
            method=args.method,
            model=args.model,
            grader=getattr(args, "grader", None),
            validation_file=getattr(args, "validation_file", None),
            progress=progress,
            workers=args.workers,
        )
    except (DatasetIOError, GraderError, ValueError) as exc:
        _fail(str(exc))
        return EXIT_USAGE
    finally:
        progress.clear()
    if _profile_is_local(getattr(args, "profile", None)):
        from tunedeck.core.datasets.pricing import local_estimate_json

        report.estimate = local_estimate_json(report)  # the local backend bills nothing: its work instead
    return report


def _profile_is_local(name: str | None) -> bool:
    """Whether the profile the estimate is for trains on the local backend (a config that
    cannot be read leaves the provider's prices: the data commands need no profile)."""
    from tunedeck.core.bootstrap import load_app_config
    from tunedeck.core.config import ConfigError

    try:
        return load_app_config().profile(name).backend == "local"
    except ConfigError:
        return False


def _validate(args: argparse.Namespace) -> int:
    from tunedeck.core.datasets import render_text

    report = _run_validation(args, "validating")
    if isinstance(report, int):
        return report
    if args.json:
        _emit(json.dumps(report.to_json(), ensure_ascii=False))
    else:
        for line in render_text(report, max_errors=max(0, args.max_errors)):
            _emit(line)  # render_text has already passed every line through strip_controls
    return EXIT_OK if report.ok else EXIT_FAILED


def _stats(args: argparse.Namespace) -> int:
    report = _run_validation(args, "reading")
    if isinstance(report, int):
        return report
    data = report.to_json()
    keys = ("path", "format", "checked_as", "model", "model_assumed", "encoding", "context", "bytes", "examples",
            "valid_examples", "error_count", "warning_count", "duplicates", "tokens", "messages_per_example", "estimate")
    if args.json:
        _emit(json.dumps({k: data[k] for k in keys}, ensure_ascii=False))
        return EXIT_OK
    t, e = data["tokens"], data["estimate"]
    from tunedeck.core.datasets.detect import FORMAT_NAMES

    _say(f"{data['path']}")
    _say(f"  format            {FORMAT_NAMES.get(data['format'] or '', 'unknown')}")
    _say(f"  model             {data['model']}{' (assumed)' if data['model_assumed'] else ''} · {data['encoding']} · context {data['context']:,}")
    _say(f"  examples          {data['examples']:,} ({data['error_count']:,} errors, {data['warning_count']:,} warnings, {data['duplicates']:,} duplicates)")
    m = data["messages_per_example"]
    if m.get("n"):
        _say(f"  messages/example  min {m['min']} · p50 {m['p50']} · p95 {m['p95']} · max {m['max']} · mean {m['mean']}")
    if t.get("examples_counted"):
        _say(f"  tokens/example    min {t['min']:,} · p5 {t['p5']:,} · p50 {t['p50']:,} · p95 {t['p95']:,} · max {t['max_example']:,} (line {t['max_example_line']}) · mean {t['mean']}")
        _say(f"  tokens            total {t['total']:,} · billed per epoch {t['billed']:,} · {t['too_long']:,} over the context")
        _say("  by role           " + " · ".join(f"{k} {v:,}" for k, v in t["by_role"].items()))
    if e.get("none_because"):
        _say(f"  estimate          none: {e['none_because']}")
    elif e.get("local"):
        _say(f"  estimate          {e['epochs']} epochs · {e['trained_tokens']:,} trained tokens · {e['note']}")
    elif e:
        cost = f"${e['cost_usd']:,.2f}" if e.get("cost_usd") is not None else f"not estimated ({e['price'].get('note')})"
        _say(f"  estimate          {e['epochs']} epochs · {e['trained_tokens']:,} trained tokens · {cost}")
        _say(f"  prices            {e['price']['source']}")
    return EXIT_OK


def _split(args: argparse.Namespace) -> int:
    from tunedeck.core.datasets.split import SplitError, split_file

    progress = _Progress("splitting")
    try:
        result = split_file(
            args.path, args.validation, args.seed, train_out=args.train_out, validation_out=args.validation_out,
            overwrite=args.force, progress=progress,
        )
    except (SplitError, ValueError) as exc:
        _fail(str(exc))
        return EXIT_FAILED if isinstance(exc, SplitError) and exc.data_error else EXIT_USAGE
    finally:
        progress.clear()
    if args.json:
        _emit(json.dumps(result.to_json(), ensure_ascii=False))
        return EXIT_OK
    files = [("training", str(result.train_path), result.train_examples),
             ("validation", str(result.validation_path), result.validation_examples)]
    width = max(len("FILE"), *(len(path) for _, path, _ in files))
    _say(f"{'PART':<10}  {'FILE':<{width}}  {'EXAMPLES':>8}")
    for part, path, examples in files:
        _say(f"{part:<10}  {path:<{width}}  {examples:>8,}")
    if result.stratified_by:
        _say("")
        _say(f"stratified by {result.stratified_by}:")
        label_width = max(len("LABEL"), *(len(label[:LABEL_WIDTH]) for label in result.labels))
        _say(f"  {'LABEL':<{label_width}}  {'TRAINING':>8}  {'VALIDATION':>10}")
        for label, (train, held) in result.labels.items():
            _say(f"  {label[:LABEL_WIDTH]:<{label_width}}  {train:>8,}  {held:>10,}")
    else:
        _say("not stratified (no obvious label)")
    if result.duplicate_groups:
        _say(f"{result.duplicate_groups:,} groups of duplicate examples, each kept on one side")
    if result.blank_lines_dropped:
        _say(f"{result.blank_lines_dropped:,} blank lines dropped")
    return EXIT_OK


def _convert(args: argparse.Namespace) -> int:
    from tunedeck.core.datasets.convert import ConvertError, convert_file

    try:
        result = convert_file(
            args.path, args.output, system=args.system, prompt_suffix=args.prompt_suffix,
            completion_suffix=args.completion_suffix, strip=not args.no_strip, overwrite=args.force,
        )
    except ConvertError as exc:
        _fail(str(exc))
        return EXIT_USAGE
    if args.json:
        _emit(json.dumps(result.to_json(), ensure_ascii=False))
    elif result.already is not None:
        from tunedeck.core.datasets.detect import FORMAT_NAMES

        # Exit 0: the file is what a conversion would make; there is nothing to do, and no
        # error in it was looked for (`data validate` does that).
        _say(f"{args.path} is in the {FORMAT_NAMES[result.already]} format already: nothing to convert, nothing written")
    elif result.ok:
        _say(f"wrote {result.examples:,} chat examples to {result.output}")
    else:
        for issue in result.errors[:20]:
            _say(f"  {issue.location():<24} {issue.code:<20} {issue.message}")
        _say(f"FAILED: {result.error_count:,} lines cannot be converted; nothing was written")
    return EXIT_OK if result.ok else EXIT_FAILED
