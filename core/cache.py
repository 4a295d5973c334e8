"""The local cache: the last known state of every job, so the app opens before the API answers.

It stores the API's JSON as it came (jobs and events, per profile) and nothing secret:
no keys, no request headers. SQLite in WAL mode so the CLI can read while the app writes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable

import aiosqlite

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS jobs (
    profile TEXT NOT NULL,
    id TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    status TEXT NOT NULL,
    body TEXT NOT NULL,
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
"""


class Cache:
    """Async access to the cache file. One instance per process; call `close()` when done."""

    def __init__(self, db: aiosqlite.Connection, path: Path) -> None:
        self._db = db
        self.path = path

    @classmethod
    async def open(cls, path: Path) -> Cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        db = await aiosqlite.connect(path)
        await db.execute("PRAGMA synchronous=NORMAL")
        async with db.execute("PRAGMA user_version") as cursor:
            (version,) = await cursor.fetchone()
        if version < SCHEMA_VERSION:
            # Only a new (or older) cache is written to on open: the app's first frame waits on this.
            await db.execute("PRAGMA journal_mode=WAL")  # persistent: stays set in the file
            await db.executescript(_SCHEMA)
            await db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            await db.commit()
        return cls(db, path)

    async def close(self) -> None:
        await self._db.close()

    async def upsert_jobs(self, profile: str, jobs: Iterable[dict[str, Any]]) -> None:
        rows = [(profile, j["id"], int(j.get("created_at") or 0), str(j.get("status")), json.dumps(j)) for j in jobs]
        await self._db.executemany(
            "INSERT INTO jobs (profile, id, created_at, status, body) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (profile, id) DO UPDATE SET created_at=excluded.created_at, "
            "status=excluded.status, body=excluded.body",
            rows,
        )
        await self._db.commit()

    async def jobs(self, profile: str, limit: int | None = None) -> list[dict[str, Any]]:
        """Jobs newest first."""
        sql = "SELECT body FROM jobs WHERE profile = ? ORDER BY created_at DESC, id DESC"
        params: tuple[Any, ...] = (profile,)
        if limit is not None:
            sql += " LIMIT ?"
            params += (limit,)
        async with self._db.execute(sql, params) as cursor:
            return [json.loads(row[0]) async for row in cursor]

    async def job(self, profile: str, job_id: str) -> dict[str, Any] | None:
        async with self._db.execute("SELECT body FROM jobs WHERE profile = ? AND id = ?", (profile, job_id)) as cur:
            row = await cur.fetchone()
        return json.loads(row[0]) if row else None

    async def add_events(self, profile: str, job_id: str, events_oldest_first: list[dict[str, Any]]) -> int:
        """Append events in chronological order; ones already cached are skipped. Returns how many were new."""
        if not events_oldest_first:
            return 0
        async with self._db.execute(
            "SELECT COALESCE(MAX(seq), 0) FROM events WHERE profile = ? AND job_id = ?", (profile, job_id)
        ) as cur:
            (last_seq,) = await cur.fetchone()
        before = self._db.total_changes
        await self._db.executemany(
            "INSERT OR IGNORE INTO events (profile, job_id, id, seq, type, body) VALUES (?, ?, ?, ?, ?, ?)",
            [
                (profile, job_id, e["id"], last_seq + offset, str(e.get("type") or "message"), json.dumps(e))
                for offset, e in enumerate(events_oldest_first, start=1)
            ],
        )
        await self._db.commit()
        return self._db.total_changes - before

    async def events(self, profile: str, job_id: str) -> list[dict[str, Any]]:
        """Events oldest first."""
        async with self._db.execute(
            "SELECT body FROM events WHERE profile = ? AND job_id = ? ORDER BY seq", (profile, job_id)
        ) as cursor:
            return [json.loads(row[0]) async for row in cursor]

    async def newest_event_id(self, profile: str, job_id: str) -> str | None:
        async with self._db.execute(
            "SELECT id FROM events WHERE profile = ? AND job_id = ? ORDER BY seq DESC LIMIT 1", (profile, job_id)
        ) as cur:
            row = await cur.fetchone()
        return row[0] if row else None

    async def latest_metrics(self, profile: str) -> dict[str, dict[str, Any]]:
        """The newest metrics event's data for every job that has one (for progress columns)."""
        # SQLite returns the row holding MAX(seq) for the bare `body` column.
        async with self._db.execute(
            "SELECT job_id, body, MAX(seq) FROM events WHERE profile = ? AND type = 'metrics' GROUP BY job_id",
            (profile,),
        ) as cursor:
            return {row[0]: json.loads(row[1]).get("data") or {} async for row in cursor}

    async def get_meta(self, key: str) -> str | None:
        async with self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)) as cur:
            row = await cur.fetchone()
        return row[0] if row else None

    async def set_meta(self, key: str, value: str) -> None:
        await self._db.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value=excluded.value",
            (key, value),
        )
        await self._db.commit()
