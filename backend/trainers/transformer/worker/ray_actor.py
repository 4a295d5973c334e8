"""A training run as a Ray actor (worker side): what the worker process does over its pipes,
done over Ray calls instead, on whichever node of the cluster Ray placed it.

The actor is a plain class (the server wraps it with `ray.remote` and the resources the job
asks for), so importing it needs neither Ray nor torch. Each call returns the protocol's
messages in order: the notices the run gave on the way, then the reply (`ready`, `metrics`,
`saved`, or an `error`), exactly as `main.py` writes them on stdout.

Files travel by path: the node must see the backend's data folder and the models folder at
the same paths (a filesystem every node mounts). A node that cannot read them says which
path and which node, rather than failing somewhere inside the training.
"""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path
from typing import Any


class TrainingActor:
    def __init__(self, spec: dict[str, Any]) -> None:
        self._messages: list[dict[str, Any]] = []
        self._session: Any = None
        try:
            _check_paths(spec)
            from .main import TrainingSession

            self._session = TrainingSession(spec, self._notice, _end_actor)
            self._messages.append({"ready": self._session.ready})
        except Exception as exc:  # reported to the server as the worker process reports it
            from .main import _failure

            self._messages.append({"error": _failure(exc, " while preparing")})

    def _notice(self, text: str, level: str = "info") -> None:
        self._messages.append({"notice": text, "level": level})

    def _take(self) -> list[dict[str, Any]]:
        messages, self._messages = self._messages, []
        return messages

    def opened(self) -> list[dict[str, Any]]:
        return self._take()

    def request(self, command: dict[str, Any]) -> list[dict[str, Any]]:
        if self._session is None:
            return [{"error": {"code": "internal_error", "message": "the run did not start", "param": None}}]
        reply = self._session.handle(command)
        return self._take() + ([reply] if reply is not None else [])

    def where(self) -> dict[str, Any]:
        """The node this actor runs on, and the GPUs Ray gave it."""
        import ray

        context = ray.get_runtime_context()
        return {
            "host": socket.gethostname(),
            "node_ip": ray.util.get_node_ip_address(),
            "node_id": context.get_node_id(),
            "gpus": [str(g) for g in ray.get_gpu_ids()],
            "pid": os.getpid(),
        }


def _end_actor(message: str) -> None:
    """Another rank died: end this actor (Ray reports it to the server as a failed call)."""
    print(message, file=sys.stderr, flush=True)
    os._exit(1)


def _check_paths(spec: dict[str, Any]) -> None:
    from tunedeck.backend.trainers.base import TrainingFailure

    needed = [spec.get("training_path"), spec.get("validation_path"), spec.get("initial_weights")]
    needed.append((spec.get("base") or {}).get("path"))
    needed.append((spec.get("resume") or {}).get("checkpoint"))
    for path in needed:
        if path and not Path(path).exists():
            raise TrainingFailure(
                "invalid_request",
                f"The Ray node {socket.gethostname()} cannot read {path}: put the backend's data folder and the "
                "models folder on a filesystem every node mounts at the same path",
            )
