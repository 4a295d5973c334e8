"""The local backend: an OpenAI-compatible fine-tuning API on loopback that trains for real.

`LocalBackend` (backend.py) runs the HTTP server (server.py + routes_*.py) over a SQLite
store (store.py) and a job engine (engine.py) that drives trainers (trainer.py; the
built-in one is ngram.py). Heavy modules (aiohttp, numpy) load only when `LocalBackend`
or `serve` is first used, so reading `BUILTIN_BASE_MODEL` stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

BUILTIN_BASE_MODEL = "tunedeck-ngram"

if TYPE_CHECKING:  # pragma: no cover
    from .local_backend import LocalBackend, serve

__all__ = ["BUILTIN_BASE_MODEL", "LocalBackend", "serve"]


def __getattr__(name: str) -> Any:
    if name in ("LocalBackend", "serve"):
        from . import local_backend as backend

        return getattr(backend, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
