"""Asking the models: every (model, example) of a run without a stored result, at most
`settings.concurrency` requests at once, each result stored the moment it arrives.

A fixed pool of `concurrency` workers pulls from one shared walk over the examples (example
by example, every model for each), so memory stays flat at any dataset size and no more than
`concurrency` requests (a judge's included: a worker asks its judge itself) are ever in
flight. What the cache already holds is skipped, so a run resumes where it stopped; with
`retry_errors` the results stored with an error are asked again (and replaced).

Failures, per example:

- A rate limit, a server error (5xx) or a connection failure is tried again after a pause
  that doubles (up to `backoff_s`, then 2x, 4x..., the second half of each drawn at random
  through the injectable `jitter`; never less than the server's `Retry-After`; through the
  injectable `sleep`), `tries` times in all; then the example stores a request error.
- Any other refusal (a 400, a 404 for a model that does not exist) is stored at once as the
  example's request error, and the run goes on.
- A model whose every request so far was refused the same way with a 404 or 403
  (`REFUSED_AFTER` of them, none answered) is not asked again in this run: its remaining
  examples store that error without a request. A model that does not exist costs a few
  requests, not one per example.
- A grader that cannot score an answer (a missing `{{item.*}}` field, a judge that gave no
  score) stores a grader error on that example; the answer is kept and the run goes on.
- When the API cannot be reached at all (`CONNECTION_STREAK` examples in a row failed for
  want of a connection, with no answer between), the run stops with `RunStopped`: those
  examples are not stored, so a resume asks them again.

Cancelling the task that runs it cancels the workers: the answers in flight are lost,
every stored result stays.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..api import ApiError, ChatAnswer, takes_temperature
from .records import EvalExample, EvalProgress, EvalRunInfo, ExampleResult, ModelSpec

if TYPE_CHECKING:  # pragma: no cover
    from ..api import Api
    from .graders import Grade
    from .store import EvalStore

Call = Callable[[Callable[["Api"], Awaitable[Any]]], Awaitable[Any]]
"""Runs one API call (the service's `_call`: a local backend that stopped is found again)."""
Sleep = Callable[[float], Awaitable[Any]]
Clock = Callable[[], float]

TRIES = 4
"""Attempts per request for passing failures (rate limits, 5xx, connection), the first included."""
BACKOFF_S = 1.0
MAX_BACKOFF_S = 30.0
MAX_RETRY_AFTER_S = 120.0
"""The longest wait a server's `Retry-After` is honoured for (a longer one is a broken header)."""
RETRIED_KINDS = ("rate_limit", "server", "connection")
REFUSED_KINDS = ("not_found", "permission")
REFUSED_AFTER = 3
"""Refusals (404/403, the same message, no answer) after which a model is asked no more."""
CONNECTION_STREAK = 8
"""Examples in a row that could not reach the API, after which the run stops."""
THREAD_GRADING_CHARS = 4000
"""Answers longer than this are graded in a thread, so the loop keeps drawing."""


class RunStopped(Exception):
    """The run stopped before its end for a reason the user must fix (the API is unreachable)."""


@dataclass
class _ModelState:
    answered: int = 0
    refusals: int = 0
    refusal: str | None = None
    """The one message every refusal so far carried (None once they differ, or another outcome came)."""
    mixed: bool = False
    dead: str | None = None
    """Set once the model is asked no more: the error its remaining examples store."""


@dataclass
class _Counts:
    done: int
    errors: int
    started_done: int
    asked: int = 0
    streak: list[ExampleResult] = field(default_factory=list)


class EvalRunner:
    """One execution of a run. `run()` returns when every pending result is stored."""

    def __init__(
        self,
        store: EvalStore,
        info: EvalRunInfo,
        examples: Sequence[EvalExample],
        call: Call,
        *,
        progress: Callable[[EvalProgress], None] | None = None,
        retry_errors: bool = False,
        clock: Clock = time.monotonic,
        wall_clock: Clock = time.time,
        sleep: Sleep = asyncio.sleep,
        jitter: Callable[[], float] = random.random,
        tries: int = TRIES,
        backoff_s: float = BACKOFF_S,
    ) -> None:
        self.store = store
        self.info = info
        self.settings = info.settings
        self.examples = examples
        """A list, or an `ExampleFile` that reads each row from disk when asked for."""
        self._call = call
        self._progress = progress
        self.retry_errors = retry_errors
        self._clock = clock
        self._wall_clock = wall_clock
        self._sleep = sleep
        self._jitter = jitter
        self.tries = max(1, tries)
        self.backoff_s = backoff_s
        self._models = {spec.label: _ModelState() for spec in self.settings.models}
        self._stored: dict[str, bytearray] = {}
        self._counts = _Counts(0, 0, 0)
        self._started = 0.0
        self._pending_total = 0

    @property
    def total(self) -> int:
        return len(self.examples) * len(self.settings.models)

    async def run(self) -> None:
        """Ask every pending (model, example); raises `RunStopped` when the API is unreachable
        and `CancelledError` when cancelled (stored results stay either way)."""
        done, errors = await self.store.recount(self.info.id)
        self._counts = _Counts(done, errors, done)
        await self._load_stored()
        self._pending_total = sum(1 for _ in self._pending())
        self._started = self._clock()
        self._report()
        pending = self._pending()
        workers = [
            asyncio.create_task(self._worker(pending))
            for _ in range(min(self.settings.concurrency, self._pending_total))
        ]
        try:
            await asyncio.gather(*workers)
        except BaseException:
            for worker in workers:
                worker.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            raise
        for result in self._counts.streak:  # connection failures at the very end: real errors
            await self._store(result)
        self._counts.streak.clear()

    async def _load_stored(self) -> None:
        n = len(self.examples)
        self._stored = {spec.label: bytearray(n) for spec in self.settings.models}
        for key, index, erred in await self.store.stored(self.info.id):
            marks = self._stored.get(key)
            if marks is not None and 0 <= index < n:
                marks[index] = 2 if erred else 1

    def _pending(self) -> Iterator[tuple[EvalExample, ModelSpec]]:
        """Example by example, each model in the run's order: what has no result to keep. Only
        those rows are read (a resumed run reads no row it has every answer for)."""
        for index in range(len(self.examples)):
            specs = [spec for spec in self.settings.models if self._wanted(spec, index)]
            if specs:
                example = self.examples[index]
                for spec in specs:
                    yield example, spec

    def _wanted(self, spec: ModelSpec, index: int) -> bool:
        mark = self._stored[spec.label][index]
        return mark == 0 or (mark == 2 and self.retry_errors)

    async def _worker(self, pending: Iterator[tuple[EvalExample, ModelSpec]]) -> None:
        # One shared iterator: `next` runs to completion between awaits, so no pair is taken twice.
        for example, spec in pending:
            result = await self._answer(example, spec)
            await self._store(result)

    # -- one example -------------------------------------------------------------------------

    async def _answer(self, example: EvalExample, spec: ModelSpec) -> ExampleResult | _ConnectionFailure | _NotAsked:
        from .examples import with_system_prompt

        state = self._models[spec.label]
        started = self._clock()
        if state.dead is not None:
            return _NotAsked(self._failed(spec, example, state.dead, "request", 0.0))
        sampling = self.settings.sampling
        messages = with_system_prompt(example.prompt, spec.system_prompt)
        max_tokens = sampling.max_tokens_for(not takes_temperature(spec.model))
        try:
            extra = {"response_format": sampling.response_format, "reasoning_effort": sampling.reasoning_effort}
            answer: ChatAnswer = await self._ask(
                spec.model, messages, sampling.temperature, max_tokens, sampling.seed, extra
            )
        except ApiError as exc:
            self._refused(spec, exc)
            failed = self._failed(spec, example, exc.message, "request", self._clock() - started)
            return _ConnectionFailure(failed) if exc.kind == "connection" else failed
        except Exception as exc:  # an answer the SDK could not read (a cut or malformed body): this example's
            state.mixed = True
            message = f"the answer could not be read: {type(exc).__name__}: {exc}"
            return self._failed(spec, example, message, "request", self._clock() - started)
        state.answered += 1
        state.mixed = True
        if not answer.text and answer.finish_reason == "length":
            # A reasoning model spends its limit thinking: an empty cut answer says nothing of
            # the model, so it is an error to raise the limit for, not a wrong answer.
            limit = f" ({max_tokens})" if max_tokens else ""
            message = f"the answer was cut at max tokens{limit} before any text; raise max tokens"
            return self._failed(spec, example, message, "request", self._clock() - started)
        grade = await self._grade(example, answer.text)
        score = grade.score
        passed = None
        if score is not None:
            from .graders import pass_threshold

            passed = score >= pass_threshold(self.settings.grader)
        return ExampleResult(
            model_key=spec.label,
            example_index=example.index,
            answer=answer.text,
            score=score,
            passed=passed,
            sub_scores=dict(grade.sub_scores),
            error=grade.error if score is None else None,
            error_kind="grader" if score is None else None,
            prompt_tokens=answer.prompt_tokens,
            completion_tokens=answer.completion_tokens,
            judge_prompt_tokens=grade.judge_prompt_tokens,
            judge_completion_tokens=grade.judge_completion_tokens,
            seconds=self._clock() - started,
            finished_at=self._wall_clock(),
        )

    def _failed(self, spec: ModelSpec, example: EvalExample, error: str, kind: str, seconds: float) -> ExampleResult:
        return ExampleResult(
            model_key=spec.label,
            example_index=example.index,
            answer=None,
            score=None,
            passed=None,
            error=error,
            error_kind=kind,
            seconds=seconds,
            finished_at=self._wall_clock(),
        )

    def _refused(self, spec: ModelSpec, exc: ApiError) -> None:
        """Count a refusal toward giving the model up (only while every outcome was one)."""
        state = self._models[spec.label]
        if state.mixed or state.dead is not None or exc.kind in RETRIED_KINDS:
            return
        if exc.kind not in REFUSED_KINDS or (state.refusal is not None and exc.message != state.refusal):
            state.mixed = True
            return
        state.refusal = exc.message
        state.refusals += 1
        if state.refusals >= REFUSED_AFTER:
            state.dead = f"{exc.message} (not asked: every request to {spec.model} was refused so)"

    async def _ask(
        self,
        model: str,
        messages: list[dict[str, Any]],
        temperature: float | None,
        max_tokens: int | None,
        seed: int | None,
        extra: dict[str, Any] | None = None,
    ) -> ChatAnswer:
        """One chat request, tried again after a growing pause while it fails in passing."""
        for attempt in range(self.tries):
            try:
                return await self._call(
                    lambda api: api.chat(
                        model, messages, temperature=temperature, max_tokens=max_tokens, seed=seed, retries=0, extra=extra
                    )
                )
            except ApiError as exc:
                if exc.kind not in RETRIED_KINDS or attempt == self.tries - 1:
                    raise
                await self._sleep(self._pause(attempt, exc.retry_after))
        raise AssertionError("unreachable")  # pragma: no cover

    def _pause(self, attempt: int, retry_after: float | None) -> float:
        """Before try `attempt + 2`: the doubled backoff, its second half drawn at random so
        workers limited together do not come back together, and never less than the server
        asked for."""
        ceiling = min(self.backoff_s * 2**attempt, MAX_BACKOFF_S)
        pause = ceiling / 2 + self._jitter() * ceiling / 2
        if retry_after is not None:
            pause = max(pause, min(retry_after, MAX_RETRY_AFTER_S))
        return pause

    async def _grade(self, example: EvalExample, answer: str) -> Grade:
        from .graders import Grade, grade, judge_messages, parse_judge

        choice = self.settings.grader
        if choice.kind == "model":
            judge = choice.judge_model or ""
            try:
                judged = await self._ask(judge, judge_messages(example, answer), 0.0, None, None)
                return dataclasses.replace(
                    parse_judge(judged.text),
                    judge_prompt_tokens=judged.prompt_tokens,
                    judge_completion_tokens=judged.completion_tokens,
                )
            except ApiError as exc:
                return Grade(None, {}, f"the judge {judge} could not be asked: {exc.message}")
            except Exception as exc:  # an unreadable reply is this example's, never the run's
                return Grade(None, {}, f"the judge {judge}'s reply could not be read: {type(exc).__name__}: {exc}")
        try:
            if len(answer) > THREAD_GRADING_CHARS:
                return await asyncio.to_thread(grade, choice, answer, example)
            return grade(choice, answer, example)
        except Exception as exc:  # a grader's own failure is that example's, never the run's
            return Grade(None, {}, f"the grader failed: {type(exc).__name__}: {exc}")

    # -- storing -----------------------------------------------------------------------------

    async def _store(self, result: ExampleResult | _ConnectionFailure | _NotAsked) -> None:
        counts = self._counts
        if isinstance(result, _NotAsked):  # no request was made: it says nothing of the connection
            await self._put(result.result)
            return
        if isinstance(result, _ConnectionFailure):
            counts.streak.append(result.result)
            if len(counts.streak) >= CONNECTION_STREAK:
                raise RunStopped(f"cannot reach the API ({result.result.error}); stopped after "
                                 f"{len(counts.streak)} examples in a row failed")  # fmt: skip
            return
        if counts.streak:  # the API answers again: those failures were the examples' own
            streak, counts.streak = counts.streak, []
            for failed in streak:
                await self._put(failed)
        await self._put(result)

    async def _put(self, result: ExampleResult) -> None:
        await self.store.put_result(self.info.id, result)
        marks = self._stored[result.model_key]
        before = marks[result.example_index]
        marks[result.example_index] = 2 if result.error is not None else 1
        counts = self._counts
        counts.asked += 1
        counts.done += before == 0
        counts.errors += (result.error is not None) - (before == 2)
        self._report()

    def _report(self) -> None:
        if self._progress is None:
            return
        counts = self._counts
        elapsed = max(0.0, self._clock() - self._started)
        eta = None
        if counts.asked and elapsed > 0:
            eta = max(0, self._pending_total - counts.asked) * elapsed / counts.asked
        self._progress(EvalProgress(self.info.id, counts.done, self.total, counts.errors, elapsed, eta))


@dataclass(frozen=True)
class _ConnectionFailure:
    """A result that failed for want of a connection: held back until the API answers again."""

    result: ExampleResult


@dataclass(frozen=True)
class _NotAsked:
    """The error of a model given up on, stored without a request (the streak goes on)."""

    result: ExampleResult
