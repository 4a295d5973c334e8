"""The n-gram model's maths, written so a step touches only the weight rows it needs.

Every predicted token sums `LOCAL_FEATURES` weight rows of its own plus its segment's
context rows (scaled by their values). The forward pass gathers just those rows; the
backward pass hands each *occurrence* of a row its share of d(loss)/d(logits) and sums
the occurrences of each distinct row, so Adagrad sees one gradient per row.

Sums over segments and over repeated rows are small dense products (BLAS) rather than
`np.add.reduceat`/`np.add.at`, which are slow along the long axis; rows that occur once
(most of them) are copied, not multiplied. Chunks bound every temporary.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np

from .features import LOCAL_FEATURES, Featurized, concatenate

CHUNK_FLOATS = 4_000_000  # occurrences x vocabulary per chunk: ~16 MB per float32 temporary
MAX_CHUNK_OCCURRENCES = 2048  # also bounds the (segments x positions) and (rows x sources) matrices


@dataclass(frozen=True, slots=True)
class Chunk:
    """A featurized batch plus the small matrices that route its sums.

    Gradient *sources* are the rows of `[dlogits; context_grads]`: position p is source p,
    context occurrence j is source P + j. Local occurrence (p, k) takes source p.
    """

    batch: Featurized
    rows: np.ndarray  # (U,) distinct weight rows, sorted
    segment_positions: np.ndarray  # (S, P) 1 where position p belongs to segment s
    segment_context: np.ndarray  # (S, C) the value of context occurrence j in its segment
    single_at: np.ndarray  # indices into `rows` of rows that occur once ...
    single_source: np.ndarray  # ... and the source each one takes
    multi_at: np.ndarray  # indices into `rows` of rows that occur several times ...
    multi_sources: np.ndarray  # ... (len(multi_at), P + C) how often each takes each source


def chunk_of(batch: Featurized) -> Chunk:
    positions, contexts, segments = batch.n_positions, batch.ctx_ids.shape[0], batch.n_segments
    occurrence_rows = np.concatenate([batch.local_ids.ravel(), batch.ctx_ids])
    sources = np.concatenate([np.repeat(np.arange(positions), LOCAL_FEATURES), positions + np.arange(contexts)])
    rows, group, counts = np.unique(occurrence_rows, return_inverse=True, return_counts=True)
    single = counts == 1
    single_source = np.empty(rows.shape[0], dtype=np.int64)
    single_source[group] = sources  # for a single row, its only occurrence writes its source
    multi_at = np.flatnonzero(~single)
    multi_index = np.full(rows.shape[0], -1, dtype=np.int64)
    multi_index[multi_at] = np.arange(multi_at.shape[0])
    in_multi = multi_index[group] >= 0
    multi_sources = np.zeros((multi_at.shape[0], positions + contexts), dtype=np.float32)
    np.add.at(multi_sources, (multi_index[group][in_multi], sources[in_multi]), 1.0)
    segment_positions = np.zeros((segments, positions), dtype=np.float32)
    segment_positions[batch.position_segment, np.arange(positions)] = 1.0
    segment_context = np.zeros((segments, contexts), dtype=np.float32)
    segment_context[batch.ctx_segment, np.arange(contexts)] = batch.ctx_values
    single_at = np.flatnonzero(single)
    return Chunk(
        batch, rows, segment_positions, segment_context, single_at, single_source[single_at], multi_at, multi_sources
    )


def probabilities(weights: np.ndarray, chunk: Chunk) -> np.ndarray:
    """Softmax over the vocabulary for every position of the chunk (positions x vocabulary)."""
    batch = chunk.batch
    logits = np.take(weights, batch.local_ids, axis=0).sum(axis=1)
    segment_logits = chunk.segment_context @ weights[batch.ctx_ids]
    logits += segment_logits[batch.position_segment]
    logits -= logits.max(axis=1, keepdims=True)
    np.exp(logits, out=logits)
    logits /= logits.sum(axis=1, keepdims=True)
    return logits


def row_gradients(chunk: Chunk, dlogits: np.ndarray) -> np.ndarray:
    """d(loss)/d(weights[chunk.rows]) from d(loss)/d(logits) of each position (rows x vocabulary)."""
    segment_grads = chunk.segment_positions @ dlogits
    sources = np.concatenate([dlogits, chunk.segment_context.T @ segment_grads])
    grads = np.empty((chunk.rows.shape[0], dlogits.shape[1]), dtype=np.float32)
    grads[chunk.single_at] = sources[chunk.single_source]
    grads[chunk.multi_at] = chunk.multi_sources @ sources
    return grads


def loss_sum_and_hits(probs: np.ndarray, targets: np.ndarray) -> tuple[float, int]:
    picked = probs[np.arange(targets.shape[0]), targets].astype(np.float64)
    loss = float(-np.log(np.maximum(picked, 1e-12)).sum())  # floor: never an infinite loss in JSON
    return loss, int((probs.argmax(axis=1) == targets).sum())


def chunks(parts: Sequence[Featurized], vocabulary_size: int) -> Iterator[Chunk]:
    """Group examples into chunks of bounded size (one example per chunk at least)."""
    budget = max(1, min(MAX_CHUNK_OCCURRENCES, CHUNK_FLOATS // vocabulary_size))
    group: list[Featurized] = []
    size = 0
    for part in parts:
        cost = part.n_positions * LOCAL_FEATURES + part.ctx_ids.shape[0]
        if group and size + cost > budget:
            yield chunk_of(concatenate(group))
            group, size = [], 0
        group.append(part)
        size += cost
    if group:
        yield chunk_of(concatenate(group))


def merge_rows(rows: list[np.ndarray], grads: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Sum the gradients of rows that several chunks touched."""
    if len(rows) == 1:
        return rows[0], grads[0]
    all_rows = np.concatenate(rows)
    order = np.argsort(all_rows, kind="stable")
    sorted_rows = all_rows[order]
    starts = np.flatnonzero(np.r_[True, sorted_rows[1:] != sorted_rows[:-1]])
    return sorted_rows[starts], np.add.reduceat(np.concatenate(grads)[order], starts, axis=0)


def predict(weights: np.ndarray, batch: Featurized) -> np.ndarray:
    """Softmax probabilities (positions x vocabulary) of every predicted token in `batch`."""
    return probabilities(weights, chunk_of(batch))
