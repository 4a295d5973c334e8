"""How far along a job is and what it has cost: elapsed time, ETA and money so far.

Every function takes `now` (Unix seconds) instead of reading a clock, so the jobs table,
the budget check and the tests agree on one moment.

Cost follows the provider's billing (`tunedeck.core.datasets.models`' price table):
- token-billed models (SFT, DPO): `trained_tokens` x the model's price per 1M training
  tokens once the job reports it (the billed figure); before that an estimate, the
  tokens the pre-flight expected for the whole job x the share of steps done;
- RFT on o4-mini: $100 per hour of training, from the job's elapsed time (the API does not
  say when training itself started, so this counts from the job's creation: an estimate);
- the local backend trains on this machine: $0;
- anything else is "unknown", never a guess.
"""

from __future__ import annotations

from dataclasses import dataclass

from tunedeck.core.datasets.models import model_info
from tunedeck.core.records import Job

RFT_USD_PER_HOUR = {"o4-mini-2025-04-16": 100.0}
"""Models whose RFT training is billed by the hour, not by the token."""
WAITING_STATUSES = frozenset({"validating_files", "queued"})


@dataclass(frozen=True)
class Money:
    usd: float | None  # None: unknown
    exact: bool  # the billed figure (trained_tokens), not an estimate
    basis: str  # how it was worked out, e.g. "1.2M tokens × $3.00/1M" or "no price for model X"
    local: bool = False  # trained by the local backend: nothing is billed

    def text(self) -> str:
        """As the table shows it: "$1.23" (billed), "~$0.40" (estimate), "unknown", "$0 (local)"."""
        if self.local:
            return "$0 (local)"
        if self.usd is None:
            return "unknown"
        prefix = "" if self.exact else "~"
        if 0 < self.usd < 0.01:
            return f"{prefix}<$0.01"
        return f"{prefix}${self.usd:,.2f}"

    def to_json(self) -> dict:
        return {"usd": self.usd, "exact": self.exact, "basis": self.basis, "local": self.local, "text": self.text()}


def elapsed_s(job: Job, now: float) -> float | None:
    """Seconds since the job was created, up to its end when it has ended (None: unknown,
    e.g. a job that failed without a `finished_at`)."""
    if not job.created_at:
        return None
    if job.is_terminal:
        if not job.finished_at:
            return None
        return max(0.0, float(job.finished_at - job.created_at))
    return max(0.0, now - job.created_at)


def eta_s(job: Job, step: int | None, total_steps: int | None, now: float) -> float | None:
    """Seconds until the job should finish: the provider's `estimated_finish` when it gives
    one, else the pace so far (elapsed per step done) times the steps left. None for a job
    that has ended, is paused or waiting, or whose pace is not known yet."""
    if job.is_terminal or job.status == "paused":
        return None
    if job.estimated_finish:
        return max(0.0, job.estimated_finish - now)
    if job.status in WAITING_STATUSES or not step or not total_steps or step <= 0:
        return None
    elapsed = elapsed_s(job, now)
    if elapsed is None:
        return None
    remaining = max(0, total_steps - step)
    return elapsed / step * remaining


def cost_so_far(job: Job, *, fraction: float | None, estimated_tokens: int | None, local: bool, now: float) -> Money:
    """What the job has cost so far (see the module docstring). `fraction`: the share of its
    steps done (0..1); `estimated_tokens`: the tokens the whole job is expected to train on."""
    if local:
        return Money(0.0, True, "the local backend trains on this machine: nothing is billed", local=True)
    info = model_info(job.model)  # an alias or an ft: model is priced as its base
    if job.method in ("reinforcement", "rft"):
        hourly = RFT_USD_PER_HOUR.get(info.name) if info.known else None
        if hourly is None:
            return Money(None, False, f"no RFT price for model {job.model}")
        if job.status in WAITING_STATUSES and not fraction:
            return Money(0.0, False, "not training yet")
        if job.status == "paused" or job.status in WAITING_STATUSES:
            # The hours are counted from the job's creation (the API gives no training start
            # nor pause times): a paused or re-queued job would seem to spend while it waits.
            return Money(None, False, f"the RFT hours are not known while the job is {job.status}")
        elapsed = elapsed_s(job, now)
        if elapsed is None:
            return Money(None, False, "the training time is not known")
        hours = elapsed / 3600
        return Money(hours * hourly, False, f"{hours:.2f} h × ${hourly:.0f}/h (RFT, from the job's creation)")
    price = info.usd_per_1m_training_tokens if info.known else None
    if price is None:
        return Money(None, False, f"no price for model {job.model}")
    if job.trained_tokens is not None:
        return Money(job.trained_tokens / 1e6 * price, True, f"{_tokens(job.trained_tokens)} tokens × ${price:.2f}/1M")
    if estimated_tokens is None or fraction is None:
        return Money(None, False, "the tokens trained so far are not known")
    share = min(1.0, max(0.0, fraction))
    tokens = estimated_tokens * share
    return Money(
        tokens / 1e6 * price,
        False,
        f"~{_tokens(round(tokens))} of {_tokens(estimated_tokens)} estimated tokens × ${price:.2f}/1M",
    )


def _tokens(n: int) -> str:
    if n >= 1_000_000:
        return f"{n / 1e6:.1f}M"
    if n >= 1_000:
        return f"{n / 1e3:.1f}k"
    return str(n)
