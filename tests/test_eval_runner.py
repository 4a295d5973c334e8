"""Running evaluations through `service.evaluations`, against the real local backend with a
model fine-tuned on learnable tickets (one per module: training is the slow part).

Requests are counted by wrapping `Api.chat` around the real call (nothing answers but the
backend); rate limits come from the backend's fault injection; the pauses between tries
and the clock of the ETA are the test's, so nothing sleeps.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket

import pytest
from eval_support import HELD_OUT, train, with_labels

from tunedeck.backend import BUILTIN_BASE_MODEL
from tunedeck.core.api import Api, ApiError
from tunedeck.core.bootstrap import open_service
from tunedeck.core.cache import Cache
from tunedeck.core.config import Profile
from tunedeck.core.evaluate import runner as runner_module
from tunedeck.core.evaluate.records import EvalSettings, GraderChoice, ModelSpec, Sampling
from tunedeck.core.evaluate.store import _start_time
from tunedeck.core.service import Service, ServiceError

MISSING_MODEL = "ft:tunedeck-ngram:local::nope"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    trained = train(tmp_path_factory.mktemp("eval-runner"))
    yield trained
    trained.backend.stop()


@pytest.fixture
async def service(trained, paths):
    service = await open_service(paths=paths, local_backend=trained.backend)
    service.pauses = []

    async def pause(seconds: float) -> None:  # the runner's backoff: recorded, not waited
        service.pauses.append(seconds)

    service.evaluations.sleep = pause
    service.evaluations.jitter = lambda: 1.0  # each pause its full doubled backoff
    await service.connect()
    yield service
    await service.close()
    trained.set_faults()


class ChatCounter:
    """`Api.chat` still asks the backend; this counts the requests and those in flight."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []  # (model, the prompt as JSON)
        self.in_flight = 0
        self.most_in_flight = 0


@pytest.fixture
def counter(monkeypatch) -> ChatCounter:
    counter = ChatCounter()
    real_chat = Api.chat

    async def chat(api, model, messages, **options):
        counter.calls.append((model, json.dumps(messages)))
        counter.in_flight += 1
        counter.most_in_flight = max(counter.most_in_flight, counter.in_flight)
        try:
            return await real_chat(api, model, messages, **options)
        finally:
            counter.in_flight -= 1

    monkeypatch.setattr(Api, "chat", chat)
    return counter


def settings(data, *models: tuple[str, str], concurrency: int = 4, limit: int | None = None, grader=None):
    return EvalSettings(
        data_path=str(data),
        data_sha256="",
        models=tuple(ModelSpec(model, label) for label, model in models),
        grader=grader or GraderChoice(),
        sampling=Sampling(0.0, 16),
        concurrency=concurrency,
        limit=limit,
    )


def both(trained) -> tuple[tuple[str, str], tuple[str, str]]:
    return ("base", BUILTIN_BASE_MODEL), ("fine-tuned", trained.fine_tuned)


# -- what an evaluation finds --------------------------------------------------------------------


async def test_the_fine_tuned_model_scores_higher_than_its_base_on_held_out_rows(service, trained):
    evaluations = service.evaluations
    info = await evaluations.create(settings(trained.held_out, *both(trained)))
    assert (info.status, info.examples, info.total, info.skipped) == ("created", HELD_OUT, 2 * HELD_OUT, ())

    done = await evaluations.execute(info.id)
    assert (done.status, done.done, done.errors) == ("finished", 2 * HELD_OUT, 0)
    base, tuned = (await evaluations.summary(info.id)).scores
    assert base.mean is not None and tuned.mean is not None
    assert tuned.mean >= 0.7 and base.mean <= 0.3
    assert tuned.interval.low > base.interval.high  # the intervals do not overlap
    (pair,) = (await evaluations.summary(info.id)).pairs
    assert (pair.a, pair.b, pair.n) == ("base", "fine-tuned", HELD_OUT)
    assert pair.b_only > pair.a_only and pair.p_value < 0.001
    results = await evaluations.results(info.id)
    assert len(results) == 2 * HELD_OUT and all(r.prompt_tokens and r.finished_at for r in results)


@pytest.mark.parametrize("limit", [1, 3, 8])
async def test_exactly_the_concurrency_limit_of_requests_is_in_flight(service, trained, counter, limit):
    info = await service.evaluations.create(settings(trained.held_out, *both(trained), concurrency=limit, limit=20))
    done = await service.evaluations.execute(info.id)
    assert done.status == "finished" and len(counter.calls) == 40
    assert counter.most_in_flight == limit


# -- stopping and going on -------------------------------------------------------------------------


async def test_a_cancelled_run_resumes_without_asking_again_what_it_stored(service, trained, counter):
    evaluations = service.evaluations
    info = await evaluations.create(settings(trained.held_out, *both(trained), concurrency=3))
    heard = []

    def progress(p) -> None:
        heard.append(p)
        if p.done >= 25 and not task.cancelling():
            task.cancel()

    task = asyncio.create_task(evaluations.execute(info.id, progress))
    with pytest.raises(asyncio.CancelledError):
        await task
    stopped = await evaluations.run_info(info.id)
    assert stopped.status == "cancelled" and 25 <= stopped.done < stopped.total
    assert stopped.done == len(await evaluations.results(info.id))  # the counters agree with the rows
    stored = {(r.model_key, r.example_index) for r in await evaluations.results(info.id)}
    asked_before = len(counter.calls)
    assert asked_before >= stopped.done  # those in flight were lost, nothing else

    counter.calls.clear()
    finished = await evaluations.execute(info.id)
    assert (finished.status, finished.done) == ("finished", finished.total)
    assert len(counter.calls) == finished.total - stopped.done  # only what was not stored
    prompts = {json.dumps(e.prompt): e.index for e in (await evaluations.examples(info.id)).examples}
    labels = {BUILTIN_BASE_MODEL: "base", trained.fine_tuned: "fine-tuned"}
    asked_again = {(labels[model], prompts[prompt]) for model, prompt in counter.calls}
    assert not asked_again & stored


async def test_a_run_its_process_left_running_shows_as_interrupted_and_resumes(service, trained):
    evaluations = service.evaluations
    info = await evaluations.create(settings(trained.held_out, *both(trained), limit=5))
    await evaluations.store.set_status(info.id, "running", owner=f"{socket.gethostname()}:99999999:1")
    assert (await evaluations.run_info(info.id)).status == "interrupted"
    assert [r.status for r in await evaluations.runs()] == ["interrupted"]

    parent = os.getppid()  # a live process that is not this one: its run is left alone
    await evaluations.store.set_status(
        info.id, "running", owner=f"{socket.gethostname()}:{parent}:{_start_time(parent)}"
    )
    assert (await evaluations.run_info(info.id)).status == "running"
    with pytest.raises(ServiceError, match="running in another tunedeck process"):
        await evaluations.execute(info.id)

    await evaluations.store.set_status(info.id, "interrupted")
    assert (await evaluations.execute(info.id)).status == "finished"


async def test_an_unreachable_api_stops_the_run_as_interrupted_storing_nothing(trained, paths, monkeypatch):
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("DEAD_KEY", "sk-test")
    profile = Profile("dead", "compatible", base_url=f"http://127.0.0.1:{port}/v1", api_key_env="DEAD_KEY")
    service = Service(profile, await Cache.open(paths.cache_db()), paths)
    pauses = []

    async def pause(seconds: float) -> None:
        pauses.append(seconds)

    service.evaluations.sleep = pause
    service.evaluations.jitter = lambda: 1.0
    await service.connect()
    try:
        info = await service.evaluations.create(
            settings(trained.held_out, ("fine-tuned", trained.fine_tuned), concurrency=1)
        )
        with pytest.raises(ServiceError, match="cannot reach the API"):
            await service.evaluations.execute(info.id)
        stopped = await service.evaluations.run_info(info.id)
        assert (stopped.status, stopped.done) == ("interrupted", 0)  # a resume asks them all again
        assert pauses[:3] == [1.0, 2.0, 4.0]  # each example tried 4 times, the pauses doubling
    finally:
        await service.close()


# -- failures stay on their example -----------------------------------------------------------------


async def test_a_grader_error_is_stored_on_its_example_and_the_run_goes_on(service, trained, tmp_path):
    data = with_labels(trained.held_out, tmp_path / "labelled.jsonl", drop_label_at=3)
    grader = {
        "type": "string_check",
        "name": "label",
        "operation": "eq",
        "input": "{{sample.output_text}}",
        "reference": "{{item.label}}",
    }
    info = await service.evaluations.create(
        settings(data, ("fine-tuned", trained.fine_tuned), grader=GraderChoice(kind="custom", grader=grader))
    )
    done = await service.evaluations.execute(info.id)
    assert (done.status, done.done, done.errors) == ("finished", HELD_OUT, 1)
    by_index = {r.example_index: r for r in await service.evaluations.results(info.id)}
    failed = by_index.pop(3)
    assert failed.error_kind == "grader" and "item.label" in failed.error
    assert failed.answer and failed.score is None and failed.passed is None  # the answer is kept
    assert all(r.score is not None and r.error is None for r in by_index.values())
    assert sum(r.passed for r in by_index.values()) >= 0.7 * (HELD_OUT - 1)


async def test_a_model_that_does_not_exist_errs_on_its_examples_and_the_other_completes(service, trained, counter):
    info = await service.evaluations.create(
        settings(trained.held_out, ("fine-tuned", trained.fine_tuned), ("missing", MISSING_MODEL), concurrency=2)
    )
    done = await service.evaluations.execute(info.id)
    assert (done.status, done.done, done.errors) == ("finished", 2 * HELD_OUT, HELD_OUT)
    results = await service.evaluations.results(info.id)
    missing = [r for r in results if r.model_key == "missing"]
    assert len(missing) == HELD_OUT
    assert all(r.error_kind == "request" and "does not exist" in r.error and r.answer is None for r in missing)
    tuned = [r for r in results if r.model_key == "fine-tuned"]
    assert len(tuned) == HELD_OUT and all(r.error is None and r.score is not None for r in tuned)
    # Refused the same way every time: given up after a few requests, not asked once per example.
    asked = sum(1 for model, _ in counter.calls if model == MISSING_MODEL)
    assert runner_module.REFUSED_AFTER <= asked <= runner_module.REFUSED_AFTER + 1


async def test_rate_limits_are_tried_again_after_doubling_pauses(service, trained):
    trained.set_faults({"method": "POST", "path": "/v1/chat/completions", "kind": "rate_limit", "every": 2, "times": 3})
    info = await service.evaluations.create(
        settings(trained.held_out, ("fine-tuned", trained.fine_tuned), concurrency=1, limit=5)
    )
    done = await service.evaluations.execute(info.id)
    assert (done.status, done.done, done.errors) == ("finished", 5, 0)
    assert service.pauses == [1.0, 1.0, 1.0]  # each 429 paused once, then the request went through


async def test_a_rate_limits_retry_after_is_waited_and_pauses_are_spread_at_random(service, trained):
    trained.set_faults(
        {"method": "POST", "path": "/v1/chat/completions", "kind": "rate_limit", "times": 2, "retry_after": 7}
    )
    draws = iter([0.0, 0.5, 1.0, 0.0])
    service.evaluations.jitter = lambda: next(draws)
    info = await service.evaluations.create(
        settings(trained.held_out, ("fine-tuned", trained.fine_tuned), concurrency=1, limit=2)
    )
    done = await service.evaluations.execute(info.id)
    assert (done.status, done.done, done.errors) == ("finished", 2, 0)
    assert service.pauses == [7.0, 7.0]  # what the server asked, over the backoff's 0.5 and 1.5

    trained.set_faults({"method": "POST", "path": "/v1/chat/completions", "kind": "rate_limit", "times": 2})
    service.pauses.clear()
    again = await service.evaluations.create(
        settings(trained.held_out, ("fine-tuned", trained.fine_tuned), concurrency=1, limit=1)
    )
    await service.evaluations.execute(again.id)
    assert service.pauses == [0.5 + 1.0 * 0.5, 1.0 + 0.0 * 1.0]  # half the backoff, plus a random half


async def test_an_example_still_limited_after_its_tries_stores_the_error_and_retry_errors_asks_it_again(
    service, trained
):
    trained.set_faults({"method": "POST", "path": "/v1/chat/completions", "kind": "rate_limit", "times": 4})
    info = await service.evaluations.create(
        settings(trained.held_out, ("fine-tuned", trained.fine_tuned), concurrency=1, limit=3)
    )
    done = await service.evaluations.execute(info.id)
    assert (done.status, done.done, done.errors) == ("finished", 3, 1)
    assert service.pauses == [1.0, 2.0, 4.0]
    (failed,) = [r for r in await service.evaluations.results(info.id) if r.error]
    assert failed.example_index == 0 and failed.error_kind == "request" and "429" in failed.error

    again = await service.evaluations.execute(info.id, retry_errors=True)
    assert (again.status, again.done, again.errors) == ("finished", 3, 0)
    assert all(r.error is None for r in await service.evaluations.results(info.id))


# -- progress and judges --------------------------------------------------------------------------


async def test_progress_counts_up_with_an_eta_from_the_observed_rate(service, trained):
    ticks = [0.0]

    def clock() -> float:
        ticks[0] += 0.25
        return ticks[0]

    service.evaluations.clock = clock
    heard = []
    info = await service.evaluations.create(settings(trained.held_out, *both(trained), limit=10, concurrency=2))
    await service.evaluations.execute(info.id, heard.append)
    assert heard[0].done == 0 and heard[0].eta_s is None and heard[0].total == 20
    assert [p.done for p in heard] == list(range(21))
    assert all(later.elapsed_s > earlier.elapsed_s for earlier, later in zip(heard, heard[1:]))
    for p in heard[1:]:
        assert p.eta_s == pytest.approx((p.total - p.done) * p.elapsed_s / p.done)
    assert heard[-1].eta_s == 0 and heard[-1].run_id == info.id


async def test_a_model_grader_asks_its_judge_for_every_answer(service, trained, counter):
    choice = GraderChoice(kind="model", judge_model=trained.fine_tuned)
    info = await service.evaluations.create(
        settings(trained.held_out, ("base", BUILTIN_BASE_MODEL), limit=3, grader=choice)
    )
    done = await service.evaluations.execute(info.id)
    assert done.status == "finished"
    assert [model for model, _ in counter.calls].count(trained.fine_tuned) == 3  # one judgement per answer
    # The ticket classifier answers a label, not a score: each is that example's grader error.
    results = await service.evaluations.results(info.id)
    assert all(r.error_kind == "grader" and "no score" in r.error for r in results)
    # The judge's tokens were spent all the same: they are kept, and counted in the summary.
    assert all(r.judge_prompt_tokens and r.judge_completion_tokens for r in results)
    score = (await service.evaluations.summary(info.id)).scores[0]
    assert score.judge_prompt_tokens == sum(r.judge_prompt_tokens for r in results)
    assert score.judge_cost_usd == 0.0 == score.cost_usd  # the local backend costs no money


# -- from a job, notes, the playground --------------------------------------------------------------


async def test_a_job_plan_finds_the_local_copy_of_its_validation_file(service, trained, paths):
    from tunedeck.core.cache import UploadedFile
    from tunedeck.core.evaluate.examples import file_sha256
    from tunedeck.core.recent import remember_file

    job = trained.job
    size, sha256 = trained.held_out.stat().st_size, file_sha256(trained.held_out)
    known = UploadedFile(sha256, "fine-tune", size, job["validation_file"], "held_out.jsonl", 1)
    await service.cache.remember_file(service.profile.name, known)
    await remember_file(service.cache, trained.folder / "train.jsonl")  # another size: not hashed
    await remember_file(service.cache, trained.held_out)

    planned = await service.evaluations.plan_for_job(job["id"])
    assert planned.data_path == str(trained.held_out.resolve()) and planned.data_sha256 == sha256
    assert not (paths.cache_dir / "eval-data").exists()  # nothing downloaded
    assert [(m.label, m.kind) for m in planned.models] == [
        ("base", "base"), ("fine-tuned", "fine_tuned"), ("step 300", "checkpoint"), ("step 600", "checkpoint"),
    ]  # fmt: skip
    assert planned.models[2].model.endswith(":ckpt-step-300") and planned.job_id == job["id"]
    assert planned.grader == GraderChoice()  # an SFT job: exact match

    other = trained.folder / "other.jsonl"
    other.write_bytes(trained.held_out.read_bytes()[: size // 2])
    chosen = await service.evaluations.plan_for_job(job["id"], data=other)
    assert chosen.data_path == str(other.resolve())


async def test_analyse_saves_the_notes_of_the_model_asked(service, trained, monkeypatch):
    info = await service.evaluations.create(settings(trained.held_out, *both(trained), limit=6))
    await service.evaluations.execute(info.id)
    notes = await service.evaluations.analyse(info.id, trained.fine_tuned, "base")
    assert notes  # the ticket classifier answers a label: notes all the same
    stored = await service.evaluations.run_info(info.id)
    assert (stored.notes, stored.notes_model) == (notes, trained.fine_tuned)
    assert trained.fine_tuned in await service.evaluations.analysis_models()

    with pytest.raises(ServiceError, match="no model 'nope'"):
        await service.evaluations.analyse(info.id, trained.fine_tuned, "nope")
    import tunedeck.core.evaluate.analysis as analysis

    monkeypatch.setattr(analysis, "suitable_analysis_models", lambda ids: [])
    with pytest.raises(ServiceError, match="serves no model that can write failure notes: fine-tune one"):
        await service.evaluations.analyse(info.id, "")


async def test_the_playground_streams_the_answer_a_chat_gives(service, trained):
    prompt = json.loads(trained.held_out.read_text().splitlines()[0])["messages"][:-1]
    whole = await service._call(lambda api: api.chat(trained.fine_tuned, prompt, temperature=0.0, max_tokens=8))
    chunks = [c async for c in service.evaluations.chat_stream(trained.fine_tuned, prompt, Sampling(0.0, 8))]
    assert chunks and "".join(chunks) == whole.text
    guess = await service._call(lambda api: api.chat(BUILTIN_BASE_MODEL, prompt, temperature=0.0, max_tokens=8))
    streamed = [c async for c in service.evaluations.chat_stream(BUILTIN_BASE_MODEL, prompt, Sampling(0.0, 8))]
    assert "".join(streamed) == guess.text != ""
    with pytest.raises(ApiError, match="does not exist"):
        [c async for c in service.evaluations.chat_stream(MISSING_MODEL, prompt, Sampling(0.0, 8))]


async def test_a_models_system_prompt_replaces_the_rows_own(service, trained, counter):
    prompted = EvalSettings(
        data_path=str(trained.held_out),
        data_sha256="",
        models=(
            ModelSpec(BUILTIN_BASE_MODEL, "prompted", "base", "Answer with one word."),
            ModelSpec(trained.fine_tuned, "tuned"),
        ),
        limit=2,
    )
    info = await service.evaluations.create(prompted)
    await service.evaluations.execute(info.id)
    sent = {model: json.loads(prompt) for model, prompt in counter.calls}
    assert sent[BUILTIN_BASE_MODEL][0] == {"role": "system", "content": "Answer with one word."}
    assert [m["role"] for m in sent[BUILTIN_BASE_MODEL]].count("system") == 1
    assert sent[trained.fine_tuned][0]["content"].startswith("Classify the support ticket")  # the row's own


async def test_a_job_launched_here_is_planned_on_the_validation_file_it_was_launched_with(service, trained, paths):
    from tunedeck.core.launch.request import LaunchRequest

    validation = trained.folder / "launched_valid.jsonl"
    validation.write_bytes(trained.held_out.read_bytes())
    request = LaunchRequest(
        training_path=trained.folder / "train.jsonl", validation_path=validation, model=BUILTIN_BASE_MODEL
    )
    job = await service.launch(request)

    planned = await service.evaluations.plan_for_job(job.id)
    assert planned.data_path == str(validation.resolve())  # remembered at launch, not downloaded
    assert not (paths.cache_dir / "eval-data").exists()
    await service.cancel(job.id)


async def test_an_answer_cut_before_any_text_is_an_error_to_raise_the_limit_for(service, trained, monkeypatch):
    from tunedeck.core.api import ChatAnswer

    real_chat = Api.chat

    async def chat(api, model, messages, **options):
        if model == BUILTIN_BASE_MODEL:  # a reasoning model that thought past its limit
            return ChatAnswer("", 20, options["max_tokens"], "length")
        return await real_chat(api, model, messages, **options)

    monkeypatch.setattr(Api, "chat", chat)
    info = await service.evaluations.create(settings(trained.held_out, *both(trained), limit=4))
    await service.evaluations.execute(info.id)
    results = await service.evaluations.results(info.id)
    base = [r for r in results if r.model_key == "base"]
    assert all(r.error_kind == "request" and "cut at max tokens (16)" in r.error for r in base)
    assert all(r.score is not None for r in results if r.model_key == "fine-tuned")


async def test_a_judge_reply_that_cannot_be_read_is_that_examples_error(service, trained, monkeypatch):
    from tunedeck.core.evaluate import graders

    calls = []

    def parse_judge(text):
        calls.append(text)
        if len(calls) == 2:
            raise ValueError("a reply no parser expected")
        return graders.Grade(1.0, {}, None)

    monkeypatch.setattr(graders, "parse_judge", parse_judge)
    choice = GraderChoice(kind="model", judge_model=trained.fine_tuned)
    info = await service.evaluations.create(settings(trained.held_out, ("base", BUILTIN_BASE_MODEL), limit=4, grader=choice))
    done = await service.evaluations.execute(info.id)
    assert done.status == "finished" and done.done == 4 and done.errors == 1
    results = await service.evaluations.results(info.id)
    assert sum(1 for r in results if r.error and "could not be read" in r.error) == 1


def test_an_rft_jobs_response_format_and_effort_are_asked_again_and_sent():
    from tunedeck.core.api import _chat_body
    from tunedeck.core.evaluate.service import _job_sampling
    from tunedeck.core.records import Job

    schema = {"type": "json_schema", "json_schema": {"name": "city", "schema": {"type": "object"}}}
    body = {
        "id": "ftjob-1", "model": "o4-mini-2025-04-16", "status": "succeeded", "created_at": 1,
        "method": {"type": "reinforcement", "reinforcement": {
            "grader": {"type": "string_check"}, "response_format": schema,
            "hyperparameters": {"reasoning_effort": "low"}}},
    }  # fmt: skip
    sampling = _job_sampling(Job.from_api(body))
    assert sampling.response_format == schema and sampling.reasoning_effort == "low"
    assert Sampling.from_json(sampling.to_json()) == sampling
    assert _job_sampling(Job.from_api({**body, "method": {"type": "supervised"}})) == Sampling()

    extra = {"response_format": schema, "reasoning_effort": "low"}
    sent = _chat_body("ft:o4-mini-2025-04-16:acme::x", [], 0.0, None, None, extra)
    assert sent["response_format"] == schema and sent["reasoning_effort"] == "low" and "temperature" not in sent
    plain = _chat_body("gpt-4.1-mini", [], 0.0, 16, None, extra)
    assert "reasoning_effort" not in plain and plain["response_format"] == schema


async def test_a_reasoning_model_gets_its_own_max_tokens_unless_the_user_chose_one(service, trained, monkeypatch):
    import dataclasses

    from tunedeck.core.api import ChatAnswer

    sent: dict[tuple[str, bool], list] = {}
    real_chat = Api.chat
    chosen = False

    async def chat(api, model, messages, **options):
        sent.setdefault((model, chosen), []).append(options["max_tokens"])
        if model == "o4-mini":  # a reasoning model: no such model here, so it answers for it
            return ChatAnswer("billing", 10, 300, "stop")
        return await real_chat(api, model, messages, **options)

    monkeypatch.setattr(Api, "chat", chat)
    both_kinds = settings(trained.held_out, ("reasoning", "o4-mini"), ("chat", trained.fine_tuned), limit=2)
    info = await service.evaluations.create(both_kinds)
    assert (await service.evaluations.execute(info.id)).errors == 0
    chosen = True
    given = dataclasses.replace(both_kinds, sampling=Sampling(0.0, 16, max_tokens_set=True))
    await service.evaluations.execute((await service.evaluations.create(given)).id)
    assert sent[("o4-mini", False)] == [None, None]  # the default 16 would leave it no words
    assert sent[(trained.fine_tuned, False)] == [16, 16]
    assert sent[("o4-mini", True)] == [16, 16] and sent[(trained.fine_tuned, True)] == [16, 16]
    # a run stored before the flag existed sent its limit to every model: a resume asks the same
    assert Sampling.from_json({"temperature": 0.0, "max_tokens": 256}).max_tokens_for(True) == 256
    assert Sampling.from_json(Sampling(0.0, 256).to_json()).max_tokens_for(True) is None


async def test_a_given_up_models_errors_do_not_hide_that_the_api_went_away(service, trained, monkeypatch):
    real_chat = Api.chat

    async def chat(api, model, messages, **options):
        if model == trained.fine_tuned:  # the connection went, for every request from now on
            raise ApiError("connection", "Connection error.")
        return await real_chat(api, model, messages, **options)  # a 404: given up after a few

    monkeypatch.setattr(Api, "chat", chat)
    run = settings(trained.held_out, ("missing", MISSING_MODEL), ("fine-tuned", trained.fine_tuned), concurrency=1)
    info = await service.evaluations.create(run)
    with pytest.raises(ServiceError, match="cannot reach the API"):
        await service.evaluations.execute(info.id)
    stopped = await service.evaluations.run_info(info.id)
    assert stopped.status == "interrupted" and stopped.done < HELD_OUT  # stopped, not run to the end


async def test_a_result_cancelled_while_it_is_written_keeps_its_counters(service, trained):
    from tunedeck.core.evaluate.records import ExampleResult

    store = service.evaluations.store
    info = await service.evaluations.create(settings(trained.held_out, ("fine-tuned", trained.fine_tuned)))
    real_run = service.cache.run
    entered = asyncio.Event()

    async def run(op):  # the write is cancelled while it is in the database, not before it
        async def slowed(db):
            entered.set()
            await asyncio.sleep(0)
            return await op(db)

        return await real_run(slowed)

    service.cache.run = run
    try:
        result = ExampleResult("fine-tuned", 0, None, None, None, error="boom", error_kind="request")
        writing = asyncio.create_task(store.put_result(info.id, result))
        await entered.wait()
        writing.cancel()
        with pytest.raises(asyncio.CancelledError):
            await writing
        assert await store.recount(info.id) == (1, 1)  # waited for the write, which committed
    finally:
        service.cache.run = real_run
    stored = await service.evaluations.run_info(info.id)
    assert (stored.done, stored.errors) == (1, 1)


async def test_two_executes_of_one_run_in_a_process_start_it_once(service, trained):
    info = await service.evaluations.create(settings(trained.held_out, ("fine-tuned", trained.fine_tuned), limit=2))
    first = asyncio.create_task(service.evaluations.execute(info.id))
    second = asyncio.create_task(service.evaluations.execute(info.id))
    done, failed = await asyncio.gather(first, second, return_exceptions=True)
    assert done.status == "finished" and done.done == 2
    assert isinstance(failed, ServiceError) and "already running" in str(failed)


async def test_a_run_another_live_process_runs_cannot_be_deleted(service, trained):
    store = service.evaluations.store
    info = await service.evaluations.create(settings(trained.held_out, ("fine-tuned", trained.fine_tuned), limit=2))
    parent = os.getppid()  # a live process that is not this one
    other = f"{socket.gethostname()}:{parent}:{_start_time(parent)}"
    assert await store.claim(info.id, other, None)
    with pytest.raises(ServiceError, match="another tunedeck process"):
        await service.evaluations.delete(info.id)
    await store.set_status(info.id, "interrupted")
    await service.evaluations.delete(info.id)
    assert await service.evaluations.run_info(info.id) is None


def test_retry_after_reads_milliseconds_seconds_and_dates():
    import email.utils
    import time

    from tunedeck.core.api import retry_after

    class Response:
        def __init__(self, **headers):
            self.headers = {k.replace("_", "-"): v for k, v in headers.items()}

    assert retry_after(Response(retry_after_ms="1500", retry_after="9")) == 1.5
    assert retry_after(Response(retry_after="9")) == 9.0
    soon = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 25 < retry_after(Response(retry_after=soon)) <= 30
    assert retry_after(Response(retry_after="soon")) is None
    assert retry_after(Response()) is None and retry_after(None) is None
    assert retry_after(Response(retry_after="-5")) == 0.0
