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
from .scoring import Scores, pack

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
        """[pairs, 2]: the starting model's log-probabilities of each pair's answers (on several
        devices each rank scores its share, and every rank gets them all)."""
        values = torch.zeros(len(pairs), 2, dtype=torch.float32, device=self.device)
        for share, standin in self.shares(self._pass_chunks(len(pairs))):
            scored = self._scores([pairs[i] for i in share]).per_sequence().view(-1, 2)
            if not standin:
                values[share] = scored.float()
        if not pairs:
            return values
        return self.sum_across_ranks(values)  # each pair was scored by one rank: the others hold zeros

    def _pass_chunks(self, count: int) -> list[list[int]]:
        step = PAIRS_PER_PASS * (self.parallel.world if self.parallel is not None else 1)
        return [list(range(start, min(count, start + step))) for start in range(0, count, step)]

    def _scores(self, pairs: list[Pair]) -> Scores:
        return self.scores_of(pack([e for pair in pairs for e in pair], self.device))

    def _sums(self, pairs: list[Pair], reference: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The summed DPO loss of `pairs` (differentiable), and the sums the metrics are made
        of: [loss, preferred-answer hits, preferred-answer tokens, margin, pairs ranked right, pairs]."""
        scores = self._scores(pairs)
        policy = scores.per_sequence().view(-1, 2)
        margins = self.beta * ((policy[:, 0] - reference[:, 0]) - (policy[:, 1] - reference[:, 1]))
        losses = -F.logsigmoid(margins)
        chosen = scores.owners % 2 == 0
        sums = torch.stack([
            losses.sum().detach(), scores.hits[chosen].sum().float(), chosen.sum().float(),
            margins.sum().detach(), (margins > 0).sum().float(), torch.tensor(float(len(pairs)), device=margins.device),
        ]).double()  # fmt: skip
        return losses.sum(), sums

    @staticmethod
    def _values(sums: torch.Tensor) -> dict[str, float]:
        loss, hits, tokens, margin, right, pairs = sums.tolist()
        return {
            "loss": loss / pairs,
            "mean_token_accuracy": hits / tokens if tokens else 0.0,
            "mean_reward_margin": margin / pairs,
            "reward_accuracy": right / pairs,
        }

    def _evaluate(self, chunks: list[list[int]]) -> dict[str, float]:
        """The metrics over the validation pairs of `chunks`, every rank scoring its share."""
        total = torch.zeros(6, dtype=torch.float64, device=self.device)
        for share, standin in self.shares(chunks):
            _, sums = self._sums([self.valid_pairs[i] for i in share], self.valid_reference[share])
            if not standin:
                total += sums
        return self._values(self.sum_across_ranks(total))

    def train_on(self, indices: list[int]) -> dict[str, Any]:
        """This rank's share of the step's pairs: the loss summed over them, divided by the
        step's pairs across ranks, so the summed gradients are the whole batch's mean."""
        standin = not indices and self.sharded  # a sharded model's backward pass needs every rank
        chosen = [0] if standin else indices
        loss = None
        sums = torch.zeros(6, dtype=torch.float64, device=self.device)
        if chosen:
            loss, sums = self._sums([self.train_pairs[i] for i in chosen], self.train_reference[chosen])
            if standin:
                sums = torch.zeros_like(sums)
        total = self.sum_across_ranks(sums)
        if loss is not None:
            (loss * (0.0 if standin else 1.0 / float(total[5]))).backward()
        return {f"train_{k}": v for k, v in self._values(total).items()}

    def after_step(self, epoch_ended: bool) -> dict[str, Any]:
        metrics: dict[str, Any] = {}
        if not self.valid_pairs:
            return metrics
        if epoch_ended or self.steps_done % self.valid_every == 0:
            chosen = self.valid_batch(max(MIN_VALID_BATCH, int(self.hyper["batch_size"])))
            metrics.update({f"valid_{k}": v for k, v in self._evaluate([chosen]).items()})
        if epoch_ended:
            metrics.update({f"full_valid_{k}": v for k, v in self._evaluate(self._pass_chunks(self.n_valid)).items()})
        return metrics

    def extra_state(self) -> dict[str, Any]:
        return {"train_reference": self.train_reference, "valid_reference": self.valid_reference}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.train_reference = state["train_reference"].to(self.device)
        self.valid_reference = state["valid_reference"].to(self.device)
