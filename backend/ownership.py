"""One local backend per data directory, across processes.

The app, `tunedeck serve` and the headless CLI may all want the backend of the same data
directory. Two servers on one store would both train the same re-queued jobs, so the first
one takes an exclusive lock and publishes its address; later ones attach to that address.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import IO

from .storage.private import open_private, private_dir, write_private

try:  # POSIX; on Windows every process gets its own backend (no cross-process sharing)
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

LOCK_NAME = "backend.lock"
ENDPOINT_NAME = "endpoint.json"


class BackendBusy(Exception):
    """Another live process serves this data directory, at `base_url` (None if not yet known)."""

    def __init__(self, data_dir: Path, base_url: str | None) -> None:
        where = base_url or "an address it has not published yet"
        super().__init__(f"{data_dir} is already served by another tunedeck process at {where}")
        self.base_url = base_url


class Ownership:
    """Holds the lock for a data directory while a backend serves it."""

    def __init__(self, data_dir: Path, handle: IO[str] | None) -> None:
        self.data_dir = data_dir
        self._handle = handle

    @classmethod
    def claim(cls, data_dir: Path) -> Ownership:
        """Take the directory, or raise `BackendBusy` naming the process that has it."""
        private_dir(data_dir)
        if fcntl is None:  # pragma: no cover
            return cls(data_dir, None)
        open_private(data_dir / LOCK_NAME, append=True).close()  # owner-only, like all the backend keeps
        handle = (data_dir / LOCK_NAME).open("a+")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise BackendBusy(data_dir, running_base_url(data_dir)) from None
        # An endpoint file left by a process that died points at a dead address and pid: gone
        # before anyone can read it beside a live lock (`publish` writes ours once listening).
        (data_dir / ENDPOINT_NAME).unlink(missing_ok=True)
        return cls(data_dir, handle)

    def publish(self, base_url: str) -> None:
        body = json.dumps({"base_url": base_url, "pid": os.getpid()})
        write_private(self.data_dir / ENDPOINT_NAME, body.encode("utf-8"))

    def release(self) -> None:
        (self.data_dir / ENDPOINT_NAME).unlink(missing_ok=True)
        if self._handle is not None:
            self._handle.close()  # closing the file drops the flock
            self._handle = None


def is_served(data_dir: Path) -> bool:
    """True while some live process holds the data directory's lock (probed, not taken)."""
    lock = data_dir / LOCK_NAME
    if fcntl is None:  # pragma: no cover - Windows: trust the endpoint file
        return (data_dir / ENDPOINT_NAME).exists()
    if not lock.exists():
        return False
    with lock.open("a+") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
        return False


def read_endpoint(data_dir: Path) -> tuple[str, int] | None:
    """The base URL and pid the serving process published (None: none, or not yet)."""
    try:
        endpoint = json.loads((data_dir / ENDPOINT_NAME).read_text(encoding="utf-8"))
        base_url, pid = endpoint["base_url"], int(endpoint["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return (base_url, pid) if isinstance(base_url, str) else None


def running_base_url(data_dir: Path) -> str | None:
    endpoint = read_endpoint(data_dir)
    return endpoint[0] if endpoint else None
