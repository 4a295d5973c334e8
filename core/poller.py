"""One shared poller for every screen: few requests however many jobs are watched.

Each `poll_once()` costs one request for the job list plus one events request per job
that is still running (incremental, via the newest cached event). A finished job gets one
last events read after it finishes and nothing after that. The caller owns the clock:
the app awaits `poll_once()` in a loop and sleeps `next_interval()`; tests call it directly.
"""

from __future__ import annotations

from .api import ApiError
from .records import JobRow
from .service import Service

ACTIVE_INTERVAL_S = 2.0
IDLE_INTERVAL_S = 30.0


class JobPoller:
    def __init__(self, service: Service) -> None:
        self._service = service
        self._settled: set[str] = set()  # finished jobs whose final events are cached
        self._watched: set[str] = set()  # jobs a screen is looking at (followed even if idle)
        self._seen_active: set[str] = set()  # jobs seen running, so they get one read after finishing
        self._any_active = False

    def watch(self, job_id: str) -> None:
        self._watched.add(job_id)

    def unwatch(self, job_id: str) -> None:
        self._watched.discard(job_id)

    def next_interval(self) -> float:
        return ACTIVE_INTERVAL_S if self._any_active or self._watched - self._settled else IDLE_INTERVAL_S

    async def poll_once(self) -> list[JobRow]:
        """Refresh the job list and the events of every job that can still change."""
        if not self._service.is_connected:
            return []
        # Jobs the cache last saw running get one final events read once they finish.
        self._seen_active.update(r.job.id for r in await self._service.cached_rows() if not r.job.is_terminal)
        rows = await self._service.refresh_jobs(announce=False)
        self._any_active = any(not row.job.is_terminal for row in rows)
        for row in rows:
            if self._needs_events(row):
                await self._follow(row)
        for job_id in self._watched - {row.job.id for row in rows} - self._settled:
            await self._follow_by_id(job_id)
        return await self._service.announce_rows()

    def _needs_events(self, row: JobRow) -> bool:
        job_id = row.job.id
        if job_id in self._settled:
            return False
        if not row.job.is_terminal:
            self._seen_active.add(job_id)
            return True
        return job_id in self._watched or job_id in self._seen_active

    async def _follow(self, row: JobRow) -> None:
        # The list just gave the job's state, so only its events are fetched.
        await self._service.follow(row.job.id, known=row.job)
        if row.job.is_terminal:
            self._settled.add(row.job.id)

    async def _follow_by_id(self, job_id: str) -> None:
        try:
            await self._service.follow(job_id)
        except ApiError as exc:
            if exc.kind != "not_found":
                raise
            self._settled.add(job_id)
            self._service.announce_missing(job_id, exc.message)
            return
        job = await self._service.cached_job(job_id)
        if job is not None and job.is_terminal:
            self._settled.add(job_id)
