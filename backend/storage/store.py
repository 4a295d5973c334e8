"""The backend's state in one SQLite file (WAL): files, jobs, events, checkpoints, models,
checkpoint permissions, and the answers kept for `Idempotency-Key` retries.

Each row keeps the API object as JSON (`body`) plus the columns queries need. `seq`
(insertion order) orders every list, so "newest first" and `after=<id>` cursors are
exact even when many objects share a `created_at` second. The store is used from the
server's event loop thread only; each call is short. The database and SQLite's `-wal` and
`-shm` files beside it are owner-only.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..http.paging import Page
from .private import open_private, tighten

SCHEMA_VERSION = 1
SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, purpose TEXT NOT NULL, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, status TEXT NOT NULL, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, job_id TEXT NOT NULL, body TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS events_by_job ON events (job_id, seq);
CREATE TABLE IF NOT EXISTS checkpoints (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, job_id TEXT NOT NULL, body TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS checkpoints_by_job ON checkpoints (job_id, seq);
CREATE TABLE IF NOT EXISTS models (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, job_id TEXT NOT NULL,
    created INTEGER NOT NULL, kind TEXT NOT NULL, weights TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS permissions (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, model TEXT NOT NULL,
    project_id TEXT NOT NULL, body TEXT NOT NULL, UNIQUE (model, project_id));
CREATE TABLE IF NOT EXISTS idempotency (
    key TEXT PRIMARY KEY, fingerprint TEXT NOT NULL, status INTEGER NOT NULL, body BLOB NOT NULL,
    created REAL NOT NULL);
CREATE INDEX IF NOT EXISTS idempotency_by_age ON idempotency (created);
"""
SQLITE_SIDE_FILES = ("-wal", "-shm", "-journal")
TERMINAL_STATUSES = ("succeeded", "failed", "cancelled")
MODEL_FIELDS = ("id", "job_id", "created", "kind", "weights")
MODEL_COLUMNS = ", ".join(MODEL_FIELDS)

Filter = Callable[[dict[str, Any]], bool]


def _dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True, slots=True)
class KeptAnswer:
    """The first answer to a request sent with an `Idempotency-Key`."""

    fingerprint: str  # what the request was (method, path, body digest)
    status: int
    body: bytes


class Store:
    def __init__(self, path: Path) -> None:
        if not path.exists():  # SQLite would create it with the umask's mode; its side files copy this one's
            open_private(path).close()
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable across app crashes, fast
        self._db.executescript(SCHEMA)
        self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        self._depth = 0
        for suffix in ("", *SQLITE_SIDE_FILES):  # stores made by older versions, too
            tighten(path.with_name(path.name + suffix))

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Group writes so they land together (or not at all); nests."""
        self._depth += 1
        if self._depth == 1:
            self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._depth -= 1
            if self._depth == 0:
                self._db.execute("ROLLBACK")
            raise
        self._depth -= 1
        if self._depth == 0:
            self._db.execute("COMMIT")

    # -- generic ------------------------------------------------------------------------

    def _get(self, table: str, object_id: str) -> dict[str, Any] | None:
        row = self._db.execute(f"SELECT body FROM {table} WHERE id = ?", (object_id,)).fetchone()
        return json.loads(row[0]) if row else None

    def _page(
        self,
        table: str,
        scope: str,
        params: tuple[Any, ...],
        after: str | None,
        limit: int,
        *,
        newest_first: bool = True,
        keep: Filter | None = None,
    ) -> Page:
        """Up to `limit` bodies of `table` within `scope`, strictly past the `after` cursor.

        An unknown cursor gives an empty last page, never an error: a client paging with
        an id that has since been deleted stops cleanly.
        """
        where, args = scope, list(params)
        if after is not None:
            row = self._db.execute(f"SELECT seq FROM {table} WHERE id = ? AND {scope}", (after, *params)).fetchone()
            if row is None:
                return Page([], False)
            where += " AND seq < ?" if newest_first else " AND seq > ?"
            args.append(row[0])
        order = "DESC" if newest_first else "ASC"
        rows = self._db.execute(f"SELECT body FROM {table} WHERE {where} ORDER BY seq {order}", args)
        items: list[dict[str, Any]] = []
        for (body,) in rows:
            item = json.loads(body)
            if keep is not None and not keep(item):
                continue
            if len(items) == limit:
                return Page(items, True)
            items.append(item)
        return Page(items, False)

    # -- files --------------------------------------------------------------------------

    def add_file(self, file: dict[str, Any]) -> None:
        self._db.execute(
            "INSERT INTO files (id, purpose, body) VALUES (?, ?, ?)", (file["id"], file["purpose"], _dumps(file))
        )

    def get_file(self, file_id: str) -> dict[str, Any] | None:
        return self._get("files", file_id)

    def delete_file(self, file_id: str) -> bool:
        return self._db.execute("DELETE FROM files WHERE id = ?", (file_id,)).rowcount > 0

    def list_files(self, purpose: str | None, newest_first: bool, after: str | None, limit: int) -> Page:
        scope, params = ("purpose = ?", (purpose,)) if purpose else ("1 = 1", ())
        return self._page("files", scope, params, after, limit, newest_first=newest_first)

    # -- jobs ---------------------------------------------------------------------------

    def add_job(self, job: dict[str, Any]) -> None:
        self._db.execute(
            "INSERT INTO jobs (id, status, body) VALUES (?, ?, ?)", (job["id"], job["status"], _dumps(job))
        )

    def save_job(self, job: dict[str, Any]) -> None:
        self._db.execute("UPDATE jobs SET status = ?, body = ? WHERE id = ?", (job["status"], _dumps(job), job["id"]))

    def get_job(self, job_id: str) -> dict[str, Any] | None:
        return self._get("jobs", job_id)

    def list_jobs(self, after: str | None, limit: int, keep: Filter | None = None) -> Page:
        return self._page("jobs", "1 = 1", (), after, limit, keep=keep)

    def unfinished_job_ids(self) -> list[str]:
        """Jobs not yet in a terminal state, oldest first."""
        marks = ", ".join("?" * len(TERMINAL_STATUSES))
        rows = self._db.execute(f"SELECT id FROM jobs WHERE status NOT IN ({marks}) ORDER BY seq", TERMINAL_STATUSES)
        return [row[0] for row in rows]

    # -- events and checkpoints ------------------------------------------------------------

    def add_event(self, job_id: str, event: dict[str, Any]) -> None:
        self._db.execute("INSERT INTO events (id, job_id, body) VALUES (?, ?, ?)", (event["id"], job_id, _dumps(event)))

    def list_events(self, job_id: str, after: str | None, limit: int) -> Page:
        return self._page("events", "job_id = ?", (job_id,), after, limit)

    def add_checkpoint(self, job_id: str, checkpoint: dict[str, Any]) -> None:
        self._db.execute(
            "INSERT INTO checkpoints (id, job_id, body) VALUES (?, ?, ?)",
            (checkpoint["id"], job_id, _dumps(checkpoint)),
        )

    def list_checkpoints(self, job_id: str, after: str | None, limit: int) -> Page:
        """Newest step first, as the API lists them. Not in the order they were written: a
        pause publishes its step's checkpoint before the end publishes the earlier ones. A
        job has a few checkpoints, so they are ordered here rather than by a column."""
        rows = self._db.execute("SELECT seq, body FROM checkpoints WHERE job_id = ?", (job_id,)).fetchall()
        items = [json.loads(body) for _, body in sorted(rows, key=lambda row: row[0], reverse=True)]
        items.sort(key=lambda item: item.get("step_number") or 0, reverse=True)  # stable: ties newest first
        if after is not None:
            place = next((i for i, item in enumerate(items) if item.get("id") == after), None)
            if place is None:
                return Page([], False)  # an unknown cursor ends the listing, as for the other lists
            items = items[place + 1 :]
        return Page(items[:limit], len(items) > limit)

    # -- models -------------------------------------------------------------------------

    def add_model(self, model_id: str, job_id: str, created: int, kind: str, weights: str) -> None:
        """Register a fine-tuned model (`kind` "final") or checkpoint; `weights` is relative to the data dir."""
        self._db.execute(
            "INSERT INTO models (id, job_id, created, kind, weights) VALUES (?, ?, ?, ?, ?)",
            (model_id, job_id, created, kind, weights),
        )

    def get_model(self, model_id: str) -> dict[str, Any] | None:
        """`{id, job_id, created, kind, weights}` of a fine-tuned model or checkpoint."""
        row = self._db.execute(f"SELECT {MODEL_COLUMNS} FROM models WHERE id = ?", (model_id,)).fetchone()
        return dict(zip(MODEL_FIELDS, row)) if row else None

    def delete_model(self, model_id: str) -> bool:
        """Forget a model and the permissions that shared it."""
        with self.transaction():
            self._db.execute("DELETE FROM permissions WHERE model = ?", (model_id,))
            return self._db.execute("DELETE FROM models WHERE id = ?", (model_id,)).rowcount > 0

    def final_models(self) -> list[dict[str, Any]]:
        rows = self._db.execute(f"SELECT {MODEL_COLUMNS} FROM models WHERE kind = 'final' ORDER BY seq")
        return [dict(zip(MODEL_FIELDS, row)) for row in rows]

    # -- checkpoint permissions -----------------------------------------------------------

    def permission_for(self, model_id: str, project_id: str) -> dict[str, Any] | None:
        row = self._db.execute(
            "SELECT body FROM permissions WHERE model = ? AND project_id = ?", (model_id, project_id)
        ).fetchone()
        return json.loads(row[0]) if row else None

    def add_permission(self, model_id: str, permission: dict[str, Any]) -> None:
        """At most one per (model, project): check `permission_for` first (a second one raises)."""
        self._db.execute(
            "INSERT INTO permissions (id, model, project_id, body) VALUES (?, ?, ?, ?)",
            (permission["id"], model_id, permission["project_id"], _dumps(permission)),
        )

    def list_permissions(
        self, model_id: str, project_id: str | None, newest_first: bool, after: str | None, limit: int
    ) -> Page:
        scope, params = "model = ?", (model_id,)
        if project_id is not None:
            scope, params = "model = ? AND project_id = ?", (model_id, project_id)
        return self._page("permissions", scope, params, after, limit, newest_first=newest_first)

    def delete_permission(self, model_id: str, permission_id: str) -> bool:
        cursor = self._db.execute("DELETE FROM permissions WHERE id = ? AND model = ?", (permission_id, model_id))
        return cursor.rowcount > 0

    # -- answers kept for Idempotency-Key retries ---------------------------------------------

    def kept_answer(self, key: str, since: float) -> KeptAnswer | None:
        """The answer kept for `key`, unless it was kept before `since` (then it has expired)."""
        row = self._db.execute(
            "SELECT fingerprint, status, body FROM idempotency WHERE key = ? AND created >= ?", (key, since)
        ).fetchone()
        return KeptAnswer(row[0], row[1], bytes(row[2])) if row else None

    def keep_answer(self, key: str, answer: KeptAnswer, created: float, forget_before: float) -> None:
        """Keep `answer` for `key` (replacing an expired one) and drop those kept before `forget_before`."""
        with self.transaction():
            self._db.execute("DELETE FROM idempotency WHERE created < ?", (forget_before,))
            self._db.execute(
                "INSERT OR REPLACE INTO idempotency (key, fingerprint, status, body, created) VALUES (?, ?, ?, ?, ?)",
                (key, answer.fingerprint, answer.status, answer.body, created),
            )
