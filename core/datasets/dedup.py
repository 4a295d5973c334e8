"""Duplicate examples and train/validation overlap from 8-byte digests, with numpy.

Digests come as (digests, global line numbers) arrays, either all at once or one partition
at a time (digests were routed to partitions by their first byte, so equal digests always
share a partition). Memory: 16 bytes per example of one partition while it is sorted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

import numpy as np


@dataclass
class DuplicateFindings:
    duplicates: int = 0
    pairs: list[tuple[int, int]] = field(default_factory=list)  # (line, first line), up to cap, by line
    overlap: int = 0
    overlap_pairs: list[tuple[int, int]] = field(default_factory=list)  # (training line, validation line)

    def keep_first(self, cap: int) -> None:
        self.pairs = sorted(self.pairs)[:cap]
        self.overlap_pairs = sorted(self.overlap_pairs)[:cap]


def first_lines(digests: np.ndarray, lines: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct digests and the first line each appears on."""
    if not len(digests):
        return digests, lines
    order = np.lexsort((lines, digests))
    d, ln = digests[order], lines[order]
    start = np.empty(len(d), dtype=bool)
    start[0] = True
    np.not_equal(d[1:], d[:-1], out=start[1:])
    return d[start], ln[start]


def find_in_partition(
    digests: np.ndarray,
    lines: np.ndarray,
    found: DuplicateFindings,
    cap: int,
    validation: tuple[np.ndarray, np.ndarray] | None = None,
) -> None:
    """Add the duplicates (and validation overlaps) among one partition's examples."""
    if not len(digests):
        return
    order = np.lexsort((lines, digests))
    d, ln = digests[order], lines[order]
    start = np.empty(len(d), dtype=bool)
    start[0] = True
    np.not_equal(d[1:], d[:-1], out=start[1:])
    run = np.cumsum(start) - 1
    firsts = ln[start][run]
    dup = ~start
    n = int(dup.sum())
    if n:
        found.duplicates += n
        dup_lines, dup_firsts = _earliest(ln[dup], firsts[dup], cap)
        found.pairs.extend(zip(dup_lines.tolist(), dup_firsts.tolist()))
    if validation is not None and len(validation[0]):
        vd, vl = validation
        unique_d, unique_l = d[start], ln[start]
        hit = np.isin(unique_d, vd, assume_unique=False)
        m = int(hit.sum())
        if m:
            found.overlap += m
            hl, hd = _earliest(unique_l[hit], unique_d[hit], cap)
            where = np.searchsorted(vd, hd)  # vd is sorted (first_lines output)
            found.overlap_pairs.extend(zip(hl.tolist(), vl[where].tolist()))
    found.keep_first(cap)


def concat(parts: Iterable[tuple[bytes, bytes, int]]) -> tuple[np.ndarray, np.ndarray]:
    """(digests, global lines) from per-chunk (digest bytes, uint32 line bytes, line offset)."""
    ds, ls = [], []
    for digests, lines, offset in parts:
        ds.append(np.frombuffer(digests, dtype=np.uint64))
        ls.append(np.frombuffer(lines, dtype=np.uint32).astype(np.int64) + offset)
    if not ds:
        return np.empty(0, dtype=np.uint64), np.empty(0, dtype=np.int64)
    return np.concatenate(ds), np.concatenate(ls)


def _earliest(lines: np.ndarray, paired: np.ndarray, cap: int) -> tuple[np.ndarray, np.ndarray]:
    """The `cap` entries with the smallest line numbers (all when fewer), with their partners:
    only that many pairs are ever reported, so the rest are not kept."""
    if len(lines) <= cap:
        return lines, paired
    keep = np.argpartition(lines, cap)[:cap]
    return lines[keep], paired[keep]

