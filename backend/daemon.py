"""The local backend as a background service: find it, start it detached, stop it.

Training must outlive the app: a 30-minute-to-24-hour job goes on after the user quits,
closes the laptop lid's terminal or loses SSH. So the app does not serve from its own
process; it finds the service that serves its data directory, or starts one in a new
session (no controlling terminal, so no hang-up signal reaches it), with its output in
`<data_dir>/logs/serve.log`. `tunedeck serve --detach/--stop/--status` use the same calls.

Whether a service runs is decided by the data directory's lock (`ownership.py`): a live
process holds it, a dead one cannot, so a stale endpoint file after a crash never fools
anyone. The endpoint file then says where it listens and which process it is.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from .ownership import is_served, read_endpoint
from .storage.private import open_private, private_dir

SERVE_LOG = Path("logs") / "serve.log"
START_TIMEOUT_S = 60.0  # a cold start imports aiohttp and numpy; a slow disk takes its time
STOP_TIMEOUT_S = 60.0  # a graceful stop lets in-flight training steps finish
LOG_TAIL_BYTES = 2000
MAX_LOG_BYTES = 10 * 1024 * 1024  # past this the log is rotated once, at the next start


class DaemonError(Exception):
    """The background service could not be started or stopped; the message says why and where."""


@dataclass(frozen=True, slots=True)
class RunningBackend:
    """A live backend process serving a data directory."""

    base_url: str
    pid: int
    data_dir: Path

    @property
    def log_file(self) -> Path:
        return self.data_dir / SERVE_LOG


def find_running(data_dir: Path) -> RunningBackend | None:
    """The service that serves `data_dir`, or None when none does (or it has not said where yet)."""
    data_dir = Path(data_dir)
    if not is_served(data_dir):
        return None
    endpoint = read_endpoint(data_dir)
    if endpoint is None:
        return None  # starting: it holds the lock but has not published its address
    return RunningBackend(base_url=endpoint[0], pid=endpoint[1], data_dir=data_dir)


def start_detached(
    data_dir: Path,
    command: Sequence[str],
    *,
    timeout: float = START_TIMEOUT_S,
    sleep: Callable[[float], None] = time.sleep,
) -> RunningBackend:
    """Run `command` (a foreground `serve` of `data_dir`) in a session of its own and wait
    until it listens. When another process wins the race to serve `data_dir`, that one is
    returned. Raises `DaemonError` quoting the log when the service exits or never answers."""
    data_dir = Path(data_dir)
    log_path = data_dir / SERVE_LOG
    private_dir(log_path.parent)
    _rotate(log_path)
    with open_private(log_path, append=True) as log:
        log.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} starting: {' '.join(command)}\n".encode())
        log.flush()
        process = subprocess.Popen(
            list(command),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            close_fds=True,
            **_detached_kwargs(),
        )
    deadline = time.monotonic() + timeout
    while True:
        running = find_running(data_dir)
        if running is not None and running.pid == process.pid:
            return running
        code = process.poll()
        if code is not None:
            if running is not None:  # someone else serves it: use that one
                return running
            raise DaemonError(f"the local backend exited at start (code {code}); {log_path} says:\n{_tail(log_path)}")
        if time.monotonic() > deadline:
            raise DaemonError(f"the local backend did not start within {timeout:.0f} s; see {log_path}")
        sleep(0.05)


def stop_running(
    data_dir: Path, *, timeout: float = STOP_TIMEOUT_S, sleep: Callable[[float], None] = time.sleep
) -> RunningBackend | None:
    """Ask the service of `data_dir` to stop (SIGTERM: it stops taking requests and lets the
    steps in flight finish; unfinished jobs resume at its next start) and wait until it has.
    Returns what was stopped, None when nothing ran."""
    running = find_running(Path(data_dir))
    if running is None:
        return None
    try:
        os.kill(running.pid, signal.SIGTERM)
    except ProcessLookupError:
        return running
    except PermissionError:
        raise DaemonError(f"process {running.pid} serves {data_dir} but belongs to another user") from None
    deadline = time.monotonic() + timeout
    while is_served(Path(data_dir)):
        if time.monotonic() > deadline:
            raise DaemonError(
                f"the local backend (pid {running.pid}) did not stop within {timeout:.0f} s; see {running.log_file}"
            )
        sleep(0.05)
    return running


def _detached_kwargs() -> dict[str, object]:
    if sys.platform == "win32":  # pragma: no cover
        flags = getattr(subprocess, "DETACHED_PROCESS", 0) | getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0)
        return {"creationflags": flags}
    return {"start_new_session": True}


def _rotate(log_path: Path) -> None:
    try:
        if log_path.stat().st_size > MAX_LOG_BYTES:
            log_path.replace(log_path.with_name(log_path.name + ".1"))
    except OSError:
        pass


def _tail(path: Path) -> str:
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - LOG_TAIL_BYTES))
            return handle.read().decode("utf-8", "replace").strip()
    except OSError as exc:
        return f"(cannot read it: {exc.strerror})"
