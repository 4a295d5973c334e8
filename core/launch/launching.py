"""From a checked request to a created job: the files uploaded once, the job created once.

`CheckedLaunch` is a request with its pre-flight and the size and modification time of each
local file when it was checked: a launch refuses a request whose pre-flight blocks, and a
file changed since its check (what was checked is what is sent). `LaunchProgress` is what
the front ends draw while files go up.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..describe import byte_size, duration_text

if TYPE_CHECKING:  # pragma: no cover
    from .preflight import Preflight
    from .request import LaunchRequest
    from .uploads import UploadProgress

Stamp = tuple[int, int]  # size, mtime in ns


def file_stamp(path: Path) -> Stamp:
    info = os.stat(path)
    return info.st_size, info.st_mtime_ns


def request_files(request: LaunchRequest) -> list[tuple[str, Path]]:
    """The local files a request names, by role ("training", "validation")."""
    files = [("training", request.training_path), ("validation", request.validation_path)]
    return [(role, path) for role, path in files if path is not None]


@dataclass(frozen=True, slots=True)
class CheckedLaunch:
    request: LaunchRequest
    preflight: Preflight
    stamps: tuple[tuple[Path, Stamp], ...]
    launch_tag: str = field(default_factory=lambda: uuid.uuid4().hex[:16])
    """The create's tag (metadata and Idempotency-Key), made once: launching this again after
    an answer was lost finds the job the first try made instead of making a second one."""

    def changed_files(self) -> list[Path]:
        """Files whose size or modification time differ from when they were checked (or
        that are gone)."""
        changed = []
        for path, stamp in self.stamps:
            try:
                now = file_stamp(path)
            except OSError:
                now = None
            if now != stamp:
                changed.append(path)
        return changed


def stamps_of(request: LaunchRequest) -> tuple[tuple[Path, Stamp], ...]:
    return tuple((path, file_stamp(path)) for _, path in request_files(request))


@dataclass(frozen=True, slots=True)
class LaunchProgress:
    role: str
    """"training" or "validation": which file this is about; "job": the files are up and the
    job is being created (no upload; it can no longer be cancelled)."""
    upload: UploadProgress | None = None

    @property
    def sent(self) -> int:
        return self.upload.sent if self.upload is not None else 0

    @property
    def total(self) -> int:
        return self.upload.total if self.upload is not None else 0

    def describe(self) -> str:
        """One line: what, how far, how fast, how long."""
        u = self.upload
        if u is None:
            return "creating the job (it can no longer be cancelled)"
        what = {
            "hashing": "reading",
            "checking": "looking for an identical upload of",
            "uploading": "uploading",
            "resuming": "resuming the upload of",
            "reused": "reusing the upload of",
            "done": "uploaded",
        }.get(u.phase, u.phase)
        line = f"{self.role} file: {what} {u.name}"
        if u.total and u.phase in ("hashing", "uploading", "resuming"):
            line += f" · {byte_size(u.sent)} of {byte_size(u.total)}"
            if u.rate > 0:
                line += f" · {byte_size(int(u.rate))}/s"
            if u.eta is not None:
                line += f" · {duration_text(u.eta)} left"
        if u.resumed_from:
            line += f" (resumed at {byte_size(u.resumed_from)})"
        if u.detail:
            line += f" · {u.detail}"
        return line
