"""Messages the dataset browser's workers post to it (workers never touch widgets).

Each carries the `generation` of the file it is about, so a message from the file shown
before is recognised and dropped. Dataclasses as in `messages.py` (same reasons for
`eq=False, repr=False`). Progress reports (`IndexAdvanced`, `ValidationProgressed`,
`SearchProgressed`) define `can_replace`: when a newer report of the same task is already
queued, the older one is dropped, so a busy background thread never floods the screen with
stale progress.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from textual.message import Message

if TYPE_CHECKING:  # pragma: no cover
    from tunedeck.core.datasample import Distributions
    from tunedeck.core.datasets import ValidationReport
    from tunedeck.core.linesearch import SearchProgress


@dataclass(eq=False, repr=False)
class IndexAdvanced(Message):
    """The line index of the open file grew (or completed)."""

    generation: int
    complete: bool

    def can_replace(self, message: Message) -> bool:
        # The handler reads the index itself, so a newer report says all this one does.
        return isinstance(message, IndexAdvanced) and message.generation == self.generation


@dataclass(eq=False, repr=False)
class DatasetTaskFailed(Message):
    """A background task on the open file failed; `task` names it ("index", "validation"…).
    `message` is the error as raised (it may quote the file's name): shown through `safe_text`."""

    generation: int
    task: str
    message: str


@dataclass(eq=False, repr=False)
class ValidationProgressed(Message):
    """How many of the open file's lines the validation has checked."""

    generation: int
    done: int
    total: int

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, ValidationProgressed) and message.generation == self.generation


@dataclass(eq=False, repr=False)
class ValidationFinished(Message):
    """The dataset engine's report on the open file."""

    generation: int
    report: ValidationReport


@dataclass(eq=False, repr=False)
class DistributionsLoaded(Message):
    """Histograms of the open file's sampled examples."""

    generation: int
    distributions: Distributions


@dataclass(eq=False, repr=False)
class SearchProgressed(Message):
    """New matching lines of search `search_id`; `finished` on the last one (also cancelled)."""

    generation: int
    search_id: int
    progress: SearchProgress
    finished: bool = False
    cancelled: bool = False

    def can_replace(self, message: Message) -> bool:
        if not (
            isinstance(message, SearchProgressed)
            and message.generation == self.generation
            and message.search_id == self.search_id
        ):
            return False
        # Each report holds only the hits found since the one before: the newer report, which
        # is handled instead of this one, takes this one's hits along (found first, so first).
        message.progress = replace(message.progress, lines=self.progress.lines + message.progress.lines)
        return True


@dataclass(eq=False, repr=False)
class DatasetWritten(Message):
    """A cleaned copy or a split was written; `paths` are the new files."""

    kind: str
    summary: str
    paths: list[Path]
