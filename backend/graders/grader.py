"""Graders, as `/v1/fine_tuning/alpha/graders/*` and RFT jobs use them, in pure Python.

`compile_grader(raw)` checks a grader object the way the API does (a bad field is a 400
whose `param` names it, e.g. `grader.graders.exact.operation`) and returns something that
can `grade(namespaces)`. Supported: `string_check` (eq, ne, like, ilike: `like` is "the
input contains the reference", `ilike` the same ignoring case), `text_similarity` (the
metrics of `similarity.py`), `python` (the user's `grade(sample, item)`, in a limited
process of its own: `python_grader.py`) and `multi` (an object map of those, combined by
the `calculate_output` formula of `formula.py`), `score_model` and `label_model` (a model this
backend serves reads the sample: `model_graders.py`).

Templates: `{{item.a.b}}`, `{{item.list[0]}}`, `{{sample.output_text}}`,
`{{sample.output_json.field}}` (when the sample is valid JSON) and
`{{sample.output_tools[0].function.name}}`, in the grammar of `tunedeck.core.datasets.grader`,
which the app's validator also reads them with. A variable that is not there makes the grade
0 with `invalid_variable_error` (or `sample_parse_error` when the sample is not JSON).
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from typing import Any, Protocol, Sequence

from tunedeck.core.datasets.grader import MISSING, TemplateError, Variable, lookup
from tunedeck.core.datasets.grader import parse_template as parse_variables

from ..errors import ApiError, bad_request
from .formula import Formula, FormulaError, parse_formula
from .model_graders import Asker, http_asker
from .similarity import METRICS

STRING_OPERATIONS = ("eq", "ne", "like", "ilike")
LOCAL_TYPES = ("string_check", "text_similarity", "score_model", "label_model", "python", "multi")
HOSTED_TYPES: dict[str, str] = {}
"""Grader types the API knows that this backend cannot run, with why (none now): refused by name."""
MAX_SUB_GRADERS = 32
MAX_TEMPLATE_CHARS = 100_000
MAX_COMPARED_CHARS = 20_000  # similarity metrics look at this much of each text (some are quadratic)
IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
ERROR_FLAGS = (
    "formula_parse_error",
    "sample_parse_error",
    "truncated_observation_error",
    "unresponsive_reward_error",
    "invalid_variable_error",
    "other_error",
    "python_grader_server_error",
    "python_grader_runtime_error",
    "model_grader_server_error",
    "model_grader_refusal_error",
    "model_grader_parse_error",
)
ERROR_DETAILS = (
    "python_grader_server_error_type",
    "python_grader_runtime_error_details",
    "model_grader_server_error_details",
)


@dataclass
class Grade:
    reward: float
    errors: set[str] = field(default_factory=set)  # names from ERROR_FLAGS
    sub_rewards: dict[str, float] = field(default_factory=dict)
    details: dict[str, str] = field(default_factory=dict)  # ERROR_DETAILS that say more


class Grader(Protocol):
    name: str
    type: str

    def grade(self, namespaces: dict[str, Any]) -> Grade: ...


# -- templates ------------------------------------------------------------------------------


class MissingVariable(Exception):
    def __init__(self, flag: str) -> None:
        super().__init__(flag)
        self.flag = flag


@dataclass(frozen=True, slots=True)
class Template:
    """Literal text and variables (a variable is a root plus keys and list indices)."""

    parts: tuple[str | Variable, ...]

    def render(self, namespaces: dict[str, Any]) -> str:
        return "".join(part if isinstance(part, str) else _render(namespaces, part) for part in self.parts)


def parse_template(text: Any, param: str) -> Template:
    if not isinstance(text, str):
        raise bad_request(f"Invalid '{param}': expected a string (it may contain {{{{...}}}} templates).", param=param)
    if len(text) > MAX_TEMPLATE_CHARS:
        raise bad_request(f"Invalid '{param}': longer than {MAX_TEMPLATE_CHARS} characters.", param=param)
    try:
        return Template(parse_variables(text))
    except TemplateError as exc:
        raise bad_request(f"Invalid '{param}': {exc}", param=param) from None


def _render(namespaces: dict[str, Any], variable: Variable) -> str:
    if variable.root == "sample" and variable.parts[0] == "output_json":
        sample = namespaces.get("sample")
        if isinstance(sample, dict) and "output_json" in sample and sample["output_json"] is None:
            raise MissingVariable("sample_parse_error")  # the sample is not JSON
    value = lookup(namespaces.get(variable.root), variable.parts)
    if value is MISSING:
        raise MissingVariable("invalid_variable_error")
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def sample_namespace(output_text: str, output_tools: Sequence[Any] = ()) -> dict[str, Any]:
    """The `sample` namespace of a model answer: `output_json` is set when the text is JSON."""
    try:
        output_json = json.loads(output_text)
    except (ValueError, RecursionError):
        output_json = None
    return {"output_text": output_text, "output_json": output_json, "output_tools": list(output_tools)}


# -- the graders ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Comparison:
    """A grader that renders its `input` and `reference` templates and compares the two texts."""

    name: str
    input: Template
    reference: Template

    def grade(self, namespaces: dict[str, Any]) -> Grade:
        try:
            given, wanted = self.input.render(namespaces), self.reference.render(namespaces)
        except MissingVariable as missing:
            return Grade(0.0, {missing.flag})
        return Grade(self.compare(given, wanted))

    def compare(self, given: str, wanted: str) -> float:
        raise NotImplementedError


@dataclass(frozen=True, slots=True)
class StringCheck(Comparison):
    operation: str
    type: str = "string_check"

    def compare(self, given: str, wanted: str) -> float:
        if self.operation == "eq":
            passed = given == wanted
        elif self.operation == "ne":
            passed = given != wanted
        elif self.operation == "like":
            passed = wanted in given
        else:
            passed = wanted.casefold() in given.casefold()
        return 1.0 if passed else 0.0


@dataclass(frozen=True, slots=True)
class TextSimilarity(Comparison):
    evaluation_metric: str
    type: str = "text_similarity"

    def compare(self, given: str, wanted: str) -> float:
        metric = METRICS[self.evaluation_metric]
        return metric(given[:MAX_COMPARED_CHARS], wanted[:MAX_COMPARED_CHARS])


@dataclass(frozen=True, slots=True)
class Multi:
    name: str
    graders: dict[str, Grader]
    formula: Formula | None  # None: `calculate_output` did not parse (graders.run reports it)
    type: str = "multi"

    def grade(self, namespaces: dict[str, Any]) -> Grade:
        errors: set[str] = set()
        subs: dict[str, float] = {}
        details: dict[str, str] = {}
        for key, grader in self.graders.items():
            sub = grader.grade(namespaces)
            subs[key] = sub.reward
            errors |= sub.errors
            details.update(sub.details)
        if self.formula is None:
            return Grade(0.0, errors | {"formula_parse_error"}, subs, details)
        try:
            reward = self.formula.evaluate(subs)
        except FormulaError:
            return Grade(0.0, errors | {"other_error"}, subs, details)
        return Grade(0.0 if errors else reward, errors, subs, details)


# -- checking and compiling --------------------------------------------------------------------


def compile_grader(raw: Any, param: str = "grader", *, strict_formula: bool = True, ask: Asker | None = None) -> Grader:
    """Check `raw` and build the grader; raises a 400 `ApiError` naming the bad field.
    With `strict_formula=False` (graders.run) a formula that does not parse is not an
    error here: grading then reports `formula_parse_error`, as the API does. `ask`: how
    score_model and label_model graders reach their model (without it they report
    `model_grader_server_error` when grading; checking needs none)."""
    return _compile(raw, param, strict_formula, nested=False, ask=ask)


def validate_grader(raw: Any, param: str = "grader") -> dict[str, Any]:
    compile_grader(raw, param)
    return raw


def check_grader(raw: Any) -> dict[str, Any] | None:
    """The front door's check (the app's grader editor): None when a job or
    `graders/validate` would take `raw` as its grader, else the error the API would answer
    with, `{"message", "type", "param", "code"}` (the app sees no `ApiError` of ours)."""
    try:
        compile_grader(raw)
    except ApiError as exc:
        return exc.body()["error"]
    return None


def _compile(raw: Any, param: str, strict_formula: bool, nested: bool, ask: Asker | None = None) -> Grader:
    if not isinstance(raw, dict):
        raise bad_request(f"Invalid '{param}': expected a grader object with a 'type'.", param=param)
    kind = raw.get("type")
    if kind in HOSTED_TYPES:
        raise ApiError(
            400,
            f"The `{kind}` grader is not available on the local backend: {HOSTED_TYPES[kind]}. "
            "Use string_check, text_similarity, or multi to combine them.",
            param=f"{param}.type",
            code="unsupported_grader",
        )
    if kind not in LOCAL_TYPES:
        expected = ", ".join((*LOCAL_TYPES, *HOSTED_TYPES))
        where = f"{param}.type"
        raise bad_request(f"Invalid '{where}': expected one of {expected}; got {str(kind)[:40]!r}.", param=where)
    name = _required(raw, "name", param)
    if not isinstance(name, str):
        raise bad_request(f"Invalid '{param}.name': expected a string.", param=f"{param}.name")
    if kind == "string_check":
        operation = _one_of(raw, "operation", STRING_OPERATIONS, param)
        return StringCheck(name, *_templates(raw, param), operation)
    if kind == "text_similarity":
        metric = _one_of(raw, "evaluation_metric", tuple(METRICS), param)
        return TextSimilarity(name, *_templates(raw, param), metric)
    if kind in ("score_model", "label_model"):
        from .model_graders import compile_model_grader

        return compile_model_grader(raw, name, param, ask)
    if kind == "python":
        from .python_grader import PythonGrader, PythonGraderError, check_source

        try:
            source = check_source(_required(raw, "source", param))
        except PythonGraderError as exc:
            raise bad_request(f"Invalid '{param}.source': {exc}.", param=f"{param}.source") from None
        return PythonGrader(name, source)
    if nested:
        raise bad_request(f"Invalid '{param}.type': multi graders cannot be nested.", param=f"{param}.type")
    return _compile_multi(raw, name, param, strict_formula, ask)


def _compile_multi(raw: dict[str, Any], name: str, param: str, strict_formula: bool, ask: Asker | None) -> Multi:
    members = _members(_required(raw, "graders", param), f"{param}.graders")
    graders = {key: _compile(sub, f"{param}.graders.{key}", strict_formula, nested=True, ask=ask) for key, sub in members}
    source = _required(raw, "calculate_output", param)
    try:
        formula: Formula | None = parse_formula(source)
        unknown = sorted(formula.names - set(graders))
        if unknown:
            raise FormulaError(f"unknown name(s) {', '.join(unknown)}; the graders are {', '.join(graders)}")
    except FormulaError as exc:
        if strict_formula:
            message = f"Invalid '{param}.calculate_output': {exc}."
            raise bad_request(message, param=f"{param}.calculate_output", code="formula_parse_error") from None
        formula = None
    return Multi(name, graders, formula)


def _members(raw: Any, param: str) -> list[tuple[str, Any]]:
    """Sub-graders with their formula names: an object map (what the guides send), a list,
    or one grader (what the SDK types say); in the last two the names are grader names."""
    if isinstance(raw, dict) and isinstance(raw.get("type"), str):
        raw = [raw]
    if isinstance(raw, list):
        pairs = [(sub.get("name") if isinstance(sub, dict) else None, sub) for sub in raw]
    elif isinstance(raw, dict):
        pairs = list(raw.items())
    else:
        raise bad_request(f"Invalid '{param}': expected an object mapping names to graders.", param=param)
    if not pairs or len(pairs) > MAX_SUB_GRADERS:
        raise bad_request(f"Invalid '{param}': expected 1 to {MAX_SUB_GRADERS} graders.", param=param)
    for key, _ in pairs:
        if not isinstance(key, str) or not IDENTIFIER.fullmatch(key):
            raise bad_request(
                f"Invalid '{param}': {str(key)[:40]!r} cannot be used in calculate_output; "
                "name each grader with letters, digits and underscores.",
                param=param,
            )
    return pairs


def _required(raw: dict[str, Any], key: str, param: str) -> Any:
    if raw.get(key) is None:
        where = f"{param}.{key}"
        raise bad_request(f"Missing required parameter: '{where}'.", param=where, code="missing_required_parameter")
    return raw[key]


def _one_of(raw: dict[str, Any], key: str, allowed: tuple[str, ...], param: str) -> str:
    value = _required(raw, key, param)
    if value not in allowed:
        where = f"{param}.{key}"
        expected = ", ".join(allowed)
        raise bad_request(f"Invalid '{where}': expected one of {expected}; got {str(value)[:40]!r}.", param=where)
    return value


def _templates(raw: dict[str, Any], param: str) -> tuple[Template, Template]:
    given = parse_template(_required(raw, "input", param), f"{param}.input")
    return given, parse_template(_required(raw, "reference", param), f"{param}.reference")


# -- running ----------------------------------------------------------------------------------


def asker_for(endpoint: tuple[str, str] | None) -> Asker | None:
    """How model graders ask through the API at `endpoint` (base URL, key); None without one."""
    return http_asker(*endpoint) if endpoint is not None else None


def run_grader(raw: Any, model_sample: str, item: Any, ask: Asker | None = None) -> dict[str, Any]:
    """`graders/run` without HTTP, for the front door: the response body, or the API's error
    envelope `{"error": {...}}` when it would refuse the grader with a 400. `ask`: how a
    model grader reaches its model (none: it reports `model_grader_server_error`)."""
    try:
        grader = compile_grader(raw, strict_formula=False, ask=ask)
    except ApiError as exc:
        return exc.body()
    return run(grader, model_sample, {} if item is None else item)


def run(grader: Grader, model_sample: str, item: Any) -> dict[str, Any]:
    """`POST /graders/run`: grade one sample; the body of a `GraderRunResponse`."""
    started = time.perf_counter()
    grade = grader.grade({"item": item, "sample": sample_namespace(model_sample)})
    return run_response(grader, grade, time.perf_counter() - started)


def run_response(grader: Grader, grade: Grade, seconds: float) -> dict[str, Any]:
    errors: dict[str, Any] = {flag: flag in grade.errors for flag in ERROR_FLAGS}
    errors.update({detail: grade.details.get(detail) for detail in ERROR_DETAILS})
    metadata = {
        "name": grader.name,
        "type": grader.type,
        "errors": errors,
        "execution_time": seconds,
        "scores": dict(grade.sub_rewards),
        "token_usage": None,
        "sampled_model_name": getattr(grader, "model", None),
    }
    return {
        "reward": grade.reward,
        "metadata": metadata,
        "sub_rewards": dict(grade.sub_rewards),
        "model_grader_token_usage_per_model": {},
    }
