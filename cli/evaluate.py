"""`tunedeck eval run | job | list | show`: evaluating models headless.

    tunedeck eval run --data FILE --model A [--model B ...] [--system PROMPT]
                      [--grader exact|string_check|text_similarity|json|model|FILE.json] [--judge MODEL]
                      [--limit N] [--concurrency N] [--temperature T] [--max-tokens N]
                      [--out FILE.jsonl] [--json]
    tunedeck eval run --resume ID | --retry-errors ID [--out FILE.jsonl] [--json]
    tunedeck eval job JOB_ID [--data FILE] [...the same options]
    tunedeck eval list [--json]
    tunedeck eval show ID [--json | --markdown] [--out FILE.jsonl]

`--model` takes a model name, or `LABEL=MODEL` to name it in the results. `run` and `job`
print a progress line to stderr as they go (every `PROGRESS_EVERY_S` at most), then each
model's score with its 95% interval, pass rate, errors, tokens and cost, and the paired
comparison of the first model against each other one; `--json` prints one JSON object
instead, `--out` writes one JSON line per example with every model's answer, score and error.

Exit codes: 0 done; 1 the API failed (no connection, every request failed, a run that
stopped); 2 usage or bad input (a data file with no evaluable row, a grader file that is not
a grader, a bad setting). Data goes to stdout, diagnostics to stderr; text from the dataset
and the API passes `strip_controls`. Ctrl-C stops a run as `cancelled`: `--resume ID`
continues it without asking again what was answered.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunedeck.core.api import ApiError
from tunedeck.core.describe import local_time
from tunedeck.core.text import strip_controls

if TYPE_CHECKING:  # pragma: no cover
    from tunedeck.core.evaluate.examples import ExampleSet
    from tunedeck.core.evaluate.records import EvalProgress, EvalRunInfo, EvalSettings, ExampleResult, GraderChoice
    from tunedeck.core.evaluate.results import EvalSummary
    from tunedeck.core.evaluate.stats import Interval
    from tunedeck.core.service import Service

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
PROGRESS_EVERY_S = 2.0
BUILT_IN_GRADERS = ("exact", "string_check", "text_similarity", "json", "model")
PROBLEMS_SHOWN = 20
DEFAULT_MAX_TOKENS = 256
RUN_OPTIONS = {
    "concurrency": "--concurrency",
    "grader": "--grader",
    "limit": "--limit",
    "temperature": "--temperature",
    "max_tokens": "--max-tokens",
    "system": "--system",
    "seed": "--seed",
    "judge": "--judge",
    "fields": "--fields",
    "pass_threshold": "--pass-threshold",
}
"""The options a new run takes, which `--resume` and `--retry-errors` refuse (None: not given)."""

Print = Callable[[str], None]


class UsageError(Exception):
    """Bad arguments or input files: exit 2."""


def add_eval_parser(commands: Any) -> None:
    """Register `eval` and its actions on the top-level subparsers."""
    evaluate = commands.add_parser("eval", help="evaluate models on a dataset: scores, intervals, paired tests")
    actions = evaluate.add_subparsers(dest="eval_command", metavar="ACTION", required=True)

    run = actions.add_parser("run", help="ask models every row of a dataset and score the answers")
    run.add_argument("--data", metavar="FILE", help="the JSONL rows to evaluate on (SFT, DPO or RFT format)")
    run.add_argument("--model", action="append", default=[], metavar="[LABEL=]MODEL", help="a model to ask (repeat)")
    run.add_argument("--system", metavar="PROMPT", help="a system prompt replacing the rows' own, for every model")
    resume = run.add_mutually_exclusive_group()
    resume.add_argument("--resume", metavar="ID", help="continue a cancelled or interrupted run")
    resume.add_argument("--retry-errors", metavar="ID", help="ask a run's failed examples again")
    _ask_options(run)

    job = actions.add_parser("job", help="a job's base model vs its fine-tuned model vs its checkpoints")
    job.add_argument("job_id", metavar="JOB_ID")
    job.add_argument("--data", metavar="FILE", help="default: the job's validation file")
    _ask_options(job, for_job=True)

    listing = actions.add_parser("list", help="every evaluation of the profile, newest first")
    listing.add_argument("--json", action="store_true", help="print JSON")

    show = actions.add_parser("show", help="one evaluation's scores (an id prefix works)")
    show.add_argument("run_id", metavar="ID")
    shown = show.add_mutually_exclusive_group()
    shown.add_argument("--json", action="store_true", help="print JSON")
    shown.add_argument("--markdown", action="store_true", help="print a Markdown report, failures listed")
    show.add_argument("--out", metavar="FILE.jsonl", help="write one JSON line per example")


def _ask_options(parser: argparse.ArgumentParser, *, for_job: bool = False) -> None:
    parser.add_argument(
        "--grader",
        metavar="KIND|FILE",
        help=f"{'|'.join(BUILT_IN_GRADERS)}, or a grader JSON file"
        + (" (default: the job's grader for RFT, else exact)" if for_job else " (default: exact)"),
    )
    parser.add_argument("--judge", metavar="MODEL", help="the judge model of --grader model")
    parser.add_argument("--operation", default="ilike", help="string_check: eq, ne, like or ilike (default ilike)")
    parser.add_argument("--metric", default="fuzzy_match", help="text_similarity's metric (default fuzzy_match)")
    parser.add_argument("--fields", metavar="A,B", help="json: the fields to compare (default all)")
    parser.add_argument("--pass-threshold", type=float, metavar="X", help="a score at or above X passes")
    parser.add_argument("--limit", type=int, metavar="N", help="only the first N evaluable rows")
    parser.add_argument("--concurrency", type=int, metavar="N", help="requests at once, 1 to 64 (default 4)")
    parser.add_argument("--temperature", type=float, metavar="T", help="0 to 2 (default 0)")
    parser.add_argument(
        "--max-tokens",
        type=int,
        metavar="N",
        help=f"per answer (default {DEFAULT_MAX_TOKENS}; reasoning models: their own unless given)",
    )
    parser.add_argument("--seed", type=int, metavar="S", help="sampling seed, where the API takes one")
    parser.add_argument("--out", metavar="FILE.jsonl", help="write one JSON line per example")
    parser.add_argument("--json", action="store_true", help="print one JSON object, not the table")


async def run_eval(args: argparse.Namespace, profile: str | None = None) -> int:
    """Open the profile's service, run the `eval` action, close it."""
    from tunedeck.core.bootstrap import open_service
    from tunedeck.core.cache import CacheError
    from tunedeck.core.service import Notice, PollError, ServiceError

    try:
        service = await open_service(profile)
    except CacheError as exc:
        _fail(str(exc))
        return EXIT_FAILED
    service.subscribe(lambda event: _fail(event.message) if isinstance(event, (PollError, Notice)) else None)
    if service.cache.recovery_note:
        _fail(service.cache.recovery_note)
    try:
        command = args.eval_command
        if command == "list":
            return await eval_list(service, as_json=args.json)
        if command == "show":
            return await eval_show(service, args.run_id, as_json=args.json, markdown=args.markdown, out=args.out)
        if not await connect_online(service, "evaluate"):
            return EXIT_FAILED
        if command == "job":
            return await eval_job(service, args)
        return await eval_run(service, args)
    except UsageError as exc:
        _fail(str(exc))
        return EXIT_USAGE
    except ServiceError as exc:
        _fail(str(exc))
        return EXIT_USAGE if exc.kind == "input" else EXIT_FAILED
    except (ApiError, CacheError) as exc:
        _fail(str(exc))
        return EXIT_FAILED
    except BrokenPipeError:  # `eval list | head`: main() ends quietly for every command
        raise
    except OSError as exc:  # a folder or file that cannot be made, read or written (a download)
        where = f"{exc.filename}: " if exc.filename else ""
        _fail(f"{where}{exc.strerror or exc}")
        return EXIT_FAILED
    finally:
        await service.close()


async def connect_online(service: Service, doing: str) -> bool:
    """Connect; False (said on stderr: the consent to give, or why it is offline) unless online.
    `doing`: what cannot be done offline, e.g. "evaluate" (any command that needs the API)."""
    await service.connect()
    if service.connection.state == "consent":
        _fail(f"{service.connection.detail} To agree: tunedeck profiles --confirm {service.profile.name}")
        return False
    if service.connection.state != "online":
        _fail(f"cannot {doing}: {service.connection.detail}")
        return False
    return True


# -- run and job -------------------------------------------------------------------------------


async def eval_run(service: Service, args: argparse.Namespace, *, err: Print | None = None) -> int:
    evaluations = service.evaluations
    existing = args.resume or args.retry_errors
    if existing:
        if args.data or args.model:
            raise UsageError("--resume and --retry-errors continue a run as it was made: give no --data or --model")
        given = [flag for name, flag in RUN_OPTIONS.items() if getattr(args, name, None) is not None]
        if args.grader is None and (args.operation != "ilike" or args.metric != "fuzzy_match"):
            given.append("--operation/--metric")
        if given:
            raise UsageError(
                f"--resume and --retry-errors continue a run as it was made: give no {', '.join(given)}"
            )
        info = await evaluations.run_info(existing)
        if info is None:
            raise UsageError(f"no evaluation {existing!r} in profile {service.profile.name!r}")
        _check_out(args.out)
    else:
        if not args.data:
            raise UsageError("eval run needs --data FILE (or --resume ID)")
        if not args.model:
            raise UsageError("eval run needs at least one --model")
        settings = _settings(args, Path(args.data), _models(args.model, args.system), _grader(args))
        _check_out(args.out)
        info = await evaluations.create(settings)
    return await _execute(service, info, args, retry_errors=bool(args.retry_errors), err=err)


async def eval_job(service: Service, args: argparse.Namespace, *, err: Print | None = None) -> int:
    import dataclasses

    planned = await service.evaluations.plan_for_job(args.job_id, Path(args.data) if args.data else None)
    grader = _grader(args) if args.grader else planned.grader
    settings = _settings(args, Path(planned.data_path), planned.models, grader, job_id=planned.job_id)
    # the job's own response format and reasoning effort (RFT), with the options' sampling
    sampling = dataclasses.replace(
        planned.sampling,
        temperature=settings.sampling.temperature,
        max_tokens=settings.sampling.max_tokens,
        seed=settings.sampling.seed,
        max_tokens_set=settings.sampling.max_tokens_set,
    )
    settings = dataclasses.replace(settings, data_sha256=planned.data_sha256, sampling=sampling)
    _check_out(args.out)
    info = await service.evaluations.create(settings)
    return await _execute(service, info, args, retry_errors=False, err=err)


async def _execute(
    service: Service, info: EvalRunInfo, args: argparse.Namespace, *, retry_errors: bool, err: Print | None
) -> int:
    warn = err or _fail
    _tell_skipped(info, warn)
    labels = ", ".join(f"{m.label} ({m.model})" if m.label != m.model else m.model for m in info.settings.models)
    n_models = len(info.settings.models)
    warn(f"{info.id}: {info.examples} examples x {n_models} model{'s' if n_models != 1 else ''}: {labels}")
    progress = ProgressLine(warn)
    try:
        info = await service.evaluations.execute(info.id, progress, retry_errors=retry_errors)
    except asyncio.CancelledError:
        warn(f"{info.id} cancelled; to continue it: tunedeck eval run --resume {info.id}")
        raise
    progress.finish()
    results = await service.evaluations.results(info.id)
    summary = await service.evaluations.summary(info.id)
    if args.json:
        print(json.dumps(run_json(info, summary), indent=2))
    else:
        print_summary(info, summary)
    if args.out:  # after the summary: a file that cannot be written costs no scores
        examples = await service.evaluations.examples(info.id)
        _write_out(Path(args.out), info, examples, results)
    if info.status != "finished":  # stopped part-way (the connection went): it resumes
        warn(f"{info.id} {info.status} at {info.done}/{info.total}; to continue it: tunedeck eval run --resume {info.id}")
        return EXIT_FAILED
    first_errors: dict[str, ExampleResult] = {}
    answered: set[str] = set()
    for result in results:
        if result.error is not None:
            first_errors.setdefault(result.model_key, result)
        if result.error_kind != "request":
            answered.add(result.model_key)
    failed = [m.label for m in info.settings.models if m.label in first_errors and m.label not in answered]
    for label, first in first_errors.items():
        said = "every request failed; the first said" if label in failed else "the first of its errors"
        warn(f"{label}: {said}: {first.error}")
    if failed:
        return EXIT_FAILED
    if info.errors:
        warn(f"{info.errors} results have an error; ask them again: tunedeck eval run --retry-errors {info.id}")
    return EXIT_OK


def _models(given: Sequence[str], system: str | None) -> tuple[Any, ...]:
    from tunedeck.core.evaluate.records import ModelSpec

    specs = []
    for text in given:
        label, sep, model = text.partition("=")
        if not sep:
            label, model = text, text
        label, model = label.strip(), model.strip()
        if not label or not model:
            raise UsageError(f"--model {text!r}: give MODEL or LABEL=MODEL")
        specs.append(ModelSpec(model, label, "model", system))
    return tuple(specs)


def _settings(
    args: argparse.Namespace, data: Path, models: Sequence[Any], grader: GraderChoice, *, job_id: str | None = None
) -> EvalSettings:
    from tunedeck.core.evaluate.records import EvalSettings, Sampling

    return EvalSettings(
        data_path=str(data),
        data_sha256="",
        models=tuple(models),
        grader=grader,
        sampling=Sampling(
            args.temperature if args.temperature is not None else 0.0,
            args.max_tokens if args.max_tokens is not None else DEFAULT_MAX_TOKENS,
            args.seed,
            max_tokens_set=args.max_tokens is not None,
        ),
        concurrency=args.concurrency if args.concurrency is not None else 4,
        limit=args.limit,
        job_id=job_id,
    )


def _grader(args: argparse.Namespace) -> GraderChoice:
    """The grader the options name; a file must hold a grader object (exit 2 naming it)."""
    from tunedeck.core.evaluate.graders import grader_problem
    from tunedeck.core.evaluate.records import GRADER_KINDS, GraderChoice

    given = args.grader or "exact"
    fields = tuple(f.strip() for f in (args.fields or "").split(",") if f.strip())
    if given in BUILT_IN_GRADERS:
        if given == "model" and not args.judge:
            raise UsageError("--grader model needs --judge MODEL")
        return GraderChoice(
            kind=given,
            operation=args.operation,
            metric=args.metric,
            fields=fields,
            judge_model=args.judge,
            pass_threshold=args.pass_threshold,
        )
    path = Path(given)
    if not path.is_file():
        raise UsageError(f"--grader {given!r}: not one of {', '.join(BUILT_IN_GRADERS)} and no such file")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UsageError(f"{path}: cannot read the grader ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise UsageError(f"{path}: the grader file is not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise UsageError(f"{path}: not JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})") from None
    if isinstance(data, dict) and data.get("kind") in GRADER_KINDS and "type" not in data:
        choice = GraderChoice.from_json(data)  # the evaluation's own grader settings, saved
    elif isinstance(data, dict) and isinstance(data.get("type"), str):
        choice = GraderChoice(kind="custom", grader=data, pass_threshold=args.pass_threshold)
    else:
        raise UsageError(f"{path}: not a grader (expected an object with a 'type', as RFT jobs take)")
    problem = grader_problem(choice)
    if problem is not None:
        raise UsageError(f"{path}: {problem}")
    return choice


def _check_out(out: str | None) -> None:
    """`--out` can be written, told before the run is made rather than after it ran."""
    if not out:
        return
    path = Path(out)
    existed = path.exists()
    try:
        with path.open("a", encoding="utf-8"):
            pass
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from None
    if not existed:
        path.unlink(missing_ok=True)


def _tell_skipped(info: EvalRunInfo, warn: Print) -> None:
    from tunedeck.core.evaluate.records import skipped_rows

    shown = info.skipped[:PROBLEMS_SHOWN]
    for problem in shown:
        warn(f"skipped {problem.describe(info.settings.data_path)}")
    more = skipped_rows(info.skipped) - skipped_rows(shown)
    if more > 0:
        warn(f"skipped {more} more rows")


class ProgressLine:
    """Prints where a run stands at most every `every` seconds, and once at the end."""

    def __init__(self, out: Print, every: float = PROGRESS_EVERY_S, clock: Callable[[], float] = time.monotonic):
        self._out = out
        self._every = every
        self._clock = clock
        self._last_at: float | None = None
        self._last: EvalProgress | None = None
        self._said: EvalProgress | None = None

    def __call__(self, progress: EvalProgress) -> None:
        self._last = progress
        now = self._clock()
        if self._last_at is None or now - self._last_at >= self._every:
            self._last_at = now
            self._say(progress)

    def finish(self) -> None:
        if self._last is not None and self._last is not self._said:
            self._say(self._last)

    def _say(self, p: EvalProgress) -> None:
        self._said = p
        share = f" ({p.done / p.total:.0%})" if p.total else ""
        eta = f"  ETA {_duration(p.eta_s)}" if p.eta_s is not None and p.done < p.total else ""
        errors = f"  {p.errors} errors" if p.errors else ""
        self._out(f"{p.run_id}  {p.done}/{p.total}{share}{errors}  {_duration(p.elapsed_s)} elapsed{eta}")


def _duration(seconds: float) -> str:
    whole = int(round(seconds))
    hours, rest = divmod(whole, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


# -- list and show -----------------------------------------------------------------------------


async def eval_list(service: Service, *, as_json: bool) -> int:
    runs = await service.evaluations.runs()
    if as_json:
        print(json.dumps({"profile": service.profile.name, "runs": [_run_row_json(r) for r in runs]}, indent=2))
        return EXIT_OK
    if not runs:
        print("no evaluations yet")
        return EXIT_OK
    print(f"{'ID':<18} {'CREATED':<16}  {'STATUS':<11} {'DONE':>13}  {'ERRORS':>6}  MODELS  ·  DATA")
    for info in runs:
        done = f"{info.done}/{info.total}"
        models = ", ".join(m.label for m in info.settings.models)
        _say(
            f"{info.id:<18} {local_time(int(info.created_at)):<16}  {info.status:<11} {done:>13}  {info.errors:>6}  "
            f"{models}  ·  {Path(info.settings.data_path).name}"
        )
    return EXIT_OK


async def eval_show(service: Service, run_id: str, *, as_json: bool, markdown: bool, out: str | None) -> int:
    from tunedeck.core.service import ServiceError

    evaluations = service.evaluations
    info = await evaluations.run_info(run_id)
    if info is None:
        raise ServiceError(f"no evaluation {run_id!r} in profile {service.profile.name!r}", "input")
    summary = await evaluations.summary(info.id)
    if out or markdown:
        examples = await evaluations.examples(info.id)
        results = await evaluations.results(info.id)
        if out:
            _write_out(Path(out), info, examples, results)
        if markdown:
            from tunedeck.core.evaluate.analysis import markdown_report

            report = markdown_report(info, summary, examples.examples, results)
            # rows, answers and notes are untrusted: no escape sequence reaches the terminal
            print("\n".join(strip_controls(line) for line in report.split("\n")))
            return EXIT_OK
    if as_json:
        print(json.dumps(run_json(info, summary), indent=2))
        return EXIT_OK
    print_summary(info, summary)
    if info.notes:
        print()
        _say(f"notes ({info.notes_model or 'a model'}):")
        for line in info.notes.splitlines():
            _say(f"  {line}")
    return EXIT_OK


# -- output ------------------------------------------------------------------------------------


def print_summary(info: EvalRunInfo, summary: EvalSummary, out: Print | None = None) -> None:
    """The header line, one row per model, then the paired comparisons."""
    from tunedeck.core.evaluate.graders import describe_grader

    say = out or _say
    settings = info.settings
    say(f"{info.id}  {info.status}  {info.examples} examples  {describe_grader(settings.grader)}  {settings.data_path}")
    width = max([len("MODEL"), *(len(s.key) for s in summary.scores)])
    say(
        f"{'MODEL':<{width}}  {'SCORE':>5}  {'95% CI':<14}  {'PASS':>10}  {'95% CI':<11}  "
        f"{'ERRORS':>6}  {'TOKENS':>9}  COST"
    )
    for score in summary.scores:
        mean = f"{score.mean:.3f}" if score.mean is not None else "-"
        passes = f"{score.passes}/{score.graded} {score.pass_rate:.0%}" if score.pass_rate is not None else "-"
        errors = str(score.errors) + (f" +{score.missing} left" if score.missing else "")
        tokens = f"{score.prompt_tokens + score.completion_tokens:,}"
        cost = f"${score.cost_usd:.4f}" if score.cost_usd is not None else "-"
        say(
            f"{score.key:<{width}}  {mean:>5}  {_interval(score.interval, '.3f'):<14}  {passes:>10}  "
            f"{_interval(score.pass_interval, '.0%'):<11}  {errors:>6}  {tokens:>9}  {cost}"
        )
    judged = [s for s in summary.scores if s.judge_prompt_tokens or s.judge_completion_tokens]
    if judged:
        tokens = sum(s.judge_prompt_tokens + s.judge_completion_tokens for s in judged)
        costs = [s.judge_cost_usd for s in judged]
        money = f"${sum(c for c in costs if c is not None):.4f}" if all(c is not None for c in costs) else "no known price"
        say(f"judging: {tokens:,} tokens, {money} (in COST)")
    for pair in summary.pairs:
        diff = ""
        if pair.mean_diff is not None:
            diff = f"; mean score {pair.b} - {pair.a} = {pair.mean_diff:+.3f} {_interval(pair.diff_interval, '+.3f')}"
        say(pair.sentence() + diff)


def _interval(interval: Interval | None, spec: str) -> str:
    if interval is None:
        return "-"
    return f"[{format(interval.low, spec)}, {format(interval.high, spec)}]"


def _ci(interval: Interval | None) -> list[float] | None:
    return [interval.low, interval.high] if interval is not None else None


def run_json(info: EvalRunInfo, summary: EvalSummary) -> dict[str, Any]:
    settings = info.settings
    return {
        "id": info.id,
        "status": info.status,
        "created_at": info.created_at,
        "data": settings.data_path,
        "data_sha256": settings.data_sha256,
        "job_id": settings.job_id,
        "examples": info.examples,
        "done": info.done,
        "total": info.total,
        "errors": info.errors,
        "settings": settings.to_json(),
        "models": [
            {
                "label": s.key,
                "model": s.model,
                "kind": s.kind,
                "graded": s.graded,
                "mean": s.mean,
                "ci": _ci(s.interval),
                "passes": s.passes,
                "pass_rate": s.pass_rate,
                "pass_ci": _ci(s.pass_interval),
                "errors": s.errors,
                "request_errors": s.request_errors,
                "grader_errors": s.grader_errors,
                "missing": s.missing,
                "prompt_tokens": s.prompt_tokens,
                "completion_tokens": s.completion_tokens,
                "cost_usd": s.cost_usd,
                "judge_prompt_tokens": s.judge_prompt_tokens,
                "judge_completion_tokens": s.judge_completion_tokens,
                "judge_cost_usd": s.judge_cost_usd,
            }
            for s in summary.scores
        ],
        "pairs": [
            {
                "a": p.a,
                "b": p.b,
                "n": p.n,
                "both": p.both,
                "a_only": p.a_only,
                "b_only": p.b_only,
                "neither": p.neither,
                "p_value": p.p_value,
                "mean_diff": p.mean_diff,
                "diff_ci": _ci(p.diff_interval),
                "sentence": p.sentence(),
            }
            for p in summary.pairs
        ],
        "skipped": [p.to_json() for p in info.skipped],
        "notes": info.notes,
        "notes_model": info.notes_model,
    }


def _run_row_json(info: EvalRunInfo) -> dict[str, Any]:
    return {
        "id": info.id,
        "created_at": info.created_at,
        "status": info.status,
        "examples": info.examples,
        "done": info.done,
        "total": info.total,
        "errors": info.errors,
        "models": [m.to_json() for m in info.settings.models],
        "data": info.settings.data_path,
        "job_id": info.settings.job_id,
    }


def _write_out(path: Path, info: EvalRunInfo, examples: ExampleSet, results: Sequence[ExampleResult]) -> None:
    """One JSON line per example: its line, prompt and reference, and each model's result."""
    from tunedeck.core.evaluate.examples import ExamplesError

    by_example: dict[int, dict[str, ExampleResult]] = {}
    for result in results:
        by_example.setdefault(result.example_index, {})[result.model_key] = result
    models = {m.label: m.model for m in info.settings.models}
    try:
        with path.open("w", encoding="utf-8") as out:
            for example in examples.examples:
                found = by_example.get(example.index, {})
                line = {
                    "index": example.index,
                    "line": example.line,
                    "prompt": example.prompt,
                    "reference": example.reference,
                    "results": {label: _result_json(model, found.get(label)) for label, model in models.items()},
                }
                out.write(json.dumps(line, ensure_ascii=False) + "\n")
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from None
    except ExamplesError as exc:  # the data file changed while being written out
        raise UsageError(f"{path} is incomplete: {exc}") from None


def _result_json(model: str, result: ExampleResult | None) -> dict[str, Any] | None:
    if result is None:
        return None
    return {
        "model": model,
        "answer": result.answer,
        "score": result.score,
        "passed": result.passed,
        "sub_scores": result.sub_scores,
        "error": result.error,
        "error_kind": result.error_kind,
        "prompt_tokens": result.prompt_tokens,
        "completion_tokens": result.completion_tokens,
        "seconds": result.seconds,
    }


def _fail(message: str) -> None:
    print(f"tunedeck: {strip_controls(message)}", file=sys.stderr)


def _say(line: str) -> None:
    print(strip_controls(line))
