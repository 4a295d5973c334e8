"""Text search across an indexed file: streamed, cancellable, one hit per matching line.

The search reads the file in chunks that end on a newline and runs one compiled regex over
each chunk: the C loop never holds the GIL longer than a chunk takes (about a millisecond),
so a UI thread beside it stays responsive. Lines are found from the byte offset of a match
through the line index (waiting for the index where the scan has not reached yet).

What is searched is the line's JSON text, so the pattern is also tried in its JSON-escaped
forms (`"` as `\\"`, non-ASCII as `\\uXXXX`). Smart case: case-insensitive unless the
pattern holds an upper-case letter.
"""

from __future__ import annotations

import json
import re
import time
from array import array
from bisect import bisect_left, bisect_right
from dataclasses import dataclass, field
from typing import Callable

from .lineindex import Cancelled, LineIndex

CHUNK_BYTES = 1024 * 1024
REPORT_EVERY_S = 0.1
WAIT_S = 0.05
"""How often a search waiting for the index checks whether it was cancelled."""

OnProgress = Callable[["SearchProgress"], None]


@dataclass(frozen=True, slots=True)
class SearchProgress:
    """Matching lines found since the last report (ascending within one pass), and how far."""

    lines: array
    scanned_bytes: int
    total_bytes: int
    wrapped: bool
    """True once the search has gone past the end and continues from line 1."""


@dataclass(slots=True)
class SearchResult:
    lines: array = field(default_factory=lambda: array("q"))
    """Matching line numbers in the order found: from `start_line` to the end, then from 1."""
    cancelled: bool = False

    @property
    def count(self) -> int:
        return len(self.lines)


@dataclass(frozen=True, slots=True)
class Pattern:
    """A compiled search: `regex` runs on the chunk, lower-cased first when `fold_case`."""

    text: str
    regex: re.Pattern[bytes]
    fold_case: bool


def compile_pattern(text: str) -> Pattern:
    """`text` literally, raw or as JSON would escape it; smart case.

    Case folding lower-cases each chunk (`bytes.lower`, ASCII only) rather than using
    `re.IGNORECASE`, which is about ten times slower on bytes.
    """
    if not text:
        raise ValueError("empty search")
    fold_case = not any(ch.isupper() for ch in text)
    forms = {text, json.dumps(text)[1:-1], json.dumps(text, ensure_ascii=False)[1:-1]}
    encoded = {form.encode("utf-8", "surrogatepass") for form in forms}
    if fold_case:
        encoded = {form.lower() for form in encoded}
    alternatives = sorted((re.escape(form) for form in encoded), key=len, reverse=True)
    return Pattern(text, re.compile(b"|".join(alternatives)), fold_case)


def search(
    index: LineIndex,
    pattern: str | Pattern,
    start_line: int = 1,
    cancelled: Cancelled | None = None,
    on_progress: OnProgress | None = None,
    chunk_bytes: int = CHUNK_BYTES,
    report_every_s: float = REPORT_EVERY_S,
) -> SearchResult:
    """Every line matching `pattern`, from `start_line` to the end, then from line 1 up to it.

    Call it in a worker thread. `on_progress` gets the new hits at most every
    `report_every_s` seconds, and once more at the end (also after a cancel).
    """
    compiled = compile_pattern(pattern) if isinstance(pattern, str) else pattern
    result = SearchResult()
    if index.size == 0:
        _report(on_progress, array("q"), 0, 0, False)
        return result
    start_offset = _line_offset(index, start_line)
    pending = array("q")
    scanned = 0
    last_report = time.monotonic()
    for wrapped, (begin, stop) in enumerate(((start_offset, index.size), (0, start_offset))):
        at = begin
        while at < stop:
            if (cancelled is not None and cancelled()) or index.closed:
                result.cancelled = True
                _report(on_progress, pending, scanned, index.size, bool(wrapped))
                return result
            end = _chunk_end(index, at, min(stop, at + chunk_bytes))
            if not _scan_chunk(index, compiled, at, end, pending, result.lines, cancelled):
                result.cancelled = True
                _report(on_progress, pending, scanned, index.size, bool(wrapped))
                return result
            scanned += end - at
            at = end
            now = time.monotonic()
            if now - last_report >= report_every_s:
                _report(on_progress, pending, scanned, index.size, bool(wrapped))
                pending = array("q")
                last_report = now
    _report(on_progress, pending, index.size, index.size, True)
    return result


def _report(on_progress: OnProgress | None, lines: array, scanned: int, total: int, wrapped: bool) -> None:
    if on_progress is not None:
        on_progress(SearchProgress(lines, scanned, total, wrapped))


def _line_offset(index: LineIndex, line: int) -> int:
    """Where `line` starts (0 when it is not indexed yet: the search then starts at the top)."""
    if line <= 1:
        return 0
    try:
        return index.span(line)[0]
    except IndexError:
        return 0


def _chunk_end(index: LineIndex, at: int, want: int) -> int:
    """`want`, moved forward to just after the next newline (so no line is cut)."""
    if want >= index.size:
        return index.size
    tail = index.read_at(64 * 1024, want - 1)
    while True:
        newline = tail.find(b"\n")
        if newline != -1:
            return want + newline
        if len(tail) < 64 * 1024:
            return index.size
        want += len(tail)
        tail = index.read_at(64 * 1024, want - 1)


def _scan_chunk(
    index: LineIndex, pattern: Pattern, begin: int, end: int, pending: array, found: array, cancelled: Cancelled | None
) -> bool:
    """Add the chunk's matching lines; False when cancelled while waiting for the index."""
    data = index.read_at(end - begin, begin)
    if pattern.fold_case:
        data = data.lower()
    search_in = pattern.regex.search
    at = 0
    while True:
        match = search_in(data, at)
        if match is None:
            return True
        offset = begin + match.start()
        while not index.wait_for_offset(offset, timeout=WAIT_S):  # the scan has not got here yet
            if index.closed or (cancelled is not None and cancelled()):
                return False
        line = index.line_at_offset(offset)
        pending.append(line)
        found.append(line)
        newline = data.find(b"\n", match.end())
        if newline == -1:
            return True
        at = newline + 1


class SearchMatches:
    """The matching lines of one search as they stream in, for navigation and marks.

    A search runs from `start_line` to the end, then from line 1: hits at or after the
    start and hits before it are kept apart, each ascending, so the sorted whole is one
    concatenation (cached until more hits arrive).
    """

    def __init__(self, text: str, start_line: int) -> None:
        self.text = text
        self.start_line = start_line
        self._after = array("q")
        self._before = array("q")
        self._sorted: array | None = None
        self.scanned_bytes = 0
        self.total_bytes = 0
        self.finished = False
        self.cancelled = False

    def add(self, progress: SearchProgress) -> None:
        for line in progress.lines:
            (self._after if line >= self.start_line else self._before).append(line)
        if progress.lines:
            self._sorted = None
        self.scanned_bytes, self.total_bytes = progress.scanned_bytes, progress.total_bytes

    @property
    def count(self) -> int:
        return len(self._after) + len(self._before)

    @property
    def first_after_start(self) -> int | None:
        """The first hit from the start line on (where the view goes when hits arrive)."""
        return self._after[0] if self._after else (self._before[0] if self.finished and self._before else None)

    def lines(self) -> array:
        if self._sorted is None:
            self._sorted = self._before + self._after
        return self._sorted

    def __contains__(self, line: int) -> bool:
        lines = self.lines()
        at = bisect_left(lines, line)
        return at < len(lines) and lines[at] == line

    def next_after(self, line: int) -> int | None:
        """The next hit after `line`, wrapping to the first."""
        lines = self.lines()
        if not lines:
            return None
        at = bisect_right(lines, line)
        return lines[at] if at < len(lines) else lines[0]

    def previous_before(self, line: int) -> int | None:
        lines = self.lines()
        if not lines:
            return None
        at = bisect_left(lines, line)
        return lines[at - 1] if at > 0 else lines[-1]
