"""Exact distributions in bounded memory: a histogram of values (token counts per example,
messages per example) instead of a list, so p50/p95 are exact at any file size.

Percentiles use the OpenAI cookbook's convention on the sorted values v of length k: median
v[k//2], p5 v[k//20], p95 v[(k*19)//20], so the figures match what its data-check script prints.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping


class Histogram:
    __slots__ = ("counts",)

    def __init__(self, counts: Mapping[int, int] | None = None) -> None:
        self.counts: dict[int, int] = dict(counts or {})

    def add(self, value: int, times: int = 1) -> None:
        self.counts[value] = self.counts.get(value, 0) + times

    def merge(self, other: Mapping[int, int] | "Histogram") -> None:
        counts = other.counts if isinstance(other, Histogram) else other
        mine = self.counts
        for value, times in counts.items():
            mine[value] = mine.get(value, 0) + times

    @classmethod
    def of(cls, values: Iterable[int]) -> "Histogram":
        h = cls()
        for v in values:
            h.add(v)
        return h

    @property
    def n(self) -> int:
        return sum(self.counts.values())

    @property
    def total(self) -> int:
        return sum(v * c for v, c in self.counts.items())

    def at(self, index: int) -> int | None:
        """The value at position `index` of the sorted values."""
        seen = 0
        for value in sorted(self.counts):
            seen += self.counts[value]
            if index < seen:
                return value
        return None

    def summary(self) -> dict[str, Any]:
        k = self.n
        if not k:
            return {"n": 0, "min": None, "max": None, "mean": None, "p5": None, "p50": None, "p95": None}
        return {
            "n": k,
            "min": min(self.counts),
            "max": max(self.counts),
            "mean": round(self.total / k, 2),
            "p5": self.at(k // 20),
            "p50": self.at(k // 2),
            "p95": self.at((k * 19) // 20),
        }
