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
