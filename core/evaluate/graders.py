"""Scoring answers: each grader choice becomes a grader object of the local backend's, and
`tunedeck.backend.run_grader` scores it, so an evaluation and an RFT job grade with one
implementation (the backend loads on the first grade, never at import).

The built-in kinds, as backend graders:
- `exact`: `string_check` `eq` of `{{sample.output_text}}` and the reference;
- `string_check`: the same with the choice's `operation` (eq, ne, like, ilike);
- `text_similarity`: the choice's `metric`;
- `json`: a `multi` grader, one `string_check` `eq` per field of the answer against the
  reference's, `calculate_output` their mean; one sub-score per field. Both are parsed here
  and each field handed over as canonical JSON text (keys sorted, 1.0 written 1), so values
  compare as JSON: key order and 1 vs 1.0 do not matter, 1 vs "1" does;
- `custom`: the grader object as given, reading the row itself as `{{item.*}}`.

The built-in kinds compare the answer and the reference without their surrounding
whitespace (a trailing newline is no wrong answer), and `json` also without a Markdown code
fence around the answer. For `json`, an answer that is not JSON, or lacks a field, scores 0
on those fields: that is a wrong answer, not a grader failure. Any other error flag the
backend raises (a template variable missing from the row, a formula that fails) is a
`Grade` with no score and the flags in words, kept with that example; the run goes on.

`model` is graded by a judge model, which only the runner can ask: `judge_messages` builds
the question and `parse_judge` reads the answer.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from tunedeck.core.datasets.grader import item_paths, resolve
from tunedeck.core.text import strip_controls

from .records import GRADER_KINDS, EvalExample, GraderChoice

DEFAULT_PASS = {"exact": 1.0, "string_check": 1.0, "json": 1.0, "text_similarity": 0.5, "model": 0.5, "custom": 0.5}
STRING_OPERATIONS = ("eq", "ne", "like", "ilike")
OPERATION_NAMES = {"eq": "equals", "ne": "differs from", "like": "contains", "ilike": "contains, ignoring case"}
SIMILARITY_METRICS = (
    "fuzzy_match", "bleu", "gleu", "meteor", "cosine",
    "rouge_1", "rouge_2", "rouge_3", "rouge_4", "rouge_5", "rouge_l",
)  # fmt: skip
"""The backend's `text_similarity` metrics (its own check has the last word)."""
MAX_JSON_FIELDS = 32
"""A multi grader combines at most this many sub-graders (the backend's limit)."""
JSON_FIELD_KEY = re.compile(r"[^.\[\]\s{}]+")
"""A JSON field a template can name: no dots, brackets, braces or spaces."""
REFERENCE_KEY = "reference_answer"
REFERENCE_JSON_KEY = "reference_json"
ANSWER_JSON_KEY = "answer_json"
FLAG_WORDS = {
    "invalid_variable_error": "a template variable is missing",
    "sample_parse_error": "the answer is not valid JSON",
    "formula_parse_error": "calculate_output does not parse",
    "truncated_observation_error": "the answer was truncated",
    "unresponsive_reward_error": "the grader gave no reward",
    "other_error": "the grader failed (for example a division by zero in calculate_output)",
}
JUDGE_MODEL_KINDS = ("model",)
JUDGE_TEXT_LIMIT = 6000
"""Characters of the question, reference and answer shown to a judge, each."""
JUDGE_ECHO_LIMIT = 80
"""Characters of an unreadable judge reply quoted back in the error."""
_FENCE = re.compile(r"\A```[A-Za-z0-9_-]*\s*\n(.*?)\n?```\Z", re.DOTALL)
_SCORE_LABEL = re.compile(r"score\W{0,3}(-?\d+(?:[.,]\d+)?|-?[.,]\d+)(?![\w/])", re.IGNORECASE)
# A reply that is a number and nothing else.
_BARE_NUMBER = re.compile(r"-?(?:\d+(?:[.,]\d+)?|[.,]\d+)")


@dataclass(frozen=True)
class Grade:
    """One answer's score (None when it could not be graded, with `error` saying why)."""

    score: float | None
    sub_scores: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    judge_prompt_tokens: int | None = None
    """What asking the judge model cost (a model grader only; None when it was not asked)."""
    judge_completion_tokens: int | None = None


# -- choices ---------------------------------------------------------------------------------


def pass_threshold(choice: GraderChoice) -> float:
    """The score at or above which an answer passes."""
    if choice.pass_threshold is not None:
        return float(choice.pass_threshold)
    return DEFAULT_PASS.get(choice.kind, 0.5)


def grader_problem(choice: GraderChoice) -> str | None:
    """None when `choice` can grade; else a sentence saying what is wrong with it."""
    if choice.kind not in GRADER_KINDS:
        return f"unknown grader kind {choice.kind!r}: expected one of {', '.join(GRADER_KINDS)}"
    threshold = choice.pass_threshold
    if threshold is not None and (isinstance(threshold, bool) or not isinstance(threshold, (int, float))):
        return f"the pass threshold must be a number, not {threshold!r}"
    if choice.kind == "string_check" and choice.operation not in STRING_OPERATIONS:
        return f"string_check operation {choice.operation!r} is not one of {', '.join(STRING_OPERATIONS)}"
    if choice.kind == "text_similarity" and choice.metric not in SIMILARITY_METRICS:
        return f"text similarity metric {choice.metric!r} is not one of {', '.join(SIMILARITY_METRICS)}"
    if choice.kind == "json":
        return _json_fields_problem(choice.fields)
    if choice.kind == "model":
        return None if choice.judge_model else "a model grader needs a judge model"
    if choice.kind == "custom":
        return _custom_problem(choice.grader)
    return _backend_problem(_comparison(choice))


def _json_fields_problem(fields: tuple[str, ...]) -> str | None:
    if len(fields) > MAX_JSON_FIELDS:
        return f"a JSON grader compares at most {MAX_JSON_FIELDS} fields, not {len(fields)}"
    for name in fields:
        if not isinstance(name, str) or not JSON_FIELD_KEY.fullmatch(name):
            return f"JSON field {str(name)[:40]!r} cannot be compared (no dots, brackets, braces or spaces)"
    if len(set(fields)) != len(fields):
        return "a JSON field is listed twice"
    return None


MODEL_GRADER_TYPES = ("score_model", "label_model")


def _custom_problem(grader: Any) -> str | None:
    if not isinstance(grader, dict):
        return "a custom grader needs a grader object"
    members = grader.get("graders") if grader.get("type") == "multi" else None
    inner = list(members.values()) if isinstance(members, dict) else members if isinstance(members, list) else []
    if any(isinstance(g, dict) and g.get("type") in MODEL_GRADER_TYPES for g in [grader, *inner]):
        # The grader code here asks no model; an evaluation's own judge does, with its tokens counted.
        return "a score_model or label_model grader asks a model: use the judge grader (a judge model) instead"
    return _backend_problem(grader)


def _backend_problem(grader: dict[str, Any]) -> str | None:
    from tunedeck.backend import check_grader

    error = check_grader(grader)
    if error is None:
        return None
    return strip_controls(str(error.get("message") or error))


def describe_grader(choice: GraderChoice) -> str:
    """A short human name for the grader, e.g. "exact match", "text similarity (bleu)"."""
    if choice.kind == "exact":
        return "exact match"
    if choice.kind == "string_check":
        return f"string check ({OPERATION_NAMES.get(choice.operation, choice.operation)})"
    if choice.kind == "text_similarity":
        return f"text similarity ({choice.metric})"
    if choice.kind == "json":
        return f"JSON fields ({', '.join(choice.fields)})" if choice.fields else "JSON fields (all)"
    if choice.kind == "model":
        return f"model judge ({choice.judge_model or 'no model'})"
    if choice.kind == "custom":
        return _describe_custom(choice.grader)
    return choice.kind


def _describe_custom(grader: Any) -> str:
    if not isinstance(grader, dict):
        return "custom grader"
    kind, name = grader.get("type"), grader.get("name")
    shown = str(kind) if kind else "grader"
    if isinstance(name, str) and name:
        shown += f" '{name}'"
    return strip_controls(f"custom {shown}"[:80])


def default_grader_for_job(job_body: dict[str, Any]) -> GraderChoice:
    """The grader an evaluation of a job starts with: the job's own grader for an RFT job
    (as the API returns the job), exact match for any other."""
    method = job_body.get("method") if isinstance(job_body, dict) else None
    if isinstance(method, dict) and method.get("type") == "reinforcement":
        settings = method.get("reinforcement")
        grader = settings.get("grader") if isinstance(settings, dict) else None
        if isinstance(grader, dict):
            return GraderChoice(kind="custom", grader=grader)
    return GraderChoice()


# -- grading ----------------------------------------------------------------------------------


def grade(choice: GraderChoice, answer: str, example: EvalExample) -> Grade:
    """Score `answer` to `example` with the backend's grader code. Kind `model` raises
    `ValueError`: its judge is a model the runner asks (`judge_messages`, `parse_judge`)."""
    if choice.kind in JUDGE_MODEL_KINDS:
        raise ValueError("a model grader is graded by asking its judge model: use judge_messages and parse_judge")
    if choice.kind == "custom":
        if not isinstance(choice.grader, dict):
            return Grade(None, {}, "a custom grader needs a grader object")
        return _run(choice.grader, answer, example.item)
    if example.reference is None:
        return Grade(None, {}, "the example has no reference answer to compare with")
    if choice.kind == "json":
        return _grade_json(choice, answer, example.reference)
    item = {REFERENCE_KEY: example.reference.strip()}
    return _run(_comparison(choice), answer.strip(), item)


def _comparison(choice: GraderChoice) -> dict[str, Any]:
    """The backend grader of a built-in kind comparing the answer with `item.reference_answer`."""
    templates = {"input": "{{sample.output_text}}", "reference": "{{item.%s}}" % REFERENCE_KEY}
    if choice.kind == "text_similarity":
        return {"type": "text_similarity", "name": "similarity", "evaluation_metric": choice.metric, **templates}
    operation = "eq" if choice.kind == "exact" else choice.operation
    return {"type": "string_check", "name": choice.kind, "operation": operation, **templates}


def _run(grader: dict[str, Any], answer: str, item: Any) -> Grade:
    from tunedeck.backend import run_grader

    body = run_grader(grader, answer, item)
    if "error" in body:
        message = body["error"].get("message") if isinstance(body["error"], dict) else body["error"]
        return Grade(None, {}, strip_controls(f"the grader was refused: {message}"))
    subs = {str(k): float(v) for k, v in (body.get("sub_rewards") or {}).items()}
    flags = _raised_flags(body)
    if flags:
        return Grade(None, subs, _flags_in_words(flags, grader, item))
    return Grade(float(body["reward"]), subs, None)


def _raised_flags(body: dict[str, Any]) -> list[str]:
    errors = (body.get("metadata") or {}).get("errors") or {}
    return [name for name, raised in errors.items() if raised is True]


def _flags_in_words(flags: list[str], grader: dict[str, Any], item: Any) -> str:
    words = []
    for flag in flags:
        text = FLAG_WORDS.get(flag, flag.replace("_", " "))
        if flag == "invalid_variable_error":
            missing = [f"item.{path.text}" for path in item_paths(grader) if not resolve(item, path.parts)]
            if missing:
                text = f"{', '.join(missing[:4])} missing from this example"
        words.append(f"{text} ({flag})")
    return strip_controls("; ".join(words))


# -- json ---------------------------------------------------------------------------------------


def _grade_json(choice: GraderChoice, answer: str, reference_text: str) -> Grade:
    try:
        reference = json.loads(reference_text)
    except (ValueError, RecursionError):
        return Grade(None, {}, "the reference answer is not JSON, so its fields cannot be compared")
    if not isinstance(reference, dict):
        return Grade(None, {}, "the reference answer is JSON but not an object, so it has no fields to compare")
    fields = list(choice.fields) or list(reference)
    problem = _json_fields_problem(tuple(fields))
    if problem:
        return Grade(None, {}, problem)
    absent = [name for name in fields if name not in reference]
    if absent:
        return Grade(None, {}, f"the reference answer has no field {', '.join(absent[:4])}")
    if not fields:
        return Grade(None, {}, "the reference answer is an empty object: no fields to compare")
    try:
        parsed = json.loads(_unfenced(answer.strip()))
    except (ValueError, RecursionError):
        parsed = None
    if not isinstance(parsed, dict):  # not a JSON object: a wrong answer on every field
        return Grade(0.0, {name: 0.0 for name in fields}, None)
    canonical = {name: _canonical(parsed[name]) for name in fields if name in parsed}
    return _run_json(fields, answer, {name: _canonical(reference[name]) for name in fields}, canonical)


def _canonical(value: Any) -> str:
    """`value` as JSON text that equal JSON values share: keys sorted, integral floats as integers."""
    return json.dumps(_normalised(value), sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def _normalised(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {key: _normalised(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_normalised(item) for item in value]
    return value


def _run_json(fields: list[str], answer: str, reference: dict[str, str], given: dict[str, str]) -> Grade:
    from tunedeck.backend import run_grader

    keys = {f"field_{position}": name for position, name in enumerate(fields)}
    grader = {
        "type": "multi",
        "name": "json fields",
        "graders": {key: _field_check(name) for key, name in keys.items()},
        "calculate_output": "(" + " + ".join(keys) + f") / {len(keys)}",
    }
    item = {REFERENCE_JSON_KEY: reference, ANSWER_JSON_KEY: given}
    body = run_grader(grader, answer, item)
    if "error" in body:
        return Grade(None, {}, strip_controls(f"the grader was refused: {body['error'].get('message')}"))
    subs = {keys[key]: float(value) for key, value in (body.get("sub_rewards") or {}).items() if key in keys}
    flags = set(_raised_flags(body))
    if flags - {"sample_parse_error", "invalid_variable_error"}:
        return Grade(None, subs, _flags_in_words(sorted(flags), grader, item))
    # The reference's fields are all there (checked above), so a missing variable is a field
    # the answer lacks: it scores 0 there.
    score = float(body["reward"]) if not flags else sum(subs.values()) / len(fields)
    return Grade(score, subs, None)


def _field_check(name: str) -> dict[str, Any]:
    return {
        "type": "string_check",
        "name": name,
        "operation": "eq",
        "input": "{{item.%s.%s}}" % (ANSWER_JSON_KEY, name),
        "reference": "{{item.%s.%s}}" % (REFERENCE_JSON_KEY, name),
    }


def _unfenced(answer: str) -> str:
    """The answer without a Markdown code fence around it (models often fence JSON)."""
    match = _FENCE.match(answer)
    return match.group(1).strip() if match else answer


# -- a judge model ------------------------------------------------------------------------------

JUDGE_SYSTEM = (
    "You grade answers against a reference answer. Judge whether the answer says what the "
    "reference says (the facts, the label, the result), not its wording or length. Reply with "
    "one line: `score: X`, where X is a number from 0 (wrong) to 1 (fully right)."
)


def judge_messages(example: EvalExample, answer: str) -> list[dict[str, Any]]:
    """The messages asking a judge model to score `answer` against the example's reference."""
    question = next((m.get("content", "") for m in reversed(example.prompt) if m.get("role") == "user"), "")
    reference = (
        example.reference if example.reference is not None else "(none given: judge the answer on its own merits)"
    )
    user = (
        f"Question:\n{_clip(str(question))}\n\n"
        f"Reference answer:\n{_clip(reference)}\n\n"
        f"Answer to grade:\n{_clip(answer)}\n\n"
        "Reply with `score: X` (0 to 1)."
    )
    return [{"role": "system", "content": JUDGE_SYSTEM}, {"role": "user", "content": user}]


def _clip(text: str, limit: int = JUDGE_TEXT_LIMIT) -> str:
    return text if len(text) <= limit else text[:limit] + " [...]"


def parse_judge(text: str) -> Grade:
    """The score in a judge's reply: the last labelled `score: X` (`Score = 0,5` too) from 0
    to 1, or a reply that is only a number from 0 to 1. Numbers elsewhere in prose ("names 1
    city of 3") are never read as a score: a reply without either is a `Grade` error quoting it."""
    text = text or ""
    labelled = [float(m.group(1).replace(",", ".")) for m in _SCORE_LABEL.finditer(text)]
    in_range = [value for value in labelled if 0.0 <= value <= 1.0]
    if in_range:
        return Grade(in_range[-1], {}, None)
    bare = _BARE_NUMBER.fullmatch(text.strip().rstrip("."))
    if bare is not None:
        value = float(bare.group(0).replace(",", "."))
        if 0.0 <= value <= 1.0:
            return Grade(value, {}, None)
    return Grade(None, {}, f"the judge gave no score from 0 to 1: {_echo(text)}")


def _echo(text: str) -> str:
    flat = " ".join(text.split())
    shown = flat if len(flat) <= JUDGE_ECHO_LIMIT else flat[:JUDGE_ECHO_LIMIT] + "…"
    return repr(strip_controls(shown)) if shown else "an empty reply"
