"""Evaluation runs in the cache (`evaluate/store.py`, cache schema 4) and what
`service.evaluations` checks and shows without an API: the settings a run is refused for,
prefix lookup, runs a dead process left `running`."""

from __future__ import annotations

import dataclasses
import json
import socket
import sqlite3

import pytest
from conftest import generate_dataset

from tunedeck.core.bootstrap import open_service
from tunedeck.core.cache import SCHEMA_VERSION, Cache
from tunedeck.core.evaluate.records import (
    EvalSettings,
    ExampleProblem,
    ExampleResult,
    GraderChoice,
    ModelSpec,
    Sampling,
)
from tunedeck.core.evaluate.store import EvalStore, is_alive, new_run_id, this_process
from tunedeck.core.service import ServiceError


def settings(data: str = "/data/rows.jsonl", *labels: str, **changes) -> EvalSettings:
    models = tuple(ModelSpec(f"model-{label}", label) for label in (labels or ("base", "tuned")))
    return dataclasses.replace(EvalSettings(data, "abc", models), **changes)


def result(key: str, index: int, *, score: float | None = 1.0, error: str | None = None) -> ExampleResult:
    return ExampleResult(
        key,
        index,
        None if error == "request" else "answer",
        score if error is None else None,
        None if error else score == 1.0,
        {"label": 1.0} if error is None else {},
        error=f"{error} failed" if error else None,
        error_kind=error,
        prompt_tokens=12,
        completion_tokens=3,
        seconds=0.5,
        finished_at=99.0,
    )


@pytest.fixture
async def store(tmp_path):
    cache = await Cache.open(tmp_path / "c.sqlite3")
    yield EvalStore(cache, "p")
    await cache.close()


# -- the store -----------------------------------------------------------------------------------


async def test_a_run_keeps_its_settings_and_skipped_rows_and_lists_newest_first(store):
    skipped = (ExampleProblem(4, "messages", "no assistant message"),)
    old = await store.create(settings(), examples=10, skipped=skipped, created_at=100.0)
    new = await store.create(settings(sampling=Sampling(0.7, 32, 5), limit=10), examples=10, created_at=200.0)
    assert old.id.startswith("eval-") and len(old.id) == 17 and old.id != new.id
    assert [s.info.id for s in await store.runs()] == [new.id, old.id]
    stored = (await store.get(old.id)).info
    assert stored == old and stored.skipped == skipped and stored.total == 20 and stored.status == "created"
    assert (await store.get(new.id)).info.settings.sampling == Sampling(0.7, 32, 5)
    other = EvalStore(store.cache, "q")  # runs are per profile
    assert await other.runs() == [] and await other.get(old.id) is None


async def test_results_are_upserted_and_the_counters_follow_in_the_same_write(store):
    run = await store.create(settings(), examples=3, created_at=1.0)
    await store.put_result(run.id, result("base", 0))
    await store.put_result(run.id, result("tuned", 0, error="request"))
    await store.put_result(run.id, result("base", 1, error="grader"))
    info = (await store.get(run.id)).info
    assert (info.done, info.errors) == (3, 2)

    await store.put_result(run.id, result("tuned", 0, score=0.0))  # asked again: replaces the error
    info = (await store.get(run.id)).info
    assert (info.done, info.errors) == (3, 1)
    rows = await store.results(run.id)
    assert [(r.example_index, r.model_key) for r in rows] == [(0, "base"), (0, "tuned"), (1, "base")]
    assert rows[0] == result("base", 0) and rows[1].passed is False and rows[2].error_kind == "grader"
    assert await store.results(run.id, "tuned") == [rows[1]]
    assert sorted(await store.stored(run.id)) == [("base", 0, False), ("base", 1, True), ("tuned", 0, False)]
    assert await store.recount(run.id) == (3, 1)


async def test_errors_can_be_dropped_notes_saved_and_a_run_deleted_with_its_results(store):
    run = await store.create(settings(), examples=2, created_at=1.0)
    for key in ("base", "tuned"):
        await store.put_result(run.id, result(key, 0, error="request"))
        await store.put_result(run.id, result(key, 1))
    assert await store.delete_errors(run.id, ["tuned"]) == 1
    assert ((await store.get(run.id)).info.done, (await store.get(run.id)).info.errors) == (3, 1)
    assert await store.delete_errors(run.id) == 1
    assert (await store.get(run.id)).info.errors == 0

    await store.set_notes(run.id, "add rows about refunds", "o4-mini")
    info = (await store.get(run.id)).info
    assert (info.notes, info.notes_model) == ("add rows about refunds", "o4-mini")

    await store.delete(run.id)
    assert await store.get(run.id) is None and await store.results(run.id) == []


async def test_ids_are_found_by_a_prefix_and_an_exact_id_comes_first(store):
    a = await store.create(settings(), examples=1, created_at=1.0, run_id="eval-aaa111")
    await store.create(settings(), examples=1, created_at=2.0, run_id="eval-aaa111b")
    await store.create(settings(), examples=1, created_at=3.0, run_id="eval-bbb222")
    assert await store.find("eval-b") == ["eval-bbb222"]
    assert await store.find("eval-aaa111") == [a.id, "eval-aaa111b"]
    assert await store.find("eval-%") == [] and await store.find("eval-_") == []  # no LIKE wildcards
    assert new_run_id() != new_run_id()


async def test_a_status_is_set_with_its_owner_and_a_claim_is_won_once(store):
    run = await store.create(settings(), examples=1, created_at=1.0)
    assert await store.claim(run.id, "host:1:1", None)
    assert not await store.claim(run.id, "host:2:2", None)  # the other process read it before the first claimed it
    stored = await store.get(run.id)
    assert (stored.info.status, stored.owner) == ("running", "host:1:1")
    await store.set_status(run.id, "finished", owner="host:1:1")  # kept only while it runs
    stored = await store.get(run.id)
    assert (stored.info.status, stored.owner) == ("finished", None)


def test_only_a_live_process_on_this_host_owns_a_run():
    assert is_alive(this_process())
    assert not is_alive(None) and not is_alive("") and not is_alive("elsewhere:1:1")
    assert not is_alive(f"{socket.gethostname()}:99999999:1")  # no such process
    assert not is_alive(this_process() + "0")  # this pid, but another start: a reused pid


async def test_a_run_this_version_cannot_read_is_left_out_not_taken_for_damage(store):
    good = await store.create(settings(), examples=1, created_at=1.0)
    await store.create(settings(), examples=1, created_at=2.0, run_id="eval-future")

    async def break_it(db):
        await db.execute("UPDATE eval_runs SET settings = ? WHERE id = 'eval-future'", (json.dumps({"v": 9}),))
        await db.commit()

    await store.cache.run(break_it)
    assert [s.info.id for s in await store.runs()] == [good.id]
    assert await store.get("eval-future") is None
    assert store.cache.recovery_note is None


async def test_a_schema_3_cache_gains_the_evaluation_tables_and_keeps_its_rows(tmp_path):
    path = tmp_path / "c.sqlite3"
    cache = await Cache.open(path)
    await cache.upsert_jobs("p", [{"id": "ftjob-a", "created_at": 1, "status": "running"}])
    await cache.close()
    with sqlite3.connect(path) as db:  # as tunedeck left it before evaluations
        db.execute("DROP TABLE eval_results")
        db.execute("DROP TABLE eval_runs")
        db.execute("PRAGMA user_version = 3")
    db.close()

    cache = await Cache.open(path)
    store = EvalStore(cache, "p")
    run = await store.create(settings(), examples=1, created_at=1.0)
    await store.put_result(run.id, result("base", 0))
    assert [j["id"] for j in await cache.jobs("p")] == ["ftjob-a"]
    await cache.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 5
    db.close()


# -- what the service checks and shows without an API ---------------------------------------------


@pytest.fixture
async def evaluations(paths):
    service = await open_service(paths=paths)
    yield service.evaluations
    await service.close()


@pytest.fixture
def rows(tmp_path):
    return generate_dataset("sft", 12, tmp_path / "rows.jsonl", "--learnable")


async def test_create_reads_the_data_and_lists_the_rows_it_cannot_evaluate(evaluations, tmp_path, rows):
    text = rows.read_text().splitlines()
    text[2] = '{"messages": [{"role": "user", "content": "no answer"}], "x": 1'  # not JSON
    data = tmp_path / "some-bad.jsonl"
    data.write_text("\n".join(text) + "\n")
    info = await evaluations.create(settings(str(data), limit=None))
    assert info.examples == 11 and info.settings.data_sha256 != "abc"
    (problem,) = info.skipped
    assert problem.line == 3
    assert info.settings.data_path == str(data.resolve())
    assert (await evaluations.run_info(info.id[:9])).id == info.id  # a prefix finds it

    limited = await evaluations.create(settings(str(data), limit=4))
    assert limited.examples == 4 and limited.total == 8
    assert len((await evaluations.examples(limited.id)).examples) == 4


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"models": ()}, "at least one model"),
        ({"models": (ModelSpec("a", "x"), ModelSpec("b", "x"))}, "two models are labelled 'x'"),
        ({"models": (ModelSpec(" ", "x"),)}, "has no model name"),
        ({"concurrency": 0}, "concurrency must be a whole number from 1 to 64"),
        ({"concurrency": 65}, "concurrency must be a whole number from 1 to 64"),
        ({"sampling": Sampling(2.5, 10)}, "temperature must be from 0 to 2"),
        ({"sampling": Sampling(0.0, 0)}, "max tokens must be at least 1"),
        ({"limit": 0}, "row limit must be at least 1"),
        ({"grader": GraderChoice(kind="model")}, "grader: a model grader needs a judge model"),
        ({"grader": GraderChoice(kind="custom", grader={"type": "python", "source": "x"})}, "grader: "),
    ],
)
async def test_create_refuses_settings_naming_what_is_wrong(evaluations, rows, change, words):
    with pytest.raises(ServiceError, match=words) as refused:
        await evaluations.create(settings(str(rows), **change))
    assert refused.value.kind == "input"
    assert await evaluations.runs() == []


async def test_create_refuses_data_it_cannot_read_naming_the_file(evaluations, tmp_path):
    with pytest.raises(ServiceError, match="missing.jsonl") as refused:
        await evaluations.create(settings(str(tmp_path / "missing.jsonl")))
    assert refused.value.kind == "input"
    empty = tmp_path / "nothing.jsonl"
    empty.write_text('{"messages": [{"role": "user", "content": "hi"}]}\n')  # RFT row, no reference: fine
    assert (await evaluations.create(settings(str(empty)))).examples == 1
    empty.write_text("not json\n")
    with pytest.raises(ServiceError, match="nothing.jsonl.*line 1|nothing.jsonl:1"):
        await evaluations.create(settings(str(empty)))


async def test_a_run_whose_data_changed_refuses_to_read_it_again(evaluations, rows):
    info = await evaluations.create(settings(str(rows)))
    rows.write_text(rows.read_text().replace("billing", "invoices"))
    with pytest.raises(ServiceError, match="changed since evaluation"):
        await evaluations.examples(info.id)
    with pytest.raises(ServiceError, match="not connected"):
        await evaluations.execute(info.id)


async def test_an_ambiguous_prefix_asks_for_more_and_an_unknown_id_is_none(evaluations, rows):
    await evaluations.store.create(settings(str(rows)), examples=1, created_at=1.0, run_id="eval-abc1")
    await evaluations.store.create(settings(str(rows)), examples=1, created_at=2.0, run_id="eval-abc2")
    with pytest.raises(ServiceError, match="several"):
        await evaluations.run_info("eval-abc")
    assert (await evaluations.run_info("eval-abc2")).id == "eval-abc2"
    assert await evaluations.run_info("eval-zzz") is None
    with pytest.raises(ServiceError, match="no evaluation 'eval-zzz'"):
        await evaluations.results("eval-zzz")


async def test_a_run_left_running_by_a_dead_process_shows_interrupted(evaluations, rows):
    info = await evaluations.create(settings(str(rows)))
    await evaluations.store.set_status(info.id, "running", owner=f"{socket.gethostname()}:99999999:1")
    assert (await evaluations.run_info(info.id)).status == "interrupted"
    await evaluations.store.set_status(info.id, "running", owner=this_process())  # this process, not running it
    assert (await evaluations.runs())[0].status == "interrupted"
    stored = await evaluations.store.get(info.id)
    assert stored.info.status == "running"  # only shown so: the row is left as the owner wrote it
    await evaluations.delete(info.id)
    assert await evaluations.runs() == []


async def test_results_can_be_read_without_their_answers_and_many_decode_the_same(store, monkeypatch):
    import asyncio

    from tunedeck.core.evaluate import store as store_module

    run = await store.create(settings(), examples=3, created_at=1.0)
    for index in range(3):
        await store.put_result(run.id, result("base", index))
    full = await store.results(run.id)
    bare = await store.results(run.id, answers=False)
    assert [r.answer for r in full] == ["answer"] * 3 and [r.answer for r in bare] == [None] * 3
    assert [dataclasses.replace(r, answer=None) for r in full] == bare
    threads = []
    real_to_thread = asyncio.to_thread

    async def to_thread(func, *args, **kwargs):
        threads.append(func)
        return await real_to_thread(func, *args, **kwargs)

    monkeypatch.setattr(store_module, "THREAD_DECODING_ROWS", 2)
    monkeypatch.setattr(asyncio, "to_thread", to_thread)
    assert await store.results(run.id) == full and len(threads) == 1  # decoded off the loop


def test_a_problem_standing_for_rows_not_listed_counts_them_and_old_json_reads():
    from tunedeck.core.evaluate.records import skipped_rows

    listed = (ExampleProblem(2, "messages", "bad"), ExampleProblem(90, None, "and 40 more rows", 40))
    assert skipped_rows(listed) == 41
    assert tuple(ExampleProblem.from_json(p.to_json()) for p in listed) == listed
    assert ExampleProblem.from_json({"line": 3, "field": None, "message": "m"}).rows == 1
