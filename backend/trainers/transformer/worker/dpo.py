"""Direct preference optimisation (worker side): OpenAI preference rows become chosen/rejected
pairs (the prompt `input.messages` with `preferred_output` / `non_preferred_output`), and
the loss is DPO's -log sigmoid(beta * (policy margin - reference margin)), `beta` from the job.

The reference model is the starting model: its log-probabilities of every pair are computed
once before the first step (TRL's `precompute_ref_log_probs`), so no second copy of the
model stays in memory; a pause saves them, so a resumed run compares with the same reference.

Metrics (the built-in trainer's names; TRL's `rewards/margins`, `rewards/accuracies`):
`train_loss`, `train_mean_token_accuracy` (on the preferred answers), `train_mean_reward_margin`
(mean beta x margin), `train_reward_accuracy` (share of pairs with a positive margin); the
same with `valid_` on a rotating validation batch and `full_valid_` at each epoch's end.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from .encoding import Encoded
from .runs import MIN_VALID_BATCH, Run, read_rows
from .scoring import Scores, pack, score

DEFAULT_BETA = 0.1
PAIRS_PER_PASS = 16  # pairs scored together when computing reference and validation values

Pair = tuple[Encoded, Encoded]


class DpoRun(Run):
    def prepare(self) -> None:
        beta = self.hyper.get("beta", DEFAULT_BETA)
        self.beta = float(beta) if isinstance(beta, (int, float)) else DEFAULT_BETA
        self.train_pairs = [self._pair(row, line) for line, row in read_rows(self.spec["training_path"])]
        self.valid_pairs = [self._pair(row, line) for line, row in read_rows(self.spec.get("validation_path"))]
        for purpose, pairs in (("training", self.train_pairs), ("validation", self.valid_pairs)):
            self.warn_truncated([e for pair in pairs for e in pair], purpose)
        self.n_train, self.n_valid = len(self.train_pairs), len(self.valid_pairs)
        self.tokens_per_epoch = sum(len(e.ids) for pair in self.train_pairs for e in pair)
        if self.resuming:  # the paused run's reference values come back with its state
            return
        self.model.eval()
        with torch.no_grad(), self.autocast():
            self.train_reference = self._reference(self.train_pairs)
            self.valid_reference = self._reference(self.valid_pairs)

    def _pair(self, row: dict[str, Any], line: int) -> Pair:
        prompt = row["input"]["messages"]
        tools = row["input"].get("tools")
        chosen = self.encoder.encode_answer(prompt, row["preferred_output"][0], tools, line)
        rejected = self.encoder.encode_answer(prompt, row["non_preferred_output"][0], tools, line)
        return chosen, rejected

    def _reference(self, pairs: list[Pair]) -> torch.Tensor:
        parts = [self._scores(pairs[i : i + PAIRS_PER_PASS]).per_sequence() for i in range(0, len(pairs), PAIRS_PER_PASS)]
        return torch.cat(parts).view(-1, 2) if parts else torch.zeros(0, 2, device=self.device)

    def _scores(self, pairs: list[Pair]) -> Scores:
        return score(self.model, pack([e for pair in pairs for e in pair], self.device))

    def _stats(self, pairs: list[Pair], reference: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        scores = self._scores(pairs)
        policy = scores.per_sequence().view(-1, 2)
        margins = self.beta * ((policy[:, 0] - reference[:, 0]) - (policy[:, 1] - reference[:, 1]))
        loss = -F.logsigmoid(margins).mean()
        chosen = scores.owners % 2 == 0
        accuracy = scores.hits[chosen].float().mean().item() if chosen.any() else 0.0
        values = {
            "loss": loss.item(),
            "mean_token_accuracy": accuracy,
            "mean_reward_margin": margins.mean().item(),
            "reward_accuracy": (margins > 0).float().mean().item(),
        }
        return loss, values

    def train_on(self, indices: list[int]) -> dict[str, Any]:
        loss, values = self._stats([self.train_pairs[i] for i in indices], self.train_reference[indices])
        loss.backward()
        return {f"train_{k}": v for k, v in values.items()}

    def after_step(self, epoch_ended: bool) -> dict[str, Any]:
        metrics: dict[str, Any] = {}
        if not self.valid_pairs:
            return metrics
        if epoch_ended or self.steps_done % self.valid_every == 0:
            chosen = self.valid_batch(max(MIN_VALID_BATCH, int(self.hyper["batch_size"])))
            _, values = self._stats([self.valid_pairs[i] for i in chosen], self.valid_reference[chosen])
            metrics.update({f"valid_{k}": v for k, v in values.items()})
        if epoch_ended:
            metrics.update({f"full_valid_{k}": v for k, v in self._full_valid().items()})
        return metrics

    def _full_valid(self) -> dict[str, float]:
        totals: dict[str, float] = {}
        for start in range(0, self.n_valid, PAIRS_PER_PASS):
            pairs = self.valid_pairs[start : start + PAIRS_PER_PASS]
            _, values = self._stats(pairs, self.valid_reference[start : start + PAIRS_PER_PASS])
            for key, value in values.items():
                totals[key] = totals.get(key, 0.0) + value * len(pairs)
        return {k: v / self.n_valid for k, v in totals.items()}

    def extra_state(self) -> dict[str, Any]:
        return {"train_reference": self.train_reference, "valid_reference": self.valid_reference}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.train_reference = state["train_reference"].to(self.device)
        self.valid_reference = state["valid_reference"].to(self.device)
