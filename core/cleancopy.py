"""Write a copy of a JSONL file without its invalid lines; the original is never touched.

Which lines are invalid comes from the validator: either the caller passes the line
numbers of a complete error list (a byte copy that skips them: fast at any size), or every
line is checked again with the validator's own per-line checker (`check_line`), which the
caller must do when the report's error list was cut short. The copy is written to a new
file that must not exist (opened with O_EXCL), and removed again if anything fails; with
`overwrite` (the user agreed) it is written beside the target and moved over it once whole,
so a failed copy leaves the old file as it was.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Collection

from .datasets.codes import WARNINGS
from .lineindex import Cancelled

Progress = Callable[[int, int], None]
BUFFER_BYTES = 1024 * 1024


class CleanCopyError(Exception):
    """The copy could not be written (target exists, unreadable source, cancelled)."""


@dataclass
class CleanCopyResult:
    source: Path
    target: Path
    kept: int
    dropped: int
    dropped_lines: list[int] = field(default_factory=list)
    """The first dropped line numbers (at most 1,000), for the message."""


def clean_copy_path(path: str | os.PathLike[str]) -> Path:
    """`train.jsonl` -> `train.clean.jsonl` (next to the original)."""
    source = Path(path)
    stem = source.name[: -len(".jsonl")] if source.name.endswith(".jsonl") else source.stem
    return source.with_name(f"{stem}.clean.jsonl")


def write_clean_copy(
    path: str | os.PathLike[str],
    fmt: str,
    *,
    bad_lines: Collection[int] | None = None,
    target: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
    cancelled: Cancelled | None = None,
    progress: Progress | None = None,
) -> CleanCopyResult:
    """Copy `path` to `target` (default `clean_copy_path`) leaving out invalid lines.

    `bad_lines`: the 1-based numbers to drop, when known completely; otherwise each line is
    checked as format `fmt` and dropped when it has an error (warnings keep it).
    """
    source = Path(path)
    out_path = Path(target) if target is not None else clean_copy_path(source)
    if out_path.exists() and out_path.resolve() == source.resolve():
        raise CleanCopyError(f"{out_path} is the original file")
    write_path = out_path.with_name(out_path.name + ".part") if overwrite else out_path
    try:
        total = source.stat().st_size
        flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if overwrite else os.O_EXCL)
        out_fd = os.open(write_path, flags, 0o644)
    except FileExistsError:
        raise CleanCopyError(f"{out_path} exists; choose another name or agree to overwrite it") from None
    except OSError as exc:
        raise CleanCopyError(f"cannot write {out_path}: {exc.strerror or exc}") from None
    is_bad = _line_judge(fmt, bad_lines)
    result = CleanCopyResult(source, out_path, 0, 0)
    try:
        with source.open("rb") as src, os.fdopen(out_fd, "wb", buffering=BUFFER_BYTES) as out:
            done = 0
            for number, raw in enumerate(src, start=1):
                done += len(raw)
                if number % 4096 == 0:
                    if cancelled is not None and cancelled():
                        raise CleanCopyError("cancelled")
                    if progress is not None:
                        progress(done, total)
                if is_bad(number, raw):
                    result.dropped += 1
                    if len(result.dropped_lines) < 1000:
                        result.dropped_lines.append(number)
                    continue
                out.write(raw if raw.endswith(b"\n") else raw + b"\n")
                result.kept += 1
        if write_path != out_path:
            os.replace(write_path, out_path)
    except BaseException as exc:
        write_path.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise CleanCopyError(f"cannot copy {source}: {exc.strerror or exc}") from None
        raise
    if progress is not None:
        progress(total, total)
    return result


def _line_judge(fmt: str, bad_lines: Collection[int] | None) -> Callable[[int, bytes], bool]:
    if bad_lines is not None:
        bad = set(bad_lines)
        return lambda number, raw: number in bad
    from .datasets import check_line

    def has_error(number: int, raw: bytes) -> bool:
        return any(code not in WARNINGS for code, _field, _message in check_line(raw, fmt))

    return has_error
