"""Creating a fine-tuning job at most once, even when the answer is lost.

A create whose answer never arrives (the connection dropped after the server acted, a
timeout, a 5xx sent after the job was made) leaves the client not knowing whether the job
exists; creating again blindly can start a second billed job. So:

1. the create carries the launch's tag (`metadata.tunedeck_launch`) also as an
   `Idempotency-Key` header: a server that honours it answers a repeat with the first job;
2. when the answer is lost, the newest jobs are listed (retried briefly while the
   connection is flaky) and the tag looked for: found, that is the launch's job;
3. not found in a listing that worked, the create is sent once more with the same key;
4. anything still unknown ends in `CreateUncertain`, whose message says to check the job
   list before launching again. Uploads are never repeated: only the create is.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from .api import Api, ApiError
from .datasets.jobrules import LAUNCH_TAG_KEY as LAUNCH_TAG  # the metadata key
from .paging import CursorWalk

LIST_WAITS_S = (0.5, 2.0)  # pauses before the 2nd and 3rd try of the listing
LIST_PAGES, LIST_PAGE_SIZE = 2, 100  # the job was just made: it is among the newest

Sleep = Callable[[float], Awaitable[Any]]


class CreateUncertain(Exception):
    """The create's answer was lost and no listing could tell whether the job exists."""


@dataclass(frozen=True, slots=True)
class Created:
    job: dict[str, Any]
    note: str | None = None
    """Set when the answer was lost and the job was found (or made) another way."""


def answer_may_be_lost(exc: ApiError) -> bool:
    """A failure after which the server may have acted: no answer, or a 5xx."""
    return exc.kind in ("connection", "server")


async def create_job_once(api: Api, body: dict[str, Any], *, sleep: Sleep = asyncio.sleep) -> Created:
    tag = body["metadata"][LAUNCH_TAG]
    try:
        return Created(await api.create_job(body, idempotency_key=tag))
    except ApiError as exc:
        if not answer_may_be_lost(exc):
            raise
        lost = exc
    found = await find_launched(api, tag, lost, sleep)
    if found is not None:
        return Created(found, _found_note(found, lost))
    try:
        job = await api.create_job(body, idempotency_key=tag)  # the listing showed none: safe to send again
    except ApiError as exc:
        if not answer_may_be_lost(exc):
            raise
        lost = exc
    else:
        return Created(job, f"the first create got no answer ({lost.message}); sent it again once")
    found = await find_launched(api, tag, lost, sleep)
    if found is not None:
        return Created(found, _found_note(found, lost))
    raise CreateUncertain(_uncertain(tag, lost))


async def find_launched(api: Api, tag: str, lost: ApiError, sleep: Sleep) -> dict[str, Any] | None:
    """The newest job carrying `tag`, or None when a listing shows none. Raises `CreateUncertain`
    when the jobs cannot be listed."""
    for wait in (0.0, *LIST_WAITS_S):
        if wait:
            await sleep(wait)
        try:
            return await _search(api, tag)
        except ApiError as exc:
            if exc.kind not in ("connection", "server", "rate_limit"):
                raise CreateUncertain(f"{_uncertain(tag, lost)} (listing the jobs failed: {exc.message})") from None
            failed = exc
    raise CreateUncertain(f"{_uncertain(tag, lost)} (listing the jobs failed: {failed.message})")


async def _search(api: Api, tag: str) -> dict[str, Any] | None:
    walk = CursorWalk("the job list", LIST_PAGES)  # the newest pages: the job was just made
    async for job in api.iter_jobs(LIST_PAGE_SIZE, walk=walk):
        if (job.get("metadata") or {}).get(LAUNCH_TAG) == tag:
            return job
    return None


def _found_note(job: dict[str, Any], lost: ApiError) -> str:
    return f"the create got no answer ({lost.message}), but job {job.get('id')} was found by its launch tag"


def _uncertain(tag: str, lost: ApiError) -> str:
    return (
        f"the job may or may not exist: its creation got no answer ({lost.message}). "
        f"Check the job list (metadata {LAUNCH_TAG} = {tag}) before launching again"
    )
