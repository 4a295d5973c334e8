"""RFT for the n-gram model: a policy over answers, improved by the job's grader.

The policy is the token model SFT trains: an answer is sampled token by token (temperature
1, never `<unk>`) until `<end>` or `max_answer_tokens`. Each step takes `batch_size`
prompts, samples a group of answers to each, grades every answer with the job's grader
(`{{item.*}}` is the dataset row, `{{sample.output_text}}` the answer) and, GRPO-style,
raises the log-probability of answers that beat their group's mean reward and lowers the
others: loss = -sum(advantage * log p(answer)) per prompt, advantage = (reward - group
mean) / (group std + 1e-6) (a group whose answers all score the same teaches nothing),
plus `KL_COEFFICIENT` times the KL divergence from the starting model at every sampled
position, GRPO's regulariser: without it the policy soon collapses onto whichever answer
got lucky first and stops exploring. Optimiser: row-wise Adagrad (`sequences.py`) at
`BASE_LEARNING_RATE * learning_rate_multiplier`, warmed up over the first quarter of the run.

Where it starts: a fine-tuned model named as the job's `model` (SFT first, then RFT), or
the untrained base model. Either way the words of the rows' reference fields (every
string outside `messages` and `tools`) join the vocabulary, so from scratch the policy
explores answers made of them. Nothing stops it memorising a small training set.

Hyperparameters: `compute_multiplier` scales the group size (`GROUP_SIZE` x multiplier,
2 to 64); `eval_interval` is the steps between evaluations; `eval_samples` the answers
sampled per validation example at each evaluation; `reasoning_effort` is accepted and
echoed but changes nothing (the model does not reason).

Metric event keys: every step `train_reward_mean` (mean reward of the step's answers; also
under the API's name `train_mean_reward`) and `completion_tokens_mean`; at each evaluation
`valid_reward_mean` (= `full_valid_mean_reward`: the whole validation file is graded) and
`full_valid_mean_parse_error` (share of answers the grader could not parse as JSON when it
needed to); plus the API's nested `scores` block {train_reward_mean, valid_reward_mean,
graders: [{name, type, train_reward_mean, valid_reward_mean}]} and `errors` block
{graders: [{name, type, train_/valid_ + sample_parse_error / invalid_variable_error /
formula_parse_error / other_error + _mean}]}. There is no loss.
Checkpoints: one at each evaluation; the engine keeps the best 3 by `valid_reward_mean`
(without a validation file: by the training reward since the previous evaluation) plus
the last one, which is the fine-tuned model.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from tunedeck.backend.graders.grader import Grader, asker_for, compile_grader, sample_namespace
from tunedeck.backend.graders.rewards import Graded, reward_metrics
from tunedeck.backend.jobs.training_data import chat_turns, tool_names

from ..base import StepMetrics, TrainingRun, TrainingSpec, Turn
from ..batches import EpochBatches
from .features import END_TOKEN, local_feature_names, tokenize
from .policy import UNKNOWN_ID, TokenModel, detokenize, save_model, starting_model
from .run_state import PolicyRunStateMixin, RunState
from .sequences import RowAdagrad, answer_features, gradient, probabilities_under, score
from .structured import read_answer

BASE_LEARNING_RATE = 1.0
GROUP_SIZE = 8
MIN_GROUP, MAX_GROUP = 2, 64
WARMUP_FRACTION = 0.25  # a long warmup: early lucky answers would otherwise swing the policy onto them
KL_COEFFICIENT = 0.1
MIN_ANSWER_TOKENS, MAX_ANSWER_TOKENS, DEFAULT_ANSWER_TOKENS = 4, 64, 16
RESERVED_KEYS = ("messages", "tools")
MAX_REFERENCE_DEPTH = 4


@dataclass
class Prompt:
    turns: list[Turn]
    item: dict[str, Any]
    tools: list[str]  # the names of the functions the row offers


class RftRun(PolicyRunStateMixin, TrainingRun):
    def __init__(self, spec: TrainingSpec) -> None:
        hyper = spec.hyperparameters
        self.grader: Grader = compile_grader(
            spec.method_config.get("grader"), "method.reinforcement.grader", ask=asker_for(spec.grader_endpoint)
        )
        self._train = [_prompt(row) for row in spec.training]
        self._valid = [_prompt(row) for row in spec.validation]
        references = [text for p in self._train for text in _reference_texts(p.item)]
        self.model: TokenModel = starting_model(spec.base_model, spec.initial_weights, references)
        self._reference_weights = self.model.weights.copy()
        self.max_answer_tokens = _answer_budget(references)
        self._seed = spec.seed
        self._rng = np.random.default_rng(spec.seed)  # sampling's stream; saved with the state
        self._batches = EpochBatches(len(self._train), hyper.batch_size, spec.seed)
        self._batch_size = self._batches.batch_size
        self.steps_per_epoch = self._batches.steps_per_epoch
        self.total_steps = self.steps_per_epoch * hyper.n_epochs
        group = round(GROUP_SIZE * _number(hyper.extra, "compute_multiplier", 1))
        self.group_size = int(min(MAX_GROUP, max(MIN_GROUP, group)))
        self.eval_samples = max(1, int(_number(hyper.extra, "eval_samples", 1)))
        self.eval_interval = max(1, int(_number(hyper.extra, "eval_interval", self.total_steps // 10)))
        learning_rate = BASE_LEARNING_RATE * hyper.learning_rate_multiplier
        warmup = int(self.total_steps * WARMUP_FRACTION)
        self._optimizer = RowAdagrad(self.model.featurizer.dim, learning_rate, warmup)
        self._steps_done = 0
        self._since_eval: list[float] = []
        if spec.resume_from is not None:
            self._restore(spec.resume_from)

    # -- the TrainingRun interface ------------------------------------------------------

    def step(self) -> StepMetrics:
        if self._steps_done >= self.total_steps:
            raise RuntimeError("the run is already complete")
        chosen, epoch_ended = self._batches.batch(self._steps_done)
        train = self._update([self._train[i] for i in chosen])
        self._steps_done += 1
        self._since_eval.append(train.mean)
        evaluate = self._steps_done % self.eval_interval == 0 or self._steps_done == self.total_steps
        valid = self._evaluate() if evaluate and self._valid else None
        score_now = None
        if evaluate:
            score_now = valid.mean if valid else float(np.mean(self._since_eval))
            self._since_eval = []
        return StepMetrics(
            step=self._steps_done,
            total_steps=self.total_steps,
            train_loss=None,
            train_mean_token_accuracy=None,
            epoch_ended=epoch_ended,
            extra=reward_metrics(self.grader, train, valid),
            summary=_summary(train, valid),
            checkpoint=evaluate,
            checkpoint_score=score_now,
        )

    def save(self, path: Path) -> None:
        save_model(self.model, path, self._steps_done)

    # -- the saved state (besides the model and optimiser PolicyRunStateMixin saves) ---------

    def _state_values(self) -> dict[str, Any]:
        return {**super()._state_values(), "since_eval": self._since_eval, "rng": self._rng.bit_generator.state}

    def _restore_state(self, state: RunState) -> None:
        super()._restore_state(state)
        self._since_eval = [float(v) for v in state.values["since_eval"]]
        self._rng.bit_generator.state = state.values["rng"]

    # -- sampling, grading, learning ------------------------------------------------------

    def _update(self, prompts: list[Prompt]) -> Graded:
        graded = Graded()
        parts, coefficients = [], []
        for prompt in prompts:
            rows, values = self.model.context_ids(prompt.turns, prompt.tools)
            answers = self._sample(rows, values, self.group_size, self._rng)
            rewards = [self._grade(prompt, answer, graded) for answer in answers]
            for answer, advantage in zip(answers, _advantages(rewards)):
                parts.append(answer_features(self.model.featurizer, rows, values, answer))
                coefficients.append(advantage / len(prompts))
        scored = score(self.model.weights, parts)
        reference = probabilities_under(self._reference_weights, scored)
        kl_weight = KL_COEFFICIENT / len(prompts)
        rows_touched, grads = gradient(scored, np.asarray(coefficients), reference, kl_weight)
        self._optimizer.step(self.model.weights, rows_touched, grads)
        return graded

    def _evaluate(self) -> Graded:
        """Grade `eval_samples` answers to every validation prompt (a fixed stream per step)."""
        rng = np.random.default_rng([self._seed, self._steps_done])
        graded = Graded()
        for prompt in self._valid:
            rows, values = self.model.context_ids(prompt.turns, prompt.tools)
            for answer in self._sample(rows, values, self.eval_samples, rng):
                self._grade(prompt, answer, graded)
        return graded

    def _grade(self, prompt: Prompt, answer: list[str], graded: Graded) -> float:
        words = answer[:-1] if answer and answer[-1] == END_TOKEN else answer
        grade = self.grader.grade({"item": prompt.item, "sample": _sample_of(words)})
        graded.add(grade.reward, grade.sub_rewards, grade.errors, len(words))
        return grade.reward

    def _sample(self, rows: np.ndarray, values: np.ndarray, count: int, rng: np.random.Generator) -> list[list[str]]:
        """`count` answers sampled together; each ends with `<end>` unless it ran out of tokens."""
        weights, featurizer, vocabulary = self.model.weights, self.model.featurizer, self.model.vocabulary
        context = values @ weights[rows]
        answers: list[list[str]] = [[] for _ in range(count)]
        open_ = list(range(count))
        for position in range(self.max_answer_tokens):
            if not open_:
                break
            local = [[featurizer.row(n) for n in local_feature_names(answers[i], position)] for i in open_]
            logits = context + weights[np.asarray(local)].sum(axis=1)
            logits[:, UNKNOWN_ID] = -np.inf
            for i, token_id in zip(open_, _sample_rows(logits, rng)):
                answers[i].append(vocabulary[token_id])
            open_ = [i for i in open_ if answers[i][-1] != END_TOKEN]
        return answers


def _prompt(row: dict[str, Any]) -> Prompt:
    return Prompt(chat_turns(row["messages"]), row, tool_names(row.get("tools")))


def _sample_of(words: list[str]) -> dict[str, Any]:
    """The grader's `sample` for an answer's tokens: its text (a JSON object's text when it
    wrote one) and the tool calls it made, as the API shows them to graders."""
    answer = read_answer(words)
    if answer.json_text is not None:
        return sample_namespace(answer.json_text)
    tools = [
        {"id": f"call_{i}", "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
        for i, c in enumerate(answer.tool_calls)
    ]
    return sample_namespace(detokenize(answer.text_tokens), tools)


def _reference_texts(item: dict[str, Any]) -> Iterator[str]:
    """Every string (and number) in a row outside its messages: what answers are compared to."""

    def walk(value: Any, depth: int) -> Iterator[str]:
        if isinstance(value, str):
            yield value
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            yield str(value)
        elif depth < MAX_REFERENCE_DEPTH and isinstance(value, (list, dict)):
            for child in value.values() if isinstance(value, dict) else value:
                yield from walk(child, depth + 1)

    for key, value in item.items():
        if key not in RESERVED_KEYS:
            yield from walk(value, 0)


def _answer_budget(references: list[str]) -> int:
    """Room for twice the longest reference answer (enough to find it, not to ramble)."""
    if not references:
        return DEFAULT_ANSWER_TOKENS
    longest = max(len(tokenize(text)) for text in references)
    return min(MAX_ANSWER_TOKENS, max(MIN_ANSWER_TOKENS, 2 * longest + 2))


def _advantages(rewards: list[float]) -> list[float]:
    values = np.asarray(rewards, dtype=np.float64)
    spread = values.std()
    if spread < 1e-9:
        return [0.0] * len(rewards)
    return list((values - values.mean()) / (spread + 1e-6))


def _sample_rows(logits: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One token id per row of `logits`, drawn from its softmax."""
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    cumulative = np.cumsum(probs, axis=1)
    draws = rng.random(len(logits)) * cumulative[:, -1]
    return np.minimum((cumulative < draws[:, None]).sum(axis=1), logits.shape[1] - 1)


def _number(values: dict[str, Any], key: str, default: float) -> float:
    value = values.get(key)
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else default


def _summary(train: Graded, valid: Graded | None) -> str:
    text = f"train mean reward={train.mean:.2f}"
    if valid is not None:
        parse_errors = valid.error_rate("sample_parse_error")
        text += f", full validation mean reward={valid.mean:.2f}, full validation mean parse error={parse_errors:.2f}"
    return text
