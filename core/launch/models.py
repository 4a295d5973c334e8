"""The base models a launch can pick from, as the provider lists them (`GET /models`).

Nothing here is hard-coded as available: the list is the provider's. What is known about
a listed id (which methods OpenAI fine-tunes it with, its training price) comes from the
dated table in `tunedeck.core.datasets.models`; the local backend says itself which of its
models train, with their size on disk (the `tunedeck` field of its model objects). Order:
the ones known to fine-tune first, then fine-tuned models (continue training from them),
then everything else, which may still be tried.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from tunedeck.core.datasets.detect import API_METHOD_FORMATS
from tunedeck.core.datasets.models import model_info

from ..describe import byte_size

SHUTDOWN_WARNING_DAYS = 90
"""A base model retiring within this many days gets a warning before launch."""



@dataclass(frozen=True, slots=True)
class ModelChoice:
    id: str
    owned_by: str = ""
    created: int | None = None
    shutdown_date: str | None = None
    """"YYYY-MM-DD" when the provider retires the model, as `GET /models` says."""
    fine_tunable: bool = False
    """The provider (or the price table) says it can be fine-tuned."""
    fine_tuned: bool = False
    """An `ft:` model: a job can continue training it."""
    size: str = ""
    """How big it is, when the provider says (the local backend's open models)."""
    methods: tuple[str, ...] = ()
    """Methods known to train it (empty: not known; the provider decides)."""
    tunedeck: bool = False
    """Listed by a tunedeck backend (it describes its models under `tunedeck`): the server
    takes tunedeck's own job options, wherever it runs."""

    @property
    def group(self) -> int:
        return 0 if self.fine_tunable else 1 if self.fine_tuned else 2

    def trains(self, method: str) -> bool | None:
        """Whether `method` is known to train this model (None: unknown)."""
        if not self.methods:
            return None
        return API_METHOD_FORMATS.get(method, method) in self.methods

    def days_left(self, today: dt.date) -> int | None:
        if not self.shutdown_date:
            return None
        try:
            return (dt.date.fromisoformat(self.shutdown_date[:10]) - today).days
        except ValueError:
            return None

    def shutdown_warning(self, today: dt.date) -> str | None:
        """A sentence when the model is retired or retires soon; None otherwise."""
        days = self.days_left(today)
        if days is None or days > SHUTDOWN_WARNING_DAYS:
            return None
        if days < 0:
            return f"{self.id} was retired on {self.shutdown_date}"
        return f"{self.id} retires on {self.shutdown_date} (in {days} day{'s' if days != 1 else ''})"

    def label(self, today: dt.date) -> str:
        """One line for the model list: id, then what matters for choosing it."""
        notes = []
        if self.size:
            notes.append(self.size)
        if self.fine_tuned:
            notes.append("fine-tuned: continue training")
        elif self.methods:
            notes.append(" ".join(m.upper() for m in self.methods))
        days = self.days_left(today)
        if days is not None:
            notes.append(f"retired {self.shutdown_date}" if days < 0 else f"retires {self.shutdown_date}")
        return f"{self.id}  ·  {' · '.join(notes)}" if notes else self.id


def model_choice(raw: dict[str, Any]) -> ModelChoice:
    """One `Model` object as the launch form shows it."""
    model_id = str(raw.get("id") or "")
    details = raw.get("tunedeck") if isinstance(raw.get("tunedeck"), dict) else {}
    size = ""
    if isinstance(details.get("size_bytes"), int):
        size = byte_size(details["size_bytes"])
    elif isinstance(details.get("size"), str):
        size = details["size"]
    info = model_info(model_id)
    fine_tuned = model_id.startswith("ft:")
    known = info.known and not fine_tuned
    fine_tunable = bool(details.get("fine_tunable")) or known
    return ModelChoice(
        id=model_id,
        owned_by=str(raw.get("owned_by") or ""),
        created=raw.get("created") if isinstance(raw.get("created"), int) else None,
        shutdown_date=raw.get("shutdown_date") if isinstance(raw.get("shutdown_date"), str) else None,
        fine_tunable=fine_tunable,
        fine_tuned=fine_tuned,
        size=size,
        methods=info.methods if known else (),
        tunedeck="tunedeck" in raw,
    )


def model_choices(raw_models: list[dict[str, Any]]) -> list[ModelChoice]:
    """The provider's models, fine-tunable first (by name), then fine-tuned ones (newest
    first), then the rest (by name)."""
    choices = [model_choice(m) for m in raw_models if m.get("id")]
    return sorted(choices, key=lambda c: (c.group, -(c.created or 0) if c.fine_tuned else 0, c.id))
