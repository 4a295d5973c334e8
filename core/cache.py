"""The local cache: the last known state of every job, so the app opens before the API answers.

It stores the API's JSON as it came (jobs and events, per profile) and nothing secret:
no keys, no request headers. SQLite in WAL mode so the CLI can read while the app writes.
Per profile it also remembers the files it uploaded, by content (`uploaded_files`: an
identical file is reused, not sent again), and the Uploads-API uploads still in progress
(`upload_sessions`: the parts the server accepted, so an upload resumes after a restart).
A lost row there costs a second upload, never a wrong one: a remembered file is looked up
on the server before it is reused. It also keeps each job's checkpoints (`checkpoints`) and
what watching it worked out (`job_watch`: the overfitting verdict, the launch's estimate of
billed tokens), so the jobs table shows them without reading any job's metrics. Evaluation
runs and their per-example results live here too (`eval_runs`, `eval_results`); their SQL is
`evaluate/store.py`'s, run through `Cache.run`.

A damaged file (not a database, truncated, malformed) is moved aside and replaced by a
fresh one, at open or at the first read or write that meets the damage; `recovery_note`
then says where the old file went, for the front ends to show (`cachefile.py`). A file
locked by another process is waited on for `BUSY_TIMEOUT_S`, then a `CacheError` names it.
Open runs no integrity check: `PRAGMA quick_check` reads the whole file (~0.1 s for 50 MB)
and the app's first frame waits on `open()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from . import cachefile
from .cachefile import CacheError, DamagedRow
from .records import TERMINAL_STATUSES

__all__ = [
    "BUSY_TIMEOUT_S",
    "SCHEMA_VERSION",
    "Cache",
    "CacheError",
    "CachedRow",
    "UploadSession",
    "UploadedFile",
]

# 2: uploaded_files and upload_sessions. 3: checkpoints, job_watch and jobs.fetched_at.
# 4: eval_runs and eval_results (evaluations; their SQL lives in `evaluate/store.py`).
# 5: eval_results.judge_prompt_tokens and judge_completion_tokens (a judge model's cost).
# Every statement in `_SCHEMA` is "IF NOT EXISTS" and `_COLUMNS_ADDED` are added when
# missing, so an older cache gains the new tables and columns on open and keeps its rows.
SCHEMA_VERSION = 5
_TERMINAL_SQL = "(" + ", ".join(f"'{status}'" for status in sorted(TERMINAL_STATUSES)) + ")"
BUSY_TIMEOUT_S = 2.5  # how long a read or write waits for another process's lock

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS jobs (
    profile TEXT NOT NULL,
    id TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    status TEXT NOT NULL,
    body TEXT NOT NULL,
    fetched_at REAL,
    PRIMARY KEY (profile, id)
);
CREATE INDEX IF NOT EXISTS jobs_by_created ON jobs (profile, created_at DESC);
CREATE TABLE IF NOT EXISTS events (
    profile TEXT NOT NULL,
    job_id TEXT NOT NULL,
    id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    type TEXT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (profile, job_id, id)
);
CREATE INDEX IF NOT EXISTS events_by_seq ON events (profile, job_id, seq);
CREATE INDEX IF NOT EXISTS events_by_type ON events (profile, type, job_id, seq);
CREATE TABLE IF NOT EXISTS uploaded_files (
    profile TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    purpose TEXT NOT NULL,
    bytes INTEGER NOT NULL,
    file_id TEXT NOT NULL,
    filename TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (profile, sha256, purpose)
);
CREATE TABLE IF NOT EXISTS upload_sessions (
    profile TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    purpose TEXT NOT NULL,
    path TEXT NOT NULL,
    bytes INTEGER NOT NULL,
    upload_id TEXT NOT NULL,
    part_size INTEGER NOT NULL,
    part_ids TEXT NOT NULL,
    expires_at REAL NOT NULL,
    PRIMARY KEY (profile, sha256, purpose)
);
CREATE TABLE IF NOT EXISTS checkpoints (
    profile TEXT NOT NULL,
    job_id TEXT NOT NULL,
    id TEXT NOT NULL,
    step INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (profile, job_id, id)
);
CREATE TABLE IF NOT EXISTS job_watch (
    profile TEXT NOT NULL,
    job_id TEXT NOT NULL,
    verdict TEXT,
    estimated_tokens INTEGER,
    PRIMARY KEY (profile, job_id)
);
CREATE TABLE IF NOT EXISTS eval_runs (
    profile TEXT NOT NULL,
    id TEXT NOT NULL,
    created_at REAL NOT NULL,
    status TEXT NOT NULL,
    settings TEXT NOT NULL,
    examples INTEGER NOT NULL DEFAULT 0,
    done INTEGER NOT NULL DEFAULT 0,
    errors INTEGER NOT NULL DEFAULT 0,
    skipped TEXT NOT NULL DEFAULT '[]',
    notes TEXT,
    notes_model TEXT,
    owner TEXT,
    PRIMARY KEY (profile, id)
);
CREATE INDEX IF NOT EXISTS eval_runs_by_created ON eval_runs (profile, created_at DESC);
CREATE TABLE IF NOT EXISTS eval_results (
    profile TEXT NOT NULL,
    run_id TEXT NOT NULL,
    model_key TEXT NOT NULL,
    example_index INTEGER NOT NULL,
    answer TEXT,
    score REAL,
    passed INTEGER,
    sub_scores TEXT NOT NULL DEFAULT '{}',
    error TEXT,
    error_kind TEXT,
    prompt_tokens INTEGER,
    completion_tokens INTEGER,
    seconds REAL NOT NULL DEFAULT 0,
    finished_at REAL NOT NULL DEFAULT 0,
    judge_prompt_tokens INTEGER,
    judge_completion_tokens INTEGER,
    PRIMARY KEY (profile, run_id, model_key, example_index)
);
"""

# Columns later versions added to tables an older cache already has: (table, column, type).
_COLUMNS_ADDED = (
    ("jobs", "fetched_at", "REAL"),
    ("eval_results", "judge_prompt_tokens", "INTEGER"),
    ("eval_results", "judge_completion_tokens", "INTEGER"),
)

T = TypeVar("T")


async def _connect(path: Path, busy_timeout: float) -> aiosqlite.Connection:
    """Open the file and make sure the schema is there; raises sqlite3's errors."""
    db = await aiosqlite.connect(path, timeout=busy_timeout)
    try:
        await db.execute("PRAGMA synchronous=NORMAL")
        if await _schema_version(db) < SCHEMA_VERSION:
            # Only a new (or older) cache is written to on open: the app's first frame waits on this.
            await db.execute("PRAGMA journal_mode=WAL")  # persistent: stays set in the file (not in a transaction)
            await _migrate(db)
    except BaseException:
        # An open connection keeps aiosqlite's (non-daemon) thread alive: the process would never exit.
        with contextlib.suppress(sqlite3.Error):
            await db.close()
        raise
    return db


async def _schema_version(db: aiosqlite.Connection) -> int:
    async with db.execute("PRAGMA user_version") as cursor:
        (version,) = await cursor.fetchone()
    return version


async def _migrate(db: aiosqlite.Connection) -> None:
    """Bring the schema to `SCHEMA_VERSION` in one write transaction. Two processes may open
    an older cache at once: the write lock is taken first (`BEGIN IMMEDIATE` waits for the
    other's migration) and the schema read again inside it, so the second finds it done
    rather than adding a column twice ("duplicate column name")."""
    await db.execute("BEGIN IMMEDIATE")
    try:
        if await _schema_version(db) < SCHEMA_VERSION:
            # One statement at a time: `executescript` would commit the transaction first.
            for statement in filter(None, (part.strip() for part in _SCHEMA.split(";"))):
                await db.execute(statement)
            for table, column, kind in _COLUMNS_ADDED:
                async with db.execute(f"PRAGMA table_info({table})") as cursor:
                    have = {row[1] for row in await cursor.fetchall()}
                if column not in have:
                    await db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
            await db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        await db.commit()
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            await db.rollback()
        raise


def _body(text: str) -> dict[str, Any]:
    """A stored row's JSON; a row that does not decode to an object means damaged bytes."""
    try:
        data = json.loads(text)
    except ValueError:
        raise DamagedRow("a cached row is not JSON") from None
    if not isinstance(data, dict) or not isinstance(data.get("id"), str):
        raise DamagedRow("a cached row is not an object with an id")
    return data


@dataclass(frozen=True, slots=True)
class CachedRow:
    """One job as the jobs table needs it, from one read (`Cache.job_rows`)."""

    body: dict[str, Any]
    """The job's JSON as the API gave it."""
    metrics: dict[str, Any] | None
    """The `data` of its newest metrics event, if any."""
    verdict: dict[str, Any] | None
    """The stored overfitting verdict's JSON, if any."""
    estimated_tokens: int | None
    fetched_at: float | None


def _verdict(text: Any) -> dict[str, Any] | None:
    """A stored verdict's JSON; one that does not decode is dropped (the next events recompute it)."""
    if not isinstance(text, str):
        return None
    try:
        data = json.loads(text)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


@dataclass(frozen=True, slots=True)
class UploadedFile:
    """A file this profile uploaded, by its content: what lets an identical file be reused."""

    sha256: str
    purpose: str
    bytes: int
    file_id: str
    filename: str
    created_at: int
    """When it was uploaded (the File's `created_at`, Unix seconds)."""


@dataclass(frozen=True, slots=True)
class UploadSession:
    """An Uploads-API upload in progress: enough to send the remaining parts after a dropped
    connection or a restart, within the upload's hour."""

    sha256: str
    purpose: str
    path: str
    bytes: int
    upload_id: str
    part_size: int
    part_ids: tuple[str, ...]
    """The parts the server accepted, in file order: part `i` holds bytes from `i * part_size`."""
    expires_at: float
    """When the server forgets the upload, on this machine's clock (Unix seconds)."""


def _part_ids(text: str) -> tuple[str, ...]:
    try:
        data = json.loads(text)
    except ValueError:
        raise DamagedRow("a cached upload's part ids are not JSON") from None
    if not isinstance(data, list) or not all(isinstance(item, str) for item in data):
        raise DamagedRow("a cached upload's part ids are not a list of ids")
    return tuple(data)


class Cache:
    """Async access to the cache file. One instance per process; call `close()` when done."""

    def __init__(
        self,
        db: aiosqlite.Connection,
        path: Path,
        *,
        busy_timeout: float = BUSY_TIMEOUT_S,
        recovery_note: str | None = None,
    ) -> None:
        self._db = db
        self.path = path
        self.busy_timeout = busy_timeout
        self.recovery_note = recovery_note
        """Set when a damaged file was moved aside (at open or later): names both files."""
        self.on_recovery: Callable[[str], None] | None = None
        """Told the note when damage is found after opening (the service announces it)."""
        self._identity = cachefile.identity(path)
        self._replacing = asyncio.Lock()
        self.generation = 0
        """Bumped each time a damaged file is replaced: what callers remember of the old one is void."""

    @classmethod
    async def open(cls, path: Path, *, busy_timeout: float = BUSY_TIMEOUT_S) -> Cache:
        """Open (or create) the cache; a damaged file is moved aside. Raises `CacheError`."""
        cachefile.prepare(path)
        try:
            return cls(await _connect(path, busy_timeout), path, busy_timeout=busy_timeout)
        except (sqlite3.Error, UnicodeDecodeError) as exc:  # the error text itself may be damaged bytes
            if not cachefile.is_damage(exc):
                raise cachefile.unusable(path, exc, busy_timeout) from None
            damage = exc
        moved_to = cachefile.move_aside(path)
        note = cachefile.recovery_note(path, moved_to, damage)
        return cls(await cls._fresh(path, busy_timeout), path, busy_timeout=busy_timeout, recovery_note=note)

    @staticmethod
    async def _fresh(path: Path, busy_timeout: float) -> aiosqlite.Connection:
        cachefile.prepare(path)
        try:
            return await _connect(path, busy_timeout)
        except (sqlite3.Error, UnicodeDecodeError) as exc:  # the error text itself may be damaged bytes
            raise cachefile.unusable(path, exc, busy_timeout) from None

    async def close(self) -> None:
        await self._db.close()

    async def run(self, op: Callable[[aiosqlite.Connection], Awaitable[T]]) -> T:
        """Run one read or write of a caller's own SQL (a feature that keeps its tables'
        SQL beside it, e.g. `evaluate/store.py`), with the damage handling every read here
        has. `op` may run twice (again on the fresh file), so it must start from nothing."""
        return await self._run(op)

    async def _run(self, op: Callable[[aiosqlite.Connection], Awaitable[T]]) -> T:
        """Run one read or write; damage met here replaces the file and runs it again on the fresh one."""
        if self._replacing.locked():
            async with self._replacing:  # wait for the fresh file rather than use the closing one
                pass
        db = self._db
        try:
            return await op(db)
        except (sqlite3.Error, DamagedRow, UnicodeDecodeError) as exc:
            if not cachefile.is_damage(exc):
                raise cachefile.unusable(self.path, exc, self.busy_timeout) from None
            await self._replace(db, exc)
        try:
            return await op(self._db)
        except (sqlite3.Error, DamagedRow, UnicodeDecodeError) as exc:
            raise cachefile.unusable(self.path, exc, self.busy_timeout) from None

    async def _replace(self, damaged: aiosqlite.Connection, exc: BaseException) -> None:
        async with self._replacing:
            if self._db is not damaged:  # a call that failed alongside this one replaced it
                return
            with contextlib.suppress(sqlite3.Error):
                await damaged.close()
            if cachefile.identity(self.path) == self._identity:
                moved_to = cachefile.move_aside(self.path)
                self.recovery_note = cachefile.recovery_note(self.path, moved_to, exc)
                if self.on_recovery is not None:
                    self.on_recovery(self.recovery_note)
            # else another process already moved it aside: open what it left there
            self._db = await self._fresh(self.path, self.busy_timeout)
            self._identity = cachefile.identity(self.path)
            self.generation += 1

    # -- jobs ------------------------------------------------------------------------------

    async def upsert_jobs(
        self,
        profile: str,
        jobs: Iterable[dict[str, Any]],
        *,
        hold_finishing: bool = False,
        fetched_at: float | None = None,
    ) -> None:
        """Store jobs as the API gave them. `hold_finishing`: keep a cached unfinished job as it
        is when the new state is final (the caller stores that once its last events are in).
        `fetched_at`: when the API gave them (None keeps the time already stored)."""
        rows = [
            (profile, j["id"], int(j.get("created_at") or 0), str(j.get("status")), json.dumps(j), fetched_at)
            for j in jobs
        ]
        sql = (
            "INSERT INTO jobs (profile, id, created_at, status, body, fetched_at) VALUES (?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (profile, id) DO UPDATE SET created_at=excluded.created_at, "
            "status=excluded.status, body=excluded.body, "
            "fetched_at=COALESCE(excluded.fetched_at, jobs.fetched_at)"
        )
        if hold_finishing:
            sql += f" WHERE NOT (excluded.status IN {_TERMINAL_SQL} AND jobs.status NOT IN {_TERMINAL_SQL})"

        async def write(db: aiosqlite.Connection) -> None:
            await db.executemany(sql, rows)
            await db.commit()

        await self._run(write)

    async def jobs(self, profile: str, limit: int | None = None) -> list[dict[str, Any]]:
        """Jobs newest first."""
        sql = "SELECT body FROM jobs WHERE profile = ? ORDER BY created_at DESC, id DESC"
        params: tuple[Any, ...] = (profile,)
        if limit is not None:
            sql += " LIMIT ?"
            params += (limit,)

        async def read(db: aiosqlite.Connection) -> list[dict[str, Any]]:
            async with db.execute(sql, params) as cursor:
                return [_body(row[0]) async for row in cursor]

        return await self._run(read)

    async def job_rows(self, profile: str) -> list[CachedRow]:
        """Every job newest first, each with its newest metrics and what watching it stored:
        one query, so a poll reads the cache once however many jobs there are."""
        sql = (
            "SELECT j.body, j.fetched_at, w.verdict, w.estimated_tokens, "
            # The newest metrics event of the job, through the (profile, type, job_id, seq) index.
            "(SELECT e.body FROM events e WHERE e.profile = j.profile AND e.type = 'metrics' "
            "AND e.job_id = j.id ORDER BY e.seq DESC LIMIT 1) "
            "FROM jobs j LEFT JOIN job_watch w ON w.profile = j.profile AND w.job_id = j.id "
            "WHERE j.profile = ? ORDER BY j.created_at DESC, j.id DESC"
        )

        async def read(db: aiosqlite.Connection) -> list[CachedRow]:
            rows = []
            async with db.execute(sql, (profile,)) as cursor:
                async for body, fetched_at, verdict, tokens, metrics in cursor:
                    data = _body(metrics).get("data") if metrics is not None else None
                    rows.append(
                        CachedRow(
                            body=_body(body),
                            metrics=data if isinstance(data, dict) else None,
                            verdict=_verdict(verdict),
                            estimated_tokens=tokens if isinstance(tokens, int) else None,
                            fetched_at=float(fetched_at) if isinstance(fetched_at, (int, float)) else None,
                        )
                    )
            return rows

        return await self._run(read)

    async def job(self, profile: str, job_id: str) -> dict[str, Any] | None:
        async def read(db: aiosqlite.Connection) -> dict[str, Any] | None:
            async with db.execute("SELECT body FROM jobs WHERE profile = ? AND id = ?", (profile, job_id)) as cur:
                row = await cur.fetchone()
            return _body(row[0]) if row else None

        return await self._run(read)

    # -- events ----------------------------------------------------------------------------

    async def add_events(self, profile: str, job_id: str, events_oldest_first: list[dict[str, Any]]) -> int:
        """Append events in chronological order; ones already cached are skipped. Returns how many were new."""
        if not events_oldest_first:
            return 0

        async def write(db: aiosqlite.Connection) -> int:
            async with db.execute(
                "SELECT COALESCE(MAX(seq), 0) FROM events WHERE profile = ? AND job_id = ?", (profile, job_id)
            ) as cur:
                (last_seq,) = await cur.fetchone()
            before = db.total_changes
            await db.executemany(
                "INSERT OR IGNORE INTO events (profile, job_id, id, seq, type, body) VALUES (?, ?, ?, ?, ?, ?)",
                [
                    (profile, job_id, e["id"], last_seq + offset, str(e.get("type") or "message"), json.dumps(e))
                    for offset, e in enumerate(events_oldest_first, start=1)
                ],
            )
            await db.commit()
            return db.total_changes - before

        return await self._run(write)

    async def events(self, profile: str, job_id: str) -> list[dict[str, Any]]:
        """Events oldest first."""

        async def read(db: aiosqlite.Connection) -> list[dict[str, Any]]:
            async with db.execute(
                "SELECT body FROM events WHERE profile = ? AND job_id = ? ORDER BY seq", (profile, job_id)
            ) as cursor:
                return [_body(row[0]) async for row in cursor]

        return await self._run(read)

    async def metric_events(self, profile: str, job_id: str) -> list[dict[str, Any]]:
        """A job's metrics events, oldest first (what its charts and the detector read)."""
        return await self._run(lambda db: _metric_events(db, profile, job_id))

    async def newest_event_id(self, profile: str, job_id: str) -> str | None:
        async def read(db: aiosqlite.Connection) -> str | None:
            async with db.execute(
                "SELECT id FROM events WHERE profile = ? AND job_id = ? ORDER BY seq DESC LIMIT 1", (profile, job_id)
            ) as cur:
                row = await cur.fetchone()
            return row[0] if row else None

        return await self._run(read)

    async def latest_metrics(self, profile: str) -> dict[str, dict[str, Any]]:
        """The newest metrics event's data for every job that has one (for progress columns)."""

        async def read(db: aiosqlite.Connection) -> dict[str, dict[str, Any]]:
            # SQLite returns the row holding MAX(seq) for the bare `body` column.
            async with db.execute(
                "SELECT job_id, body, MAX(seq) FROM events WHERE profile = ? AND type = 'metrics' GROUP BY job_id",
                (profile,),
            ) as cursor:
                rows = [(row[0], _body(row[1]).get("data")) async for row in cursor]
            return {job_id: data if isinstance(data, dict) else {} for job_id, data in rows}

        return await self._run(read)

    # -- checkpoints -------------------------------------------------------------------------

    async def put_checkpoints(
        self, profile: str, job_id: str, checkpoints: Iterable[dict[str, Any]], *, complete: bool = False
    ) -> None:
        """Store checkpoints as the API gave them (one seen again replaces its row). `complete`:
        they are all the job has now, so cached ones not among them are dropped (the provider
        deleted them)."""
        rows = [
            (profile, job_id, str(c["id"]), _count(c.get("step_number")), _count(c.get("created_at")), json.dumps(c))
            for c in checkpoints
        ]
        if not rows and not complete:
            return

        async def write(db: aiosqlite.Connection) -> None:
            if complete:
                await db.execute("DELETE FROM checkpoints WHERE profile = ? AND job_id = ?", (profile, job_id))
            await db.executemany(
                "INSERT INTO checkpoints (profile, job_id, id, step, created_at, body) VALUES (?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (profile, job_id, id) DO UPDATE SET step=excluded.step, "
                "created_at=excluded.created_at, body=excluded.body",
                rows,
            )
            await db.commit()

        await self._run(write)

    async def checkpoints(self, profile: str, job_id: str) -> list[dict[str, Any]]:
        """A job's cached checkpoints, newest (highest step) first."""

        async def read(db: aiosqlite.Connection) -> list[dict[str, Any]]:
            async with db.execute(
                "SELECT body FROM checkpoints WHERE profile = ? AND job_id = ? ORDER BY step DESC, created_at DESC, id",
                (profile, job_id),
            ) as cursor:
                return [_body(row[0]) async for row in cursor]

        return await self._run(read)

    # -- what watching a job worked out --------------------------------------------------------

    async def set_verdict(self, profile: str, job_id: str, verdict: dict[str, Any] | None) -> None:
        """Store a job's overfitting verdict (its JSON), keeping its estimated tokens."""

        async def write(db: aiosqlite.Connection) -> None:
            await db.execute(
                "INSERT INTO job_watch (profile, job_id, verdict) VALUES (?, ?, ?) "
                "ON CONFLICT (profile, job_id) DO UPDATE SET verdict=excluded.verdict",
                (profile, job_id, json.dumps(verdict) if verdict is not None else None),
            )
            await db.commit()

        await self._run(write)

    async def set_estimated_tokens(self, profile: str, job_id: str, tokens: int | None) -> None:
        """Store the launch's estimate of a job's billed tokens, keeping its verdict."""

        async def write(db: aiosqlite.Connection) -> None:
            await db.execute(
                "INSERT INTO job_watch (profile, job_id, estimated_tokens) VALUES (?, ?, ?) "
                "ON CONFLICT (profile, job_id) DO UPDATE SET estimated_tokens=excluded.estimated_tokens",
                (profile, job_id, tokens),
            )
            await db.commit()

        await self._run(write)

    async def watch_state(self, profile: str, job_id: str) -> tuple[dict[str, Any] | None, int | None]:
        """(verdict JSON, estimated tokens) stored for a job; (None, None) when nothing is."""
        return await self._run(lambda db: _watch_state(db, profile, job_id))

    async def watch_seed(self, profile: str, job_id: str) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
        """A job's metrics events (oldest first) and its stored verdict, in one read: what
        watching a job starts from."""

        async def read(db: aiosqlite.Connection) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
            verdict, _ = await _watch_state(db, profile, job_id)
            return await _metric_events(db, profile, job_id), verdict

        return await self._run(read)

    # -- meta ------------------------------------------------------------------------------

    async def get_meta(self, key: str) -> str | None:
        async def read(db: aiosqlite.Connection) -> str | None:
            async with db.execute("SELECT value FROM meta WHERE key = ?", (key,)) as cur:
                row = await cur.fetchone()
            return row[0] if row else None

        return await self._run(read)

    async def set_meta(self, key: str, value: str) -> None:
        async def write(db: aiosqlite.Connection) -> None:
            await db.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value=excluded.value",
                (key, value),
            )
            await db.commit()

        await self._run(write)

    # -- uploaded files --------------------------------------------------------------------

    async def known_file(self, profile: str, sha256: str, purpose: str) -> UploadedFile | None:
        """The file this profile uploaded with this content and purpose, if it remembers one."""

        async def read(db: aiosqlite.Connection) -> UploadedFile | None:
            async with db.execute(
                "SELECT bytes, file_id, filename, created_at FROM uploaded_files "
                "WHERE profile = ? AND sha256 = ? AND purpose = ?",
                (profile, sha256, purpose),
            ) as cur:
                row = await cur.fetchone()
            if row is None:
                return None
            size, file_id, filename, created_at = row
            if not (isinstance(size, int) and isinstance(created_at, int) and isinstance(file_id, str)):
                raise DamagedRow("a cached uploaded file is not a size, an id and a time")
            return UploadedFile(sha256, purpose, size, file_id, str(filename), created_at)

        return await self._run(read)

    async def file_by_id(self, profile: str, file_id: str) -> UploadedFile | None:
        """The file this profile uploaded as `file_id`, if it remembers one (its content's
        sha256 finds a local copy, e.g. of a job's validation file)."""

        async def read(db: aiosqlite.Connection) -> UploadedFile | None:
            async with db.execute(
                "SELECT sha256, purpose, bytes, filename, created_at FROM uploaded_files "
                "WHERE profile = ? AND file_id = ? ORDER BY created_at DESC LIMIT 1",
                (profile, file_id),
            ) as cur:
                row = await cur.fetchone()
            if row is None:
                return None
            sha256, purpose, size, filename, created_at = row
            if not (isinstance(size, int) and isinstance(created_at, int) and isinstance(sha256, str)):
                raise DamagedRow("a cached uploaded file is not a size, a hash and a time")
            return UploadedFile(sha256, str(purpose), size, file_id, str(filename), created_at)

        return await self._run(read)

    async def remember_file(self, profile: str, file: UploadedFile) -> None:
        """Record an uploaded file; a newer upload of the same content replaces the older one."""

        async def write(db: aiosqlite.Connection) -> None:
            await db.execute(
                "INSERT INTO uploaded_files (profile, sha256, purpose, bytes, file_id, filename, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (profile, sha256, purpose) DO UPDATE SET "
                "bytes=excluded.bytes, file_id=excluded.file_id, filename=excluded.filename, "
                "created_at=excluded.created_at",
                (profile, file.sha256, file.purpose, file.bytes, file.file_id, file.filename, file.created_at),
            )
            await db.commit()

        await self._run(write)

    async def forget_file(self, profile: str, sha256: str, purpose: str) -> None:
        async def write(db: aiosqlite.Connection) -> None:
            await db.execute(
                "DELETE FROM uploaded_files WHERE profile = ? AND sha256 = ? AND purpose = ?",
                (profile, sha256, purpose),
            )
            await db.commit()

        await self._run(write)

    # -- uploads in progress ---------------------------------------------------------------

    async def upload_session(self, profile: str, sha256: str, purpose: str) -> UploadSession | None:
        async def read(db: aiosqlite.Connection) -> UploadSession | None:
            async with db.execute(
                f"SELECT {_SESSION_COLUMNS} FROM upload_sessions WHERE profile = ? AND sha256 = ? AND purpose = ?",
                (profile, sha256, purpose),
            ) as cur:
                row = await cur.fetchone()
            return _session(row) if row else None

        return await self._run(read)

    async def upload_sessions(self, profile: str) -> list[UploadSession]:
        """Every upload in progress for this profile (to clear ones a changed file left behind)."""

        async def read(db: aiosqlite.Connection) -> list[UploadSession]:
            async with db.execute(
                f"SELECT {_SESSION_COLUMNS} FROM upload_sessions WHERE profile = ? ORDER BY path, sha256",
                (profile,),
            ) as cursor:
                return [_session(row) async for row in cursor]

        return await self._run(read)

    async def save_upload_session(self, profile: str, session: UploadSession) -> None:
        """Store the upload's state; called after every part, so a crash loses at most the part in flight."""

        async def write(db: aiosqlite.Connection) -> None:
            await db.execute(
                f"INSERT INTO upload_sessions (profile, {_SESSION_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (profile, sha256, purpose) DO UPDATE SET path=excluded.path, bytes=excluded.bytes, "
                "upload_id=excluded.upload_id, part_size=excluded.part_size, part_ids=excluded.part_ids, "
                "expires_at=excluded.expires_at",
                (
                    profile,
                    session.sha256,
                    session.purpose,
                    session.path,
                    session.bytes,
                    session.upload_id,
                    session.part_size,
                    json.dumps(list(session.part_ids)),
                    session.expires_at,
                ),
            )
            await db.commit()

        await self._run(write)

    async def drop_upload_session(self, profile: str, sha256: str, purpose: str) -> None:
        async def write(db: aiosqlite.Connection) -> None:
            await db.execute(
                "DELETE FROM upload_sessions WHERE profile = ? AND sha256 = ? AND purpose = ?",
                (profile, sha256, purpose),
            )
            await db.commit()

        await self._run(write)


async def _metric_events(db: aiosqlite.Connection, profile: str, job_id: str) -> list[dict[str, Any]]:
    async with db.execute(
        "SELECT body FROM events WHERE profile = ? AND type = 'metrics' AND job_id = ? ORDER BY seq",
        (profile, job_id),
    ) as cursor:
        rows = await cursor.fetchall()  # one hop to the database thread, not one per row
    # A long job has 100k steps: decoding them takes a while, so not on the loop the app draws on.
    return await asyncio.to_thread(_bodies, rows)


def _bodies(rows: Iterable[Any]) -> list[dict[str, Any]]:
    return [_body(row[0]) for row in rows]


async def _watch_state(db: aiosqlite.Connection, profile: str, job_id: str) -> tuple[dict[str, Any] | None, int | None]:
    async with db.execute(
        "SELECT verdict, estimated_tokens FROM job_watch WHERE profile = ? AND job_id = ?", (profile, job_id)
    ) as cur:
        row = await cur.fetchone()
    if row is None:
        return None, None
    return _verdict(row[0]), row[1] if isinstance(row[1], int) else None


def _count(value: Any) -> int:
    """A step or a time from the API's JSON; anything else (null, text) is stored as 0."""
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0


_SESSION_COLUMNS = "sha256, purpose, path, bytes, upload_id, part_size, part_ids, expires_at"


def _session(row: Any) -> UploadSession:
    sha256, purpose, path, size, upload_id, part_size, part_ids, expires_at = row
    numbers = (size, part_size, expires_at)
    if not (all(isinstance(n, (int, float)) for n in numbers) and isinstance(upload_id, str) and part_size > 0):
        raise DamagedRow("a cached upload is not sizes, an id and a time")
    return UploadSession(
        str(sha256), str(purpose), str(path), int(size), upload_id, int(part_size), _part_ids(str(part_ids)),
        float(expires_at),
    )  # fmt: skip
