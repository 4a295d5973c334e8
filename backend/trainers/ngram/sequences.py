"""Whole-answer log-probabilities under the n-gram model, and their gradients.

DPO and RFT both optimise a weighted sum of answer log-probabilities: DPO
`-log sigmoid(beta * margin)` of a preferred and a rejected answer, RFT
`-advantage * log p(answer)` of each sampled answer. So both need, for a batch of answers
(each one segment of a `Featurized`): `score(parts)` -> log p(answer) per answer (plus token
hits for accuracy), then `gradient(scored, coefficients)` -> the weight-row gradient of
`-sum(coefficient * log p(answer))`, which `RowAdagrad.step` applies.

Row-wise Adagrad, as in `sft.py`: each feature row's step size shrinks with the squared
gradient it has seen, so rare, informative rows learn as fast as the always-on bias.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from . import kernels
from .features import LOCAL_FEATURES, Featurized, Featurizer, local_feature_names
from .policy import END_ID

INITIAL_ACCUMULATOR = 0.1
TINY_PROBABILITY = float(np.finfo(np.float32).tiny)  # float32 softmax underflows below this


@dataclass
class Scored:
    logprobs: np.ndarray  # (answers,) log p(answer) = sum of its tokens' log-probabilities
    hits: np.ndarray  # (answers,) tokens whose argmax prediction was right (teacher forcing)
    lengths: np.ndarray  # (answers,) predicted tokens, `<end>` included
    chunks: list[kernels.Chunk]
    probs: list[np.ndarray]  # per chunk: softmax of every position (kept for the gradient)
    counted: list[np.ndarray]  # per chunk: 1 for positions in the scores, 0 for skipped `<end>`s
    first_answer: list[int]  # per chunk: the index of its first answer


def answer_features(
    featurizer: Featurizer, context_rows: np.ndarray, context_values: np.ndarray, tokens: Sequence[str]
) -> Featurized:
    """One answer (`tokens`, `<end>` included if it ended) after a prompt whose context
    features are given, as a one-segment `Featurized`."""
    local = [[featurizer.row(n) for n in local_feature_names(tokens, p)] for p in range(len(tokens))]
    return Featurized(
        ctx_ids=context_rows,
        ctx_values=context_values,
        ctx_segment=np.zeros(len(context_rows), dtype=np.int64),
        local_ids=np.asarray(local, dtype=np.int64).reshape(-1, LOCAL_FEATURES),
        targets=np.fromiter((featurizer.token_id(t) for t in tokens), dtype=np.int64, count=len(tokens)),
        position_segment=np.zeros(len(tokens), dtype=np.int64),
        n_segments=1,
    )


def score(weights: np.ndarray, parts: Sequence[Featurized], *, skip_end: bool = False) -> Scored:
    """Log-probability of each answer in `parts` (every part one answer of >= 1 token).
    `skip_end` leaves the `<end>` token out of the scores (and so out of the gradient)."""
    logprobs, hits, lengths = [], [], []
    chunks, probs, counted, first = [], [], [], []
    done = 0
    for chunk in kernels.chunks(parts, weights.shape[1]):
        batch = chunk.batch
        chunk_probs = kernels.probabilities(weights, chunk)
        positions = np.arange(batch.n_positions)
        mask = (batch.targets != END_ID) if skip_end else np.ones(batch.n_positions, dtype=bool)
        mask = mask.astype(np.float64)
        picked = np.log(np.maximum(chunk_probs[positions, batch.targets].astype(np.float64), TINY_PROBABILITY))
        right = (chunk_probs.argmax(axis=1) == batch.targets) * mask
        segments = batch.n_segments
        logprobs.append(np.bincount(batch.position_segment, weights=picked * mask, minlength=segments))
        hits.append(np.bincount(batch.position_segment, weights=right, minlength=segments))
        lengths.append(np.bincount(batch.position_segment, weights=mask, minlength=segments))
        chunks.append(chunk)
        probs.append(chunk_probs)
        counted.append(mask)
        first.append(done)
        done += segments
    return Scored(
        np.concatenate(logprobs), np.concatenate(hits), np.concatenate(lengths), chunks, probs, counted, first
    )


def probabilities_under(weights: np.ndarray, scored: Scored) -> list[np.ndarray]:
    """The softmax of every position of `scored`'s answers under other weights (a reference model)."""
    return [kernels.probabilities(weights, chunk) for chunk in scored.chunks]


def gradient(
    scored: Scored, coefficients: np.ndarray, reference: list[np.ndarray] | None = None, kl_weight: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """Rows and row gradients of `-sum(coefficients * logprobs)`, plus, given a `reference`
    (`probabilities_under` a frozen model), `kl_weight` times the summed KL divergence from
    it at every position of every answer.

    d log p(answer) / d logits at a position is onehot(target) - probs, so each position
    contributes coefficient * (probs - onehot); d KL(p || r) / d logits is
    p * (log p - log r - KL). The kept `probs` are overwritten."""
    rows, grads = [], []
    for index, chunk in enumerate(scored.chunks):
        batch, probs, counted = chunk.batch, scored.probs[index], scored.counted[index]
        scale = (coefficients[scored.first_answer[index] + batch.position_segment] * counted).astype(np.float32)
        pull = _kl_gradient(probs, reference[index], kl_weight) if reference is not None else None
        probs[np.arange(batch.n_positions), batch.targets] -= 1.0
        probs *= scale[:, None]
        if pull is not None:
            probs += pull
        rows.append(chunk.rows)
        grads.append(kernels.row_gradients(chunk, probs))
    return kernels.merge_rows(rows, grads)


def _kl_gradient(probs: np.ndarray, reference: np.ndarray, weight: float) -> np.ndarray:
    log_ratio = np.log(np.maximum(probs, TINY_PROBABILITY)) - np.log(np.maximum(reference, TINY_PROBABILITY))
    divergence = (probs * log_ratio).sum(axis=1, keepdims=True)
    return (weight * probs * (log_ratio - divergence)).astype(np.float32)


class RowAdagrad:
    def __init__(self, n_rows: int, learning_rate: float, warmup_steps: int) -> None:
        self._accumulator = np.full(n_rows, INITIAL_ACCUMULATOR, dtype=np.float32)
        self._learning_rate = learning_rate
        self._warmup_steps = max(1, warmup_steps)
        self._steps = 0

    def step(self, weights: np.ndarray, rows: np.ndarray, grads: np.ndarray) -> None:
        self._accumulator[rows] += np.einsum("ij,ij->i", grads, grads)
        self._steps += 1
        warmup = min(1.0, self._steps / self._warmup_steps)
        sizes = self._learning_rate * warmup / np.sqrt(self._accumulator[rows])
        weights[rows] -= grads * sizes[:, None]

    @property
    def accumulator(self) -> np.ndarray:
        return self._accumulator

    @property
    def steps(self) -> int:
        return self._steps

    def restore(self, accumulator: np.ndarray, steps: int) -> None:
        """Continue from a saved state (a resumed run)."""
        self._accumulator, self._steps = accumulator, steps
