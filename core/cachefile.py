"""What the cache does about its file on disk: private permissions, a damaged file moved
aside, and who holds a lock on it.

The cache is a copy of what the provider reports, so a damaged file is never repaired: it
is moved aside (kept for a bug report) and a fresh one refills on the next refresh. A locked
file is never taken over: the user is told which process holds it.
"""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

# SQLite's primary result codes (the low byte of an extended code).
_SQLITE_ERROR, _SQLITE_BUSY, _SQLITE_LOCKED, _SQLITE_CORRUPT, _SQLITE_NOTADB = 1, 5, 6, 11, 26
# SQL errors our fixed statements only meet in a file that is not (or no longer) our schema.
_FOREIGN_SCHEMA = ("no such table", "no such column", "has no column named", "malformed")
# Raised by Python's sqlite3 when a stored text is not UTF-8: the bytes were damaged.
_UNDECODABLE = "Could not decode to UTF-8"
_SIDE_FILES = ("-wal", "-shm")  # they belong to the main file: a fresh file must not inherit them


class CacheError(Exception):
    """The cache cannot be used (locked by another process, unwritable, disk full); the
    message names the file."""


class DamagedRow(Exception):
    """A stored row that does not decode: the file's bytes changed under SQLite."""


def is_damage(exc: BaseException) -> bool:
    """True for errors that mean the file's contents are bad, not that it is busy or unwritable."""
    if isinstance(exc, (DamagedRow, UnicodeDecodeError)):  # a stored text that is not UTF-8: damaged bytes
        return True
    if not isinstance(exc, sqlite3.Error):
        return False
    code = getattr(exc, "sqlite_errorcode", None)
    primary = code & 0xFF if isinstance(code, int) else None
    if primary in (_SQLITE_CORRUPT, _SQLITE_NOTADB):
        return True
    text = str(exc)
    if text.startswith(_UNDECODABLE):
        return True
    return primary in (_SQLITE_ERROR, None) and any(words in text for words in _FOREIGN_SCHEMA)


def is_locked(exc: BaseException) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    return isinstance(code, int) and code & 0xFF in (_SQLITE_BUSY, _SQLITE_LOCKED)


def unusable(path: Path, exc: BaseException, waited: float) -> CacheError:
    """The user-facing error for a cache that is neither usable nor damaged."""
    if is_locked(exc):
        holders = lock_holders(path)
        who = "; ".join(holders) if holders else "another process"
        return CacheError(
            f"cache {path} is locked by {who}; waited {waited:g} s. "
            "Close that process (or let it finish) and try again."
        )
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return CacheError(f"cache {path}: {reason}")


def prepare(path: Path) -> None:
    """Create the cache's folder (0700) and file (0600) when they do not exist yet.

    The cache holds job names, file names and model ids: nobody else on the machine needs
    them. SQLite gives the -wal and -shm files the main file's mode.
    """
    try:
        if not path.parent.is_dir():
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not path.exists():
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    except FileExistsError:
        pass  # another process created it between the check and the open
    except OSError as exc:
        raise CacheError(f"cache {path}: cannot create it: {exc.strerror or exc}") from None


def identity(path: Path) -> tuple[int, int] | None:
    """Which file is at `path` (device, inode): a damaged file is moved aside only if it is
    still the one this process opened, never a fresh one another process put there."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def move_aside(path: Path) -> Path:
    """Rename the file (and its -wal/-shm) to `<name>.damaged-YYYYmmdd-HHMMSS`; return the new path."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target = path.with_name(f"{path.name}.damaged-{stamp}")
    n = 1
    while any(Path(f"{target}{suffix}").exists() for suffix in ("", *_SIDE_FILES)):
        n += 1
        target = path.with_name(f"{path.name}.damaged-{stamp}-{n}")
    try:
        os.rename(path, target)
        for suffix in _SIDE_FILES:
            try:
                os.rename(f"{path}{suffix}", f"{target}{suffix}")
            except FileNotFoundError:
                pass
    except OSError as exc:
        raise CacheError(f"cache {path} is damaged and cannot be moved aside: {exc.strerror or exc}") from None
    return target


def recovery_note(path: Path, moved_to: Path, exc: BaseException) -> str:
    reason = "text in it is not UTF-8" if isinstance(exc, UnicodeDecodeError) else str(exc)
    return (
        f"The cache {path} was damaged ({reason}): moved it to {moved_to} and started a fresh cache; "
        "the job list refills from the provider."
    )


# -- who holds the lock (Linux: /proc; elsewhere the message says "another process") -----------


def lock_holders(path: Path) -> list[str]:
    """Processes holding a write lock on the cache (or, failing that, having it open)."""
    pids = _pids_with_write_locks(path) or _pids_with_file_open(path)
    return [_describe(pid) for pid in sorted(pids)]


def _pids_with_write_locks(path: Path) -> set[int]:
    # SQLite locks with fcntl: the main file (rollback journal) or the -shm file (WAL).
    wanted = set()
    for name in (str(path), f"{path}-shm"):
        try:
            st = os.stat(name)
        except OSError:
            continue
        wanted.add((os.major(st.st_dev), os.minor(st.st_dev), st.st_ino))
    try:
        lines = Path("/proc/locks").read_text().splitlines()
    except OSError:
        return set()
    pids = set()
    for line in lines:
        fields = [f for f in line.split() if f != "->"]  # "->" marks a waiter
        if len(fields) < 6 or fields[3] != "WRITE":
            continue
        try:
            pid = int(fields[4])
            major, minor, inode = fields[5].split(":")
            key = (int(major, 16), int(minor, 16), int(inode))
        except ValueError:
            continue
        if key in wanted and pid > 0 and pid != os.getpid():
            pids.add(pid)
    return pids


def _pids_with_file_open(path: Path) -> set[int]:
    target = os.path.realpath(path)
    pids = set()
    try:
        entries = os.listdir("/proc")
    except OSError:
        return set()
    for entry in entries:
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            links = os.listdir(f"/proc/{entry}/fd")
            if any(os.readlink(f"/proc/{entry}/fd/{fd}") == target for fd in links):
                pids.add(int(entry))
        except OSError:  # gone, or another user's process
            continue
    return pids


def _describe(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        command = " ".join(part.decode(errors="replace") for part in raw.split(b"\0") if part)
    except OSError:
        command = ""
    if len(command) > 80:
        command = command[:77] + "..."
    return f"pid {pid} ({command})" if command else f"pid {pid}"
