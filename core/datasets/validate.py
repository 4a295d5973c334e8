"""The streaming validator: every error of a JSONL training file, with line and field, in
bounded memory, on all the cores it is given.

    report = validate_file("train.jsonl", method="auto", model=None, grader=None,
                           validation_file=None, progress=None, cancel=None)

1. plan: read the first lines to detect the format; settle the method, model, tokenizer.
2. scan: cut the file into byte ranges at line boundaries; each range is parsed, checked,
   counted and hashed by `scan.scan_chunk`, in worker processes for large files (in this
   process for small ones).
3. assemble: add line offsets, merge counts and histograms, find duplicates (and overlap
   with the validation file) from the digests, add file-level findings, estimate cost.

Thread-friendly: call it in a worker thread (`asyncio.to_thread`); `progress(done, total)`
is called from that thread about every 100 ms, and `cancel` (a `threading.Event` or a
function returning bool) stops the work early with `ValidationCancelled`. Bad data never
raises; an unreadable file raises `DatasetIOError`, a bad grader file `GraderError`.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import signal
import tempfile
import threading
import time
from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Sequence

from .checker import BOM, loads
from .codes import WARNINGS, Issue
from .detect import FORMAT_NAMES, METHODS, choose, vote
from .grader import ItemPath, load_grader
from .jobrules import auto_epochs
from .models import PRICE_TABLE_DATE, PRICE_TABLE_SOURCE, ModelInfo, default_model, model_info, models_for
from .reader import count_issues
from .report import ValidationReport, no_estimate_reason
from .scan import MAX_LINE_BYTES, Cancelled, ChunkResult, ScanConfig, _counter, scan_chunk, spill_path
from .stats import Histogram

Progress = Callable[[int, int], None]
CancelCheck = Callable[[], bool]

DEFAULT_WORKERS = 2
PARALLEL_MIN_BYTES = 8 * 1024 * 1024  # smaller files are scanned in this process
CHUNK_BYTES = 24 * 1024 * 1024  # target size of one range (several per worker, for balance)
PARTITION_BYTES = 256 * 1024 * 1024  # above this, digests are spilled to partition files
PRESCAN_LINES, PRESCAN_BYTES = 2000, 4 * 1024 * 1024


class DatasetIOError(Exception):
    """The file cannot be read (missing, a directory, no permission, vanished)."""


class ValidationCancelled(Exception):
    """`cancel` was set before the validation finished."""


@dataclass
class _Plan:
    path: Path
    size: int
    purpose: str
    method: str
    detected: str | None
    target: str
    model: str
    model_assumed: bool
    info: ModelInfo
    cfg: ScanConfig
    file_issues: list[Issue] = field(default_factory=list)


def validate_file(
    path: str | os.PathLike[str],
    method: str = "auto",
    model: str | None = None,
    grader: str | os.PathLike[str] | dict[str, Any] | None = None,
    *,
    validation_file: str | os.PathLike[str] | None = None,
    progress: Progress | None = None,
    cancel: threading.Event | CancelCheck | None = None,
    workers: int | None = None,
    max_issues: int = 1000,
) -> ValidationReport:
    """Validate a training file (and optionally its validation file); see the module doc."""
    started = time.perf_counter()
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, not {method!r}")
    grader_paths = load_grader(grader) if grader is not None else ()
    if grader_paths and method not in ("auto", "rft"):
        raise ValueError("a grader applies only to RFT (--method rft)")
    workers = max(1, min(workers or DEFAULT_WORKERS, os.cpu_count() or 1))
    is_cancelled = _cancel_check(cancel)
    plan = _plan(Path(path), method, model, grader_paths, "training", grader is not None, max_issues)
    vplan = None
    if validation_file is not None:
        vplan = _plan(
            Path(validation_file), plan.target, model or plan.model, grader_paths, "validation", grader is not None, max_issues
        )
        vplan.model_assumed = plan.model_assumed
    total = plan.size + (vplan.size if vplan else 0)
    tracker = _Tracker(progress, total)

    validation_report = None
    validation_digests = None
    if vplan is not None:
        vstart = time.perf_counter()
        vresults = _scan(vplan, workers, tracker, is_cancelled, base=plan.size)
        validation_report, validation_digests = _assemble(vplan, vresults, None, None)
        validation_report.elapsed_s = time.perf_counter() - vstart
    with tempfile.TemporaryDirectory(prefix="tunedeck-validate-") as spill:
        if plan.cfg.partitions > 1:
            plan.cfg = replace(plan.cfg, spill_dir=spill)
        results = _scan(plan, workers, tracker, is_cancelled, base=0)
        report, _ = _assemble(plan, results, validation_digests, vplan.path if vplan else None)
    report.validation = validation_report
    report.elapsed_s = time.perf_counter() - started
    tracker.report(total)
    return report


# -- plan ---------------------------------------------------------------------------------


def _plan(
    path: Path,
    method: str,
    model: str | None,
    grader_paths: Sequence[ItemPath],
    purpose: str,
    has_grader: bool,
    max_issues: int,
) -> _Plan:
    try:
        if path.is_dir():
            raise DatasetIOError(f"{path} is a directory, not a JSONL file")
        size = path.stat().st_size
        detected = detect_format(path)
    except DatasetIOError:
        raise
    except OSError as exc:
        raise DatasetIOError(f"cannot read {path}: {exc.strerror or exc}") from None
    issues: list[Issue] = []
    if method != "auto":
        target = method
    elif has_grader:
        target = "rft"
    elif detected is not None:
        target = detected
    elif model is not None and "legacy" in model_info(model).methods:
        target = "legacy"
    else:
        target = "sft"
    if detected is not None and detected != target:
        why = "a grader was given, so the method is RFT" if method == "auto" and has_grader else f"the method is {target}"
        hint = "; convert it with `tunedeck data convert`" if detected == "legacy" and target == "sft" else ""
        issues.append(Issue(None, "format_mismatch", f"the file is in the {FORMAT_NAMES[detected]} format, but {why}{hint}"))
    name = model or default_model(target)
    info = model_info(name)
    if purpose == "validation":
        pass  # the model's fit is reported once, on the training file
    elif target not in info.methods:
        if target == "legacy":
            issues.append(Issue(None, "format_mismatch", f"legacy prompt/completion data trains only babbage-002 or davinci-002, not {name}; convert it with `tunedeck data convert`"))
        elif "legacy" in info.methods:
            issues.append(Issue(None, "format_mismatch", f"{name} trains only on legacy prompt/completion data, not {FORMAT_NAMES[target]}"))
        elif info.known:
            allowed = ", ".join(models_for(target))
            issues.append(Issue(None, "unsupported_model", f"{name} is not listed as a base for {FORMAT_NAMES[target]} (listed: {allowed})"))
    if not info.known and purpose == "training":
        issues.append(Issue(None, "unknown_model", f"{name} is not a model tunedeck knows; tokens use {info.encoding}, no price is known"))
    partitions = 1 if purpose == "validation" or size <= PARTITION_BYTES else math.ceil(size / PARTITION_BYTES)
    cfg = ScanConfig(
        fmt=target,
        encoding=info.encoding,
        context=info.context,
        grader_paths=tuple(grader_paths) if target == "rft" else (),
        max_issues=max_issues,
        partitions=partitions,
    )
    return _Plan(path, size, purpose, method, detected, target, info.name if info.known else name, model is None, info, cfg, issues)


def detect_format(path: Path) -> str | None:
    """The format of the file, from the votes of its first lines."""
    votes: list[str | None] = []
    read = 0
    with path.open("rb") as f:
        for number in range(PRESCAN_LINES):
            raw = f.readline(MAX_LINE_BYTES + 1)
            if not raw:
                break
            read += len(raw)
            if number == 0 and raw.startswith(BOM):
                raw = raw[3:]
            if raw.isspace() or len(raw) > MAX_LINE_BYTES:
                continue
            try:
                obj = loads(raw)
            except (ValueError, RecursionError):
                continue
            if type(obj) is dict:
                votes.append(vote(obj))
            if read > PRESCAN_BYTES:
                break
    return choose(votes)


# -- scan ---------------------------------------------------------------------------------


class _Tracker:
    """Progress over one or two files, reported at most every 100 ms."""

    def __init__(self, callback: Progress | None, total: int) -> None:
        self.callback, self.total, self.last = callback, total, 0.0

    def report(self, done: int, force: bool = True) -> None:
        if self.callback is None:
            return
        now = time.monotonic()
        if force or now - self.last >= 0.1:
            self.last = now
            self.callback(min(done, self.total), self.total)


def _cancel_check(cancel: threading.Event | CancelCheck | None) -> CancelCheck:
    if cancel is None:
        return lambda: False
    if hasattr(cancel, "is_set"):
        return cancel.is_set  # type: ignore[union-attr]
    return cancel  # type: ignore[return-value]


def _boundaries(path: Path, size: int, pieces: int) -> list[tuple[int, int]]:
    """`pieces` byte ranges of about equal size, each starting at the start of a line."""
    cuts = [0]
    with path.open("rb") as f:
        for i in range(1, pieces):
            at = size * i // pieces
            if at <= cuts[-1]:
                continue
            f.seek(at - 1)
            while True:  # the cut goes after the newline ending the line that holds byte at-1
                rest = f.readline(1 << 20)
                if not rest or rest.endswith(b"\n"):
                    break
            pos = f.tell()
            if pos >= size:
                break
            if pos > cuts[-1]:
                cuts.append(pos)
    cuts.append(size)
    return [(cuts[i], cuts[i + 1]) for i in range(len(cuts) - 1) if cuts[i + 1] > cuts[i]] or [(0, size)]


def _scan(plan: _Plan, workers: int, tracker: _Tracker, is_cancelled: CancelCheck, base: int) -> list[ChunkResult]:
    path, size = plan.path, plan.size
    try:
        if is_cancelled():
            raise Cancelled()
        if size < PARALLEL_MIN_BYTES or workers == 1:
            return _scan_inline(plan, tracker, is_cancelled, base)
        pieces = workers * max(1, round(size / (workers * CHUNK_BYTES)))
        ranges = _boundaries(path, size, pieces)
        return _scan_parallel(plan, ranges, workers, tracker, is_cancelled, base)
    except Cancelled:
        raise ValidationCancelled() from None
    except OSError as exc:
        raise DatasetIOError(f"cannot read {path}: {exc.strerror or exc}") from None


def _scan_inline(plan: _Plan, tracker: _Tracker, is_cancelled: CancelCheck, base: int) -> list[ChunkResult]:
    def tick(done: int) -> bool:
        tracker.report(base + done, force=False)
        return is_cancelled()

    return [scan_chunk(str(plan.path), 0, 0, plan.size, plan.cfg, tick)]


_WORKER_PROGRESS: Any = None
_WORKER_STOP: Any = None


def _init_worker(progress: Any, stop: Any) -> None:
    global _WORKER_PROGRESS, _WORKER_STOP
    _WORKER_PROGRESS, _WORKER_STOP = progress, stop
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the caller, which sets `stop`


def _run_chunk(path: str, index: int, start: int, end: int, cfg: ScanConfig) -> ChunkResult:
    def tick(done: int) -> bool:
        _WORKER_PROGRESS[index] = done
        return _WORKER_STOP.is_set()

    return scan_chunk(path, index, start, end, cfg, tick)


def _start_method() -> str:
    """fork when this process has one thread (the CLI): fast; spawn otherwise (the app)."""
    methods = multiprocessing.get_all_start_methods()
    if "fork" in methods and threading.active_count() == 1:
        return "fork"
    return "spawn"


def _scan_parallel(
    plan: _Plan, ranges: list[tuple[int, int]], workers: int, tracker: _Tracker, is_cancelled: CancelCheck, base: int
) -> list[ChunkResult]:
    method = _start_method()
    if method == "fork":
        _counter(plan.cfg.encoding)  # load the tokenizer once: forked workers share its pages
    ctx = multiprocessing.get_context(method)
    shared = ctx.RawArray("q", len(ranges))
    stop = ctx.Event()
    with ProcessPoolExecutor(
        max_workers=min(workers, len(ranges)), mp_context=ctx, initializer=_init_worker, initargs=(shared, stop)
    ) as pool:
        futures = [pool.submit(_run_chunk, str(plan.path), i, a, b, plan.cfg) for i, (a, b) in enumerate(ranges)]
        pending = set(futures)
        try:
            while pending:
                done, pending = wait(pending, timeout=0.1, return_when=FIRST_EXCEPTION)
                for future in done:
                    future.result()  # re-raise a worker's exception here
                tracker.report(base + sum(shared), force=False)
                if pending and is_cancelled():
                    raise Cancelled()
        except BaseException:
            stop.set()
            for future in pending:
                future.cancel()
            raise
        return [f.result() for f in futures]


# -- assemble -----------------------------------------------------------------------------


def _assemble(
    plan: _Plan, results: list[ChunkResult], validation: Any, validation_path: Path | None
) -> tuple[ValidationReport, Any]:
    from . import dedup  # numpy: loaded only when a scan is done

    cfg, cap = plan.cfg, plan.cfg.max_issues
    offsets, line = [], 0
    for r in results:
        offsets.append(line)
        line += r.lines
    counts: dict[str, int] = {}
    errors: list[Issue] = []
    warnings: list[Issue] = []
    hist, messages_hist = Histogram(), Histogram()
    by_role: dict[str, int] = {}
    for r, offset in zip(results, offsets):
        for code, n in r.codes.items():
            counts[code] = counts.get(code, 0) + n
        errors.extend(Issue(ln + offset, code, message, fld) for ln, code, fld, message in r.errors)
        warnings.extend(Issue(ln + offset, code, message, fld) for ln, code, fld, message in r.warnings)
        hist.merge(r.hist)
        messages_hist.merge(r.messages_hist)
        for role, n in r.by_role.items():
            by_role[role] = by_role.get(role, 0) + n
    examples = sum(r.examples for r in results)
    counted = sum(r.counted for r in results)
    max_tokens, max_line = 0, None
    for r, offset in zip(results, offsets):
        if r.max_tokens > max_tokens:
            max_tokens, max_line = r.max_tokens, r.max_line + offset

    # duplicates and overlap, from the digests
    found = dedup.DuplicateFindings()
    own_digests = None
    if cfg.partitions == 1:
        d, ln = dedup.concat((r.digests, r.digest_lines, off) for r, off in zip(results, offsets))
        dedup.find_in_partition(d, ln, found, cap, validation)
        own_digests = dedup.first_lines(d, ln)
    else:
        import numpy as np

        assert cfg.spill_dir is not None
        for p in range(cfg.partitions):
            ds, ls = [], []
            for r, off in zip(results, offsets):
                dpath = spill_path(cfg.spill_dir, p, r.index, "d")
                if os.path.exists(dpath):
                    ds.append(np.fromfile(dpath, dtype=np.uint64))
                    ls.append(np.fromfile(spill_path(cfg.spill_dir, p, r.index, "l"), dtype=np.uint32).astype(np.int64) + off)
                    os.unlink(dpath)
                    os.unlink(spill_path(cfg.spill_dir, p, r.index, "l"))
            if ds:
                dedup.find_in_partition(np.concatenate(ds), np.concatenate(ls), found, cap, validation)
    if found.duplicates:
        counts["duplicate_example"] = found.duplicates
        warnings.extend(Issue(a, "duplicate_example", f"the same example as line {b}") for a, b in found.pairs)
    if found.overlap:
        counts["train_validation_overlap"] = found.overlap
        name = validation_path.name if validation_path else "the validation file"
        warnings.extend(
            Issue(a, "train_validation_overlap", f"this example is also line {b} of {name}") for a, b in found.overlap_pairs
        )

    # findings about the file as a whole
    file_issues = list(plan.file_issues)
    with_system = sum(r.with_system for r in results)
    missing_system = sum(r.missing_system_count for r in results)
    if missing_system and with_system:
        counts["missing_system_message"] = missing_system
        lines = sorted(ln + off for r, off in zip(results, offsets) for ln in r.missing_system)[:cap]
        warnings.extend(Issue(ln, "missing_system_message", "this example has no system message, unlike others", "messages") for ln in lines)
    elif missing_system:
        counts["missing_system_message"] = 1
        file_issues.append(
            Issue(None, "missing_system_message", "no example has a system message; the model will need none at inference either")
        )
    file_issues += count_issues(
        plan.purpose,
        plan.target,
        examples,
        shaped=counted,
        trained=sum(r.trained for r in results),
        with_images=sum(r.with_images for r in results),
    )
    for issue in plan.file_issues:
        counts[issue.code] = counts.get(issue.code, 0) + 1
    for issue in file_issues[len(plan.file_issues):]:
        if issue.code != "missing_system_message":
            counts[issue.code] = counts.get(issue.code, 0) + 1
    file_errors = [i for i in file_issues if i.code not in WARNINGS]
    file_warnings = [i for i in file_issues if i.code in WARNINGS]
    errors = file_errors + sorted(errors, key=lambda i: i.line or 0)[: max(0, cap - len(file_errors))]
    warnings = file_warnings + sorted(warnings, key=lambda i: (i.line or 0, i.code))[: max(0, cap - len(file_warnings))]
    error_count = sum(n for code, n in counts.items() if code not in WARNINGS)
    warning_count = sum(n for code, n in counts.items() if code in WARNINGS)

    billed = sum(r.billed for r in results)
    summary = hist.summary()
    tokens = {
        "total": sum(r.total for r in results),
        "billed": billed,
        "max_example": max_tokens if counted else None,
        "max_example_line": max_line,
        "min": summary["min"],
        "mean": summary["mean"],
        "p5": summary["p5"],
        "p50": summary["p50"],
        "p95": summary["p95"],
        "examples_counted": counted,
        "too_long": sum(r.too_long for r in results),
        "by_role": dict(sorted(by_role.items(), key=lambda kv: -kv[1])),
    }
    report = ValidationReport(
        path=str(plan.path),
        method=plan.method,
        format=plan.detected,
        checked_as=plan.target,
        model=plan.model,
        model_assumed=plan.model_assumed,
        encoding=plan.info.encoding,
        context=plan.info.context,
        bytes=plan.size,
        lines=line,
        examples=examples,
        valid_examples=sum(r.valid for r in results),
        errors=errors,
        warnings=warnings,
        error_count=error_count,
        warning_count=warning_count,
        counts=counts,
        tokens=tokens,
        messages_per_example=messages_hist.summary(),
        estimate=_estimate(plan, counted, billed) if plan.purpose == "training" else {},
        duplicates=found.duplicates,
        purpose=plan.purpose,
    )
    reason = no_estimate_reason(report)
    if reason is not None:  # no valid example: an auto epoch count times nothing means nothing
        report.estimate.update(epochs=None, trained_tokens=0, cost_usd=None, none_because=reason)
    return report, own_digests


def _estimate(plan: _Plan, counted: int, billed: int) -> dict[str, Any]:
    info = plan.info
    epochs = auto_epochs(counted)  # the rule the local backend resolves "auto" by
    trained = epochs * billed
    price = info.usd_per_1m_training_tokens
    note = info.note
    if plan.target == "dpo" and price is not None:
        note = "DPO billing is unconfirmed; estimated like SFT"
    elif plan.target == "rft":
        price, note = None, "RFT is billed per hour of training ($100/h), not per token"
    return {
        "epochs": epochs,
        "epochs_source": "auto (cookbook heuristic)",
        "trained_tokens": trained,
        "cost_usd": round(trained / 1e6 * price, 6) if price is not None else None,
        "price": {
            "model": info.name if info.known else plan.model,
            "usd_per_1m_training_tokens": price,
            "table_date": PRICE_TABLE_DATE,
            "source": PRICE_TABLE_SOURCE,
            "note": note,
        },
    }
