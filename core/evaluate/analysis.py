"""Turning failures into notes and a run into a report.

- `failure_sample`: a seeded, repeatable sample of one model's failures, those another model
  got right first (they show what the model could have learned);
- `analysis_messages`: the question for a reasoning model: concrete changes to the training
  data or the prompt that would fix such failures, with each failure's input, reference,
  answer and score, the whole kept under `MAX_PROMPT_CHARS`;
- `markdown_report`: the run as Markdown (settings, scores with intervals and cost, the
  paired comparisons, the notes, the failures);
- `suitable_analysis_models`: which of a provider's models can write the notes.

Pure functions of records: no I/O.
"""

from __future__ import annotations

import random
import re
from datetime import datetime, timezone
from typing import Any, Sequence

from .graders import describe_grader, pass_threshold
from .records import EvalExample, EvalRunInfo, EvalSettings, ExampleResult, skipped_rows
from .results import EvalSummary, ModelScore, PairedComparison, by_model, example_rows, passed
from .stats import Interval

MAX_PROMPT_CHARS = 24_000
"""The analysis question's size bound (instructions, context and failures together)."""
TURNS_SHOWN = 3
"""The last turns of each failure's prompt shown (the question and what leads to it)."""
TURN_CHARS = 1_500
REFERENCE_CHARS = 1_000
ANSWER_CHARS = 1_000
REPORT_TEXT_CHARS = 4_000
"""Characters of one input turn, reference or answer in the report."""
MAX_REPORT_FAILURES = 200
"""Failures listed in a report; beyond them the report says how many it leaves out."""

ANALYSIS_SYSTEM = (
    "You review the failures of a language model evaluated on a dataset. Write concrete, "
    "actionable notes in Markdown: the patterns you see in the failures (cite example lines), "
    "what training examples to add, fix or remove, what to change in the system prompt, and "
    "which reference answers look wrong or ambiguous. Prefer specific changes over general advice. "
    "Be brief: short bullet points under a few headings."
)


# -- sampling failures ----------------------------------------------------------------------------


def is_failure(result: ExampleResult) -> bool:
    """Not passed, or a grader error on an answer (a request that failed has nothing to learn from)."""
    return result.passed is False or (result.error is not None and result.answer is not None)


def failure_sample(
    examples: Sequence[EvalExample],
    results: Sequence[ExampleResult],
    model_key: str,
    size: int = 12,
    seed: int = 0,
) -> list[tuple[EvalExample, ExampleResult]]:
    """Up to `size` of `model_key`'s failures, the same for the same seed: first those another
    model passed, then the rest, each group drawn at random and listed in example order."""
    table = by_model(results, len(examples))  # an example's index is its position
    failures = sorted(i for i, r in table.get(model_key, {}).items() if is_failure(r))
    others = [rows for key, rows in table.items() if key != model_key]
    beaten = [i for i in failures if any(rows.get(i) is not None and rows[i].passed for rows in others)]
    beaten_set = set(beaten)
    rest = [i for i in failures if i not in beaten_set]
    rng = random.Random(seed)
    chosen = _draw(rng, beaten, size)
    chosen += _draw(rng, rest, size - len(chosen))
    return [(examples[i], table[model_key][i]) for i in chosen]


def _draw(rng: random.Random, indices: list[int], size: int) -> list[int]:
    if size <= 0:
        return []
    return sorted(rng.sample(indices, min(size, len(indices))))


# -- the analysis question --------------------------------------------------------------------------


def analysis_messages(
    settings: EvalSettings, sample: Sequence[tuple[EvalExample, ExampleResult]], model_key: str
) -> list[dict[str, Any]]:
    """System and user messages asking for notes on data and prompt changes, given the sampled
    failures of `model_key`; as many failures as fit in `MAX_PROMPT_CHARS`."""
    context = _analysis_context(settings, model_key, len(sample))
    budget = MAX_PROMPT_CHARS - len(ANALYSIS_SYSTEM) - len(context) - 200
    blocks: list[str] = []
    for example, result in sample:
        block = _failure_block(example, result)
        if len(block) > budget:
            break
        blocks.append(block)
        budget -= len(block)
    left_out = len(sample) - len(blocks)
    tail = f"\n\n({left_out} more failures left out for length.)" if left_out else ""
    user = context + "\n\n" + "\n\n".join(blocks) + tail
    return [{"role": "system", "content": ANALYSIS_SYSTEM}, {"role": "user", "content": user}]


def _analysis_context(settings: EvalSettings, model_key: str, failures: int) -> str:
    spec = next((m for m in settings.models if m.label == model_key), None)
    lines = [
        f"Model: {spec.model if spec else model_key} ({model_key})",
        f"Grader: {describe_grader(settings.grader)}; an answer passes at a score of {pass_threshold(settings.grader):g} or more.",
    ]
    if spec and spec.system_prompt is not None:
        lines.append(f"System prompt used (instead of the rows' own):\n{_clip(spec.system_prompt, TURN_CHARS)}")
    lines.append(f"{failures} failures follow: each with the last turns of its input, the reference and the answer.")
    return "\n".join(lines)


def _failure_block(example: EvalExample, result: ExampleResult) -> str:
    turns = "\n".join(
        f"[{t.get('role')}] {_clip(str(t.get('content', '')), TURN_CHARS)}" for t in example.prompt[-TURNS_SHOWN:]
    )
    reference = _clip(example.reference, REFERENCE_CHARS) if example.reference is not None else "(none)"
    answer = _clip(result.answer, ANSWER_CHARS) if result.answer is not None else "(no answer)"
    return (
        f"## Example line {example.line}\nInput:\n{turns}\nReference: {reference}\n"
        f"Answer: {answer}\nScore: {_score_text(result)}"
    )


def _score_text(result: ExampleResult) -> str:
    if result.score is None:
        return f"none ({result.error or 'not graded'})"
    return f"{result.score:.3g}" + (f" ({result.error})" if result.error else "")


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + " […]"


# -- the report ---------------------------------------------------------------------------------------


def markdown_report(
    info: EvalRunInfo, summary: EvalSummary, examples: Sequence[EvalExample], results: Sequence[ExampleResult]
) -> str:
    """The run as a Markdown document."""
    sections = [
        _report_title(info),
        _report_settings(info),
        _report_scores(summary.scores),
        _report_pairs(summary.pairs),
    ]
    if info.notes:
        by = f" (by {cell(info.notes_model)})" if info.notes_model else ""
        sections.append(f"## Notes{by}\n\n{info.notes.strip()}")
    sections.append(_report_failures(info.settings, examples, results))
    return "\n\n".join(section for section in sections if section) + "\n"


def _report_title(info: EvalRunInfo) -> str:
    created = datetime.fromtimestamp(info.created_at, tz=timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return f"# Evaluation {info.id}\n\n{created} · {info.status} · {info.done} of {info.total} answers · {info.errors} errors"


def _report_settings(info: EvalRunInfo) -> str:
    s = info.settings
    lines = [
        "## Settings",
        "",
        f"- Data: `{inline(s.data_path)}` (sha256 {s.data_sha256[:12]}), {info.examples} examples"
        + (f" (limit {s.limit})" if s.limit is not None else ""),
        f"- Grader: {describe_grader(s.grader)}, passing at {pass_threshold(s.grader):g}",
        f"- Sampling: temperature {s.sampling.temperature:g}, max tokens {s.sampling.max_tokens}"
        + (f", seed {s.sampling.seed}" if s.sampling.seed is not None else ""),
    ]
    if s.job_id:
        lines.append(f"- Job: `{inline(s.job_id)}`")
    if info.skipped:
        lines.append(f"- Rows skipped: {skipped_rows(info.skipped)} (first: {cell(info.skipped[0].describe())})")
    for spec in s.models:
        prompt = f", system prompt: {cell(_clip(spec.system_prompt, 200))}" if spec.system_prompt is not None else ""
        lines.append(f"- Model **{cell(spec.label)}**: `{inline(spec.model)}` ({spec.kind}){prompt}")
    return "\n".join(lines)


def _report_scores(scores: Sequence[ModelScore]) -> str:
    header = (
        "## Scores\n\n| Model | Graded | Mean (95% CI) | Pass rate (95% CI) | Errors | Missing | Tokens in / out | Cost |\n"
        "| --- | ---: | --- | --- | ---: | ---: | ---: | ---: |"
    )
    rows = [
        f"| {cell(s.key)} | {s.graded} | {_with_interval(s.mean, s.interval)} | {_with_interval(s.pass_rate, s.pass_interval, percent=True)} "
        f"| {s.errors} | {s.missing} | {s.prompt_tokens:,} / {s.completion_tokens:,} | {_money(s.cost_usd)} |"
        for s in scores
    ]
    return "\n".join([header, *rows])


def _with_interval(value: float | None, interval: Interval | None, percent: bool = False) -> str:
    if value is None:
        return "–"
    shown = (lambda x: f"{x * 100:.1f}%") if percent else (lambda x: f"{x:.3f}")
    return shown(value) + (f" ({shown(interval.low)} – {shown(interval.high)})" if interval else "")


def _money(usd: float | None) -> str:
    if usd is None:
        return "unknown"
    return f"${usd:.4f}" if usd < 1 else f"${usd:,.2f}"


def _report_pairs(pairs: Sequence[PairedComparison]) -> str:
    if not pairs:
        return ""
    lines = ["## Paired comparisons", ""]
    for pair in pairs:
        line = f"- {inline_text(pair.sentence())}"
        if pair.mean_diff is not None and pair.diff_interval is not None:
            low, high = pair.diff_interval.low, pair.diff_interval.high
            line += f"; mean score difference {inline_text(pair.b)} − {inline_text(pair.a)}: {pair.mean_diff:+.3f} (95% CI {low:+.3f} to {high:+.3f})"
        lines.append(line)
    return "\n".join(lines)


def _report_failures(settings: EvalSettings, examples: Sequence[EvalExample], results: Sequence[ExampleResult]) -> str:
    rows = example_rows(settings, results, len(examples), "failures")
    if not rows:
        return "## Failures\n\nNone."
    threshold = pass_threshold(settings.grader)
    parts = [f"## Failures\n\n{len(rows)} examples where some model did not pass or erred."]
    for row in rows[:MAX_REPORT_FAILURES]:
        parts.append(_report_failure(examples[row.index], row.results, settings, threshold))
    if len(rows) > MAX_REPORT_FAILURES:
        parts.append(f"({len(rows) - MAX_REPORT_FAILURES} more not listed.)")
    return "\n\n".join(parts)


def _report_failure(
    example: EvalExample, results: dict[str, ExampleResult], settings: EvalSettings, threshold: float
) -> str:
    lines = [f"### Line {example.line}", "", "Input:", ""]
    for turn in example.prompt[-TURNS_SHOWN:]:
        lines += [
            f"*{cell(str(turn.get('role')))}*",
            "",
            fenced(_clip(str(turn.get("content", "")), REPORT_TEXT_CHARS)),
            "",
        ]
    lines += [
        "Reference:",
        "",
        fenced(_clip(example.reference, REPORT_TEXT_CHARS)) if example.reference is not None else "(none)",
    ]
    for spec in settings.models:
        result = results.get(spec.label)
        if result is None:
            continue
        lines += ["", f"**{cell(spec.label)}**: {_verdict(result, threshold)}", ""]
        lines.append(fenced(_clip(result.answer, REPORT_TEXT_CHARS)) if result.answer is not None else "(no answer)")
    return "\n".join(lines)


def _verdict(result: ExampleResult, threshold: float) -> str:
    outcome = passed(result, threshold)
    text = "not graded" if outcome is None else f"{'passed' if outcome else 'failed'}, score {result.score:.3g}"
    return text + (f" — {inline_text(result.error)}" if result.error else "")


# -- Markdown escaping ------------------------------------------------------------------------------------

_BACKTICKS = re.compile(r"`+")


def fenced(text: str) -> str:
    """`text` in a code fence longer than any run of backticks inside it."""
    longest = max((len(run) for run in _BACKTICKS.findall(text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}\n{text}\n{fence}"


def cell(text: str | None) -> str:
    """Text safe in a table cell or a line: pipes escaped, line breaks as spaces."""
    return inline_text(text or "").replace("|", "\\|")


def inline_text(text: str) -> str:
    return " ".join(text.split())


def inline(text: str) -> str:
    """Text for inline code: backticks cannot close it early."""
    return inline_text(text).replace("`", "'")


# -- analysis models -------------------------------------------------------------------------------------

_NOT_CHAT = (
    "embedding", "tts", "whisper", "dall-e", "moderation", "transcribe", "audio",
    "realtime", "image", "davinci", "babbage", "-instruct", "computer-use", "codex", "deep-research", "sora",
)  # fmt: skip
"""Words in the ids of models that do not answer chat completions (embeddings, speech,
images, moderation, completion-only and Responses-only models)."""
_RANKS = (
    re.compile(r"(o\d|gpt-5)"),  # reasoning models first
    re.compile(r"gpt-4\.1"),
    re.compile(r"(gpt-4o|chatgpt)"),
)


def suitable_analysis_models(model_ids: Sequence[str]) -> list[str]:
    """The models that can write failure notes, best first: reasoning models (o-series,
    gpt-5), then gpt-4.1, gpt-4o, then the rest (the local backend's models included);
    embedding, speech, image, moderation and completion-only models are left out."""
    kept = {m for m in model_ids if not any(word in m.lower() for word in _NOT_CHAT)}
    return sorted(kept, key=_rank)


def _rank(model: str) -> tuple[int, bool, str]:
    name = model.lower()
    fine_tuned = name.startswith("ft:")
    base = name.split(":")[1] if fine_tuned and ":" in name else name
    rank = next((position for position, pattern in enumerate(_RANKS) if pattern.match(base)), len(_RANKS))
    return rank, fine_tuned, name
