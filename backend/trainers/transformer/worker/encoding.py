"""Turning OpenAI-format rows into token ids with the model's own chat template, and marking
which tokens are trained (worker side; tokenizers only, no model).

Assistant tokens are found by rendering the conversation prefix by prefix: the text an
assistant message adds is `render(messages[:i+1])` minus `render(messages[:i],
add_generation_prompt=True)`. That works with any template that renders a conversation as
the sum of its turns (ChatML, Llama 3, Gemma, Mistral...) and needs no `{% generation %}`
tags. A template that rewrites earlier turns (Qwen3 drops earlier reasoning) falls back to
finding each assistant message's text in the rendering; when even that fails, it refuses
loudly, so a run never trains on nothing (TRL's silent failure). Loss covers the assistant's text and its end-of-turn
marker, so a model learns where to stop; `weight: 0` keeps a message out of it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Sequence

from tunedeck.backend.trainers.base import TrainingFailure


@dataclass(frozen=True, slots=True)
class Encoded:
    ids: list[int]
    trained: list[bool]  # per token: is it a target (its prediction is scored)?
    line: int  # 1-based line of the row in its file
    truncated: bool = False

    @property
    def n_trained(self) -> int:
        return sum(self.trained)


def template_message(message: dict[str, Any]) -> dict[str, Any]:
    """A message as Hugging Face chat templates expect it: text content, `developer` as
    `system`, tool-call arguments as objects, and no `weight` key."""
    out = {k: v for k, v in message.items() if k != "weight"}
    if out.get("role") == "developer":
        out["role"] = "system"
    content = out.get("content")
    if isinstance(content, list):
        out["content"] = " ".join(p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    elif content is None:
        out["content"] = ""
    calls = out.get("tool_calls")
    if isinstance(calls, list):
        out["tool_calls"] = [_template_call(call) for call in calls]
    return out


def _template_call(call: Any) -> Any:
    if not isinstance(call, dict) or not isinstance(call.get("function"), dict):
        return call
    function = dict(call["function"])
    if isinstance(function.get("arguments"), str):
        try:
            function["arguments"] = json.loads(function["arguments"])
        except ValueError:
            pass  # a template shows a string as it is
    return {**call, "function": function}


class ChatEncoder:
    def __init__(self, tokenizer: Any, model_name: str, max_length: int) -> None:
        if not getattr(tokenizer, "chat_template", None):
            raise TrainingFailure(
                "invalid_model",
                f"The model `{model_name}` has no chat template, so its assistant tokens cannot be marked; "
                "use an instruct/chat model or add a chat template to its tokenizer",
                "model",
            )
        self.tokenizer = tokenizer
        self.model_name = model_name
        self.max_length = max_length
        self.located_by_text = 0  # examples whose assistant text was found by search (see _spans_by_text)

    def render(self, messages: Sequence[dict[str, Any]], tools: Any, *, generation_prompt: bool) -> str:
        return self.tokenizer.apply_chat_template(
            list(messages), tools=tools or None, tokenize=False, add_generation_prompt=generation_prompt
        )

    def encode(
        self, messages: Sequence[dict[str, Any]], tools: Any, train: Sequence[bool], line: int, keep_end: bool = False
    ) -> Encoded:
        """Token ids of the conversation, trained where `train[i]` marks an assistant message."""
        messages = [template_message(m) for m in messages]
        try:
            full = self.render(messages, tools, generation_prompt=False)
            try:
                spans = [self._span(messages, tools, i, full, line) for i, wanted in enumerate(train) if wanted]
            except TrainingFailure as refusal:
                spans = self._spans_by_text(messages, tools, train, full, refusal)
        except TrainingFailure:
            raise
        except Exception as exc:  # a Jinja error raised by the template itself
            raise TrainingFailure(
                "invalid_training_file",
                f"Line {line}: the chat template of `{self.model_name}` cannot render this example: {exc}",
                "training_file",
            ) from None
        return self._tokenize(full, spans, line, keep_end)

    def encode_chat_row(self, row: dict[str, Any], line: int) -> Encoded:
        """An SFT row: every assistant message trained unless its `weight` is 0."""
        messages = row["messages"]
        train = [m.get("role") == "assistant" and m.get("weight", 1) != 0 for m in messages]
        return self.encode(messages, row.get("tools"), train, line)

    def encode_answer(self, prompt: Sequence[dict[str, Any]], answer: dict[str, Any], tools: Any, line: int) -> Encoded:
        """A prompt and one assistant answer, only the answer trained (DPO rows). Too long, it
        loses the start of the prompt, never the answer it is about."""
        messages = [*prompt, {"role": "assistant", **answer}]
        train = [False] * len(prompt) + [True]
        return self.encode(messages, tools, train, line, keep_end=True)

    def prompt_ids(self, messages: Sequence[dict[str, Any]], tools: Any, limit: int | None = None) -> list[int]:
        """The prompt up to the assistant's turn (RFT, chat); its last `limit` tokens if longer."""
        text = self.render([template_message(m) for m in messages], tools, generation_prompt=True)
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        return ids[-limit:] if limit and len(ids) > limit else ids

    def _spans_by_text(
        self, messages: list[dict[str, Any]], tools: Any, train: Sequence[bool], full: str, refusal: TrainingFailure
    ) -> list[tuple[int, int]]:
        """For templates that render earlier turns differently (Qwen3 drops earlier reasoning):
        find each trained message's text in the full rendering, in order, plus the end-of-turn
        text the template writes after it. Refuses (`refusal`) when a text is not there."""
        spans: list[tuple[int, int]] = []
        cursor = 0
        for index, message in enumerate(messages):
            content = message.get("content") or ""
            start = full.find(content, cursor) if content else -1
            if start < 0:
                if train[index]:
                    raise refusal
                continue
            end = start + len(content)
            if train[index]:
                tail = self._turn_tail(message, tools)
                end += len(tail) if tail and full.startswith(tail, end) else 0
                spans.append((start, end))
            cursor = end
        self.located_by_text += 1
        return spans

    def _turn_tail(self, message: dict[str, Any], tools: Any) -> str:
        """What the template writes after an assistant message's text (its end-of-turn marker)."""
        content = message.get("content") or ""
        try:
            alone = self.render([{"role": "user", "content": "?"}, message], tools, generation_prompt=False)
        except Exception:
            return ""
        at = alone.rfind(content)
        return alone[at + len(content) :] if content and at >= 0 else ""

    def _span(self, messages: list[dict[str, Any]], tools: Any, index: int, full: str, line: int) -> tuple[int, int]:
        through = self.render(messages[: index + 1], tools, generation_prompt=False)
        if index:
            before = self.render(messages[:index], tools, generation_prompt=True)
        else:
            before = self._preamble(through, messages[0])
        if not through.startswith(before) or not full.startswith(through) or len(through) == len(before):
            raise TrainingFailure(
                "invalid_model",
                f"The chat template of `{self.model_name}` cannot mark assistant tokens (line {line}, message "
                f"{index + 1}): it renders a conversation differently from the sum of its turns, so the "
                "trained tokens cannot be found; use a model whose template renders each turn in place",
                "model",
            )
        return len(before), len(through)

    @staticmethod
    def _preamble(through: str, opening: dict[str, Any]) -> str:
        """What a template writes before an opening assistant message's text (BOS, a default
        system prompt, the tools block, the turn header): never trained. (An empty
        conversation cannot be rendered, so it is found by where the text starts.)"""
        content = opening.get("content") or ""
        start = through.find(content) if content else -1
        return through[:start] if start > 0 else ""

    def _tokenize(self, text: str, spans: list[tuple[int, int]], line: int, keep_end: bool = False) -> Encoded:
        encoded = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        ids, offsets = encoded["input_ids"], encoded["offset_mapping"]
        trained = [any(start <= begin < end for start, end in spans) for begin, _ in offsets]
        truncated = len(ids) > self.max_length
        if truncated:
            window = slice(-self.max_length, None) if keep_end else slice(None, self.max_length)
            ids, trained = ids[window], trained[window]
        if trained:
            trained[0] = False  # nothing predicts the first token
        return Encoded(ids, trained, line, truncated)
