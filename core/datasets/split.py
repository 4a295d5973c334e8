"""Split a JSONL file into training and validation files: deterministic for a seed, the
ratio kept exactly (per label), duplicates never on both sides.

Two streaming passes. The first reads every line's digest (the validator's, so examples
equal up to key order and whitespace are one group) and, when the data has an obvious label,
its label: the last assistant answer (SFT), `completion` (legacy), or a reference field such
as `answer` / `label` (RFT) — obvious meaning short (<= 64 chars) and few distinct values
(<= 50, each seen twice on average). Groups of equal examples are ordered by a hash of
(seed, digest) within each label, and whole groups go to validation until the label's share
(largest-remainder rounding of n x ratio over the labels) is reached. The second pass copies
each line, byte for byte, to its side. Blank lines are dropped (and counted); a line that is
not a JSON object stops the split with its line number (validate first).
Memory: about 10 bytes per example (numpy arrays), not the examples themselves.
"""

from __future__ import annotations

import hashlib
import os
from array import array
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .checker import BOM, canonical, loads
from .messages import json_type

MAX_LABELS = 50
MAX_LABEL_CHARS = 64
RFT_LABEL_KEYS = ("label", "category", "class", "reference_answer", "answer", "target")


class SplitError(Exception):
    """The file cannot be split. `data_error`: because of its contents (a bad line, too few
    examples); otherwise because of the files (unreadable, output exists)."""

    def __init__(self, message: str, data_error: bool = False) -> None:
        super().__init__(message)
        self.data_error = data_error


@dataclass
class SplitResult:
    train_path: Path
    validation_path: Path
    train_examples: int
    validation_examples: int
    stratified_by: str | None  # what the label was read from, None when not stratified
    labels: dict[str, tuple[int, int]] = field(default_factory=dict)  # label -> (train, validation)
    duplicate_groups: int = 0  # groups of equal examples (each kept on one side)
    blank_lines_dropped: int = 0
    seed: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "train_path": str(self.train_path),
            "validation_path": str(self.validation_path),
            "train_examples": self.train_examples,
            "validation_examples": self.validation_examples,
            "stratified_by": self.stratified_by,
            "labels": {k: {"train": a, "validation": b} for k, (a, b) in self.labels.items()},
            "duplicate_groups": self.duplicate_groups,
            "blank_lines_dropped": self.blank_lines_dropped,
            "seed": self.seed,
        }


def label_of(obj: dict[str, Any]) -> tuple[str | None, str | None]:
    """(label, where it was read from) for one example, when it has a label-like value."""
    messages = obj.get("messages")
    if type(messages) is list:
        for m in reversed(messages):
            if type(m) is dict and m.get("role") == "assistant":
                content = m.get("content")
                return (content.strip(), "the last assistant answer") if type(content) is str else (None, None)
        for key in RFT_LABEL_KEYS:
            value = obj.get(key)
            if isinstance(value, (str, int, bool)) and not isinstance(value, float):
                return str(value).strip(), f"the '{key}' field"
        return None, None
    completion = obj.get("completion")
    if type(completion) is str:
        return completion.strip(), "the completion"
    return None, None


def default_outputs(path: Path) -> tuple[Path, Path]:
    stem = path.name[: -len(".jsonl")] if path.name.endswith(".jsonl") else path.stem
    return path.with_name(f"{stem}_train.jsonl"), path.with_name(f"{stem}_validation.jsonl")


def split_file(
    path: str | os.PathLike[str],
    validation: float = 0.1,
    seed: int = 0,
    *,
    train_out: str | os.PathLike[str] | None = None,
    validation_out: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> SplitResult:
    import numpy as np

    if not 0 < validation < 1:
        raise ValueError("the validation share must be between 0 and 1, e.g. 0.1")
    source = Path(path)
    default_train, default_validation = default_outputs(source)
    train_path = Path(train_out) if train_out else default_train
    validation_path = Path(validation_out) if validation_out else default_validation
    for out in (train_path, validation_path):
        if out.resolve() == source.resolve():
            raise SplitError(f"{out} is the input file")
        if out.exists() and not overwrite:
            raise SplitError(f"{out} exists; pass --force to overwrite it")

    # pass 1: digests and labels
    digests = bytearray()
    label_ids = array("h")
    names: dict[str, int] = {}
    sources: set[str] = set()
    labelled = True
    blank = 0
    try:
        size = source.stat().st_size
        with source.open("rb") as f:
            for number, raw in enumerate(f, start=1):
                if number == 1 and raw.startswith(BOM):
                    raw = raw[len(BOM):]
                if raw.isspace() or not raw:
                    blank += 1
                    continue
                try:
                    obj = loads(raw)
                except (ValueError, RecursionError):
                    raise SplitError(f"{source}, line {number}: not valid JSON; run `tunedeck data validate` first", True) from None
                if type(obj) is not dict:
                    raise SplitError(f"{source}, line {number}: a JSON object is needed, not {json_type(obj)}", True)
                digests += hashlib.blake2b(canonical(obj), digest_size=8).digest()
                label_id = -1
                if labelled:
                    label, where = label_of(obj)
                    if label is None or len(label) > MAX_LABEL_CHARS:
                        labelled = False
                    else:
                        if where:
                            sources.add(where)
                        label_id = names.setdefault(label, len(names))
                        if len(names) > MAX_LABELS:
                            labelled = False
                label_ids.append(label_id)
                if progress is not None and number % 10000 == 0:
                    progress(f.tell(), size * 2)
    except OSError as exc:
        raise SplitError(f"cannot read {source}: {exc.strerror or exc}") from None
    n = len(label_ids)
    if n < 2:
        raise SplitError(f"{source} has {n} example(s); at least 2 are needed to split", True)
    stratify = labelled and len(names) > 1 and len(names) * 2 <= n and len(sources) == 1
    d = np.frombuffer(bytes(digests), dtype=np.uint64)
    labels = np.frombuffer(label_ids.tobytes(), dtype=np.int16).astype(np.int64) if stratify else np.zeros(n, dtype=np.int64)

    # groups of equal examples; each group's label is its first line's
    unique, first, inverse, sizes = np.unique(d, return_index=True, return_inverse=True, return_counts=True)
    group_label = labels[first]
    keys = _mix(unique ^ _mix(np.array([seed & 0xFFFFFFFFFFFFFFFF], dtype=np.uint64))[0])
    strata = np.unique(group_label)
    per_stratum = [int(sizes[group_label == s].sum()) for s in strata]
    targets = _apportion(per_stratum, round(n * validation))
    in_validation = np.zeros(len(unique), dtype=bool)
    for s, target in zip(strata, targets):
        members = np.flatnonzero(group_label == s)
        members = members[np.argsort(keys[members], kind="stable")]
        taken = 0
        for g in members.tolist():  # whole groups, in seeded order, until the share is reached
            if taken >= target:
                break
            if taken + int(sizes[g]) <= target:
                in_validation[g] = True
                taken += int(sizes[g])
    line_side = in_validation[inverse]
    if not line_side.any() or line_side.all():  # e.g. everything is one group of duplicates
        raise SplitError("the examples cannot be split at that ratio without putting duplicates on both sides", True)

    # pass 2: copy lines
    counts: dict[int, list[int]] = {}
    tmp_train = train_path.with_name(train_path.name + ".part")
    tmp_validation = validation_path.with_name(validation_path.name + ".part")
    try:
        with source.open("rb") as f, tmp_train.open("wb") as train, tmp_validation.open("wb") as held:
            index = 0
            for number, raw in enumerate(f, start=1):
                if number == 1 and raw.startswith(BOM):
                    raw = raw[len(BOM):]
                if raw.isspace() or not raw:
                    continue
                if not raw.endswith(b"\n"):
                    raw += b"\n"
                side = bool(line_side[index])
                (held if side else train).write(raw)
                bucket = counts.setdefault(int(labels[index]), [0, 0])
                bucket[side] += 1
                index += 1
                if progress is not None and number % 10000 == 0:
                    progress(size + f.tell(), size * 2)
        os.replace(tmp_train, train_path)
        os.replace(tmp_validation, validation_path)
    except OSError as exc:
        for tmp in (tmp_train, tmp_validation):
            tmp.unlink(missing_ok=True)
        raise SplitError(f"cannot write the split: {exc.strerror or exc}") from None
    if progress is not None:
        progress(size * 2, size * 2)
    by_id = {v: k for k, v in names.items()}
    n_validation = int(line_side.sum())
    return SplitResult(
        train_path=train_path,
        validation_path=validation_path,
        train_examples=n - n_validation,
        validation_examples=n_validation,
        stratified_by=next(iter(sources)) if stratify else None,
        labels={by_id[k]: (v[0], v[1]) for k, v in sorted(counts.items())} if stratify else {},
        duplicate_groups=int((sizes > 1).sum()),
        blank_lines_dropped=blank,
        seed=seed,
    )


def _mix(x: Any) -> Any:
    """splitmix64's finaliser on a numpy uint64 array (wrapping arithmetic)."""
    import numpy as np

    x = x.astype(np.uint64, copy=True)
    with np.errstate(over="ignore"):
        x ^= x >> np.uint64(30)
        x *= np.uint64(0xBF58476D1CE4E5B9)
        x ^= x >> np.uint64(27)
        x *= np.uint64(0x94D049BB133111EB)
        x ^= x >> np.uint64(31)
    return x


def _apportion(sizes: list[int], total: int) -> list[int]:
    """Split `total` over strata in proportion to `sizes` (largest remainder), keeping at
    least one example of every stratum with two or more in training."""
    n = sum(sizes)
    if not n:
        return [0 for _ in sizes]
    total = max(1, min(total, n - 1))
    exact = [s * total / n for s in sizes]
    shares = [int(e) for e in exact]
    order = sorted(range(len(sizes)), key=lambda i: (exact[i] - shares[i], sizes[i]), reverse=True)
    for i in order[: total - sum(shares)]:
        shares[i] += 1
    return shares
