"""The validation report: the JSON contract of `tunedeck data validate --json`, and the
human text (first errors with their lines, a summary table, tokens, cost estimate).

JSON keys (stable): path, method, format, checked_as, model, model_assumed, encoding,
context, bytes, lines, examples, valid_examples, ok, error_count, warning_count, counts,
errors, warnings (each {line, code, message, field?}; line is null for the whole file),
errors_truncated, warnings_truncated, tokens {total, billed, max_example, max_example_line,
min, mean, p5, p50, p95, examples_counted, too_long, by_role}, messages_per_example,
estimate {epochs, trained_tokens, cost_usd, price {...}, none_because?} (none_because: why
nothing is estimated, epochs then null), duplicates, validation (the same
object for the validation file, or null), elapsed_s.

Human text passes every piece of dataset-derived text through `strip_controls`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tunedeck.core.text import strip_controls

from .codes import ALL_CODES, WARNINGS, Issue
from .detect import FORMAT_NAMES


@dataclass
class ValidationReport:
    path: str
    method: str
    format: str | None
    checked_as: str
    model: str
    model_assumed: bool
    encoding: str
    context: int
    bytes: int = 0
    lines: int = 0
    examples: int = 0
    valid_examples: int = 0
    errors: list[Issue] = field(default_factory=list)
    warnings: list[Issue] = field(default_factory=list)
    error_count: int = 0
    warning_count: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    tokens: dict[str, Any] = field(default_factory=dict)
    messages_per_example: dict[str, Any] = field(default_factory=dict)
    estimate: dict[str, Any] = field(default_factory=dict)
    duplicates: int = 0
    validation: "ValidationReport | None" = None
    elapsed_s: float = 0.0
    purpose: str = "training"

    @property
    def ok(self) -> bool:
        """True when the file (and its validation file, if any) would be accepted."""
        return self.error_count == 0 and (self.validation is None or self.validation.ok)

    @property
    def errors_truncated(self) -> bool:
        return len(self.errors) < self.error_count

    @property
    def warnings_truncated(self) -> bool:
        return len(self.warnings) < self.warning_count

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "purpose": self.purpose,
            "method": self.method,
            "format": self.format,
            "checked_as": self.checked_as,
            "model": self.model,
            "model_assumed": self.model_assumed,
            "encoding": self.encoding,
            "context": self.context,
            "bytes": self.bytes,
            "lines": self.lines,
            "examples": self.examples,
            "valid_examples": self.valid_examples,
            "ok": self.ok,
            "error_count": self.error_count,
            "warning_count": self.warning_count,
            "counts": dict(sorted(self.counts.items())),
            "errors": [i.to_json() for i in self.errors],
            "warnings": [i.to_json() for i in self.warnings],
            "errors_truncated": self.errors_truncated,
            "warnings_truncated": self.warnings_truncated,
            "tokens": self.tokens,
            "messages_per_example": self.messages_per_example,
            "estimate": self.estimate,
            "duplicates": self.duplicates,
            "validation": self.validation.to_json() if self.validation is not None else None,
            "elapsed_s": round(self.elapsed_s, 3),
        }


def no_estimate_reason(r: ValidationReport) -> str | None:
    """Why a training file has no cost estimate: no example valid for the method it was
    checked as (naming the method its lines look like, when another); None when it has one."""
    if r.purpose != "training" or r.tokens.get("examples_counted"):
        return None
    if not r.examples:
        return "the file has no examples"
    checked = FORMAT_NAMES.get(r.checked_as, r.checked_as)
    reason = f"no example is valid for {checked}, so there is nothing to estimate"
    if r.format and r.format != r.checked_as:
        looks = FORMAT_NAMES.get(r.format, r.format)
        hint = "convert it with `tunedeck data convert`" if r.format == "legacy" else f"try --method {r.format}"
        reason += f" (the file looks like {looks} data: {hint})"
    return reason


def _num(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.2f}"
    return f"{value:,}"


def _issue_rows(issues: list[Issue], limit: int) -> list[str]:
    rows = []
    for issue in issues[:limit]:
        where = f"line {issue.line}" if issue.line is not None else "file"
        fld = issue.field or ""
        rows.append(f"  {where:<12} {fld:<28} {issue.code:<34} {issue.message}")
    return rows


def render_text(report: ValidationReport, max_errors: int = 20, max_warnings: int = 10) -> list[str]:
    """The human report, one string per line, safe for a terminal."""
    out = _body(report, max_errors, max_warnings)
    if report.validation is not None:
        out.append("")
        out.extend(_body(report.validation, max_errors, max_warnings))
    out.append("")
    if report.ok:
        out.append(f"OK: acceptable for {FORMAT_NAMES[report.checked_as]} fine-tuning")
    else:
        errors = report.error_count + (report.validation.error_count if report.validation else 0)
        out.append(f"FAILED: {errors:,} error{'s' if errors != 1 else ''}")
    return [strip_controls(line) for line in out]


def _body(report: ValidationReport, max_errors: int, max_warnings: int) -> list[str]:
    out: list[str] = []
    r = report
    shown_format = FORMAT_NAMES.get(r.format or "", "unknown")
    out.append(f"{r.purpose} file {r.path}")
    checked = "" if r.format == r.checked_as else f" (checked as {FORMAT_NAMES[r.checked_as]})"
    assumed = " (assumed)" if r.model_assumed else ""
    out.append(f"  format   {shown_format}{checked} · model {r.model}{assumed} · {r.encoding}")
    size_mb = r.bytes / 1e6
    out.append(
        f"  examples {r.examples:,} ({r.valid_examples:,} without errors) · {size_mb:,.1f} MB · "
        f"{r.elapsed_s:.2f} s"
    )
    if r.errors:
        out.append("")
        more = f"first {min(max_errors, len(r.errors))} of {r.error_count:,}" if r.error_count > max_errors else f"{r.error_count:,}"
        out.append(f"errors ({more}):")
        out.extend(_issue_rows(r.errors, max_errors))
    if r.warnings:
        out.append("")
        more = f"first {min(max_warnings, len(r.warnings))} of {r.warning_count:,}" if r.warning_count > max_warnings else f"{r.warning_count:,}"
        out.append(f"warnings ({more}):")
        out.extend(_issue_rows(r.warnings, max_warnings))
    if r.counts:
        out.append("")
        out.append(f"  {'':<8} {'code':<34} {'count':>10}  meaning")
        ordered = sorted(r.counts.items(), key=lambda kv: (kv[0] in WARNINGS, -kv[1], kv[0]))
        for code, n in ordered:
            kind = "warning" if code in WARNINGS else "error"
            out.append(f"  {kind:<8} {code:<34} {n:>10,}  {ALL_CODES.get(code, '')}")
    t = r.tokens
    if t.get("examples_counted"):
        out.append("")
        out.append(
            f"tokens   total {_num(t['total'])} · billed {_num(t['billed'])} per epoch · "
            f"per example min {_num(t['min'])} p50 {_num(t['p50'])} p95 {_num(t['p95'])} "
            f"max {_num(t['max_example'])} (line {t['max_example_line']})"
        )
        roles = " · ".join(f"{role} {n:,}" for role, n in t["by_role"].items())
        out.append(f"  by role {roles}")
        if t.get("too_long"):
            out.append(f"  {t['too_long']:,} examples exceed the {r.context:,}-token context and are truncated")
    e = r.estimate
    if e and e.get("none_because"):
        out.append("")
        out.append(f"estimate none: {e['none_because']}")
    elif e and e.get("local"):
        out.append("")
        out.append(f"estimate {e['epochs']} epochs × {_num(t.get('billed'))} = {_num(e['trained_tokens'])} trained tokens; {e['note']}")
    elif e:
        price = e.get("price", {})
        out.append("")
        if e.get("cost_usd") is not None:
            out.append(
                f"estimate {e['epochs']} epochs × {_num(t.get('billed'))} = {_num(e['trained_tokens'])} trained tokens "
                f"≈ ${e['cost_usd']:,.2f} at ${price['usd_per_1m_training_tokens']:.2f}/1M "
                f"({price['model']}, prices of {price['table_date']})"
            )
        else:
            out.append(f"estimate {e['epochs']} epochs × {_num(t.get('billed'))} = {_num(e['trained_tokens'])} trained tokens; no cost: {price.get('note') or 'no price known'}")
    return out
