"""`score_model` and `label_model` graders: a chat model reads the sample and scores or labels it.

The model is asked through the backend's own chat completions endpoint (an `Asker`), so
every model it serves can grade: the built-in one, an open model, a fine-tuned model or
checkpoint, and any model alias (`gpt-4o-2024-08-06` naming a local model). The grader's
`input` messages are templates (`{{item.*}}`, `{{sample.output_text}}`...), rendered per
sample; `sampling_params` (temperature, top_p, max_completions_tokens, seed) are passed on.

- `score_model`: the reply's last number is the score; outside `range` (default [0, 1]) or no
  number at all is `model_grader_parse_error` (reward 0). `pass_threshold` is kept for the
  job's report, as the API keeps it.
- `label_model`: the reply, stripped of quotes, spaces and a final full stop, must be one of
  `labels` (ignoring case): reward 1 when it is one of `passing_labels`, else 0; anything else
  is `model_grader_parse_error`.
A model that cannot be asked (unknown, the backend not reachable) sets
`model_grader_server_error` with the reason in `model_grader_server_error_details`.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import bad_request

ASK_TIMEOUT_S = 120.0
MAX_INPUT_MESSAGES = 64
SAMPLING_KEYS = {"temperature": "temperature", "top_p": "top_p", "seed": "seed", "max_completions_tokens": "max_tokens"}
ROLES = ("system", "developer", "user", "assistant")
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")


class AskError(Exception):
    """The grading model could not be asked (the message says why)."""


Asker = Callable[[str, list[dict[str, str]], dict[str, Any]], str]
"""(model, messages, sampling) -> the reply's text; raises `AskError`."""


def http_asker(base_url: str, api_key: str) -> Asker:
    """Ask through `POST {base_url}/chat/completions` (this backend's own endpoint)."""

    def ask(model: str, messages: list[dict[str, str]], sampling: dict[str, Any]) -> str:
        body = json.dumps({"model": model, "messages": messages, **sampling}).encode()
        request = urllib.request.Request(
            base_url.rstrip("/") + "/chat/completions",
            data=body,
            headers={"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=ASK_TIMEOUT_S) as response:  # noqa: S310 - our own loopback URL
                reply = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            try:
                message = json.loads(exc.read())["error"]["message"]
            except (ValueError, KeyError, TypeError):
                message = exc.reason
            raise AskError(f"HTTP {exc.code}: {message}") from None
        except (OSError, ValueError) as exc:
            raise AskError(f"cannot reach the model: {exc}") from None
        try:
            return str(reply["choices"][0]["message"]["content"] or "")
        except (KeyError, IndexError, TypeError):
            raise AskError("the reply holds no answer") from None

    return ask


@dataclass(frozen=True)
class ModelGrader:
    name: str
    model: str
    messages: tuple[tuple[str, Any], ...]  # (role, content template)
    sampling: dict[str, Any]
    ask: Asker | None

    def _reply(self, namespaces: dict[str, Any]) -> tuple[str | None, Any]:
        """The model's reply, or (None, the Grade saying why there is none)."""
        from .grader import Grade, MissingVariable

        try:
            messages = [{"role": role, "content": template.render(namespaces)} for role, template in self.messages]
        except MissingVariable as missing:
            return None, Grade(0.0, {missing.flag})
        if self.ask is None:
            details = {"model_grader_server_error_details": "no model can be asked from here"}
            return None, Grade(0.0, {"model_grader_server_error"}, details=details)
        try:
            return self.ask(self.model, messages, self.sampling), None
        except AskError as exc:
            details = {"model_grader_server_error_details": f"{self.model}: {exc}"[:2000]}
            return None, Grade(0.0, {"model_grader_server_error"}, details=details)


@dataclass(frozen=True)
class ScoreModel(ModelGrader):
    low: float = 0.0
    high: float = 1.0
    type: str = "score_model"

    def grade(self, namespaces: dict[str, Any]) -> Any:
        from .grader import Grade

        reply, failed = self._reply(namespaces)
        if reply is None:
            return failed
        numbers = _NUMBER.findall(reply)
        if not numbers:
            return Grade(0.0, {"model_grader_parse_error"})
        score = float(numbers[-1])
        if not self.low <= score <= self.high:
            return Grade(0.0, {"model_grader_parse_error"})
        return Grade(score)


@dataclass(frozen=True)
class LabelModel(ModelGrader):
    labels: tuple[str, ...] = ()
    passing: frozenset[str] = frozenset()
    type: str = "label_model"

    def grade(self, namespaces: dict[str, Any]) -> Any:
        from .grader import Grade

        reply, failed = self._reply(namespaces)
        if reply is None:
            return failed
        said = reply.strip().strip("\"'`").strip().rstrip(".").strip().casefold()
        label = next((label for label in self.labels if label.casefold() == said), None)
        if label is None:
            return Grade(0.0, {"model_grader_parse_error"})
        return Grade(1.0 if label in self.passing else 0.0)


def compile_model_grader(raw: dict[str, Any], name: str, param: str, ask: Asker | None) -> ModelGrader:
    from .grader import _required, parse_template

    model = _required(raw, "model", param)
    if not isinstance(model, str) or not model.strip():
        raise bad_request(f"Invalid '{param}.model': expected a model name.", param=f"{param}.model")
    messages = _input(_required(raw, "input", param), f"{param}.input", parse_template)
    sampling = _sampling(raw.get("sampling_params"), f"{param}.sampling_params")
    if raw["type"] == "score_model":
        low, high = _range(raw.get("range"), f"{param}.range")
        return ScoreModel(name, model, messages, sampling, ask, low, high)
    labels = _strings(_required(raw, "labels", param), f"{param}.labels")
    passing = _strings(_required(raw, "passing_labels", param), f"{param}.passing_labels")
    unknown = [label for label in passing if label not in labels]
    if unknown:
        where = f"{param}.passing_labels"
        raise bad_request(f"Invalid '{where}': {unknown[0][:40]!r} is not one of the labels.", param=where)
    return LabelModel(name, model, messages, sampling, ask, tuple(labels), frozenset(passing))


def _input(raw: Any, param: str, parse_template: Callable[[Any, str], Any]) -> tuple[tuple[str, Any], ...]:
    if not isinstance(raw, list) or not raw or len(raw) > MAX_INPUT_MESSAGES:
        raise bad_request(f"Invalid '{param}': expected 1 to {MAX_INPUT_MESSAGES} messages.", param=param)
    messages = []
    for index, message in enumerate(raw):
        where = f"{param}[{index}]"
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            raise bad_request(f"Invalid '{where}.role': expected one of {', '.join(ROLES)}.", param=f"{where}.role")
        content = message.get("content")
        if isinstance(content, dict) and content.get("type") in ("input_text", "output_text", "text"):
            content = content.get("text")
        messages.append((message["role"], parse_template(content, f"{where}.content")))
    return tuple(messages)


def _sampling(raw: Any, param: str) -> dict[str, Any]:
    if raw is None:
        return {"temperature": 0.0}
    if not isinstance(raw, dict):
        raise bad_request(f"Invalid '{param}': expected an object.", param=param)
    sampling = {"temperature": 0.0}
    for key, value in raw.items():
        if key in SAMPLING_KEYS and value is not None:
            sampling[SAMPLING_KEYS[key]] = value
    return sampling


def _range(raw: Any, param: str) -> tuple[float, float]:
    if raw is None:
        return 0.0, 1.0
    ok = isinstance(raw, list) and len(raw) == 2 and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in raw)
    if not ok or raw[0] >= raw[1]:
        raise bad_request(f"Invalid '{param}': expected [lowest, highest], two numbers.", param=param)
    return float(raw[0]), float(raw[1])


def _strings(raw: Any, param: str) -> list[str]:
    if not isinstance(raw, list) or not raw or not all(isinstance(v, str) and v for v in raw):
        raise bad_request(f"Invalid '{param}': expected a list of labels.", param=param)
    return list(raw)
