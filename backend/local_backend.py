"""`LocalBackend`: the server, the store and the job engine for one data directory.

Run it in its own thread (`start()`/`stop()`, what the app and sync tests use) or in the
caller's event loop (`await start_async()`/`await stop_async()`). Manual time, for tests
(`auto_advance=False`): nothing moves until `advance`, `run_until` or `run_until_settled`
is called; each has a blocking form (thread mode, from any other thread) and an
`*_async` form (any loop).

Who may use it (http/guard.py): requests must carry the per-install API key
(`api_key`, by default `<data_dir>/api-key`, made on first start), name a loopback Host
(or one of `allowed_hosts`), and come from no web page unless its origin is in
`allowed_origins`. What one request may cost is bounded (http/bodies.py): bodies time
out after `read_timeout` seconds without a byte, forms and JSON are capped, and uploads
stay within `storage_limit_bytes` and leave `min_free_disk_bytes` free (storage/budget.py).
POSTs honour `Idempotency-Key` (http/idempotency.py).

Layout of `data_dir` (owner-only: folders 0700, files 0600):
- `api-key`: the API key;
- `backend.sqlite3`: files, jobs, events, checkpoints, models, permissions, kept answers;
- `files/<file id>`: uploads and result CSVs (`files/.incoming/` while one is being received);
- `models/<job id>/step-N<suffix>`: checkpoints, a `.npz` file (built-in trainer) or a
  folder (transformer trainer, suffix ""); `models/paused/<job id>/` the pause checkpoints
  and `resume-step-K/`, the latest crash-recovery point of a training job;
- `uploads/<upload id>/`: Uploads in progress;
- `logs/`: `serve.log` of the background service (`daemon.py`), and the transformer
  workers' stderr, one file per process;
- `base-models/`: open models to fine-tune, unless $TUNEDECK_MODELS_DIR names another folder;
- the lock and endpoint files of `ownership.py`.
"""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web

from .aliases import ModelAliases
from .compute import Device
from .http.faults import FaultPlan, fault_middleware, load_fault_plan
from .http.guard import RequestGuard, is_loopback
from .http.idempotency import Idempotency
from .http.routes_compute import compute_routes
from .http.routes_files import UPLOAD_PATH, file_routes
from .http.routes_graders import grader_routes
from .http.routes_inference import inference_routes
from .http.routes_jobs import job_routes
from .http.routes_model_deletion import model_deletion_routes
from .http.routes_permissions import permission_routes
from .http.routes_uploads import PARTS_PATH, upload_routes
from .http.server import DEFAULT_READ_TIMEOUT, build_app
from .idle import Activity
from .inference import ChatModels
from .jobs.engine import JobEngine, Pacing
from .jobs.phases import Phases
from .ownership import Ownership
from .storage.api_key import api_key_file, load_or_create_api_key
from .storage.blobs import Blobs
from .storage.budget import DEFAULT_MIN_FREE_DISK_BYTES, DEFAULT_STORAGE_LIMIT_BYTES, DiskBudget
from .storage.private import private_dir
from .storage.store import Store
from .storage.uploads import UploadRegistry
from .trainers.base import Trainer
from .trainers.ngram.trainer import NgramTrainer
from .trainers.transformer.server.catalog import ModelCatalog, default_models_dirs
from .trainers.transformer.server.chat import TransformerChat
from .trainers.transformer.server.ray_worker import RayCluster
from .trainers.transformer.server.trainer import TransformerTrainer

T = TypeVar("T")
DATABASE_NAME = "backend.sqlite3"
UPLOADS_DIR = "uploads"
LOGS_DIR = "logs"  # transformer workers' stderr, one file per process
TRAINING_THREADS = 2
SHUTDOWN_SECONDS = 2.0
MULTIPART_PATHS = (UPLOAD_PATH, PARTS_PATH)
WILDCARD_HOSTS = ("", "0.0.0.0", "::")


class LocalBackend:
    def __init__(
        self,
        data_dir: Path,
        host: str = "127.0.0.1",
        port: int = 0,
        auto_advance: bool = True,
        time_scale: float = 1.0,
        step_delay: float = 0.05,
        clock: Callable[[], float] = time.time,
        trainers: Sequence[Trainer] | None = None,
        training_not_available: bool = False,
        faults: FaultPlan | Mapping[str, Any] | Path | str | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        models_dirs: Sequence[Path] | None = None,
        api_key: str | None = None,
        allowed_hosts: Sequence[str] = (),
        allowed_origins: Sequence[str] = (),
        read_timeout: float = DEFAULT_READ_TIMEOUT,
        storage_limit_bytes: int = DEFAULT_STORAGE_LIMIT_BYTES,
        min_free_disk_bytes: int = DEFAULT_MIN_FREE_DISK_BYTES,
        model_aliases: Mapping[str, str] | None = None,
        devices: Sequence[Device] | None = None,
        ray_address: str | None = None,
    ) -> None:
        """`training_not_available`: answer job creation with OpenAI's 403 for blocked
        organisations. `faults`: a fault plan (see faults.py) or a JSON/TOML file holding one.
        Both can be changed while serving, through `self.faults`. `sleep`: how auto mode
        waits between steps (tests pass a gate that they open one wait at a time).
        `models_dirs`: where the transformer trainer looks for base models (besides the
        Hugging Face cache); default $TUNEDECK_MODELS_DIR, else `<data_dir>/base-models`.
        `api_key`: the key every request must carry; None reads `<data_dir>/api-key`, made on
        first use. `allowed_hosts`: Host names it answers besides loopback ones (and the
        address it binds to). `allowed_origins`: web origins whose pages may call it (none).
        `read_timeout`: seconds a body may go without a byte, and a request's headers may
        take, before the connection is closed. `storage_limit_bytes`: what uploads, results
        and weights may add up to; `min_free_disk_bytes`: free disk an upload must leave. `devices`: the devices transformer
        runs are placed on; None finds the machine's (`compute.detect_devices`). `ray_address`: run
        transformer jobs on this Ray cluster instead (`auto`, `host:port`, `ray://host:port`)."""
        self.data_dir = Path(data_dir)
        self.api_key = load_or_create_api_key(self.data_dir) if api_key is None else _usable_key(api_key)
        self.allowed_hosts = tuple(allowed_hosts)
        self.allowed_origins = tuple(allowed_origins)
        if read_timeout <= 0:
            raise ValueError("read_timeout must be a positive number of seconds")
        self.read_timeout = read_timeout
        self.storage_limit_bytes = storage_limit_bytes
        self.min_free_disk_bytes = min_free_disk_bytes
        self.host = host
        self.port = port
        self.pacing = Pacing(auto_advance=auto_advance, step_delay=step_delay, time_scale=time_scale, sleep=sleep)
        self.clock = clock
        if trainers is None:
            dirs = list(models_dirs) if models_dirs is not None else default_models_dirs(self.data_dir / "base-models")
            placed = list(devices) if devices is not None else None
            cluster = RayCluster(ray_address) if ray_address else None
            transformer = TransformerTrainer(ModelCatalog(dirs), self.data_dir / LOGS_DIR, devices=placed, cluster=cluster)
            trainers = [NgramTrainer(), transformer]
        self.trainers: list[Trainer] = list(trainers)
        self.faults = load_fault_plan(faults)
        self.aliases = ModelAliases(model_aliases)
        """Other names for the base models (an OpenAI model's name for a local one); an
        `AliasError` here names the alias that cannot be used."""
        self.faults.training_not_available = self.faults.training_not_available or training_not_available
        self.base_url: str | None = None
        self.activity = Activity()  # when it last answered a request or trained: `serve --idle-exit`
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ownership: Ownership | None = None
        self._store: Store | None = None
        self._engine: JobEngine | None = None
        self._runner: web.AppRunner | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._chat: TransformerChat | None = None

    def devices_text(self) -> str:
        """The devices transformer runs are placed on, for the serve log."""
        found = [d for t in self.trainers if t.devices is not None for d in t.devices.devices]
        return ", ".join(
            f"{d.id} ({d.name}{f', {d.memory_bytes / 2**30:.0f} GiB' if d.memory_bytes else ''})" if d.is_gpu else "the CPU"
            for d in found
        ) or "none"

    # -- in the caller's loop -------------------------------------------------------------------

    async def start_async(self) -> str:
        """Serve from the running loop; returns the base URL (`http://host:port/v1`)."""
        if self.base_url is not None:
            return self.base_url
        self._loop = asyncio.get_running_loop()
        self._ownership = Ownership.claim(self.data_dir)  # raises BackendBusy if another process serves it
        try:
            await self._open()
        except BaseException:
            await self._close()
            raise
        return self.base_url  # type: ignore[return-value]

    async def _open(self) -> None:
        private_dir(self.data_dir)
        private_dir(self.data_dir / LOGS_DIR)  # the transformer trainer writes its workers' logs there
        blobs = Blobs(self.data_dir)
        self._store = Store(self.data_dir / DATABASE_NAME)
        # A run's step holds a thread while its worker trains: one per device that can hold a
        # run, and TRAINING_THREADS more so checking files and starting runs never wait behind them.
        placed = sum(len(t.devices.devices) if t.devices is not None else t.max_concurrent_runs or 0 for t in self.trainers)
        self._executor = ThreadPoolExecutor(max_workers=TRAINING_THREADS + placed, thread_name_prefix="tunedeck-train")
        phases = Phases(
            self._store, blobs, self.trainers, self.clock, self._executor, self.pacing.step_seconds, self.grader_endpoint
        )
        self._engine = JobEngine(phases, self.pacing)
        uploads = UploadRegistry(self.data_dir / UPLOADS_DIR, self.clock)
        budget = DiskBudget(
            self.data_dir,
            [blobs.files_dir, blobs.models_dir, uploads.root],
            self.storage_limit_bytes,
            self.min_free_disk_bytes,
        )
        guard = self._guard()
        app = build_app(
            file_routes(self._store, blobs, self.clock, budget),
            upload_routes(uploads, self._store, blobs, budget),
            job_routes(self._engine, self._store, self.aliases),
            model_deletion_routes(self._store, blobs, self._engine.base_models),
            permission_routes(self._store, self.clock),
            compute_routes(self._engine.compute),
            grader_routes(self.grader_endpoint),
            inference_routes(
                ChatModels(self._store, self.data_dir, self._engine.base_models, self._transformer_chat()),
                self.clock,
                self.aliases,
            ),
            outer_middlewares=[guard.middleware, self.activity.middleware, fault_middleware(self.faults)],
            inner_middlewares=[Idempotency(self._store, self.clock, MULTIPART_PATHS).middleware],
            read_timeout=self.read_timeout,
        )
        app.on_response_prepare.append(guard.add_cors_headers)
        # aiohttp's keep-alive timer also runs while a request's headers arrive: it bounds a
        # client that sends them a byte at a time. After a response nobody reads, the rest
        # of the body is drained for at most `lingering_time`, then the connection closes.
        self._runner = web.AppRunner(
            app,
            access_log=None,
            handle_signals=False,
            shutdown_timeout=SHUTDOWN_SECONDS,
            keepalive_timeout=self.read_timeout,
            lingering_time=self.read_timeout,
        )
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.port).start()
        port = self._runner.addresses[0][1]
        host = f"[{self.host}]" if ":" in self.host else self.host
        self.base_url = f"http://{host}:{port}/v1"
        self._engine.recover()
        assert self._ownership is not None
        self._ownership.publish(self.base_url)

    def _guard(self) -> RequestGuard:
        """Loopback names are always allowed; a non-loopback bind address is allowed too,
        and bound to every interface, any IP address (only names can be rebound)."""
        hosts = list(self.allowed_hosts)
        if self.host not in WILDCARD_HOSTS and not is_loopback(self.host):
            hosts.append(self.host)
        return RequestGuard(
            self.api_key,
            allowed_hosts=hosts,
            allowed_origins=self.allowed_origins,
            any_ip_host=self.host in WILDCARD_HOSTS,
            multipart_paths=MULTIPART_PATHS,
        )

    @property
    def api_key_file(self) -> Path:
        """Where the key is kept when it was not given to the constructor."""
        return api_key_file(self.data_dir)

    def _transformer_chat(self) -> TransformerChat | None:
        trainer = next((t for t in self.trainers if isinstance(t, TransformerTrainer)), None)
        if trainer is None:
            return None
        self._chat = TransformerChat(trainer.catalog, trainer.log_dir, trainer.env)
        trainer.before_run = self._chat.close
        return self._chat

    async def stop_async(self) -> None:
        """Stop serving; unfinished jobs stay in the store and resume on the next start."""
        await self._close()

    async def _close(self) -> None:
        if self._runner is not None:  # first stop taking requests, then stop the jobs
            await self._runner.cleanup()
        if self._engine is not None:
            await self._engine.close()
        if self._chat is not None:
            self._chat.close()
            self._chat = None
        if self._executor is not None:
            executor = self._executor
            await asyncio.get_running_loop().run_in_executor(None, executor.shutdown)  # waits for in-flight steps
        if self._store is not None:
            self._store.close()
        if self._ownership is not None:
            self._ownership.release()
        self._engine = self._runner = self._executor = self._store = self._ownership = None
        self.base_url = None

    # -- in a thread of its own ---------------------------------------------------------------------

    def start(self) -> str:
        """Serve from a daemon thread with its own loop; returns the base URL once listening."""
        if self._thread is not None and self.base_url is not None:
            return self.base_url
        started = threading.Event()
        failure: list[BaseException] = []

        def serve_forever() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self.start_async())
            except BaseException as exc:  # noqa: BLE001 - handed to the starting thread, which raises it
                failure.append(exc)
                started.set()
                loop.close()
                return
            started.set()
            loop.run_forever()
            loop.close()

        self._thread = threading.Thread(target=serve_forever, name="tunedeck-local-backend", daemon=True)
        self._thread.start()
        started.wait()
        if failure:
            self._thread.join()
            self._thread = None
            raise failure[0]
        return self.base_url  # type: ignore[return-value]

    def grader_endpoint(self) -> tuple[str, str] | None:
        """Where model graders ask their model: this backend's own API, once it listens."""
        return (self.base_url, self.api_key) if self.base_url else None

    def stop(self) -> None:
        thread, loop = self._thread, self._loop
        if thread is None or loop is None:
            return
        asyncio.run_coroutine_threadsafe(self.stop_async(), loop).result()
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        self._thread = None

    def idle_seconds(self) -> float:
        """Seconds since the backend last answered a request or had a job training or queued
        (thread mode; call from any other thread)."""
        engine = self._require_engine()

        async def idle() -> float:
            return self.activity.idle_seconds(jobs_active=engine.busy)

        return self._blocking(idle)

    def model_places(self) -> list[str]:
        """Where trainers look for base models (for the serve banner and error messages)."""
        places: list[str] = []
        for trainer in self.trainers:
            if trainer.catalog is not None:
                places.extend(trainer.catalog.searched())
        return places

    # -- driving time -------------------------------------------------------------------------------

    def run_until_settled(self) -> None:
        """Block until every job is terminal (thread mode; call from any other thread)."""
        self._blocking(lambda: self._require_engine().run_until_settled())

    def advance(self, job_id: str, steps: int = 1) -> dict[str, Any]:
        """Bring the job to `running` (validating and starting it), then train `steps` steps.
        Returns the job as the API would show it. Raises KeyError for an unknown job."""
        return self._blocking(lambda: self._require_engine().advance(job_id, steps))

    def run_until(self, job_id: str, status: str) -> dict[str, Any]:
        """Advance the job until it reaches `status` (or ends); returns the job."""
        return self._blocking(lambda: self._require_engine().run_until(job_id, status))

    async def run_until_settled_async(self) -> None:
        await self._in_backend_loop(lambda: self._require_engine().run_until_settled())

    async def advance_async(self, job_id: str, steps: int = 1) -> dict[str, Any]:
        return await self._in_backend_loop(lambda: self._require_engine().advance(job_id, steps))

    async def run_until_async(self, job_id: str, status: str) -> dict[str, Any]:
        return await self._in_backend_loop(lambda: self._require_engine().run_until(job_id, status))

    def _require_engine(self) -> JobEngine:
        if self._engine is None:
            raise RuntimeError("the local backend is not running; call start() first")
        return self._engine

    def _blocking(self, make: Callable[[], Awaitable[T]]) -> T:
        loop = self._loop
        if loop is None or self.base_url is None:
            raise RuntimeError("the local backend is not running; call start() first")
        if self._thread is None or threading.current_thread() is self._thread:
            raise RuntimeError("the backend runs in this event loop: await the *_async method instead")
        return asyncio.run_coroutine_threadsafe(_call(make), loop).result()

    async def _in_backend_loop(self, make: Callable[[], Awaitable[T]]) -> T:
        loop = self._loop
        if loop is None or self.base_url is None:
            raise RuntimeError("the local backend is not running; call start() first")
        if asyncio.get_running_loop() is loop:
            return await make()
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(_call(make), loop))


async def _call(make: Callable[[], Awaitable[T]]) -> T:
    return await make()


def _usable_key(key: str) -> str:
    """A key given by the caller: never empty (the backend cannot run open)."""
    if not isinstance(key, str) or not key or not key.isascii() or not key.isprintable() or " " in key:
        raise ValueError("api_key must be a non-empty string of visible ASCII characters")
    return key


def _switch_notices(plan: FaultPlan) -> list[str]:
    notices = []
    if plan.training_not_available:
        notices.append("job creation answers 403 training_not_available (as for a blocked organisation)")
    if plan.rules:
        notices.append(f"fault injection on: {len(plan.rules)} rule(s), seed {plan.seed}")
    return notices


def _access_notices(backend: LocalBackend) -> list[str]:
    """Who can reach it, and where the key is (never the key itself: output ends up in logs)."""
    notices = [f"API key: in {backend.api_key_file} (`tunedeck serve --print-key` prints it); every request needs it"]
    if not is_loopback(backend.host):
        notices.append(
            f"listening on {backend.host or 'all interfaces'}: reachable from the network, not only from this "
            "machine; requests still need the API key"
        )
    return notices


def serve(
    data_dir: Path,
    host: str = "127.0.0.1",
    port: int = 8765,
    time_scale: float = 1.0,
    training_not_available: bool = False,
    faults: Path | str | None = None,
    models_dirs: Sequence[Path] | None = None,
    idle_exit: float | None = None,
    allowed_hosts: Sequence[str] = (),
    allowed_origins: Sequence[str] = (),
    storage_limit_bytes: int = DEFAULT_STORAGE_LIMIT_BYTES,
    model_aliases: Mapping[str, str] | None = None,
    ray_address: str | None = None,
) -> None:
    """Run the backend in the foreground until Ctrl-C (or SIGTERM); `tunedeck serve` calls this.
    `model_aliases`: other names for its models (a bad table raises `AliasError` first).
    `ray_address`: the Ray cluster its transformer jobs run on (None: this machine).
    `idle_exit`: also stop once no job has been active and no request has come for that many
    seconds (the background service the app starts, so it does not linger once done).
    `faults` is a JSON or TOML fault plan file (faults.py); a bad one raises `FaultConfigError`
    before anything starts."""
    backend = LocalBackend(
        Path(data_dir),
        host=host,
        port=port,
        time_scale=time_scale,
        training_not_available=training_not_available,
        faults=faults,
        models_dirs=models_dirs,
        allowed_hosts=allowed_hosts,
        allowed_origins=allowed_origins,
        storage_limit_bytes=storage_limit_bytes,
        model_aliases=model_aliases,
        ray_address=ray_address,
    )
    base_url = backend.start()
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:  # announce only inside the try: a Ctrl-C right after the announcement still stops cleanly
        print(f"tunedeck local backend at {base_url} (data: {data_dir}); Ctrl-C to stop", flush=True)
        for notice in _switch_notices(backend.faults):
            print(notice, flush=True)
        print(f"transformer models: {', '.join(backend.model_places())}", flush=True)
        if ray_address:
            print(f"transformer jobs run on the Ray cluster at {ray_address} (joined at the first job)", flush=True)
        else:
            print(f"training devices: {backend.devices_text()}", flush=True)
        for alias, model in backend.aliases:
            print(f"model alias: {alias} -> {model}", flush=True)
        for notice in _access_notices(backend):
            print(notice, flush=True)
        while not stop.wait(0.5):  # short waits keep Ctrl-C responsive on every platform
            if idle_exit is not None and backend.idle_seconds() >= idle_exit:
                print(f"idle for {idle_exit:g} s with no job to train: stopping", flush=True)
                break
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        backend.stop()
