"""Evaluation runs in the cache: one row per run (`eval_runs`: its settings, status,
counters, skipped rows and notes) and one per model and example (`eval_results`).

The SQL of these tables lives here, run through `Cache.run` (the cache file's damage
handling included); the tables themselves are created by the cache's schema (version 4).
A result is written the moment it arrives, with the run's counters in the same
transaction, so a crash loses only the answers in flight and the counters never drift.

`owner` names the process running a run (`host:pid:start`): a run left `running` by a
process that is gone is shown as `interrupted` (`EvalStore.is_alive`).
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import socket
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from ..cachefile import DamagedRow
from .records import EvalRunInfo, EvalSettings, ExampleProblem, ExampleResult

if TYPE_CHECKING:  # pragma: no cover
    import aiosqlite

    from ..cache import Cache

RUN_ID_PREFIX = "eval-"
_RUN_COLUMNS = "id, created_at, status, settings, examples, done, errors, skipped, notes, notes_model, owner"
_RESULT_COLUMNS = (
    "model_key, example_index, answer, score, passed, sub_scores, error, error_kind, "
    "prompt_tokens, completion_tokens, seconds, finished_at, judge_prompt_tokens, judge_completion_tokens"
)
_RESULT_COLUMNS_NO_ANSWER = _RESULT_COLUMNS.replace("answer,", "NULL,", 1)
assert _RESULT_COLUMNS_NO_ANSWER != _RESULT_COLUMNS  # the same columns, the answer read as NULL


THREAD_DECODING_ROWS = 2000
"""Results at least this many are decoded in a thread."""


def new_run_id() -> str:
    """`eval-` and 12 hex digits."""
    return RUN_ID_PREFIX + secrets.token_hex(6)


class StoredRun(NamedTuple):
    info: EvalRunInfo
    owner: str | None
    """The process that set it running (`this_process()` of that process), if any."""


def this_process() -> str:
    """This process, as a run's owner: host, pid and start time (a pid reused by a later
    process is not the owner)."""
    return f"{socket.gethostname()}:{os.getpid()}:{_start_time(os.getpid())}"


def is_alive(owner: str | None) -> bool:
    """Whether the process named by `owner` still runs (on this host; another host's
    process cannot be asked and counts as gone)."""
    if not owner:
        return False
    host, _, rest = owner.partition(":")
    pid_text, _, start = rest.partition(":")
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return start == _start_time(pid)
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):
        return False
    except OSError:  # PermissionError: alive, another user's
        pass
    return not start or start == _start_time(pid)


def _start_time(pid: int) -> str:
    """The process's start time in clock ticks since boot (Linux); "" where unknown."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
            text = stat.read()
    except OSError:
        return ""
    fields = text.rpartition(")")[2].split()
    return fields[19] if len(fields) > 19 else ""


class EvalStore:
    """One profile's evaluation runs and results."""

    def __init__(self, cache: Cache, profile: str) -> None:
        self.cache = cache
        self.profile = profile
        self._writing = asyncio.Lock()
        """Held by each result's write to its COMMIT (cancelled or not), and by a recount: a
        recount never reads between a result's row and its counters."""

    # -- runs --------------------------------------------------------------------------------

    async def create(
        self,
        settings: EvalSettings,
        *,
        examples: int,
        skipped: Sequence[ExampleProblem] = (),
        created_at: float,
        run_id: str | None = None,
    ) -> EvalRunInfo:
        info = EvalRunInfo(
            id=run_id or new_run_id(),
            created_at=created_at,
            settings=settings,
            status="created",
            examples=examples,
            skipped=tuple(skipped),
        )
        row = (
            self.profile,
            info.id,
            info.created_at,
            info.status,
            json.dumps(settings.to_json()),
            info.examples,
            json.dumps([p.to_json() for p in info.skipped]),
        )

        async def write(db: aiosqlite.Connection) -> None:
            await db.execute(
                "INSERT INTO eval_runs (profile, id, created_at, status, settings, examples, skipped) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                row,
            )
            await db.commit()

        await self.cache.run(write)
        return info

    async def runs(self) -> list[StoredRun]:
        """Every run of the profile, newest first."""

        async def read(db: aiosqlite.Connection) -> list[StoredRun]:
            async with db.execute(
                f"SELECT {_RUN_COLUMNS} FROM eval_runs WHERE profile = ? ORDER BY created_at DESC, id DESC",
                (self.profile,),
            ) as cursor:
                found = [_run(row) async for row in cursor]
            return [run for run in found if run is not None]

        return await self.cache.run(read)

    async def get(self, run_id: str) -> StoredRun | None:
        async def read(db: aiosqlite.Connection) -> StoredRun | None:
            async with db.execute(
                f"SELECT {_RUN_COLUMNS} FROM eval_runs WHERE profile = ? AND id = ?", (self.profile, run_id)
            ) as cursor:
                row = await cursor.fetchone()
            return _run(row) if row is not None else None

        return await self.cache.run(read)

    async def find(self, prefix: str, limit: int = 10) -> list[str]:
        """The ids starting with `prefix` (an exact id first), at most `limit`."""

        async def read(db: aiosqlite.Connection) -> list[str]:
            async with db.execute(
                "SELECT id FROM eval_runs WHERE profile = ? AND substr(id, 1, length(?)) = ? "
                "ORDER BY id = ? DESC, created_at DESC LIMIT ?",
                (self.profile, prefix, prefix, prefix, limit),
            ) as cursor:
                return [str(row[0]) async for row in cursor]

        return await self.cache.run(read)

    async def set_status(self, run_id: str, status: str, owner: str | None = None) -> None:
        """Set the status; `owner` is kept only while it runs."""
        await self._write(
            "UPDATE eval_runs SET status = ?, owner = ? WHERE profile = ? AND id = ?",
            (status, owner if status == "running" else None, self.profile, run_id),
        )

    async def claim(self, run_id: str, owner: str, expected_owner: str | None) -> bool:
        """Mark the run running by `owner`, if its owner is still `expected_owner` (what the
        caller read): of two processes starting one run at once, one wins."""

        async def write(db: aiosqlite.Connection) -> bool:
            cursor = await db.execute(
                "UPDATE eval_runs SET status = 'running', owner = ? WHERE profile = ? AND id = ? AND owner IS ?",
                (owner, self.profile, run_id, expected_owner),
            )
            await db.commit()
            return cursor.rowcount == 1

        return await self.cache.run(write)

    async def set_notes(self, run_id: str, notes: str | None, model: str | None) -> None:
        await self._write(
            "UPDATE eval_runs SET notes = ?, notes_model = ? WHERE profile = ? AND id = ?",
            (notes, model, self.profile, run_id),
        )

    async def recount(self, run_id: str) -> tuple[int, int]:
        """Set the run's counters from its stored results; (done, errors)."""

        async def write(db: aiosqlite.Connection) -> tuple[int, int]:
            async with db.execute(
                "SELECT COUNT(*), COUNT(error) FROM eval_results WHERE profile = ? AND run_id = ?",
                (self.profile, run_id),
            ) as cursor:
                done, errors = await cursor.fetchone()
            await db.execute(
                "UPDATE eval_runs SET done = ?, errors = ? WHERE profile = ? AND id = ?",
                (done, errors, self.profile, run_id),
            )
            await db.commit()
            return int(done), int(errors)

        async with self._writing:  # after the results whose writes are under way
            return await self.cache.run(write)

    async def delete(self, run_id: str) -> None:
        """The run and every result of it."""

        async def write(db: aiosqlite.Connection) -> None:
            await db.execute("DELETE FROM eval_results WHERE profile = ? AND run_id = ?", (self.profile, run_id))
            await db.execute("DELETE FROM eval_runs WHERE profile = ? AND id = ?", (self.profile, run_id))
            await db.commit()

        await self.cache.run(write)

    # -- results -----------------------------------------------------------------------------

    async def put_result(self, run_id: str, result: ExampleResult) -> None:
        """Store one result (a later one for the same model and example replaces it), and the
        run's counters with it, in one transaction."""
        key = (self.profile, run_id, result.model_key, result.example_index)
        row = (*key, *_result_values(result))

        async def write(db: aiosqlite.Connection) -> None:
            async with db.execute(
                "SELECT error FROM eval_results WHERE profile = ? AND run_id = ? AND model_key = ? "
                "AND example_index = ?",
                key,
            ) as cursor:
                before = await cursor.fetchone()
            await db.execute(
                f"INSERT INTO eval_results (profile, run_id, {_RESULT_COLUMNS}) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (profile, run_id, model_key, example_index) DO UPDATE SET "
                "answer=excluded.answer, score=excluded.score, passed=excluded.passed, "
                "sub_scores=excluded.sub_scores, error=excluded.error, error_kind=excluded.error_kind, "
                "prompt_tokens=excluded.prompt_tokens, completion_tokens=excluded.completion_tokens, "
                "seconds=excluded.seconds, finished_at=excluded.finished_at, "
                "judge_prompt_tokens=excluded.judge_prompt_tokens, judge_completion_tokens=excluded.judge_completion_tokens",
                row,
            )
            added = 0 if before is not None else 1
            errors = (result.error is not None) - (before is not None and before[0] is not None)
            await db.execute(
                "UPDATE eval_runs SET done = done + ?, errors = errors + ? WHERE profile = ? AND id = ?",
                (added, errors, self.profile, run_id),
            )
            await db.commit()

        async def locked() -> None:
            async with self._writing:
                await self.cache.run(write)

        # Shielded: a cancel between the INSERT and the COMMIT would leave the row without its
        # counters in an open transaction, for whatever write came next to commit.
        await asyncio.shield(locked())

    async def results(
        self, run_id: str, model_key: str | None = None, *, answers: bool = True
    ) -> list[ExampleResult]:
        """A run's results by example, then model key; `answers=False`: without their answers
        (None: a summary needs none, and a long answer costs reading). Decoded in a thread
        when there are many, so the loop keeps drawing."""
        columns = _RESULT_COLUMNS if answers else _RESULT_COLUMNS_NO_ANSWER
        sql = f"SELECT {columns} FROM eval_results WHERE profile = ? AND run_id = ?"
        params: tuple[Any, ...] = (self.profile, run_id)
        if model_key is not None:
            sql += " AND model_key = ?"
            params += (model_key,)
        sql += " ORDER BY example_index, model_key"

        async def read(db: aiosqlite.Connection) -> list[ExampleResult]:
            async with db.execute(sql, params) as cursor:
                rows = await cursor.fetchall()
            if len(rows) < THREAD_DECODING_ROWS:
                return [_result(row) for row in rows]
            return await asyncio.to_thread(lambda: [_result(row) for row in rows])

        return await self.cache.run(read)

    async def stored(self, run_id: str) -> list[tuple[str, int, bool]]:
        """(model key, example index, has an error) of every stored result: what a resume skips."""

        async def read(db: aiosqlite.Connection) -> list[tuple[str, int, bool]]:
            async with db.execute(
                "SELECT model_key, example_index, error IS NOT NULL FROM eval_results WHERE profile = ? AND run_id = ?",
                (self.profile, run_id),
            ) as cursor:
                rows = await cursor.fetchall()
            return [(str(key), int(index), bool(erred)) for key, index, erred in rows]

        return await self.cache.run(read)

    async def delete_errors(self, run_id: str, model_keys: Iterable[str] | None = None) -> int:
        """Drop the results stored with an error (of these models, or all), so they are
        asked again; the counters follow. Returns how many went."""
        keys = None if model_keys is None else list(model_keys)

        async def write(db: aiosqlite.Connection) -> int:
            sql = "DELETE FROM eval_results WHERE profile = ? AND run_id = ? AND error IS NOT NULL"
            params: tuple[Any, ...] = (self.profile, run_id)
            if keys is not None:
                sql += f" AND model_key IN ({', '.join('?' for _ in keys)})"
                params += tuple(keys)
            cursor = await db.execute(sql, params)
            gone = max(cursor.rowcount, 0)
            await db.execute(
                "UPDATE eval_runs SET done = done - ?, errors = errors - ? WHERE profile = ? AND id = ?",
                (gone, gone, self.profile, run_id),
            )
            await db.commit()
            return gone

        return await self.cache.run(write)

    async def _write(self, sql: str, params: tuple[Any, ...]) -> None:
        async def write(db: aiosqlite.Connection) -> None:
            await db.execute(sql, params)
            await db.commit()

        await self.cache.run(write)


def _result_values(result: ExampleResult) -> tuple[Any, ...]:
    return (
        result.answer,
        result.score,
        None if result.passed is None else int(result.passed),
        json.dumps(result.sub_scores),
        result.error,
        result.error_kind,
        result.prompt_tokens,
        result.completion_tokens,
        result.seconds,
        result.finished_at,
        result.judge_prompt_tokens,
        result.judge_completion_tokens,
    )


def _json(text: Any, what: str) -> Any:
    try:
        return json.loads(text)
    except (TypeError, ValueError):
        raise DamagedRow(f"a cached evaluation's {what} is not JSON") from None


def _run(row: Any) -> StoredRun | None:
    """A stored run; None for one whose JSON this version cannot read (a later version's:
    it is left alone, not taken for damage)."""
    run_id, created_at, status, settings, examples, done, errors, skipped, notes, notes_model, owner = row
    settings_json, skipped_json = _json(settings, "settings"), _json(skipped, "skipped rows")
    try:
        parsed = EvalSettings.from_json(settings_json)
        problems = tuple(ExampleProblem.from_json(p) for p in skipped_json)
        info = EvalRunInfo(
            id=str(run_id),
            created_at=float(created_at),
            settings=parsed,
            status=str(status),
            examples=int(examples),
            done=int(done),
            errors=int(errors),
            skipped=problems,
            notes=notes if isinstance(notes, str) else None,
            notes_model=notes_model if isinstance(notes_model, str) else None,
        )
    except (KeyError, TypeError, ValueError, AttributeError):
        return None
    return StoredRun(info, owner if isinstance(owner, str) else None)


def _result(row: Any) -> ExampleResult:
    key, index, answer, score, passed, sub_scores, error, error_kind, prompt, completion, seconds, finished, *judge = row
    judge_prompt, judge_completion = judge or (None, None)
    subs = _json(sub_scores, "sub-scores")
    if not isinstance(subs, dict):
        raise DamagedRow("a cached evaluation result's sub-scores are not an object")
    return ExampleResult(
        model_key=str(key),
        example_index=int(index),
        answer=answer if isinstance(answer, str) else None,
        score=float(score) if isinstance(score, (int, float)) else None,
        passed=None if passed is None else bool(passed),
        sub_scores={str(k): float(v) for k, v in subs.items() if isinstance(v, (int, float))},
        error=error if isinstance(error, str) else None,
        error_kind=error_kind if isinstance(error_kind, str) else None,
        prompt_tokens=prompt if isinstance(prompt, int) else None,
        completion_tokens=completion if isinstance(completion, int) else None,
        seconds=float(seconds or 0.0),
        finished_at=float(finished or 0.0),
        judge_prompt_tokens=judge_prompt if isinstance(judge_prompt, int) else None,
        judge_completion_tokens=judge_completion if isinstance(judge_completion, int) else None,
    )
