"""Scoring tokens with a causal LM, padding-free (worker side).

A batch is packed into one row: the sequences end to end, `position_ids` restarting at 0
for each, which transformers turns into a block-diagonal causal mask (varlen kernels with
flash attention), so no compute is spent on padding. Logits are computed only at the
positions that predict a trained token, in chunks that are recomputed in the backward pass,
so a 150k-word vocabulary never materialises a full [tokens x vocabulary] fp32 tensor.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch
from torch.utils.checkpoint import checkpoint

from .encoding import Encoded
from .loading import causal_parts

LOGIT_CHUNK = 4096  # scored positions per head call


@dataclass(frozen=True, slots=True)
class Packed:
    ids: torch.Tensor  # [1, T] packed, or [B, L] stacked
    positions: torch.Tensor  # the same shape
    predictors: torch.Tensor  # [K]: flat positions whose hidden state predicts a target
    targets: torch.Tensor  # [K]: the target token ids
    owners: torch.Tensor  # [K]: which sequence each target belongs to
    n_sequences: int

    @property
    def n_tokens(self) -> int:
        return int(self.ids.numel())


def pack(sequences: Sequence[Encoded], device: torch.device) -> Packed:
    """One packed row; or, when every sequence has the same length (packed pre-training style
    blocks), a plain [B, L] batch, which needs no block mask and keeps the fastest kernels."""
    if len(sequences) > 1 and len({len(s.ids) for s in sequences}) == 1:
        return _stack(sequences, device)
    ids: list[int] = []
    positions: list[int] = []
    predictors: list[int] = []
    targets: list[int] = []
    owners: list[int] = []
    for owner, seq in enumerate(sequences):
        offset = len(ids)
        ids.extend(seq.ids)
        positions.extend(range(len(seq.ids)))
        for j in range(1, len(seq.ids)):
            if seq.trained[j]:
                predictors.append(offset + j - 1)
                targets.append(seq.ids[j])
                owners.append(owner)

    def tensor(values: list[int]) -> torch.Tensor:
        return torch.tensor(values, dtype=torch.long, device=device)

    return Packed(
        tensor(ids)[None], tensor(positions)[None], tensor(predictors), tensor(targets), tensor(owners), len(sequences)
    )


def _stack(sequences: Sequence[Encoded], device: torch.device) -> Packed:
    length = len(sequences[0].ids)
    ids = torch.tensor([s.ids for s in sequences], dtype=torch.long, device=device)
    trained = torch.tensor([s.trained for s in sequences], dtype=torch.bool, device=device)
    trained[:, 0] = False
    rows, columns = trained.nonzero(as_tuple=True)
    return Packed(
        ids,
        torch.arange(length, device=device).expand(len(sequences), length),
        rows * length + columns - 1,
        ids[rows, columns],
        rows,
        len(sequences),
    )


@dataclass(frozen=True, slots=True)
class Scores:
    logprobs: torch.Tensor  # [K] log p(target), fp32
    hits: torch.Tensor  # [K] bool: the target was the argmax
    owners: torch.Tensor  # [K]
    n_sequences: int

    def per_sequence(self) -> torch.Tensor:
        """Sum of log-probabilities of each sequence's targets."""
        sums = torch.zeros(self.n_sequences, dtype=self.logprobs.dtype, device=self.logprobs.device)
        return sums.index_add(0, self.owners, self.logprobs)

    def counts(self) -> torch.Tensor:
        ones = torch.ones_like(self.logprobs)
        return torch.zeros(self.n_sequences, device=ones.device).index_add(0, self.owners, ones)


def logit_transform(model: Any) -> tuple[float | None, float]:
    """(soft cap, scale) the model's own forward applies to its logits, which scoring must
    repeat: Gemma 2/3's `final_logit_softcapping`, Cohere's `logit_scale`, Granite's
    `logits_scaling` (a divisor)."""
    config = getattr(model, "config", None)
    cap = getattr(config, "final_logit_softcapping", None)
    scale = float(getattr(config, "logit_scale", None) or 1.0)
    divisor = getattr(config, "logits_scaling", None)
    if divisor:
        scale /= float(divisor)
    return (float(cap) if cap else None), scale


def score(model: Any, packed: Packed) -> Scores:
    decoder, head = causal_parts(model)
    cap, scale = logit_transform(model)
    hidden = decoder(input_ids=packed.ids, position_ids=packed.positions, use_cache=False).last_hidden_state
    hidden = hidden.reshape(-1, hidden.shape[-1])
    chosen = hidden.index_select(0, packed.predictors)
    logprobs, hits = [], []
    for start in range(0, chosen.shape[0], LOGIT_CHUNK):
        part = chosen[start : start + LOGIT_CHUNK]
        targets = packed.targets[start : start + LOGIT_CHUNK]
        if torch.is_grad_enabled() and chosen.shape[0] > LOGIT_CHUNK:
            lp, hit = checkpoint(_head_logprobs, head.weight, head.bias, part, targets, cap, scale, use_reentrant=False)
        else:
            lp, hit = _head_logprobs(head.weight, head.bias, part, targets, cap, scale)
        logprobs.append(lp)
        hits.append(hit)
    empty = hidden.new_zeros(0, dtype=torch.float32)
    return Scores(
        torch.cat(logprobs) if logprobs else empty,
        torch.cat(hits) if hits else empty.bool(),
        packed.owners,
        packed.n_sequences,
    )


def _head_logprobs(
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    hidden: torch.Tensor,
    targets: torch.Tensor,
    cap: float | None = None,
    scale: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    logits = torch.nn.functional.linear(hidden, weight, bias).float()
    if scale != 1.0:
        logits = logits * scale
    if cap is not None:
        logits = torch.tanh(logits / cap) * cap
    chosen = logits.gather(1, targets[:, None])[:, 0]
    logprobs = chosen - torch.logsumexp(logits, dim=-1)
    return logprobs, logits.argmax(-1) == targets
