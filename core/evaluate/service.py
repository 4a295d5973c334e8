"""`Evaluations`: what both front ends call to evaluate models (`service.evaluations`).

Runs live in the cache (`store.py`); asking the models is `runner.py`'s; the API is reached
through the service's `_call`, so a local backend that stopped is found again mid-run.
Validation problems raise `ServiceError` with kind `"input"` (the CLI exits 2 on them) and a
sentence naming the place (the file and line, the grader, the setting).

A run left `running` by a process that is gone (a crash, a closed terminal) is shown as
`interrupted`; `execute` continues it. Time is injectable: `clock` (monotonic seconds, for
the elapsed time and the ETA) and `sleep` (the pauses before a retry), so tests drive both.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import re
import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..api import ApiError
from ..service import ServiceError
from .records import EvalProgress, EvalRunInfo, EvalSettings, ExampleResult, ModelSpec, Sampling
from .store import EvalStore, StoredRun, is_alive, this_process

if TYPE_CHECKING:  # pragma: no cover
    from ..records import Checkpoint, Job
    from ..service import Service
    from .examples import ExampleSet
    from .results import EvalSummary

MAX_CONCURRENCY = 64
EVAL_DATA_FOLDER = "eval-data"
"""Under the cache folder: jobs' validation files downloaded to evaluate on."""
_SAFE_ID = re.compile(r"[^A-Za-z0-9_-]")


def _input_error(message: str) -> ServiceError:
    return ServiceError(message, "input")


class Evaluations:
    """One profile's evaluations (reach it as `service.evaluations`)."""

    def __init__(self, service: Service) -> None:
        self.service = service
        self.store = EvalStore(service.cache, service.profile.name)
        self.clock: Callable[[], float] = time.monotonic
        """Seconds for the elapsed time and the ETA (tests drive it)."""
        self.sleep: Callable[[float], Any] = asyncio.sleep
        """The pause before a request is tried again (tests pass one that does not wait)."""
        self.jitter: Callable[[], float] = random.random
        """The random share of each pause (tests fix it)."""
        self.tries: int | None = None
        self.backoff_s: float | None = None
        self._active: set[str] = set()

    # -- reading -----------------------------------------------------------------------------

    async def runs(self) -> list[EvalRunInfo]:
        """Every run of the profile, newest first."""
        return [self._shown(stored) for stored in await self.store.runs()]

    async def run_info(self, run_id: str) -> EvalRunInfo | None:
        """The run with this id, or the one run whose id starts so; None when none does."""
        stored = await self._find(run_id)
        return self._shown(stored) if stored is not None else None

    async def results(self, run_id: str) -> list[ExampleResult]:
        stored = await self._require(run_id)
        return await self.store.results(stored.info.id)

    async def examples(self, run_id: str) -> ExampleSet:
        """The run's rows, read again (in a thread); ServiceError when the file is gone or
        changed since the run was created (its answers were to other rows)."""
        info = (await self._require(run_id)).info
        return await self._read_examples(info)

    async def summary(self, run_id: str) -> EvalSummary:
        from .results import summarise

        info = (await self._require(run_id)).info
        results = await self.store.results(info.id, answers=False)  # a summary reads no answer
        return await asyncio.to_thread(summarise, info.settings, results, info.examples, local=self.is_local)

    @property
    def is_local(self) -> bool:
        """Answers cost nothing: the local backend (or a compatible profile serving it)."""
        return self.service.profile.backend == "local" or self.service.takes_tunedeck_options

    # -- creating and running ------------------------------------------------------------------

    async def create(self, settings: EvalSettings) -> EvalRunInfo:
        """Check the settings and the data, and store a new run (status `created`). Rows that
        cannot be evaluated are kept on it as `skipped`; the data's sha256 is filled in."""
        from ..recent import remember_file
        from .graders import grader_problem

        _check_settings(settings)
        problem = grader_problem(settings.grader)
        if problem is not None:
            raise _input_error(f"grader: {problem}")
        path = Path(settings.data_path).expanduser()
        examples = await _read(path, settings.limit)
        checked = dataclasses.replace(settings, data_path=str(path.resolve()), data_sha256=examples.sha256)
        info = await self.store.create(
            checked, examples=len(examples.examples), skipped=examples.problems, created_at=self.service.clock()
        )
        paths = self.service.paths
        if paths is None or (paths.cache_dir / EVAL_DATA_FOLDER).resolve() not in path.resolve().parents:
            await remember_file(self.service.cache, path)  # a dataset the user picked, not a download
        return info

    async def execute(
        self,
        run_id: str,
        progress: Callable[[EvalProgress], None] | None = None,
        *,
        retry_errors: bool = False,
    ) -> EvalRunInfo:
        """Ask every (model, example) without a stored result (`runner.py`), and return the
        run as it then stands: `finished`; `cancelled` when the task is cancelled (the
        cancellation goes on); `interrupted` with a ServiceError when the API cannot be
        reached. `retry_errors`: the results stored with an error are asked again."""
        from .runner import EvalRunner, RunStopped

        stored = await self._require(run_id)
        info = stored.info
        if info.id in self._active:
            raise ServiceError(f"evaluation {info.id} is already running")
        if info.status == "running" and stored.owner != this_process() and is_alive(stored.owner):
            raise ServiceError(f"evaluation {info.id} is running in another tunedeck process")
        self._active.add(info.id)  # before any await: a second execute() of it in this process is refused
        try:
            self.service._require_api()
            examples = await self._read_examples(info)
            if not await self.store.claim(info.id, this_process(), stored.owner):
                raise ServiceError(f"evaluation {info.id} was started by another tunedeck process meanwhile")
        except BaseException:
            self._active.discard(info.id)
            raise
        knobs: dict[str, Any] = {}
        if self.tries is not None:
            knobs["tries"] = self.tries
        if self.backoff_s is not None:
            knobs["backoff_s"] = self.backoff_s
        runner = EvalRunner(
            self.store,
            info,
            examples.examples,
            self.service._call,
            progress=progress,
            retry_errors=retry_errors,
            clock=self.clock,
            wall_clock=self.service.clock,
            sleep=self.sleep,
            jitter=self.jitter,
            **knobs,
        )
        try:
            await runner.run()
        except asyncio.CancelledError:
            await self._settle(info.id, "cancelled")
            raise
        except RunStopped as exc:
            await self._settle(info.id, "interrupted")
            raise ServiceError(f"evaluation {info.id} stopped: {exc}. It resumes where it stopped.") from None
        except BaseException:
            await self._settle(info.id, "interrupted")
            raise
        await self._settle(info.id, "finished")
        return self._shown(await self._require(info.id))

    async def _settle(self, run_id: str, status: str) -> None:
        """Store how the run ended. Shielded: a second cancel (a user pressing twice) must
        not leave it `running`."""

        async def settle() -> None:
            try:
                await self.store.recount(run_id)
                await self.store.set_status(run_id, status)
            finally:
                self._active.discard(run_id)

        await asyncio.shield(settle())

    async def delete(self, run_id: str) -> None:
        stored = await self._require(run_id)
        if stored.info.id in self._active:
            raise ServiceError(f"evaluation {stored.info.id} is running: cancel it first")
        if stored.info.status == "running" and stored.owner != this_process() and is_alive(stored.owner):
            raise ServiceError(f"evaluation {stored.info.id} is running in another tunedeck process: stop it first")
        await self.store.delete(stored.info.id)

    # -- from a job ------------------------------------------------------------------------------

    async def plan_for_job(self, job_id: str, data: Path | None = None) -> EvalSettings:
        """Settings that evaluate a job: its base model ("base"), its fine-tuned model
        ("fine-tuned") and each checkpoint it kept ("step N", oldest first; the last one is
        left out when it is the fine-tuned model itself), on `data` or else the job's
        validation file (a local copy when one is found, else downloaded into the cache
        folder), graded by the job's own grader for RFT (exact match otherwise)."""
        from .examples import file_sha256
        from .graders import default_grader_for_job

        job, checkpoints = await self._job_and_checkpoints(job_id)
        models = [ModelSpec(job.model, "base", "base")]
        if job.fine_tuned_model:
            models.append(ModelSpec(job.fine_tuned_model, "fine-tuned", "fine_tuned"))
        total_steps = await self._total_steps(job)
        labels = {m.label for m in models}
        last_step = max((c.step for c in checkpoints), default=0)  # when the total is not cached
        for checkpoint in sorted(checkpoints, key=lambda c: (c.step, c.created_at)):
            if not checkpoint.model or checkpoint.model in {m.model for m in models}:
                continue
            if job.status == "succeeded" and job.fine_tuned_model and checkpoint.step >= (total_steps or last_step):
                continue  # the final checkpoint: the fine-tuned model under another name
            label = f"step {checkpoint.step}"
            suffix = 2
            while label in labels:
                label, suffix = f"step {checkpoint.step} ({suffix})", suffix + 1
            labels.add(label)
            models.append(ModelSpec(checkpoint.model, label, "checkpoint"))
        if data is not None:
            path = Path(data).expanduser()
        elif job.validation_file:
            path = await self._validation_copy(job)
        else:
            raise _input_error(f"job {job.id} has no validation file; pick a dataset to evaluate it on")
        try:
            sha256 = await asyncio.to_thread(file_sha256, path)
        except OSError as exc:
            raise _input_error(f"cannot read {path}: {exc.strerror or exc}") from None
        return EvalSettings(
            data_path=str(path.resolve()),
            data_sha256=sha256,
            models=tuple(models),
            grader=default_grader_for_job(job.raw),
            sampling=_job_sampling(job),
            job_id=job.id,
        )

    async def _job_and_checkpoints(self, job_id: str) -> tuple[Job, list[Checkpoint]]:
        service = self.service
        if not service.is_connected:
            job = await service.cached_job(job_id)
            if job is None:
                raise _input_error(f"no job {job_id!r} in profile {service.profile.name!r}")
            return job, await service.cached_checkpoints(job_id)
        try:
            job = await service.refresh_job(job_id)
        except ApiError as exc:
            if exc.kind == "not_found":
                raise _input_error(f"no job {job_id!r} on {service.profile.describe()}") from None
            raise
        try:
            checkpoints = await service.checkpoints(job_id)
        except ApiError:  # a provider without checkpoints: those cached
            checkpoints = await service.cached_checkpoints(job_id)
        return job, checkpoints

    async def _total_steps(self, job: Job) -> int | None:
        """The job's step count, from its newest cached metrics (None when unknown)."""
        metrics = (await self.service.cache.latest_metrics(self.service.profile.name)).get(job.id) or {}
        total = metrics.get("total_steps")
        return total if isinstance(total, int) and not isinstance(total, bool) and total > 0 else None

    async def _validation_copy(self, job: Job) -> Path:
        """A local file with the content of the job's validation file: one this profile
        uploaded it from (found among the recent datasets and uploads by size and sha256),
        one downloaded before, or downloaded now into the cache folder."""
        from ..recent import recent_files

        service = self.service
        file_id = str(job.validation_file)
        known = await service.cache.file_by_id(service.profile.name, file_id)
        if known is not None:
            candidates = await recent_files(service.cache)
            candidates += [s.path for s in await service.cache.upload_sessions(service.profile.name)]
            found = await asyncio.to_thread(_matching_file, candidates, known.bytes, known.sha256)
            if found is not None:
                return found
        paths = service.paths
        if paths is None:
            raise _input_error(f"job {job.id}'s validation file {file_id} is not on this machine; pick a dataset")
        target = paths.cache_dir / EVAL_DATA_FOLDER / f"{_SAFE_ID.sub('_', file_id)}.jsonl"
        if target.is_file():  # downloaded before (a file's content never changes; written whole)
            return target
        if not service.is_connected:
            raise _input_error(
                f"job {job.id}'s validation file {file_id} is not on this machine and there is no "
                "connection to download it; pick a dataset"
            )
        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            await service._call(lambda api: api.download_file(file_id, target))
        except ApiError as exc:
            if exc.kind == "not_found":
                raise _input_error(
                    f"job {job.id}'s validation file {file_id} is gone from {service.profile.describe()}; "
                    "pick a dataset"
                ) from None
            raise
        return target

    # -- failure notes -----------------------------------------------------------------------------

    async def analysis_models(self) -> list[str]:
        """The models this profile serves that can write failure notes, best first."""
        from .analysis import suitable_analysis_models

        return suitable_analysis_models(await self.service._call(lambda api: api.list_model_ids()))

    async def analyse(self, run_id: str, model: str, model_key: str | None = None) -> str:
        """Ask `model` (empty: the first of `analysis_models()`) what the failures of
        `model_key` (default: the fine-tuned model, else the last one) have in common and
        what to change in the data or the prompt; the notes are saved with the run."""
        from .analysis import analysis_messages, failure_sample

        info = (await self._require(run_id)).info
        labels = [m.label for m in info.settings.models]
        if model_key is None:
            model_key = next((m.label for m in info.settings.models if m.kind == "fine_tuned"), labels[-1])
        elif model_key not in labels:
            raise _input_error(f"evaluation {info.id} has no model {model_key!r} (it has {', '.join(labels)})")
        if not model:
            served = await self.analysis_models()
            if not served:
                raise ServiceError(self._no_analysis_model())
            model = served[0]
        examples = await self._read_examples(info)
        results = await self.store.results(info.id)
        sample = failure_sample(examples.examples, results, model_key)
        if not sample:
            raise ServiceError(f"{model_key} has no failures in evaluation {info.id}: nothing to analyse")
        messages = analysis_messages(info.settings, sample, model_key)
        answer = await self.service._call(lambda api: api.chat(model, messages, temperature=None, max_tokens=None))
        notes = answer.text.strip()
        if not notes:
            raise ServiceError(f"{model} answered nothing about the failures of {model_key}")
        await self.store.set_notes(info.id, notes, model)
        return notes

    def _no_analysis_model(self) -> str:
        where = self.service.profile.describe()
        if self.service.profile.backend == "local":
            return (
                f"the {where} serves no model that can write failure notes: fine-tune one, "
                "or add an open model (tunedeck models lists what it finds), then pick it"
            )
        return f"{where} lists no model that can write failure notes: name the model to ask"

    # -- the playground ----------------------------------------------------------------------------

    async def chat_stream(
        self, model: str, messages: Sequence[dict[str, Any]], sampling: Sampling
    ) -> AsyncIterator[str]:
        """The answer's text as it arrives. The request is made through the service's
        `_call` (a connection failure before the first words finds a stopped local backend
        again); a failure later ends the stream with its ApiError."""

        async def opened(api: Any) -> tuple[AsyncIterator[str], str | None]:
            stream = api.chat_stream(model, list(messages), temperature=sampling.temperature,
                                     max_tokens=sampling.max_tokens)  # fmt: skip
            try:
                return stream, await stream.__anext__()
            except StopAsyncIteration:
                return stream, None

        stream, first = await self.service._call(opened)
        if first is None:
            return
        try:
            yield first
            async for text in stream:
                yield text
        finally:
            await stream.aclose()

    # -- helpers -------------------------------------------------------------------------------------

    def _shown(self, stored: StoredRun) -> EvalRunInfo:
        """The run as the user should see it: `running` only while a live process runs it."""
        info = stored.info
        if info.status != "running" or info.id in self._active:
            return info
        if stored.owner != this_process() and is_alive(stored.owner):
            return info
        return dataclasses.replace(info, status="interrupted")

    async def _find(self, run_id: str) -> StoredRun | None:
        stored = await self.store.get(run_id)
        if stored is not None or not run_id:
            return stored
        ids = await self.store.find(run_id, limit=4)
        if len(ids) > 1:
            shown = ", ".join(ids[:3]) + (", ..." if len(ids) > 3 else "")
            raise _input_error(f"{run_id!r} starts several evaluations' ids ({shown}); give more of it")
        return await self.store.get(ids[0]) if ids else None

    async def _require(self, run_id: str) -> StoredRun:
        stored = await self._find(run_id)
        if stored is None:
            raise _input_error(f"no evaluation {run_id!r} in profile {self.service.profile.name!r}")
        return stored

    async def _read_examples(self, info: EvalRunInfo) -> ExampleSet:
        examples = await _read(Path(info.settings.data_path), info.settings.limit)
        if info.settings.data_sha256 and examples.sha256 != info.settings.data_sha256:
            raise _input_error(
                f"{info.settings.data_path} changed since evaluation {info.id} was made: its answers are to "
                "the rows as they were; evaluate the file again as a new run"
            )
        return examples


async def _read(path: Path, limit: int | None) -> ExampleSet:
    from .examples import ExamplesError, read_examples

    try:
        return await asyncio.to_thread(read_examples, path, limit)
    except ExamplesError as exc:
        raise _input_error(str(exc)) from None


def _check_settings(settings: EvalSettings) -> None:
    if not settings.models:
        raise _input_error("an evaluation needs at least one model")
    seen: set[str] = set()
    for spec in settings.models:
        if not spec.model.strip():
            raise _input_error(f"model {spec.label!r} has no model name")
        if not spec.label.strip():
            raise _input_error(f"model {spec.model!r} has no label")
        if spec.label in seen:
            raise _input_error(f"two models are labelled {spec.label!r}: each needs a label of its own")
        seen.add(spec.label)
    if not (isinstance(settings.concurrency, int) and 1 <= settings.concurrency <= MAX_CONCURRENCY):
        raise _input_error(
            f"concurrency must be a whole number from 1 to {MAX_CONCURRENCY}, not {settings.concurrency}"
        )
    sampling = settings.sampling
    if not 0.0 <= sampling.temperature <= 2.0:
        raise _input_error(f"temperature must be from 0 to 2, not {sampling.temperature:g}")
    if not (isinstance(sampling.max_tokens, int) and sampling.max_tokens >= 1):
        raise _input_error(f"max tokens must be at least 1, not {sampling.max_tokens}")
    if settings.limit is not None and not (isinstance(settings.limit, int) and settings.limit >= 1):
        raise _input_error(f"the row limit must be at least 1, not {settings.limit}")


def _matching_file(candidates: Sequence[str], size: int, sha256: str) -> Path | None:
    """The first candidate path holding exactly these bytes (sizes compared before hashing)."""
    from .examples import file_sha256

    for candidate in dict.fromkeys(candidates):
        path = Path(candidate)
        try:
            if path.is_file() and path.stat().st_size == size and file_sha256(path) == sha256:
                return path
        except OSError:
            continue
    return None


def _job_sampling(job: Job) -> Sampling:
    """An RFT job's model answered in its response format and reasoning effort during
    training (its grader may read `{{sample.output_json.*}}`): the evaluation asks the same."""
    method = job.raw.get("method") or {}
    settings = method.get("reinforcement") if method.get("type") == "reinforcement" else None
    if not isinstance(settings, dict):
        return Sampling()
    response_format = settings.get("response_format")
    effort = (settings.get("hyperparameters") or {}).get("reasoning_effort")
    return Sampling(
        response_format=response_format if isinstance(response_format, dict) else None,
        reasoning_effort=effort if isinstance(effort, str) and effort != "auto" else None,
    )
