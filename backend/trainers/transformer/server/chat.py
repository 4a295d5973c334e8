"""Chat completions for transformer models, from the server's side (no torch here).

A chat worker process (`worker.py`, `mode: chat`) keeps one model loaded: the last one asked
for. Asking for another model replaces it, so a GPU never holds two chat models next to a
training run. Requests are answered one at a time (a lock), off the event loop.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from tunedeck.backend.errors import ApiError
from tunedeck.backend.trainers.base import TrainingFailure

from .. import install_hint, missing_packages
from .catalog import ModelCatalog
from .checkpoints import is_checkpoint
from .process import WorkerProcess


class TransformerChat:
    def __init__(self, catalog: ModelCatalog, log_dir: Path, env: dict[str, str] | None = None) -> None:
        self.catalog = catalog
        self.log_dir = log_dir
        self.env = env
        self._lock = threading.Lock()
        self._worker: WorkerProcess | None = None
        self._loaded: str | None = None

    def handles(self, name: str, weights: Path | None) -> bool:
        """Whether this model is a transformer (a catalog base model or a transformer checkpoint)."""
        if weights is not None:
            return is_checkpoint(weights)
        return self.catalog.locate(name) is not None

    def answer(self, name: str, weights: Path | None, request: dict[str, Any]) -> dict[str, Any]:
        missing = missing_packages()
        if missing:
            message = f"Cannot run {name[:100]}: {install_hint(missing)}"
            raise ApiError(400, message, param="model", code="trainer_not_installed")
        key = str(weights) if weights is not None else f"base:{name}"
        with self._lock:
            try:
                worker = self._worker_for(key, name, weights)
                return worker.request({"cmd": "chat", "request": request})
            except Exception as failure:  # a worker that failed is replaced on the next request
                self._drop()
                detail = failure.message if isinstance(failure, TrainingFailure) else type(failure).__name__
                raise ApiError(500, f"The model {name[:100]} could not answer: {detail}", param="model") from None

    def _worker_for(self, key: str, name: str, weights: Path | None) -> WorkerProcess:
        if self._worker is not None and self._loaded == key:
            return self._worker
        self._drop()
        spec: dict[str, Any] = {"name": name}
        if weights is not None:
            spec["checkpoint"] = str(weights)
        else:
            source = self.catalog.locate(name)
            if source is None:
                raise TrainingFailure("model_not_found", f"{name} is no longer on this machine")
            spec["base"] = source.as_json()
        self._worker = WorkerProcess({"mode": "chat", "model": spec}, self.log_dir, self.env)
        self._loaded = key
        return self._worker

    def _drop(self) -> None:
        if self._worker is not None:
            self._worker.close()
        self._worker, self._loaded = None, None

    def close(self) -> None:
        with self._lock:
            self._drop()
