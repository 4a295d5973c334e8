"""Switches and fault injection, for reliability tests and demos.

Two things sit in front of every route, in an aiohttp middleware:

- `training_not_available`: answer `POST /v1/fine_tuning/jobs` with the 403 that OpenAI
  now sends to organisations it no longer lets train (`training_not_available`). Uploads
  still work.
- Fault rules: each names a method and a path glob, a kind, and when it fires (always,
  with a probability, or on every Nth matching request; optionally only `times` times).
  Kinds: `rate_limit` (429 with `retry-after`), `server_error` (500), `unavailable` (503),
  `slow` (wait, then answer), `drop` (close the connection with no answer), `truncate`
  (send the headers and half the body, then close), `training_not_available` (the 403).

Decisions are deterministic under the plan's seed: each rule draws from its own generator,
in the order its matching requests arrive. A plan loads from a dict, JSON or TOML:

    seed = 7
    [[rules]]
    method = "POST"
    path = "/v1/fine_tuning/jobs"
    kind = "rate_limit"
    retry_after = 1
    every = 3
"""

from __future__ import annotations

import asyncio
import fnmatch
import json
import random
import tomllib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from aiohttp import web

from ..errors import ApiError
from .server import Handler, error_response

JOBS_PATH = "/v1/fine_tuning/jobs"
TRAINING_NOT_AVAILABLE_MESSAGE = (
    "OpenAI is winding down the fine-tuning platform and your organization is no longer able to create "
    "new fine-tuning training jobs. Learn more "
    "https://developers.openai.com/api/docs/deprecations#update-to-openais-self-serve-fine-tuning"
)
KINDS = ("rate_limit", "server_error", "unavailable", "slow", "drop", "truncate", "training_not_available")
MAX_DELAY_SECONDS = 600.0
TRUNCATED_PLACEHOLDER_BYTES = 1024  # declared length when the real body is a stream (file content)


class FaultConfigError(ValueError):
    """A fault plan that cannot be used; the message names the rule and the field."""


@dataclass(frozen=True, slots=True)
class FaultRule:
    kind: str
    method: str = "*"  # an HTTP method, or "*"
    path: str = "*"  # a glob over the request path, e.g. "/v1/fine_tuning/jobs/*/events"
    probability: float | None = None  # fire on this share of matching requests
    every: int | None = None  # fire on the Nth, 2Nth, ... matching request
    times: int | None = None  # stop after firing this many times
    retry_after: float | None = None  # rate_limit/server_error/unavailable: seconds sent in `retry-after`
    should_retry: bool | None = None  # sent as `x-should-retry`, which overrides the SDK's own rule
    delay: float = 0.0  # slow: seconds to wait before answering
    after_handling: bool = False  # drop/server_error/unavailable: let the request take effect first

    def matches(self, method: str, path: str) -> bool:
        return self.method in ("*", method.upper()) and fnmatch.fnmatchcase(path, self.path)


@dataclass
class _RuleState:
    rule: FaultRule
    draws: random.Random
    matched: int = 0
    fired: int = 0

    def fires(self) -> bool:
        """Count one matching request and decide; the draw happens even when `times` is spent,
        so one rule's decisions never depend on another's."""
        self.matched += 1
        rule = self.rule
        draw = self.draws.random()
        if rule.times is not None and self.fired >= rule.times:
            return False
        if rule.every is not None:
            hit = self.matched % rule.every == 0
        else:
            hit = draw < (rule.probability if rule.probability is not None else 1.0)
        self.fired += hit
        return hit


@dataclass
class FaultPlan:
    """The switches and rules the middleware consults; mutable at runtime (demos flip them)."""

    rules: list[FaultRule] = field(default_factory=list)
    seed: int = 0
    training_not_available: bool = False
    _states: list[_RuleState] = field(default_factory=list, init=False, repr=False)

    def __post_init__(self) -> None:
        self.set_rules(self.rules, self.seed)

    def set_rules(self, rules: list[FaultRule], seed: int | None = None) -> None:
        """Replace the rules and restart their counters and random draws."""
        self.rules = list(rules)
        self.seed = self.seed if seed is None else seed
        self._states = [_RuleState(rule, random.Random(f"{self.seed}:{i}")) for i, rule in enumerate(self.rules)]

    def pick(self, method: str, path: str) -> FaultRule | None:
        """The first matching rule that fires for this request, if any."""
        for state in self._states:
            if state.rule.matches(method, path) and state.fires():
                return state.rule
        return None

    def fired(self) -> list[int]:
        """How often each rule has fired so far (tests and demos read it)."""
        return [state.fired for state in self._states]


# -- loading --------------------------------------------------------------------------------------


def load_fault_plan(source: Path | str | Mapping[str, Any] | FaultPlan | None) -> FaultPlan:
    """A plan from a dict, a `.json`/`.toml` file, an existing plan, or nothing (no faults)."""
    if source is None:
        return FaultPlan()
    if isinstance(source, FaultPlan):
        return source
    if isinstance(source, Mapping):
        return plan_from_dict(source)
    path = Path(source)
    try:
        text = path.read_text(encoding="utf-8")
        raw = tomllib.loads(text) if path.suffix.lower() == ".toml" else json.loads(text)
    except (OSError, ValueError) as exc:
        raise FaultConfigError(f"cannot read the fault plan {path}: {exc}") from None
    if not isinstance(raw, dict):
        raise FaultConfigError(f"the fault plan {path} must hold an object with 'rules'")
    return plan_from_dict(raw)


def plan_from_dict(raw: Mapping[str, Any]) -> FaultPlan:
    unknown = set(raw) - {"rules", "seed", "training_not_available"}
    if unknown:
        raise FaultConfigError(f"unknown fault plan keys: {', '.join(sorted(unknown))}")
    seed = raw.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise FaultConfigError("'seed' must be an integer")
    rules = raw.get("rules", [])
    if not isinstance(rules, list):
        raise FaultConfigError("'rules' must be a list")
    switch = raw.get("training_not_available", False)
    if not isinstance(switch, bool):
        raise FaultConfigError("'training_not_available' must be true or false")
    return FaultPlan([rule_from_dict(rule, index) for index, rule in enumerate(rules)], seed, switch)


RULE_FIELDS = {f.name for f in fields(FaultRule)}


def rule_from_dict(raw: Any, index: int = 0) -> FaultRule:
    where = f"fault rule {index}"
    if not isinstance(raw, Mapping):
        raise FaultConfigError(f"{where} must be an object")
    unknown = set(raw) - RULE_FIELDS
    if unknown:
        raise FaultConfigError(f"{where}: unknown keys {', '.join(sorted(unknown))}")
    try:
        rule = FaultRule(**raw)
    except TypeError as exc:
        raise FaultConfigError(f"{where}: {exc}") from None
    _check_rule(rule, where)
    return rule


def _check_rule(rule: FaultRule, where: str) -> None:
    problems = []
    if rule.kind not in KINDS:
        problems.append(f"'kind' must be one of {', '.join(KINDS)}")
    if not isinstance(rule.method, str) or not isinstance(rule.path, str):
        problems.append("'method' and 'path' must be strings")
    if rule.probability is not None and not _number_in(rule.probability, 0.0, 1.0):
        problems.append("'probability' must be a number from 0 to 1")
    if rule.every is not None and not (isinstance(rule.every, int) and rule.every >= 1):
        problems.append("'every' must be a positive integer")
    if rule.probability is not None and rule.every is not None:
        problems.append("give 'probability' or 'every', not both")
    if rule.times is not None and not (isinstance(rule.times, int) and rule.times >= 0):
        problems.append("'times' must be a non-negative integer")
    if rule.retry_after is not None and not _number_in(rule.retry_after, 0.0, MAX_DELAY_SECONDS):
        problems.append(f"'retry_after' must be a number of seconds from 0 to {MAX_DELAY_SECONDS:g}")
    if not _number_in(rule.delay, 0.0, MAX_DELAY_SECONDS):
        problems.append(f"'delay' must be a number of seconds from 0 to {MAX_DELAY_SECONDS:g}")
    if rule.should_retry is not None and not isinstance(rule.should_retry, bool):
        problems.append("'should_retry' must be true or false")
    if problems:
        raise FaultConfigError(f"{where}: " + "; ".join(problems))


def _number_in(value: Any, low: float, high: float) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and low <= value <= high


# -- the middleware -------------------------------------------------------------------------------


def fault_middleware(plan: FaultPlan) -> Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]:
    """Outermost middleware: faults wrap the error-envelope middleware and the handlers."""

    @web.middleware
    async def inject_faults(request: web.Request, handler: Handler) -> web.StreamResponse:
        if plan.training_not_available and request.method == "POST" and request.path == JOBS_PATH:
            return training_not_available_response()
        rule = plan.pick(request.method, request.path)
        if rule is None:
            return await handler(request)
        return await FAULTS[rule.kind](rule, request, handler)

    return inject_faults


def training_not_available_response() -> web.Response:
    return error_response(ApiError(403, TRAINING_NOT_AVAILABLE_MESSAGE, code="training_not_available"))


async def _training_not_available(rule: FaultRule, request: web.Request, handler: Handler) -> web.StreamResponse:
    return training_not_available_response()


async def _rate_limit(rule: FaultRule, request: web.Request, handler: Handler) -> web.StreamResponse:
    message = "Rate limit reached for requests (injected by the tunedeck local backend). Please try again later."
    response = error_response(ApiError(429, message, type="requests", code="rate_limit_exceeded"))
    response.headers["x-ratelimit-remaining-requests"] = "0"
    return _with_retry_headers(rule, response)


async def _server_error(rule: FaultRule, request: web.Request, handler: Handler) -> web.StreamResponse:
    if rule.after_handling:
        await handler(request)  # the work happens; only the answer is an error
    message = "The server had an error while processing your request. Sorry about that!"
    return _with_retry_headers(rule, error_response(ApiError(500, message, type="server_error")))


async def _unavailable(rule: FaultRule, request: web.Request, handler: Handler) -> web.StreamResponse:
    if rule.after_handling:
        await handler(request)
    response = error_response(ApiError(503, "The server is overloaded or not ready yet.", type="server_error"))
    return _with_retry_headers(rule, response)


async def _slow(rule: FaultRule, request: web.Request, handler: Handler) -> web.StreamResponse:
    await asyncio.sleep(rule.delay)
    return await handler(request)


async def _drop(rule: FaultRule, request: web.Request, handler: Handler) -> web.StreamResponse:
    if rule.after_handling:
        await handler(request)  # e.g. a job is created, but the client never hears of it
    _hang_up(request, abort=True)
    # aiohttp treats a cancelled handler as a client that went away: no response, no log noise.
    raise asyncio.CancelledError


async def _truncate(rule: FaultRule, request: web.Request, handler: Handler) -> web.StreamResponse:
    answer = await handler(request)
    body = answer.body if isinstance(answer, web.Response) and isinstance(answer.body, bytes) else b""
    declared = len(body) if body else TRUNCATED_PLACEHOLDER_BYTES
    partial = web.StreamResponse(status=answer.status, headers={"Content-Type": answer.content_type})
    partial.content_length = declared
    await partial.prepare(request)
    await partial.write(body[: len(body) // 2])
    _hang_up(request, abort=False)  # close after the partial body is flushed
    return partial


def _hang_up(request: web.Request, *, abort: bool) -> None:
    transport = request.transport
    if transport is None:
        return
    if abort:
        transport.abort()
    else:
        transport.close()


def _with_retry_headers(rule: FaultRule, response: web.Response) -> web.Response:
    if rule.retry_after is not None:
        response.headers["retry-after"] = f"{rule.retry_after:g}"
    if rule.should_retry is not None:
        response.headers["x-should-retry"] = "true" if rule.should_retry else "false"
    return response


FaultAction = Callable[[FaultRule, web.Request, Handler], Awaitable[web.StreamResponse]]
FAULTS: dict[str, FaultAction] = {
    "rate_limit": _rate_limit,
    "server_error": _server_error,
    "unavailable": _unavailable,
    "slow": _slow,
    "drop": _drop,
    "truncate": _truncate,
    "training_not_available": _training_not_available,
}
