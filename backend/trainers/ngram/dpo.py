"""DPO for the n-gram model: learn from pairs of a preferred and a rejected answer.

The policy is the same hashed-feature token model SFT trains; an answer's score is its
log-probability under it. The reference is the model the job starts from (the untrained
base model, or a fine-tuned model named as the job's `model`: SFT first, then DPO, as
the guide recommends), frozen. Each step lowers the DPO loss of its batch of pairs

    loss = -log sigmoid(beta * margin),
    margin = (log p(preferred) - log p_ref(preferred)) - (log p(rejected) - log p_ref(rejected))

with `beta` from the job ("auto" is 0.1; higher keeps the model closer to the reference).
As in Llama 3's DPO, the `<end>` token is left out of both answers' log-probabilities:
both answers end with it, and scoring it only teaches the model to stop less (it would
then ramble). The step is the loss gradient divided by beta, so a learning rate means
the same for every beta (beta still decides where the loss saturates). Optimiser:
row-wise Adagrad (`sequences.py`) at `BASE_LEARNING_RATE * learning_rate_multiplier`,
warmed up like SFT. Nothing stops it memorising a small set: the training loss then keeps
falling while the validation loss turns back up, as real DPO runs overfit.

DPO ranks answers; it does not teach the model to produce them. From the untrained base
model it learns the preference (the reward accuracy rises) but answers stay poor, which is
why the guide says SFT first: DPO from that SFT model then improves its answers.

Metric event keys (also result-file columns; `valid_*` on a small rolling validation batch
ten times an epoch, `full_valid_*` on the whole validation file at each epoch's end):
- `train_loss`, `valid_loss`, `full_valid_loss`: the mean DPO loss (ln 2 = 0.693 at the start);
- `train_mean_token_accuracy`, `valid_mean_token_accuracy`, `full_valid_mean_token_accuracy`:
  how often the model's top next-token guess is the preferred answer's token;
- `train_mean_reward_margin`, `valid_mean_reward_margin`, `full_valid_mean_reward_margin`:
  the mean of beta * margin (TRL's `rewards/margins`);
- `train_reward_accuracy`, `valid_reward_accuracy`, `full_valid_reward_accuracy`: the share
  of pairs with a positive margin (TRL's `rewards/accuracies`).
Checkpoints: at each epoch's end (the engine keeps the last 3); each is a chat model.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from tunedeck.backend.jobs.training_data import chat_turns, tool_names

from ..base import StepMetrics, TrainingRun, TrainingSpec, Turn
from ..batches import EpochBatches
from .features import Featurized
from .policy import answer_tokens, save_model, starting_model
from .run_state import PolicyRunStateMixin, RunState
from .sequences import RowAdagrad, answer_features, gradient, score

BASE_LEARNING_RATE = 1.0
DEFAULT_BETA = 0.1
WARMUP_STEPS = 30
VALID_EVALS_PER_EPOCH = 10
MIN_VALID_BATCH = 8
SCORING_GROUP = 256  # pairs scored at once when no gradient is needed


@dataclass
class Pair:
    preferred: Featurized
    rejected: Featurized
    reference: tuple[float, float] = (0.0, 0.0)  # log p_ref(preferred), log p_ref(rejected)


@dataclass(frozen=True, slots=True)
class PairStats:
    loss: float
    token_accuracy: float
    reward_margin: float
    reward_accuracy: float


class DpoRun(PolicyRunStateMixin, TrainingRun):
    def __init__(self, spec: TrainingSpec) -> None:
        hyper = spec.hyperparameters
        beta = hyper.extra.get("beta", DEFAULT_BETA)
        self.beta = float(beta) if isinstance(beta, (int, float)) else DEFAULT_BETA
        rows = [_parse(row) for row in spec.training]
        answers = [answer for _, _, preferred, rejected in rows for answer in (preferred, rejected)]
        self.model = starting_model(spec.base_model, spec.initial_weights, answers)
        self._train = self._pairs(rows)
        self._valid = self._pairs([_parse(row) for row in spec.validation])
        self._batches = EpochBatches(len(self._train), hyper.batch_size, spec.seed)
        self._batch_size = self._batches.batch_size
        self.steps_per_epoch = self._batches.steps_per_epoch
        self.total_steps = self.steps_per_epoch * hyper.n_epochs
        learning_rate = BASE_LEARNING_RATE * hyper.learning_rate_multiplier
        warmup = min(WARMUP_STEPS, self.total_steps // 10)
        self._optimizer = RowAdagrad(self.model.featurizer.dim, learning_rate, warmup)
        self._steps_done = 0
        self._valid_every = max(1, self.steps_per_epoch // VALID_EVALS_PER_EPOCH)
        self._valid_batch = min(len(self._valid), max(self._batch_size, MIN_VALID_BATCH))
        self._valid_cursor = 0
        if spec.resume_from is not None:
            self._restore(spec.resume_from)

    def _pairs(self, rows: Sequence[tuple[list[Turn], str, str]]) -> list[Pair]:
        """Featurised pairs with their reference log-probabilities (the starting model's)."""
        pairs = []
        for prompt, tools, preferred, rejected in rows:
            context = self.model.context_ids(prompt, tools)
            pairs.append(Pair(*(self._answer(context, answer) for answer in (preferred, rejected))))
        for start in range(0, len(pairs), SCORING_GROUP):
            group = pairs[start : start + SCORING_GROUP]
            logprobs = score(self.model.weights, _interleave(group), skip_end=True).logprobs
            for pair, preferred, rejected in zip(group, logprobs[0::2], logprobs[1::2]):
                pair.reference = (float(preferred), float(rejected))
        return pairs

    def _answer(self, context: tuple[np.ndarray, np.ndarray], answer: Turn) -> Featurized:
        return answer_features(self.model.featurizer, *context, answer_tokens(answer))

    # -- the TrainingRun interface ------------------------------------------------------

    def step(self) -> StepMetrics:
        if self._steps_done >= self.total_steps:
            raise RuntimeError("the run is already complete")
        chosen, epoch_ended = self._batches.batch(self._steps_done)
        train = self._update([self._train[i] for i in chosen])
        self._steps_done += 1
        valid_due = epoch_ended or self._steps_done % self._valid_every == 0
        valid = self._small_valid() if self._valid and valid_due else None
        full = self._evaluate(self._valid) if self._valid and epoch_ended else None
        return StepMetrics(
            step=self._steps_done,
            total_steps=self.total_steps,
            train_loss=train.loss,
            train_mean_token_accuracy=train.token_accuracy,
            valid_loss=valid.loss if valid else None,
            valid_mean_token_accuracy=valid.token_accuracy if valid else None,
            full_valid_loss=full.loss if full else None,
            full_valid_mean_token_accuracy=full.token_accuracy if full else None,
            epoch_ended=epoch_ended,
            extra=_reward_metrics(train, valid, full),
            summary=f"reward margin={train.reward_margin:.2f}",
        )

    def save(self, path: Path) -> None:
        save_model(self.model, path, self._steps_done)

    # -- the saved state (besides the model and optimiser PolicyRunStateMixin saves) ---------

    def _state_values(self) -> dict[str, Any]:
        return {**super()._state_values(), "valid_cursor": self._valid_cursor}

    def _restore_state(self, state: RunState) -> None:
        super()._restore_state(state)
        self._valid_cursor = int(state.values["valid_cursor"])

    # -- maths ----------------------------------------------------------------------------

    def _update(self, pairs: list[Pair]) -> PairStats:
        """One step on the batch's mean DPO loss; returns the batch's stats before it."""
        scored = score(self.model.weights, _interleave(pairs), skip_end=True)
        margins = self._margins(pairs, scored.logprobs)
        # d(loss)/d(log p(preferred)) = -beta * sigmoid(-beta * margin), the rejected one the opposite;
        # divided by beta, so that a step means the same for every beta (see the module notes).
        pull = _sigmoid(-self.beta * margins) / len(pairs)
        coefficients = np.empty(2 * len(pairs))
        coefficients[0::2], coefficients[1::2] = pull, -pull
        rows, grads = gradient(scored, coefficients)
        self._optimizer.step(self.model.weights, rows, grads)
        return self._stats(margins, scored.hits[0::2], scored.lengths[0::2])

    def _evaluate(self, pairs: Sequence[Pair]) -> PairStats:
        margins, hits, lengths = [], [], []
        for start in range(0, len(pairs), SCORING_GROUP):
            group = list(pairs[start : start + SCORING_GROUP])
            scored = score(self.model.weights, _interleave(group), skip_end=True)
            margins.append(self._margins(group, scored.logprobs))
            hits.append(scored.hits[0::2])
            lengths.append(scored.lengths[0::2])
        return self._stats(np.concatenate(margins), np.concatenate(hits), np.concatenate(lengths))

    def _small_valid(self) -> PairStats:
        picked = [(self._valid_cursor + i) % len(self._valid) for i in range(self._valid_batch)]
        self._valid_cursor = (self._valid_cursor + self._valid_batch) % len(self._valid)
        return self._evaluate([self._valid[i] for i in picked])

    def _margins(self, pairs: Sequence[Pair], logprobs: np.ndarray) -> np.ndarray:
        reference = np.asarray([pair.reference for pair in pairs])
        return (logprobs[0::2] - reference[:, 0]) - (logprobs[1::2] - reference[:, 1])

    def _stats(self, margins: np.ndarray, hits: np.ndarray, lengths: np.ndarray) -> PairStats:
        return PairStats(
            loss=float(np.logaddexp(0.0, -self.beta * margins).mean()),
            token_accuracy=float(hits.sum() / max(1, lengths.sum())),
            reward_margin=float((self.beta * margins).mean()),
            reward_accuracy=float((margins > 0).mean()),
        )


def _parse(row: dict[str, Any]) -> tuple[list[Turn], list[str], Turn, Turn]:
    """Prompt turns (earlier answers kept as context, out of the loss), the names of the tools
    offered, and the two answers (text, tool calls or a JSON object)."""
    prompt = [Turn(t.role, t.text, 0) if t.role == "assistant" else t for t in chat_turns(row["input"]["messages"])]
    tools = tool_names(row["input"].get("tools"))
    return prompt, tools, chat_turns(row["preferred_output"])[0], chat_turns(row["non_preferred_output"])[0]


def _interleave(pairs: Sequence[Pair]) -> list[Featurized]:
    return [answer for pair in pairs for answer in (pair.preferred, pair.rejected)]


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return np.exp(-np.logaddexp(0.0, -x))


def _reward_metrics(train: PairStats, valid: PairStats | None, full: PairStats | None) -> dict[str, float]:
    values = {"train_mean_reward_margin": train.reward_margin, "train_reward_accuracy": train.reward_accuracy}
    for prefix, stats in (("valid", valid), ("full_valid", full)):
        if stats is not None:
            values[f"{prefix}_mean_reward_margin"] = stats.reward_margin
            values[f"{prefix}_reward_accuracy"] = stats.reward_accuracy
    return values
