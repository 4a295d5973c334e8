import sqlite3

from tunedeck.core.cache import Cache
from tunedeck.core.records import Job, JobEvent


def job(job_id: str, created_at: int, status: str = "running") -> dict:
    return {
        "id": job_id,
        "object": "fine_tuning.job",
        "created_at": created_at,
        "model": "tunedeck-ngram",
        "status": status,
        "method": {"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 3}}},
        "error": {},
        "user_provided_suffix": None,  # a field the SDK does not declare survives the round trip
    }


def event(event_id: str, step: int | None = None) -> dict:
    if step is None:
        return {"id": event_id, "created_at": 1, "level": "info", "message": "hello", "type": "message", "data": {}}
    data = {"step": step, "total_steps": 10, "train_loss": 1.0 / step}
    return {"id": event_id, "created_at": 1, "level": "info", "message": f"Step {step}", "type": "metrics", "data": data}


async def test_jobs_round_trip_newest_first_and_per_profile(tmp_path):
    cache = await Cache.open(tmp_path / "c.sqlite3")
    await cache.upsert_jobs("p1", [job("ftjob-a", 100), job("ftjob-b", 200)])
    await cache.upsert_jobs("p2", [job("ftjob-c", 300)])
    await cache.upsert_jobs("p1", [job("ftjob-a", 100, status="succeeded")])
    await cache.close()

    reopened = await Cache.open(tmp_path / "c.sqlite3")
    rows = await reopened.jobs("p1")
    assert [r["id"] for r in rows] == ["ftjob-b", "ftjob-a"]
    assert rows[1]["status"] == "succeeded"
    assert "user_provided_suffix" in rows[1]
    assert Job.from_api(rows[1]).error_code is None
    assert await reopened.job("p2", "ftjob-a") is None
    await reopened.close()


async def test_events_keep_order_skip_duplicates_and_track_latest_metrics(tmp_path):
    cache = await Cache.open(tmp_path / "c.sqlite3")
    assert await cache.add_events("p", "ftjob-a", [event("e1"), event("e2", 1)]) == 2
    assert await cache.add_events("p", "ftjob-a", [event("e2", 1), event("e3", 2)]) == 1
    events = [JobEvent.from_api("ftjob-a", e) for e in await cache.events("p", "ftjob-a")]
    assert [e.id for e in events] == ["e1", "e2", "e3"]
    assert await cache.newest_event_id("p", "ftjob-a") == "e3"
    assert (await cache.latest_metrics("p"))["ftjob-a"]["step"] == 2
    await cache.close()


async def test_cache_uses_wal_and_holds_no_secrets(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-must-not-be-cached")
    path = tmp_path / "c.sqlite3"
    cache = await Cache.open(path)
    await cache.upsert_jobs("p", [job("ftjob-a", 1)])
    await cache.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert b"sk-must-not-be-cached" not in path.read_bytes()


# The schema of version 2 as it was shipped: what an older tunedeck left on disk.
SCHEMA_2 = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE jobs (profile TEXT NOT NULL, id TEXT NOT NULL, created_at INTEGER NOT NULL, status TEXT NOT NULL,
    body TEXT NOT NULL, PRIMARY KEY (profile, id));
CREATE INDEX jobs_by_created ON jobs (profile, created_at DESC);
CREATE TABLE events (profile TEXT NOT NULL, job_id TEXT NOT NULL, id TEXT NOT NULL, seq INTEGER NOT NULL,
    type TEXT NOT NULL, body TEXT NOT NULL, PRIMARY KEY (profile, job_id, id));
CREATE INDEX events_by_seq ON events (profile, job_id, seq);
CREATE INDEX events_by_type ON events (profile, type, job_id, seq);
CREATE TABLE uploaded_files (profile TEXT NOT NULL, sha256 TEXT NOT NULL, purpose TEXT NOT NULL,
    bytes INTEGER NOT NULL, file_id TEXT NOT NULL, filename TEXT NOT NULL, created_at INTEGER NOT NULL,
    PRIMARY KEY (profile, sha256, purpose));
CREATE TABLE upload_sessions (profile TEXT NOT NULL, sha256 TEXT NOT NULL, purpose TEXT NOT NULL, path TEXT NOT NULL,
    bytes INTEGER NOT NULL, upload_id TEXT NOT NULL, part_size INTEGER NOT NULL, part_ids TEXT NOT NULL,
    expires_at REAL NOT NULL, PRIMARY KEY (profile, sha256, purpose));
PRAGMA user_version = 2;
"""


async def test_a_schema_2_cache_keeps_its_rows_and_gains_the_watch_tables(tmp_path):
    import json

    from tunedeck.core.cache import SCHEMA_VERSION, UploadedFile

    path = tmp_path / "c.sqlite3"
    with sqlite3.connect(path) as db:
        db.executescript(SCHEMA_2)
        db.execute(
            "INSERT INTO jobs VALUES (?, ?, ?, ?, ?)", ("p", "ftjob-a", 100, "running", json.dumps(job("ftjob-a", 100)))
        )
        for seq, e in enumerate([event("e1"), event("e2", 1), event("e3", 2)], start=1):
            row = ("p", "ftjob-a", e["id"], seq, e["type"], json.dumps(e))
            db.execute("INSERT INTO events VALUES (?, ?, ?, ?, ?, ?)", row)
        db.execute("INSERT INTO uploaded_files VALUES ('p', 'abc', 'fine-tune', 10, 'file-1', 't.jsonl', 5)")
    db.close()

    cache = await Cache.open(path)
    (row,) = await cache.job_rows("p")
    assert row.body["id"] == "ftjob-a" and row.metrics["step"] == 2
    assert (row.fetched_at, row.verdict, row.estimated_tokens) == (None, None, None)
    assert [e["id"] for e in await cache.events("p", "ftjob-a")] == ["e1", "e2", "e3"]
    kept = UploadedFile("abc", "fine-tune", 10, "file-1", "t.jsonl", 5)
    assert await cache.known_file("p", "abc", "fine-tune") == kept

    await cache.upsert_jobs("p", [job("ftjob-a", 100, "succeeded")], fetched_at=1234.5)
    await cache.set_verdict("p", "ftjob-a", {"state": "ok"})
    await cache.put_checkpoints("p", "ftjob-a", [{"id": "ftckpt-1", "step_number": 2, "created_at": 9}])
    (row,) = await cache.job_rows("p")
    assert (row.body["status"], row.fetched_at, row.verdict) == ("succeeded", 1234.5, {"state": "ok"})
    await cache.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 5
    db.close()

    reopened = await Cache.open(path)  # at the current version: nothing to add, nothing lost
    assert [c["id"] for c in await reopened.checkpoints("p", "ftjob-a")] == ["ftckpt-1"]
    await reopened.close()


async def test_job_rows_join_the_newest_metrics_and_what_watching_stored(tmp_path):
    cache = await Cache.open(tmp_path / "c.sqlite3")
    await cache.upsert_jobs("p", [job("ftjob-a", 100), job("ftjob-b", 200)], fetched_at=50.0)
    await cache.upsert_jobs("q", [job("ftjob-c", 300)])
    await cache.add_events("p", "ftjob-a", [event("e1", 1), event("e2"), event("e3", 3), event("e4")])
    await cache.set_estimated_tokens("p", "ftjob-a", 12_000)
    await cache.set_verdict("p", "ftjob-a", {"state": "watch"})
    await cache.set_estimated_tokens("p", "ftjob-a", 13_000)  # keeps the verdict
    await cache.upsert_jobs("p", [job("ftjob-a", 100)])  # no fetch time given: the stored one stays

    b, a = await cache.job_rows("p")
    assert (b.body["id"], b.metrics, b.verdict, b.estimated_tokens, b.fetched_at) == ("ftjob-b", None, None, None, 50.0)
    assert (a.metrics["step"], a.verdict, a.estimated_tokens, a.fetched_at) == (3, {"state": "watch"}, 13_000, 50.0)
    assert await cache.watch_state("p", "ftjob-a") == ({"state": "watch"}, 13_000)
    assert await cache.watch_state("p", "ftjob-b") == (None, None)
    assert [e["id"] for e in await cache.metric_events("p", "ftjob-a")] == ["e1", "e3"]
    await cache.close()


async def test_checkpoints_newest_first_and_a_complete_list_replaces_the_cached_one(tmp_path):
    def checkpoint(checkpoint_id: str, step: int) -> dict:
        return {"id": checkpoint_id, "step_number": step, "created_at": step, "fine_tuned_model_checkpoint": f"m{step}"}

    cache = await Cache.open(tmp_path / "c.sqlite3")
    await cache.put_checkpoints("p", "ftjob-a", [checkpoint("c1", 10), checkpoint("c3", 30), checkpoint("c2", 20)])
    assert [c["id"] for c in await cache.checkpoints("p", "ftjob-a")] == ["c3", "c2", "c1"]
    await cache.put_checkpoints("p", "ftjob-a", [checkpoint("c4", 40)])  # a list cut short: adds
    assert [c["id"] for c in await cache.checkpoints("p", "ftjob-a")] == ["c4", "c3", "c2", "c1"]
    await cache.put_checkpoints("p", "ftjob-a", [checkpoint("c4", 40), checkpoint("c3", 30)], complete=True)
    assert [c["id"] for c in await cache.checkpoints("p", "ftjob-a")] == ["c4", "c3"]
    assert await cache.checkpoints("p", "ftjob-b") == []
    await cache.close()


async def test_two_processes_migrating_a_schema_2_cache_at_once_both_open_it(tmp_path, monkeypatch):
    """Another process migrates the file between this one's look at the schema and its change:
    the change is made under the write lock, on the schema read again inside it."""
    import aiosqlite

    from tunedeck.core.cache import SCHEMA_VERSION

    path = tmp_path / "c.sqlite3"
    with sqlite3.connect(path) as db:
        db.executescript(SCHEMA_2)
    db.close()
    raced = []

    def other_process_migrates() -> None:
        other = sqlite3.connect(path, timeout=0, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")
            other.execute("ALTER TABLE jobs ADD COLUMN fetched_at REAL")
            other.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            other.execute("COMMIT")
            raced.append("migrated")
        except sqlite3.OperationalError as exc:  # this process holds the write lock: it waits its turn
            raced.append(str(exc))
        finally:
            other.close()

    real_connect = aiosqlite.connect

    def connect(*args, **kwargs):
        opening = real_connect(*args, **kwargs)

        async def opened():
            db = await opening
            real_execute = db.execute

            def execute(sql, *params):
                if sql.startswith("ALTER TABLE") and not raced:
                    other_process_migrates()
                return real_execute(sql, *params)

            db.execute = execute
            return db

        return opened()

    monkeypatch.setattr(aiosqlite, "connect", connect)
    cache = await Cache.open(path)
    monkeypatch.undo()
    assert raced == ["database is locked"]
    await cache.upsert_jobs("p", [job("ftjob-a", 100)], fetched_at=5.0)
    assert (await cache.job_rows("p"))[0].fetched_at == 5.0
    await cache.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    db.close()
    second = await Cache.open(path)  # the other process, after its wait: nothing left to do
    assert (await second.job_rows("p"))[0].fetched_at == 5.0
    await second.close()
