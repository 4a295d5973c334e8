"""One worker's pass over a byte range of a JSONL file: parse, check, count, hash.

The range starts and ends on line boundaries. Lines are read one at a time with a length
cap, so memory does not grow with the file; what comes back is compact: counts, a bounded
list of issues (the first `max_issues` of each kind; every issue is still counted), token
histograms, and 8-byte digests of the examples with their line numbers for duplicate
detection (in memory, or spilled to partition files for very large inputs). Line numbers are
local to the range; the driver adds the range's offset once every range is done.
"""

from __future__ import annotations

import hashlib
import os
from array import array
from dataclasses import dataclass, field
from typing import Callable

from .checker import BOM, _classify, canonical, check_object, loads, rule_for
from .codes import WARNINGS
from .detect import FAMILY, family
from .grader import ItemPath
from .tokens import PRIMING_TOKENS, Count, counter, example_tokens

MAX_LINE_BYTES = 32 * 1024 * 1024  # longer lines are reported (line_too_long), never held whole
BLANK_LINE_MESSAGE = "the line is empty; remove it (every line must be one example)"
TICK_BYTES = 1 << 20
_SPILL_FLUSH = 1 << 20

IssueTuple = tuple  # (line, code, field, message)


@dataclass(frozen=True)
class ScanConfig:
    fmt: str  # the format every line is checked as
    encoding: str
    context: int
    grader_paths: tuple[ItemPath, ...] = ()
    max_issues: int = 1000
    partitions: int = 1  # >1: digests go to files in spill_dir, one per partition
    spill_dir: str | None = None


@dataclass
class ChunkResult:
    index: int
    lines: int = 0
    examples: int = 0  # non-blank lines
    counted: int = 0  # examples whose tokens were counted (the right format's shape)
    trained: int = 0  # SFT examples with an assistant message of weight 1
    valid: int = 0  # examples without errors
    errors: list[IssueTuple] = field(default_factory=list)
    warnings: list[IssueTuple] = field(default_factory=list)
    codes: dict[str, int] = field(default_factory=dict)
    missing_system: list[int] = field(default_factory=list)
    missing_system_count: int = 0
    with_system: int = 0
    with_images: int = 0
    hist: dict[int, int] = field(default_factory=dict)  # tokens per example -> examples
    messages_hist: dict[int, int] = field(default_factory=dict)
    total: int = 0
    billed: int = 0
    max_tokens: int = 0
    max_line: int = 0
    too_long: int = 0
    by_role: dict[str, int] = field(default_factory=dict)
    digests: bytes = b""  # 8 bytes per example (partitions == 1)
    digest_lines: bytes = b""  # uint32 local line numbers, in step with digests
    bytes_done: int = 0


def line_too_long_message(size: int) -> str:
    return f"the line is {size:,} bytes; lines over {MAX_LINE_BYTES:,} bytes are not read"


def skip_long_line(readline: Callable[[int], bytes], first: bytes, limit: int) -> int:
    """Read away the rest of a line whose first `limit` bytes (`first`) hold no newline, a
    piece at a time (never whole); return the line's size in bytes."""
    size, raw = len(first), first
    while raw and raw[-1] != 10:
        raw = readline(limit)
        size += len(raw)
    return size


class Cancelled(Exception):
    """The caller asked to stop."""


_COUNTERS: dict[str, Count] = {}


def _counter(encoding: str) -> Count:
    """One cached counter per encoding per process (the cache outlives one chunk)."""
    if encoding not in _COUNTERS:
        _COUNTERS[encoding] = counter(encoding)
    return _COUNTERS[encoding]


def spill_path(spill_dir: str, partition: int, chunk: int, kind: str) -> str:
    return os.path.join(spill_dir, f"p{partition}.c{chunk}.{kind}")


def scan_chunk(
    path: str, index: int, start: int, end: int, cfg: ScanConfig, tick: Callable[[int], bool] | None = None
) -> ChunkResult:
    """Scan bytes [start, end) of `path`; `tick(bytes_done)` returning True cancels."""
    r = ChunkResult(index)
    count = _counter(cfg.encoding)
    fmt, context, cap, grader_paths = cfg.fmt, cfg.context, cfg.max_issues, cfg.grader_paths
    target_family = FAMILY[fmt]
    errors, warnings, codes = r.errors, r.warnings, r.codes
    hist, messages_hist, by_role = r.hist, r.messages_hist, r.by_role
    chat = target_family == "chat"
    rule = rule_for(fmt, grader_paths)
    sft = fmt == "sft"
    blake2b = hashlib.blake2b
    partitions = cfg.partitions
    digests = bytearray()
    digest_lines = array("I")
    parts_d = [bytearray() for _ in range(partitions)] if partitions > 1 else []
    parts_l = [array("I") for _ in range(partitions)] if partitions > 1 else []

    def flush(p: int) -> None:
        assert cfg.spill_dir is not None
        with open(spill_path(cfg.spill_dir, p, index, "d"), "ab") as out:
            out.write(parts_d[p])
        with open(spill_path(cfg.spill_dir, p, index, "l"), "ab") as out:
            parts_l[p].tofile(out)
        parts_d[p] = bytearray()
        parts_l[p] = array("I")

    def error(line: int, code: str, fld: str | None, message: str) -> None:
        codes[code] = codes.get(code, 0) + 1
        if len(errors) < cap:
            errors.append((line, code, fld, message))

    total = billed = max_tokens = max_line = too_long = 0
    examples = counted = valid = trained = 0
    limit = MAX_LINE_BYTES + 1
    with open(path, "rb") as f:
        f.seek(start)
        readline = f.readline
        pos = start
        line = 0
        next_tick = start + TICK_BYTES
        while pos < end:
            raw = readline(limit)
            if not raw:
                break
            pos += len(raw)
            line += 1
            if pos >= next_tick:
                next_tick = pos + TICK_BYTES
                if tick is not None and tick(pos - start):
                    raise Cancelled()
            if len(raw) == limit and raw[-1] != 10:
                size = skip_long_line(readline, raw, limit)
                pos += size - len(raw)
                examples += 1
                error(line, "line_too_long", None, line_too_long_message(size))
                continue
            if line == 1 and index == 0 and raw.startswith(BOM):
                raw = raw[3:]
                codes["byte_order_mark"] = codes.get("byte_order_mark", 0) + 1
                warnings.append((1, "byte_order_mark", None, "the file starts with a UTF-8 byte order mark; remove it"))
            if raw.isspace() or not raw:
                error(line, "blank_line", None, BLANK_LINE_MESSAGE)
                continue
            examples += 1
            try:
                obj = loads(raw)
            except (ValueError, RecursionError) as exc:
                code, message = _classify(raw, exc)
                error(line, code, None, message)
                continue
            if type(obj) is dict and (("messages" in obj) if chat else family(obj) == target_family):
                found = []
                info = rule(obj, found, count, by_role)
                same_format = True
            else:
                found, info = check_object(obj, fmt, grader_paths)  # not an object, or another format
                same_format = False
            bad = False
            if found:
                for code, fld, message in found:
                    codes[code] = codes.get(code, 0) + 1
                    if code in WARNINGS:
                        if len(warnings) < cap:
                            warnings.append((line, code, fld, message))
                    else:
                        bad = True
                        if len(errors) < cap:
                            errors.append((line, code, fld, message))
            if not bad:
                valid += 1
            if same_format and (info is not None or not chat):
                n = info.tokens + PRIMING_TOKENS if chat else example_tokens(obj, fmt, count, by_role)
                hist[n] = hist.get(n, 0) + 1
                total += n
                counted += 1
                if n > context:
                    too_long += 1
                    billed += context
                    codes["example_too_long"] = codes.get("example_too_long", 0) + 1
                    if len(warnings) < cap:
                        warnings.append(
                            (line, "example_too_long", None,
                             f"the example has {n:,} tokens; the model reads {context:,}, the rest is cut off")
                        )
                else:
                    billed += n
                if n > max_tokens:
                    max_tokens, max_line = n, line
                if chat and info is not None:
                    messages_hist[info.count] = messages_hist.get(info.count, 0) + 1
                    if info.images:
                        r.with_images += 1
                    if sft:
                        if info.trained:
                            trained += 1
                        if "system" in info.roles:
                            r.with_system += 1
                        else:
                            r.missing_system_count += 1
                            if len(r.missing_system) < cap:
                                r.missing_system.append(line)
            if type(obj) is not dict:
                continue
            d = blake2b(canonical(obj), digest_size=8).digest()
            if partitions > 1:
                p = d[0] % partitions
                parts_d[p] += d
                parts_l[p].append(line)
                if len(parts_d[p]) >= _SPILL_FLUSH:
                    flush(p)
            else:
                digests += d
                digest_lines.append(line)
    for p in range(len(parts_d)):
        if parts_d[p]:
            flush(p)
    r.lines, r.examples, r.counted, r.valid, r.trained = line, examples, counted, valid, trained
    r.total, r.billed, r.max_tokens, r.max_line, r.too_long = total, billed, max_tokens, max_line, too_long
    r.digests, r.digest_lines = bytes(digests), digest_lines.tobytes()
    r.bytes_done = pos - start
    if tick is not None:
        tick(pos - start)
    return r
