"""Endless pagination: a list endpoint that always says `has_more` is walked a bounded number
of times, and the user is told why the walk stopped. The endpoints are a tiny aiohttp server
written here, reached through the real SDK."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from aiohttp import web
from threaded_api import ThreadedApi

from tunedeck.cli.main import main
from tunedeck.core.api import Api, build_client
from tunedeck.core.cache import Cache
from tunedeck.core.config import Profile
from tunedeck.core.paging import CursorWalk
from tunedeck.core.paths import AppPaths
from tunedeck.core.poller import JobPoller
from tunedeck.core.service import PollError, Service

Page = Callable[[str | None], tuple[list[str], bool]]  # after -> (ids newest first, has_more)


def job(job_id: str, status: str = "succeeded") -> dict[str, Any]:
    return {"id": job_id, "object": "fine_tuning.job", "created_at": 1, "model": "m", "status": status}


def event(event_id: str) -> dict[str, Any]:
    return {"id": event_id, "object": "fine_tuning.job.event", "created_at": 1, "level": "info", "message": "hi"}


def same_page(after: str | None) -> tuple[list[str], bool]:
    return ["ftjob-b", "ftjob-a"], True


def cycle(after: str | None) -> tuple[list[str], bool]:
    pages = {None: ["ftjob-f", "ftjob-e"], "ftjob-e": ["ftjob-d", "ftjob-c"], "ftjob-c": ["ftjob-b", "ftjob-a"]}
    return pages.get(after, pages[None]), True  # the last page points back to the first


def endless(after: str | None) -> tuple[list[str], bool]:
    n = int(after.rsplit("-", 1)[1]) if after else 0
    return [f"ftjob-{n + 1}", f"ftjob-{n + 2}"], True  # always new ids: only the cap stops it


class FakeApi(ThreadedApi):
    """An OpenAI-shaped job list and events list; counts the requests."""

    def __init__(self, jobs: Page, events: Page | None = None) -> None:
        self.jobs, self.events = jobs, events or (lambda after: ([], False))
        self.requests = 0
        super().__init__(
            {
                ("GET", "/v1/fine_tuning/jobs"): self._list_jobs,
                ("GET", "/v1/fine_tuning/jobs/{job_id}/events"): self._list_events,
            }
        )

    async def _list_jobs(self, request: web.Request) -> web.Response:
        self.requests += 1
        ids, more = self.jobs(request.query.get("after"))
        return web.json_response({"object": "list", "data": [job(i, "running") for i in ids], "has_more": more})

    async def _list_events(self, request: web.Request) -> web.Response:
        self.requests += 1
        ids, more = self.events(request.query.get("after"))
        return web.json_response({"object": "list", "data": [event(i) for i in ids], "has_more": more})


def profile(base_url: str) -> Profile:
    return Profile(name="fake", backend="compatible", base_url=base_url, api_key_env="FAKE_KEY")


@pytest.fixture
def fake_key(monkeypatch):
    monkeypatch.setenv("FAKE_KEY", "any")


async def walk_jobs(pages: Page, max_pages: int = 1000) -> tuple[list[str], CursorWalk, int]:
    with FakeApi(pages) as server:
        api = Api(build_client(profile(server.base_url), api_key="any"))
        walk = CursorWalk("the job list", max_pages)
        try:
            ids = [j["id"] async for j in api.iter_jobs(walk=walk)]
        finally:
            await api.close()
        return ids, walk, server.requests


async def test_a_page_that_never_changes_stops_at_the_second_request():
    ids, walk, requests = await walk_jobs(same_page)
    assert requests == 2 and ids == ["ftjob-b", "ftjob-a"]
    assert walk.warning == "the job list: stopped after 2 pages: the endpoint repeated cursor 'ftjob-a'"


async def test_a_cycle_of_pages_stops_when_it_comes_round():
    ids, walk, requests = await walk_jobs(cycle)
    assert requests == 4 and len(ids) == len(set(ids)) == 6
    assert walk.warning and "stopped after 4 pages" in walk.warning


async def test_new_ids_forever_stop_at_the_page_cap():
    ids, walk, requests = await walk_jobs(endless, max_pages=5)
    assert requests == 5 and len(ids) == 10
    assert walk.warning and "page cap (5 pages)" in walk.warning


async def test_a_list_that_ends_says_nothing():
    ids, walk, requests = await walk_jobs(lambda after: (["ftjob-a"], False))
    assert (ids, walk.warning, requests) == (["ftjob-a"], None, 1)


async def service_on(base_url: str, tmp_path) -> tuple[Service, list]:
    cache = await Cache.open(tmp_path / "cache.sqlite3")
    service = Service(profile(base_url), cache, AppPaths.discover())
    heard: list = []
    service.subscribe(heard.append)
    await service.connect()
    assert service.is_connected
    return service, heard


async def test_endless_events_stop_and_the_poller_path_warns_once(tmp_path, fake_key):
    polls = {"n": 0}

    def events(after: str | None) -> tuple[list[str], bool]:
        if after is None:  # each poll: two new events, never reaching the cached ones...
            polls["n"] += 1
        n = polls["n"]
        return [f"ev-{n}-b", f"ev-{n}-a"], True  # ...and `after` ignored: the same page again

    with FakeApi(lambda after: (["ftjob-live"], False), events) as server:
        service, heard = await service_on(server.base_url, tmp_path)
        try:
            poller = JobPoller(service)
            await poller.poll_once()
            first = server.requests
            await poller.poll_once()
            cached = [e.id for e in await service.cached_events("ftjob-live")]
        finally:
            await service.close()
    assert first == 3 and server.requests == 6  # per poll: the list, then two event pages
    warnings = [e for e in heard if isinstance(e, PollError)]
    assert len(warnings) == 1 and warnings[0].kind == "paging"  # the second poll's stop is no news
    assert warnings[0].message == ("events of ftjob-live: stopped after 2 pages: the endpoint repeated cursor 'ev-1-a'")
    assert cached == ["ev-1-a", "ev-1-b", "ev-2-a", "ev-2-b"]  # what came is kept, once each


async def test_endless_events_stop_at_the_cap(tmp_path, fake_key):
    with FakeApi(lambda after: ([], False), endless) as server:
        service, heard = await service_on(server.base_url, tmp_path)
        try:
            events = await service.sync_events("ftjob-x", max_pages=7)
        finally:
            await service.close()
    assert server.requests == 7 and len(events) == 14
    assert [e.message for e in heard if isinstance(e, PollError)] == [
        "events of ftjob-x: stopped after 7 pages: the page cap (7 pages) was reached and the endpoint still had more"
    ]


@pytest.mark.parametrize(("pages", "requests"), [(same_page, 2), (cycle, 4)])
def test_jobs_list_prints_why_it_stopped(capsys, isolated_home, fake_key, pages, requests):
    with FakeApi(pages) as server:
        config = isolated_home / "config" / "config.toml"
        config.parent.mkdir(parents=True)
        config.write_text(
            f'default_profile = "fake"\n[profiles.fake]\nbackend = "compatible"\n'
            f'base_url = "{server.base_url}"\napi_key_env = "FAKE_KEY"\n'
        )
        code = main(["jobs", "list", "--json"])
        assert server.requests == requests
    out, err = capsys.readouterr()
    assert code == 0
    assert f"tunedeck: the job list: stopped after {requests} pages: " in err
    assert '"ftjob-a"' in out
