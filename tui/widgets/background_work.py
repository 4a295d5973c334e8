"""What the dataset browser's thread workers share: running heavy work below the UI's CPU
priority, starting multiprocessing's resource tracker where the app captured stderr, and
one stop check for a closed file or a cancelled worker."""

from __future__ import annotations

import os
import sys
import threading
from typing import Any, Callable, TypeVar

from textual.worker import get_current_worker

BACKGROUND_NICE = 10
T = TypeVar("T")


def start_resource_tracker() -> None:
    """Start multiprocessing's resource tracker with a usable stderr, once.

    The validator runs big files in worker processes, whose pool starts the tracker lazily,
    handing it `sys.stderr.fileno()`. Inside a Textual app that is the app's print capture,
    whose fileno() is -1, and the start fails ("bad value(s) in fds_to_keep"). Started here
    first, with stderr pointed at /dev/null for that moment, the pool finds it running.
    """
    from multiprocessing import resource_tracker

    try:
        if sys.stderr is not None and sys.stderr.fileno() >= 0:
            return
    except (AttributeError, OSError, ValueError):
        pass
    with open(os.devnull, "w") as null:
        captured, sys.stderr = sys.stderr, null
        try:
            resource_tracker.ensure_running()
        finally:
            sys.stderr = captured


def at_low_priority(work: Callable[[], T]) -> T:
    """Run `work` in a new thread whose CPU priority is below the UI's; wait for its result.

    On Linux the nice value belongs to the calling thread, and processes spawned from it
    inherit it: the validator's worker processes then run below the UI too. The thread is a
    new one because Textual's thread workers share a pool, and a thread cannot take back
    its priority once lowered. Elsewhere nice would slow the whole app, so it is left alone.
    """
    outcome: list[Any] = []

    def run() -> None:
        if sys.platform.startswith("linux"):
            try:
                os.nice(BACKGROUND_NICE)
            except OSError:
                pass
        try:
            outcome.append((True, work()))
        except BaseException as exc:  # handed to the caller's thread below
            outcome.append((False, exc))

    thread = threading.Thread(target=run, name="tunedeck-background", daemon=True)
    thread.start()
    thread.join()
    ok, value = outcome[0]
    if not ok:
        raise value
    return value


def stopper(event: threading.Event) -> Callable[[], bool]:
    """True once `event` is set or the calling worker was cancelled (call it in the worker)."""
    worker = get_current_worker()
    return lambda: event.is_set() or worker.is_cancelled
