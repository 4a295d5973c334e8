"""Distributions for the stats panel: tokens and messages per example, and answer labels.

The validator's report carries totals and percentiles; the browser also draws histograms
and a label distribution. Where the report carries them (`token_histogram`,
`messages_histogram`, `labels`) those are used; otherwise this module reads them from the
first `limit` examples, with the engine's own token counter and label rule, and says so
(`sampled`). Call it in a worker thread.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Collection

from .lineindex import Cancelled, LineIndex

SAMPLE_EXAMPLES = 5_000
"""Enough for the shape of a histogram; few enough to read in ~0.1 s beside the UI."""
SAMPLE_LINE_BYTES = 4 * 1024 * 1024



@dataclass
class Distributions:
    token_histogram: dict[int, int] = field(default_factory=dict)
    messages_histogram: dict[int, int] = field(default_factory=dict)
    labels: dict[str, int] | None = None
    """Answer label -> examples, when the answers look like labels (else None)."""
    labels_from: str | None = None
    examples: int = 0
    sampled: bool = False
    """True when read from the first examples only (the report had no histograms)."""


def from_report(report: Any) -> Distributions | None:
    """The report's own distributions, when the engine provides them."""
    tokens = getattr(report, "token_histogram", None)
    if not tokens:
        return None
    labels = getattr(report, "labels", None)
    return Distributions(
        token_histogram=dict(tokens),
        messages_histogram=dict(getattr(report, "messages_histogram", None) or {}),
        labels=dict(labels) if labels else None,
        labels_from=getattr(report, "labels_from", None),
        examples=report.examples,
    )


def sample(
    index: LineIndex,
    fmt: str,
    encoding: str,
    limit: int = SAMPLE_EXAMPLES,
    cancelled: Cancelled | None = None,
    skip: Collection[int] = (),
) -> Distributions:
    """Distributions of the first `limit` examples of an indexed file, leaving out the
    lines in `skip` (those the validator found errors in) and lines that do not parse."""
    from .datasets.split import label_of
    from .datasets.tokens import counter, example_tokens

    count = counter(encoding)
    out = Distributions(sampled=True)
    labels: Counter[str] = Counter()
    sources: set[str] = set()
    unlabelled = 0
    number = 0
    while out.examples < limit and not (cancelled is not None and cancelled()):
        if number >= index.line_count:
            if index.complete or index.closed:
                break
            index.wait_for_offset(index.scanned_bytes, timeout=1.0)  # the scan is still running
            continue
        number += 1
        if number in skip or index.length(number) > SAMPLE_LINE_BYTES:
            continue
        try:
            obj = json.loads(index.raw(number))
        except (ValueError, RecursionError, UnicodeDecodeError):
            continue
        if not isinstance(obj, dict):
            continue
        out.examples += 1
        tokens = example_tokens(obj, fmt, count)
        out.token_histogram[tokens] = out.token_histogram.get(tokens, 0) + 1
        messages = obj.get("messages")
        if isinstance(messages, list):
            out.messages_histogram[len(messages)] = out.messages_histogram.get(len(messages), 0) + 1
        label, source = label_of(obj)
        if label is None:
            unlabelled += 1
        else:
            labels[label] += 1
            sources.add(source or "")
    out.sampled = number < index.line_count or not index.complete
    if looks_like_labels(labels, unlabelled):
        out.labels = dict(labels.most_common())
        out.labels_from = sources.pop() if len(sources) == 1 else "the answers"
    return out


def looks_like_labels(labels: Counter[str], unlabelled: int) -> bool:
    """The split's rule: short values, few of them, each seen twice on average."""
    from .datasets.split import MAX_LABEL_CHARS, MAX_LABELS

    total = sum(labels.values())
    if not labels or unlabelled > total // 10 or len(labels) > MAX_LABELS:
        return False
    return all(len(label) <= MAX_LABEL_CHARS for label in labels) and total >= 2 * len(labels)
