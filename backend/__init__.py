"""The local backend: an OpenAI-compatible fine-tuning API on loopback that trains for real.

This module is the backend's front door: the app, the CLI and the tests outside
`tests/test_local_*` use only the names below (an import contract checks it).

- `LocalBackend(data_dir, ...)` runs it (`start()`/`stop()` in a thread of its own, or
  `start_async()`/`stop_async()` in the caller's loop); `serve(...)` runs it in the
  foreground for `tunedeck serve` (`model_aliases`: other names for its models; a bad table
  raises `AliasError`). `BackendBusy`: another process already runs the backend
  of that data directory (its URL is attached). `FaultConfigError`: a bad `--faults` plan.
- `find_running(data_dir)`, `start_detached(data_dir, command)`, `stop_running(data_dir)`:
  the backend as a background service that outlives the app (`daemon.py`); a
  `RunningBackend` says where one listens; `DaemonError` why one did not start or stop.
- `load_or_create_api_key(data_dir)` and `api_key_file(data_dir)`: the per-install key every
  request to the backend of `data_dir` must carry (`Authorization: Bearer <key>`), and the
  owner-only file that keeps it.
- `BUILTIN_BASE_MODEL`: the model the built-in CPU trainer fine-tunes.
- `default_models_dirs(fallback)` and `models_report(models_dirs)`: where the transformer
  trainer looks for open models and what it finds there (`tunedeck models`).
- `check_grader(grader)` and `run_grader(grader, model_sample, item)`: the RFT grader code
  without HTTP (the app's grader editor): the error `graders/validate` would answer (None
  when valid), and the body `graders/run` would (`{"error": ...}` when it refuses).

Inside: `local_backend.py` wires `http/` (the aiohttp server and its routes) to
`storage/` (SQLite store, blobs, uploads) and `jobs/` (the engine and each job state's
work), which drives `trainers/` (`base.py` is their contract; `ngram/` the built-in CPU
model; `transformer/` open models in worker processes). `graders/` grades RFT answers and
`/graders/run`; `inference.py` answers chat completions and `responses.py` the Responses
API's subset that fine-tuning code asks with. Dataset rules come from
`tunedeck.core.datasets`, the app's own, so both agree on what is valid.

Heavy modules (aiohttp, numpy) load only when a name that needs them is first used, so
reading `BUILTIN_BASE_MODEL` stays cheap.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

BUILTIN_BASE_MODEL = "tunedeck-ngram"

if TYPE_CHECKING:  # pragma: no cover
    from .aliases import AliasError
    from .daemon import DaemonError, RunningBackend, find_running, start_detached, stop_running
    from .graders.grader import check_grader, run_grader
    from .http.faults import FaultConfigError
    from .local_backend import LocalBackend, serve
    from .ownership import BackendBusy
    from .storage.api_key import ApiKeyFileError, api_key_file, load_or_create_api_key
    from .trainers.transformer.server.catalog import default_models_dirs, models_report

# name -> the module that defines it, imported on first use
_LAZY = {
    "AliasError": ".aliases",
    "LocalBackend": ".local_backend",
    "serve": ".local_backend",
    "BackendBusy": ".ownership",
    "FaultConfigError": ".http.faults",
    "ApiKeyFileError": ".storage.api_key",
    "api_key_file": ".storage.api_key",
    "load_or_create_api_key": ".storage.api_key",
    "DaemonError": ".daemon",
    "RunningBackend": ".daemon",
    "find_running": ".daemon",
    "start_detached": ".daemon",
    "stop_running": ".daemon",
    "default_models_dirs": ".trainers.transformer.server.catalog",
    "models_report": ".trainers.transformer.server.catalog",
    "check_grader": ".graders.grader",
    "run_grader": ".graders.grader",
}

__all__ = [
    "BUILTIN_BASE_MODEL",
    "AliasError",
    "ApiKeyFileError",
    "BackendBusy",
    "DaemonError",
    "FaultConfigError",
    "LocalBackend",
    "RunningBackend",
    "api_key_file",
    "check_grader",
    "default_models_dirs",
    "find_running",
    "load_or_create_api_key",
    "models_report",
    "run_grader",
    "serve",
    "start_detached",
    "stop_running",
]
assert set(__all__) == {"BUILTIN_BASE_MODEL", *_LAZY}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
