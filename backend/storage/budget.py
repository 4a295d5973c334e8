"""The disk the backend may fill: a total budget for what it keeps, and free space it leaves.

Counted: uploaded and result files (`files/`, those being received included), uploads in
progress (`uploads/`) and trained weights (`models/`). Not counted: the open models the
user put in `base-models/`, logs and the database. An upload that would pass the budget,
or leave less than the reserve free on the disk, is refused with 507 before its bytes are
kept; one already streaming is stopped at the byte that passes either line.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

from ..errors import ApiError

DEFAULT_STORAGE_LIMIT_BYTES = 100 * 2**30
DEFAULT_MIN_FREE_DISK_BYTES = 2**30
FREE_RECHECK_BYTES = 64 * 2**20


class DiskBudget:
    def __init__(self, data_dir: Path, folders: Sequence[Path], limit_bytes: int, min_free_bytes: int) -> None:
        if limit_bytes < 0 or min_free_bytes < 0:
            raise ValueError("storage limits must be non-negative numbers of bytes")
        self.data_dir = data_dir
        self.folders = list(folders)
        self.limit_bytes = limit_bytes
        self.min_free_bytes = min_free_bytes

    def used(self) -> int:
        """Bytes the backend keeps now (a walk of its folders: uploads are rare, walks are short)."""
        total = 0
        pending = [str(folder) for folder in self.folders]
        while pending:
            try:
                entries = list(os.scandir(pending.pop()))
            except (FileNotFoundError, NotADirectoryError):
                continue
            for entry in entries:
                try:
                    if entry.is_dir(follow_symlinks=False):
                        pending.append(entry.path)
                    elif entry.is_file(follow_symlinks=False):
                        total += entry.stat(follow_symlinks=False).st_size
                except FileNotFoundError:  # deleted while we looked
                    continue
        return total

    def free(self) -> int:
        return shutil.disk_usage(self.data_dir).free

    async def meter(self, expected: int = 0) -> Meter:
        """Start receiving about `expected` bytes: refused now when they cannot fit. The walk
        of the folders runs off the event loop (models/ may hold many checkpoints)."""
        used, free = await asyncio.to_thread(lambda: (self.used(), self.free()))
        meter = Meter(self, used, free)
        meter.check(expected, free)
        return meter

    def require_free(self, more: int) -> None:
        """Refuse writing `more` bytes that only pass through (assembling an upload's parts)."""
        free = self.free()
        Meter(self, 0, free, count_budget=False).check(more, free)


class Meter:
    """Bytes being received by one request, checked against the budget as they come."""

    def __init__(self, budget: DiskBudget, used: int, free: int, *, count_budget: bool = True) -> None:
        self._budget = budget
        self._used = used
        self._received = 0
        self._count_budget = count_budget
        self._free = free  # as last asked of the disk; less what this request wrote since
        self._unasked = 0

    def add(self, size: int) -> None:
        """`size` more bytes are about to be written. The disk is asked again only after each
        FREE_RECHECK_BYTES (it is one system call, and chunks are 1 MiB); in between, what
        this request wrote is taken off the last answer."""
        self._received += size
        self._unasked += size
        if self._unasked >= FREE_RECHECK_BYTES:
            self._free, self._unasked = self._budget.free(), size
        self._free -= size
        self.check(0, self._free)

    def check(self, more: int, free: int) -> None:
        budget = self._budget
        total = self._used + self._received + more
        if self._count_budget and total > budget.limit_bytes:
            raise ApiError(
                507,
                f"Not enough storage: the local backend keeps {_size(self._used)} of its {_size(budget.limit_bytes)} "
                f"storage limit, and this upload needs {_size(self._received + more)} more. Delete files or "
                "fine-tuned models you no longer need, or start the backend with a larger storage limit.",
                type="server_error",
                code="insufficient_storage",
            )
        if free - more < budget.min_free_bytes:
            raise ApiError(
                507,
                f"Not enough storage: the disk holding the local backend's data has {_size(max(free, 0))} free, "
                f"and the backend keeps at least {_size(budget.min_free_bytes)} free; this upload needs "
                f"{_size(self._received + more)}. Free some disk space and try again.",
                type="server_error",
                code="insufficient_storage",
            )


def _size(count: int) -> str:
    value = float(count)
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if value < 1024:
            return f"{count} bytes" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"
