"""Elapsed time, ETA and money so far, each at an explicit `now`."""

from __future__ import annotations

import pytest

from tunedeck.core.records import Job
from tunedeck.core.watch.progress import Money, cost_so_far, elapsed_s, eta_s

T0 = 1_750_000_000


def job(status: str = "running", model: str = "gpt-4o-mini-2024-07-18", method: str = "supervised", **fields) -> Job:
    return Job(id="ftjob-1", model=model, status=status, created_at=T0, method=method, **fields)


def cost(j: Job, *, fraction=None, estimated_tokens=None, local=False, now=T0 + 600) -> Money:
    return cost_so_far(j, fraction=fraction, estimated_tokens=estimated_tokens, local=local, now=now)


# -- elapsed and ETA ------------------------------------------------------------------------------


def test_elapsed_runs_until_the_job_ends():
    assert elapsed_s(job(), T0 + 90) == 90
    assert elapsed_s(job("succeeded", finished_at=T0 + 300), T0 + 10_000) == 300
    assert elapsed_s(job("failed"), T0 + 50) is None  # failed in validation: no finished_at
    assert elapsed_s(Job(id="j", model="m", status="running", created_at=0), T0) is None
    assert elapsed_s(job(), T0 - 5) == 0  # a clock behind the server's


def test_eta_prefers_the_providers_estimate():
    assert eta_s(job(estimated_finish=T0 + 1000), 10, 100, T0 + 400) == 600
    assert eta_s(job(estimated_finish=T0 + 1000), 10, 100, T0 + 2000) == 0


def test_eta_from_the_pace_so_far():
    assert eta_s(job(), 25, 100, T0 + 100) == pytest.approx(300)  # 4 s a step, 75 steps left
    assert eta_s(job(), 100, 100, T0 + 100) == 0
    assert eta_s(job(), None, 100, T0 + 100) is None
    assert eta_s(job(), 0, 100, T0 + 100) is None
    assert eta_s(job(), 10, None, T0 + 100) is None


def test_no_eta_for_jobs_that_are_not_training():
    for status in ("succeeded", "failed", "cancelled", "paused", "queued", "validating_files"):
        assert eta_s(job(status, finished_at=T0 + 5), 10, 100, T0 + 100) is None, status


# -- money ----------------------------------------------------------------------------------------


def test_trained_tokens_are_the_billed_figure():
    money = cost(job("succeeded", trained_tokens=2_000_000), fraction=1.0, estimated_tokens=1_000_000)
    assert money == Money(6.0, True, "2.0M tokens × $3.00/1M")
    assert money.text() == "$6.00"


def test_an_estimate_while_the_tokens_are_not_reported():
    money = cost(job(), fraction=0.25, estimated_tokens=4_000_000)
    assert money.usd == pytest.approx(3.0) and not money.exact
    assert money.text() == "~$3.00" and "estimated tokens" in money.basis
    assert cost(job(), fraction=1.7, estimated_tokens=1_000_000).usd == pytest.approx(3.0)  # capped at the whole job
    tiny = cost(job(), fraction=0.01, estimated_tokens=10_000)
    assert tiny.text() == "~<$0.01"


def test_aliases_and_fine_tuned_models_are_priced_as_their_base():
    for model in ("gpt-4o-mini", "ft:gpt-4o-mini-2024-07-18:acme::AbCd1234", "gpt-4.1-nano"):
        money = cost(job(model=model, trained_tokens=1_000_000))
        assert money.exact and money.usd in (3.0, 1.5), model


def test_unknown_when_there_is_no_price_or_no_tokens():
    assert cost(job(model="my-own-model", trained_tokens=10)).text() == "unknown"
    assert "no price for model my-own-model" in cost(job(model="my-own-model", trained_tokens=10)).basis
    assert cost(job(model="gpt-4-0613", trained_tokens=10)).usd is None  # historical: no current price
    assert cost(job()).text() == "unknown"  # no tokens, no estimate
    assert cost(job(), fraction=0.5).text() == "unknown"


def test_the_local_backend_bills_nothing():
    money = cost(job(model="tunedeck-ngram", trained_tokens=10**9), local=True)
    assert money.usd == 0 and money.local and money.text() == "$0 (local)"


def test_rft_on_o4_mini_is_billed_by_the_hour():
    rft = job(model="o4-mini-2025-04-16", method="reinforcement")
    running = cost(rft, now=T0 + 2 * 3600)
    assert running.usd == pytest.approx(200.0) and not running.exact and running.text() == "~$200.00"
    assert "$100/h" in running.basis
    done = cost(job("succeeded", model="o4-mini", method="reinforcement", finished_at=T0 + 1800), now=T0 + 10**6)
    assert done.usd == pytest.approx(50.0)
    assert cost(job("queued", model="o4-mini", method="reinforcement"), now=T0 + 3600).usd == 0
    assert cost(job(model="gpt-4.1-mini", method="reinforcement"), now=T0 + 3600).text() == "unknown"
    assert cost(job("failed", model="o4-mini", method="reinforcement"), now=T0 + 3600).text() == "unknown"


def test_money_as_json():
    data = cost(job(trained_tokens=1_000_000)).to_json()
    assert data == {"usd": 3.0, "exact": True, "basis": "1.0M tokens × $3.00/1M", "local": False, "text": "$3.00"}


def test_rft_cost_is_unknown_while_paused_or_queued_again_rather_than_growing_or_zero():
    """Hours are counted from creation: a job paused overnight must not seem to spend $1,200,
    and one queued again after a resume must not drop to $0."""
    created = 1_000_000
    ten_hours_later = created + 36_000
    for status, fraction in (("paused", 0.4), ("queued", 0.4), ("validating_files", 0.2)):
        job = Job(id="ftjob-r", model="o4-mini-2025-04-16", status=status, created_at=created, method="reinforcement")
        money = cost_so_far(job, fraction=fraction, estimated_tokens=None, local=False, now=ten_hours_later)
        assert money.usd is None and status in money.basis
        assert money.text() == "unknown"
    waiting = Job(id="ftjob-r", model="o4-mini-2025-04-16", status="queued", created_at=created, method="reinforcement")
    assert cost_so_far(waiting, fraction=None, estimated_tokens=None, local=False, now=ten_hours_later).usd == 0.0
