"""What a valid fine-tuning job request is: the one set of rules the local backend refuses a
`POST /fine_tuning/jobs` body by and the launch form (and `tunedeck jobs create`) checks
what the user typed against, so both say the same thing about the same value.

- `HYPERPARAMETER_RULES` and `OPTION_RULES`: each field's check, its label and what a good
  value is ("an integer from 1 to 50"); the backend's 400 and the form's message quote the
  same words. `check_options` is the check of the `tunedeck` field as a whole.
- suffix, seed, metadata and Weights & Biases rules, as predicates and problem texts.
- `resolve_hyperparameters`: what "auto" becomes once the example count is known; the local
  backend resolves a job's hyperparameters with it, and the pre-flight shows its result.
- `request_problems(request, local=...)`: every field of a launch request (duck-typed as
  `tunedeck.core.launch.request.LaunchRequest`) the server would refuse; `parse_value`:
  typed text to the value a rule checks.

Ranges follow the ones OpenAI's API documents. Like the rest of `core.datasets`, this imports
nothing of tunedeck but the dataset package, so the backend may import it.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Callable

AUTO = "auto"
METHODS = ("supervised", "dpo", "reinforcement")
LAUNCH_TAG_KEY = "tunedeck_launch"
"""The metadata key a launch's tag travels in (`core/job_create.py`), so the user's own
metadata may not use it."""


# -- value predicates ---------------------------------------------------------------------


def integer_between(low: int, high: int) -> Callable[[Any], bool]:
    """An int (never a bool) in [low, high]."""
    return lambda v: isinstance(v, int) and not isinstance(v, bool) and low <= v <= high


def number_between(low: float, high: float, *, low_open: bool = True) -> Callable[[Any], bool]:
    """A finite int or float (never a bool) in (low, high], or [low, high] with `low_open=False`."""

    def check(v: Any) -> bool:
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v):
            return False
        return (low < v if low_open else low <= v) and v <= high

    return check


def one_of(*choices: str) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, str) and v in choices


def shown(value: Any) -> str:
    """A value as an error message quotes it: its repr, cut short (it may be anything)."""
    return repr(value)[:40]


@dataclass(frozen=True, slots=True)
class Rule:
    """One field's rule. `kind` says how typed text becomes a value ("integer", "number",
    "choice" or "text"); `auto`: "auto" is accepted (the server picks); `default`: what the
    backend uses when the field is not given (options only)."""

    name: str
    label: str
    kind: str
    expected: str
    check: Callable[[Any], bool]
    auto: bool = True
    choices: tuple[str, ...] = ()
    default: Any = None

    @property
    def help(self) -> str:
        """What a good value is, as the form shows it and the server's 400 says it."""
        return f"{self.expected} or 'auto'" if self.auto else self.expected

    def problem(self, value: Any) -> str | None:
        """None when `value` passes, else "expected <help>, got <value>"."""
        if (self.auto and value == AUTO) or self.check(value):
            return None
        return f"expected {self.help}, got {shown(value)}"


def _rules(*rules: Rule) -> dict[str, Rule]:
    return {rule.name: rule for rule in rules}


MAX_BATCH_SIZE = 256
EFFORTS = ("default", "low", "medium", "high")

HYPERPARAMETER_RULES: dict[str, Rule] = _rules(
    Rule("n_epochs", "Epochs", "integer", "an integer from 1 to 50", integer_between(1, 50)),
    Rule("batch_size", "Batch size", "integer", f"an integer from 1 to {MAX_BATCH_SIZE}",
         integer_between(1, MAX_BATCH_SIZE)),  # fmt: skip
    Rule("learning_rate_multiplier", "Learning rate multiplier", "number", "a number greater than 0",
         number_between(0, 1e6)),  # fmt: skip
    Rule("beta", "Beta", "number", "a number in (0, 2]", number_between(0, 2)),
    Rule("compute_multiplier", "Compute multiplier", "number", "a number in (0.00001, 10]",
         number_between(0.00001, 10)),  # fmt: skip
    Rule("eval_interval", "Evaluation interval", "integer", "a positive integer", integer_between(1, 10**9)),
    Rule("eval_samples", "Evaluation samples", "integer", "a positive integer", integer_between(1, 10**9)),
    # Not "auto": the API knows only these four; a request that leaves it out gets "default".
    Rule("reasoning_effort", "Reasoning effort", "choice", "default, low, medium or high", one_of(*EFFORTS),
         auto=False, choices=EFFORTS),  # fmt: skip
)
COMMON_HYPERPARAMETERS = ("n_epochs", "batch_size", "learning_rate_multiplier")
METHOD_HYPERPARAMETERS: dict[str, tuple[str, ...]] = {
    "supervised": COMMON_HYPERPARAMETERS,
    "dpo": (*COMMON_HYPERPARAMETERS, "beta"),
    "reinforcement": (
        *COMMON_HYPERPARAMETERS,
        "reasoning_effort",
        "compute_multiplier",
        "eval_interval",
        "eval_samples",
    ),
}


def hyperparameter_problem(name: str, value: Any) -> str | None:
    """None when `value` is good for hyperparameter `name`, else what the server's 400 says
    after the parameter's name ("expected an integer from 1 to 50 or 'auto', got 0")."""
    return HYPERPARAMETER_RULES[name].problem(value)


def hyperparameters_to_send(method: str, given: dict[str, Any]) -> dict[str, Any]:
    """The method's hyperparameters as a request sends them: what the user set, "auto" for
    the rest; a name with no "auto" (reasoning_effort) is left out when not set, so the server
    uses its default. Names of other methods are dropped."""
    sent: dict[str, Any] = {}
    for name in METHOD_HYPERPARAMETERS[method]:
        value = given.get(name)
        if value is None or value == "" or value == AUTO:
            if HYPERPARAMETER_RULES[name].auto:
                sent[name] = AUTO
            continue
        sent[name] = value
    return sent


# -- tunedeck's own options (the `tunedeck` field; the local backend only) -----------------

DEFAULT_MAX_LENGTH = 2048
"""Tokens per example unless `max_length` says otherwise; also the context assumed for a
model whose config does not state one."""

TRAINING_TYPES = ("auto", "lora", "full")
SHARDINGS = ("auto", "shard", "replicate")
OPTION_RULES: dict[str, Rule] = _rules(
    Rule("training_type", "Training type", "choice", "auto, lora or full", one_of(*TRAINING_TYPES),
         auto=False, choices=TRAINING_TYPES, default="auto"),  # fmt: skip
    Rule("lora_rank", "LoRA rank", "integer", "an integer from 1 to 1024", integer_between(1, 1024),
         auto=False, default=16),  # fmt: skip
    Rule("lora_alpha", "LoRA alpha", "integer", "an integer from 1 to 4096", integer_between(1, 4096),
         auto=False, default=32),  # fmt: skip
    Rule("lora_dropout", "LoRA dropout", "number", "a number from 0 to 1", number_between(0.0, 1.0, low_open=False),
         auto=False, default=0.0),  # fmt: skip
    Rule("max_length", "Max length", "integer", "an integer from 16 to 1000000 (tokens per example)",
         integer_between(16, 1_000_000), auto=False, default=DEFAULT_MAX_LENGTH),  # fmt: skip
    Rule("max_completion_tokens", "Max completion tokens", "integer", "an integer from 1 to 32768 (RFT answer length)",
         integer_between(1, 32_768), auto=False, default=64),  # fmt: skip
    Rule("device", "Device", "text", "cpu, cuda or cuda:N",
         lambda v: isinstance(v, str) and (v == "cpu" or v.startswith("cuda")), auto=False),  # fmt: skip
    Rule("devices", "GPUs", "integer", "an integer from 1 to 64 (GPUs the job trains on at once)",
         integer_between(1, 64), auto=False, default=1),  # fmt: skip
    Rule("sharding", "Sharding", "choice",
         "auto, shard or replicate (a job on several GPUs: shard the whole model across them, or a copy on each)",
         one_of(*SHARDINGS), auto=False, choices=SHARDINGS, default="auto"),  # fmt: skip
)
OPTION_DEFAULTS: dict[str, Any] = {name: rule.default for name, rule in OPTION_RULES.items()}


class OptionError(ValueError):
    """A bad `tunedeck` field: `param` names it (`tunedeck.lora_rank`)."""

    def __init__(self, message: str, param: str) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


def check_options(raw: Any) -> dict[str, Any]:
    """The options as given, once every key is known and every value in range; else
    `OptionError` with the message the server's 400 carries."""
    if not isinstance(raw, dict):
        raise OptionError("Invalid 'tunedeck': expected an object of tunedeck options.", "tunedeck")
    for key, value in raw.items():
        if key not in OPTION_RULES:
            known = ", ".join(OPTION_RULES)
            raise OptionError(f"Unknown option 'tunedeck.{str(key)[:40]}'; known: {known}.", f"tunedeck.{key}")
        problem = OPTION_RULES[key].problem(value)
        if problem:
            raise OptionError(f"Invalid 'tunedeck.{key}': {problem}.", f"tunedeck.{key}")
    problem = sharding_problem(raw)
    if problem:
        raise OptionError(f"Invalid 'tunedeck.sharding': {problem}.", "tunedeck.sharding")
    return dict(raw)


def sharding_problem(options: dict[str, Any]) -> str | None:
    """What is wrong with `sharding` given the other options (each valid on its own)."""
    if options.get("sharding") == "shard" and int(options.get("devices") or 1) < 2:
        return "'shard' spreads the model across several GPUs; ask for 'devices' of 2 or more"
    return None


# -- the rest of the body -------------------------------------------------------------------

SUFFIX_PATTERN = re.compile(r"[A-Za-z0-9._-]{0,64}")
SUFFIX_EXPECTED = "up to 64 characters from letters, digits, '.', '_' and '-'"
MAX_SEED = 2_147_483_647
SEED_EXPECTED = f"an integer from 0 to {MAX_SEED}"
MAX_METADATA_PAIRS, MAX_METADATA_KEY, MAX_METADATA_VALUE = 16, 64, 512
MAX_INTEGRATIONS = 5


def suffix_ok(value: Any) -> bool:
    return isinstance(value, str) and SUFFIX_PATTERN.fullmatch(value) is not None


def seed_ok(value: Any) -> bool:
    return integer_between(0, MAX_SEED)(value)


def metadata_problem(value: Any, max_pairs: int = MAX_METADATA_PAIRS) -> str | None:
    """None for good metadata, else what is wrong ("keys must be strings of at most 64
    characters")."""
    if not isinstance(value, dict) or len(value) > max_pairs:
        return f"expected an object of at most {max_pairs} pairs"
    if any(not isinstance(k, str) or len(k) > MAX_METADATA_KEY for k in value):
        return f"keys must be strings of at most {MAX_METADATA_KEY} characters"
    if any(not isinstance(v, str) or len(v) > MAX_METADATA_VALUE for v in value.values()):
        return f"values must be strings of at most {MAX_METADATA_VALUE} characters"
    return None


def wandb_ok(wandb: Any) -> bool:
    """A Weights & Biases integration's settings: an object naming its project."""
    return isinstance(wandb, dict) and isinstance(wandb.get("project"), str) and bool(wandb["project"].strip())


# -- auto hyperparameters -------------------------------------------------------------------

# Epochs: the OpenAI cookbook's heuristic (aim at 3 epochs, more for under 100 examples, fewer
# above 25,000, within 1..25). Batch size: about 0.2 % of the examples, which matches the small
# sizes the API reports. Learning rate multiplier: 1, i.e. the trainer's documented base rate.
TARGET_EPOCHS, MIN_TARGET_EXAMPLES, MAX_TARGET_EXAMPLES = 3, 100, 25_000
MIN_AUTO_EPOCHS, MAX_AUTO_EPOCHS = 1, 25
AUTO_BATCH_FRACTION = 0.002
AUTO_LEARNING_RATE_MULTIPLIER = 1.0
# DPO and RFT autos (the API does not say what it picks): DPO's customary beta; RFT one unit
# of compute, one sample per validation example, and about AUTO_EVALUATIONS evaluations per run.
AUTO_METHOD_VALUES = {"beta": 0.1, "compute_multiplier": 1.0, "eval_samples": 1, "reasoning_effort": "default"}
AUTO_EVALUATIONS = 10


def auto_epochs(n_examples: int) -> int:
    """The "auto" epochs: 3, raised when epochs x examples would be under 100 (to at most 25),
    lowered when it would be over 25,000 (to at least 1)."""
    n = max(1, n_examples)
    if n * TARGET_EPOCHS < MIN_TARGET_EXAMPLES:
        return min(MAX_AUTO_EPOCHS, MIN_TARGET_EXAMPLES // n)
    if n * TARGET_EPOCHS > MAX_TARGET_EXAMPLES:
        return max(MIN_AUTO_EPOCHS, MAX_TARGET_EXAMPLES // n)
    return TARGET_EPOCHS


def auto_batch_size(n_examples: int) -> int:
    return max(1, min(MAX_BATCH_SIZE, round(n_examples * AUTO_BATCH_FRACTION)))


def resolve_hyperparameters(requested: dict[str, Any], n_examples: int) -> dict[str, Any]:
    """`requested` with every "auto" replaced by what a job on `n_examples` training
    examples gets (the local backend's choice; OpenAI's own is not published)."""
    resolved = dict(requested)
    if resolved.get("n_epochs") == AUTO:
        resolved["n_epochs"] = auto_epochs(n_examples)
    if resolved.get("batch_size") == AUTO:
        resolved["batch_size"] = auto_batch_size(n_examples)
    if resolved.get("learning_rate_multiplier") == AUTO:
        resolved["learning_rate_multiplier"] = AUTO_LEARNING_RATE_MULTIPLIER
    for name, value in AUTO_METHOD_VALUES.items():
        if resolved.get(name) == AUTO:
            resolved[name] = value
    if resolved.get("eval_interval") == AUTO:
        steps = math.ceil(max(1, n_examples) / resolved["batch_size"]) * resolved["n_epochs"]
        resolved["eval_interval"] = max(1, steps // AUTO_EVALUATIONS)
    return resolved


# -- a launch request as a whole ------------------------------------------------------------


def request_problems(request: Any, *, local: bool) -> list[tuple[str, str]]:
    """(field, message) for every field of `request` (a `LaunchRequest`) the server would
    refuse, in the form's order. `local`: it goes to tunedeck's backend, which alone takes
    `options`. Hyperparameters of another method are not sent, so not checked."""
    problems: list[tuple[str, str]] = []
    if not isinstance(request.model, str) or not request.model.strip():
        problems.append(("model", "Choose a base model."))
    if not request.training_path and not request.training_file_id:
        problems.append(("training_file", "Choose a training file (or the id of one already uploaded)."))
    if request.method not in METHODS:
        problems.append(("method", f"Method must be one of {', '.join(METHODS)}, not {shown(request.method)}."))
        return problems
    for name in METHOD_HYPERPARAMETERS[request.method]:
        value = request.hyperparameters.get(name)
        if value is None or value == "" or value == AUTO:
            continue  # not set: the server chooses
        rule = HYPERPARAMETER_RULES[name]
        problem = rule.problem(value)
        if problem:
            problems.append((f"hyperparameters.{name}", f"{rule.label}: {problem}."))
    if request.suffix and not suffix_ok(request.suffix):
        problems.append(("suffix", f"Suffix: {SUFFIX_EXPECTED}."))
    if request.seed is not None and not seed_ok(request.seed):
        problems.append(("seed", f"Seed: expected {SEED_EXPECTED}, got {shown(request.seed)}."))
    problems += _metadata_problems(request.metadata)
    if request.wandb is not None and not wandb_ok(request.wandb):
        problems.append(("integrations.wandb", "Weights & Biases needs a project name."))
    problems += _option_problems(request.options, local)
    if request.method == "reinforcement":
        problems += _reinforcement_problems(request.grader, request.response_format)
    return problems


def _metadata_problems(metadata: Any) -> list[tuple[str, str]]:
    if not metadata:
        return []
    if isinstance(metadata, dict) and LAUNCH_TAG_KEY in metadata:
        return [("metadata", f"Metadata: the key {LAUNCH_TAG_KEY!r} is reserved for tunedeck's launch tag.")]
    # One of the pairs the API allows carries the launch tag.
    problem = metadata_problem(metadata, MAX_METADATA_PAIRS - 1)
    return [("metadata", f"Metadata: {problem}.")] if problem else []


def _option_problems(options: Any, local: bool) -> list[tuple[str, str]]:
    if not options:
        return []
    if not local:
        return [("options", "tunedeck options apply only to the local backend.")]
    if not isinstance(options, dict):
        return [("options", "Options: expected an object of tunedeck options.")]
    problems = []
    for key, value in options.items():
        rule = OPTION_RULES.get(key)
        if rule is None:
            problems.append((f"options.{key}", f"Unknown option {shown(key)}; known: {', '.join(OPTION_RULES)}."))
        elif problem := rule.problem(value):
            problems.append((f"options.{key}", f"{rule.label}: {problem}."))
    if not problems and (problem := sharding_problem(options)):
        problems.append(("options.sharding", f"{OPTION_RULES['sharding'].label}: {problem}."))
    return problems


def _reinforcement_problems(grader: Any, response_format: Any) -> list[tuple[str, str]]:
    problems = []
    if grader is None:
        problems.append(("grader", "RFT needs a grader: it scores each sampled answer."))
    elif not isinstance(grader, dict) or not isinstance(grader.get("type"), str):
        problems.append(("grader", "The grader must be an object with a 'type'."))
    if response_format is not None:
        schema = response_format.get("json_schema") if isinstance(response_format, dict) else None
        if (
            not isinstance(response_format, dict)
            or response_format.get("type") != "json_schema"
            or not isinstance(schema, dict)
            or not isinstance(schema.get("name"), str)
            or not isinstance(schema.get("schema"), dict)
        ):
            expected = '{"type": "json_schema", "json_schema": {"name": ..., "schema": {...}}}'
            problems.append(("response_format", f"Response format: expected {expected}."))
    return problems


# -- typed text -----------------------------------------------------------------------------


def parse_value(name: str, text: str) -> Any:
    """The value typed `text` means for field `name` (a hyperparameter or an option, bare or
    as `hyperparameters.<name>` / `options.<name>`, or `seed`). Empty text is "auto" for a
    hyperparameter (the server picks) and None (not sent) for an option or the seed. Only
    the type is settled here (`request_problems` checks the range); text that is not of the
    field's type raises ValueError naming the field and what it takes."""
    key = name.split(".", 1)[1] if name.startswith(("hyperparameters.", "options.")) else name
    text = text.strip()
    if key == "seed":
        if not text:
            return None
        try:
            return int(text)
        except ValueError:
            raise ValueError(f"Seed: expected {SEED_EXPECTED}, got {shown(text)}") from None
    hyperparameter = key in HYPERPARAMETER_RULES and not name.startswith("options.")
    rule = HYPERPARAMETER_RULES.get(key) if hyperparameter else OPTION_RULES.get(key)
    if rule is None:
        raise ValueError(f"{name!r} is not a hyperparameter or a tunedeck option")
    if not text or (hyperparameter and text.lower() == AUTO):
        return AUTO if hyperparameter else None  # "auto" for reasoning_effort too: not sent
    try:
        if rule.kind == "integer":
            return int(text)
        if rule.kind == "number":
            value = float(text)
            if not math.isfinite(value):
                raise ValueError(text)
            return value
    except ValueError:
        raise ValueError(f"{rule.label} ({key}): expected {rule.help}, got {shown(text)}") from None
    if rule.kind == "choice":
        if text.lower() not in rule.choices:
            raise ValueError(f"{rule.label} ({key}): expected {rule.help}, got {shown(text)}")
        return text.lower()
    return text
