"""Rewards of graded answers, and the metrics an RFT job reports from them.

Both trainers' RFT runs grade sampled answers into a `Graded` and turn it into the API's
metric fields with `reward_metrics`: `train_reward_mean` (also as `train_mean_reward`),
`completion_tokens_mean`, at evaluations `valid_reward_mean` (= `full_valid_mean_reward`)
and `full_valid_mean_parse_error`, the nested `scores` block (per sub-grader of a multi
grader) and the `errors` block (how often grading failed, per kind).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np

from .grader import Grader, Multi

REPORTED_ERRORS = ("sample_parse_error", "invalid_variable_error", "formula_parse_error", "other_error")


@dataclass
class Graded:
    """Rewards of a set of answers, and what the grader reported about them."""

    rewards: list[float] = field(default_factory=list)
    sub_rewards: dict[str, list[float]] = field(default_factory=dict)
    errors: Counter[str] = field(default_factory=Counter)
    tokens: int = 0

    def add(self, reward: float, subs: dict[str, float], errors: set[str], n_tokens: int) -> None:
        self.rewards.append(reward)
        for key, value in subs.items():
            self.sub_rewards.setdefault(key, []).append(value)
        self.errors.update(errors)
        self.tokens += n_tokens

    @property
    def mean(self) -> float:
        return float(np.mean(self.rewards)) if self.rewards else 0.0

    @classmethod
    def merged(cls, parts: list[Graded]) -> Graded:
        """The answers of every part as one set (each training process's share of a step)."""
        whole = cls()
        for part in parts:
            whole.rewards += part.rewards
            for key, values in part.sub_rewards.items():
                whole.sub_rewards.setdefault(key, []).extend(values)
            whole.errors.update(part.errors)
            whole.tokens += part.tokens
        return whole

    def error_rate(self, flag: str) -> float:
        return self.errors[flag] / max(1, len(self.rewards))


def reward_metrics(grader: Grader, train: Graded, valid: Graded | None) -> dict[str, Any]:
    values: dict[str, Any] = {
        "train_reward_mean": train.mean,
        "train_mean_reward": train.mean,
        "completion_tokens_mean": train.tokens / max(1, len(train.rewards)),
    }
    scores: dict[str, Any] = {"train_reward_mean": train.mean}
    if valid is not None:
        values["valid_reward_mean"] = values["full_valid_mean_reward"] = valid.mean
        values["full_valid_mean_parse_error"] = valid.error_rate("sample_parse_error")
        scores["valid_reward_mean"] = valid.mean
    scores["graders"] = list(_per_grader(grader, train, valid))
    values["scores"] = scores
    values["errors"] = {"graders": [_grader_errors(grader, train, valid)]}
    return values


def _per_grader(grader: Grader, train: Graded, valid: Graded | None) -> Iterator[dict[str, Any]]:
    """Mean rewards of each sub-grader of a multi grader, or of the grader itself."""
    members: dict[str | None, Grader] = dict(grader.graders) if isinstance(grader, Multi) else {}
    for key, member in (members or {None: grader}).items():
        entry = {"name": member.name, "type": member.type}
        for prefix, graded in (("train", train), ("valid", valid)):
            if graded is not None:
                rewards = graded.rewards if key is None else graded.sub_rewards.get(key, [])
                entry[f"{prefix}_reward_mean"] = float(np.mean(rewards)) if rewards else 0.0
        yield entry


def _grader_errors(grader: Grader, train: Graded, valid: Graded | None) -> dict[str, Any]:
    """How often grading failed, per kind (the API's `errors` block): a grader that names a
    field the rows lack shows up here as invalid_variable_error instead of silently scoring 0."""
    entry: dict[str, Any] = {"name": grader.name, "type": grader.type}
    for prefix, graded in (("train", train), ("valid", valid)):
        if graded is not None:
            for flag in REPORTED_ERRORS:
                entry[f"{prefix}_{flag}_mean"] = graded.error_rate(flag)
    return entry
