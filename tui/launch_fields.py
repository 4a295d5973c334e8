"""The launch form's typed fields, from the rules the backend applies (`core/datasets/jobrules`):
their labels, what a good value is, which methods and profiles show them, and how typed
text becomes a request's value. Pure functions; the screen (`screens/launch.py`) lays them out."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunedeck.core.datasets.jobrules import HYPERPARAMETER_RULES, METHOD_HYPERPARAMETERS, OPTION_RULES, Rule
from tunedeck.core.launch.request import AUTO, METHOD_LABELS, METHODS, LaunchRequest

KINDS = {"integer": "int", "number": "float", "choice": "choice", "text": "text"}


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """One typed field of the form: `key` is where its value goes in the request; `group`
    is hyper (the method's hyperparameters), job, wandb (OpenAI only) or option (tunedeck's
    own, for a backend that takes them). The first of `choices` is the default, left out of
    the request as an empty field is."""

    key: str
    label: str
    kind: str  # int, float, text, choice
    group: str
    methods: tuple[str, ...] = METHODS
    placeholder: str = ""
    choices: tuple[str, ...] = ()
    help: str = ""


def _hyperparameter(name: str) -> FieldSpec:
    rule = HYPERPARAMETER_RULES[name]
    methods = tuple(m for m in METHODS if name in METHOD_HYPERPARAMETERS[m])
    choices = (AUTO, *rule.choices) if rule.kind == "choice" else ()
    return FieldSpec(name, rule.label, KINDS[rule.kind], "hyper", methods, AUTO, choices, rule.help)


def _option(rule: Rule, methods: tuple[str, ...] = METHODS, note: str = "") -> FieldSpec:
    if rule.kind == "choice":
        default = rule.default if rule.default in rule.choices else rule.choices[0]
        choices = (default, *(c for c in rule.choices if c != default))
        return FieldSpec(rule.name, rule.label, "choice", "option", methods, choices=choices, help=rule.help)
    placeholder = f"default {rule.default}" if rule.default is not None else f"default: {note}"
    return FieldSpec(rule.name, rule.label, KINDS[rule.kind], "option", methods, placeholder, help=rule.help)


FIELDS: tuple[FieldSpec, ...] = (
    *(_hyperparameter(name) for name in HYPERPARAMETER_RULES if name != "reasoning_effort"),
    _hyperparameter("reasoning_effort"),
    FieldSpec("suffix", "Suffix", "text", "job", placeholder="optional: in the model's name, e.g. support-v2"),
    FieldSpec("seed", "Seed", "int", "job", placeholder="random", help="0-2147483647: the same seed repeats a run"),
    FieldSpec("metadata", "Metadata", "text", "job", placeholder="optional: key=value, key2=value2"),
    FieldSpec("wandb.project", "W&B project", "text", "wandb", placeholder="optional: Weights & Biases project"),
    FieldSpec("wandb.entity", "W&B entity", "text", "wandb", placeholder="optional: team or user"),
    *(
        _option(rule, ("reinforcement",) if name == "max_completion_tokens" else METHODS, "a free GPU, else cpu")
        for name, rule in OPTION_RULES.items()
    ),
)
FIELD_BY_KEY = {f.key: f for f in FIELDS}


def field_id(key: str) -> str:
    return "field-" + key.replace(".", "-").replace("_", "-")


def typed_value(spec: FieldSpec, text_or_choice: Any) -> Any:
    """The value a field holds (None: left empty or at its default, i.e. not sent). Raises
    ValueError saying what is wrong with typed text."""
    if spec.kind == "choice":
        value = text_or_choice
        return None if not isinstance(value, str) or value == spec.choices[0] else value
    text = str(text_or_choice).strip()
    if not text or (spec.group == "hyper" and text.lower() == AUTO):
        return None
    if spec.kind == "int":
        try:
            return int(text)
        except ValueError:
            raise ValueError(f"{text!r} is not a whole number") from None
    if spec.kind == "float":
        try:
            return float(text)
        except ValueError:
            raise ValueError(f"{text!r} is not a number") from None
    return text


def initial_text(spec: FieldSpec, request: LaunchRequest) -> str:
    """What a field shows for `request` (a preset, a job launched again)."""
    if spec.group == "hyper":
        value = request.hyperparameters.get(spec.key)
    elif spec.group == "option":
        value = request.options.get(spec.key)
    elif spec.key == "metadata":
        return format_metadata(request.metadata)
    elif spec.group == "wandb":
        value = (request.wandb or {}).get(spec.key.split(".", 1)[1])
    else:
        value = getattr(request, spec.key)
    return "" if value is None or value == AUTO else str(value)


def parse_metadata(text: str) -> dict[str, str]:
    """`key=value, key2=value2`, or a JSON object (for values holding `,` or `=`) -> a dict;
    raises ValueError naming the bad pair."""
    text = text.strip()
    if text.startswith("{"):
        try:
            value = json.loads(text)
        except ValueError as exc:
            raise ValueError(f"metadata: not a JSON object ({exc})") from None
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise ValueError("metadata: a JSON object of text values, e.g. {\"note\": \"a, b\"}")
        return value
    pairs: dict[str, str] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        key, sep, value = part.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"metadata: {part!r} is not key=value (a JSON object takes any text)")
        pairs[key.strip()] = value.strip()
    return pairs


def format_metadata(metadata: dict[str, str]) -> str:
    """As `parse_metadata` reads it back: key=value pairs, or JSON when a key or value holds
    a separator (or spaces at its ends) that the pairs cannot carry."""
    plain = all(
        not any(c in f"{k}{v}" for c in ",={") and k == k.strip() and v == v.strip() for k, v in metadata.items()
    )
    if plain:
        return ", ".join(f"{k}={v}" for k, v in metadata.items())
    return json.dumps(metadata, ensure_ascii=False)


def file_text(path: Path | None, file_id: str | None) -> str:
    return str(path) if path is not None else file_id or ""


def file_choice(raw: str) -> tuple[Path | None, str | None]:
    """A typed file: a path, or an id of a file already on the provider (`file-…` that is
    not a local file)."""
    raw = raw.strip()
    if not raw:
        return None, None
    path = Path(raw).expanduser()
    if raw.startswith("file-") and not path.exists():
        return None, raw
    return path.absolute(), None


FIELD_LABELS = {
    "training_file": "Training file",
    "model": "Base model",
    "grader": "Grader",
    "integrations.wandb": "W&B",
    "response_format": "Answer format",
}


def field_label(field: str) -> str:
    """A request field as the form labels it: `hyperparameters.n_epochs` -> Epochs."""
    key = field.split(".", 1)[1] if field.startswith(("hyperparameters.", "options.")) else field
    spec = FIELD_BY_KEY.get(key)
    return spec.label if spec is not None else FIELD_LABELS.get(field, field)


def request_summary(request: LaunchRequest) -> str:
    """One line naming a request (preset lists)."""
    files = request.training_path.name if request.training_path else request.training_file_id or "?"
    return f"{METHOD_LABELS.get(request.method, request.method)} · {request.model or '?'} · {files}"
