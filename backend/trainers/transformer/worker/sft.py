"""Supervised fine-tuning (worker side): cross-entropy on assistant tokens only, honouring
`weight: 0`, multi-turn conversations and tool calls through the model's chat template.

Metrics as the API names them: `train_loss` and `train_mean_token_accuracy` every step;
`valid_loss` / `valid_mean_token_accuracy` on a small rotating validation batch ten times
per epoch; `full_valid_loss` / `full_valid_mean_token_accuracy` over the whole validation
file at each epoch's end.
"""

from __future__ import annotations

from typing import Any

from .encoding import ChatEncoder, Encoded
from .runs import MIN_VALID_BATCH, Run, read_rows
from .scoring import pack

EVAL_TOKENS_PER_PASS = 16_384  # validation examples are scored in packs of about this many tokens


class SftRun(Run):
    def encode_data(self, encoder: ChatEncoder) -> None:
        self.train_rows = [encoder.encode_chat_row(row, line) for line, row in read_rows(self.spec["training_path"])]
        valid_path = self.spec.get("validation_path")
        self.valid_rows = [encoder.encode_chat_row(row, line) for line, row in read_rows(valid_path)]

    def prepare(self) -> None:
        self.warn_truncated(self.train_rows, "training")
        self.warn_truncated(self.valid_rows, "validation")
        self.n_train, self.n_valid = len(self.train_rows), len(self.valid_rows)
        self.tokens_per_epoch = sum(len(e.ids) for e in self.train_rows)

    def train_on(self, indices: list[int]) -> dict[str, Any]:
        if self.parallel is not None:
            return self._train_share(indices)
        result = self.loss_of(pack([self.train_rows[i] for i in indices], self.device))
        if result.count == 0:  # every trained token was truncated away
            return {"train_loss": None, "train_mean_token_accuracy": None}
        result.loss.backward()
        return {"train_loss": result.loss.item(), "train_mean_token_accuracy": result.hits / result.count}

    def _train_share(self, indices: list[int]) -> dict[str, Any]:
        """This rank's share of the step: its loss weighted by its part of the step's trained
        tokens across ranks, so the summed gradients are the whole batch's mean (`distributed.py`).

        With a sharded model every forward and backward pass is a collective, in the same order
        on every rank: a rank with no example of its own (a step smaller than the ranks) scores
        a stand-in, and a rank with nothing to train runs its backward pass at weight zero."""
        assert self.parallel is not None
        rows = [self.train_rows[i] for i in indices]
        standin = not rows and self.sharded
        if standin:
            rows = self.train_rows[:1]
        result = self.loss_of(pack(rows, self.device)) if rows else None
        count = result.count if result is not None and not standin else 0
        loss_sum = result.loss.item() * count if result is not None and count else 0.0
        hits = result.hits if result is not None and count else 0
        total_loss, total_hits, total_count = self.parallel.sum_values([loss_sum, hits, count], self.device)
        if total_count == 0:  # no rank trains anything: none runs a backward pass
            return {"train_loss": None, "train_mean_token_accuracy": None}
        if result is not None and count:
            (result.loss * (count / total_count)).backward()
        elif result is not None and self.sharded:
            (result.loss * 0.0).backward()
        return {"train_loss": total_loss / total_count, "train_mean_token_accuracy": total_hits / total_count}

    def after_step(self, epoch_ended: bool) -> dict[str, Any]:
        metrics: dict[str, Any] = {}
        if not self.valid_rows:
            return metrics
        if epoch_ended or self.steps_done % self.valid_every == 0:
            size = max(MIN_VALID_BATCH, int(self.hyper["batch_size"]))
            loss, accuracy = self.evaluate([self.valid_rows[i] for i in self.valid_batch(size)])
            metrics.update(valid_loss=loss, valid_mean_token_accuracy=accuracy)
        if epoch_ended:
            loss, accuracy = self.evaluate(self.valid_rows)
            metrics.update(full_valid_loss=loss, full_valid_mean_token_accuracy=accuracy)
        return metrics

    def evaluate(self, rows: list[Encoded]) -> tuple[float | None, float | None]:
        """Mean token loss and accuracy over `rows` (called under no_grad). On several devices
        each rank scores its share of every pass, and the sums are added up; a sharded model's
        ranks make the same passes, one with no share scoring a stand-in it ignores."""
        world = self.parallel.world if self.parallel is not None else 1
        total, hits, count = 0.0, 0, 0
        for share, standin in self.shares(token_chunks(rows, EVAL_TOKENS_PER_PASS * world)):
            scores = self.scores_of(pack(share, self.device))
            if standin:
                continue
            total += -scores.logprobs.sum().item()
            hits += int(scores.hits.sum().item())
            count += scores.logprobs.numel()
        if self.parallel is not None:
            total, hits, count = self.parallel.sum_values([total, hits, count], self.device)
        if count == 0:
            return None, None
        return total / count, hits / count


def token_chunks(rows: list[Encoded], budget: int) -> list[list[Encoded]]:
    """`rows` in consecutive groups of about `budget` tokens (at least one row each)."""
    chunks: list[list[Encoded]] = [[]]
    size = 0
    for row in rows:
        if chunks[-1] and size + len(row.ids) > budget:
            chunks.append([])
            size = 0
        chunks[-1].append(row)
        size += len(row.ids)
    return [c for c in chunks if c]
