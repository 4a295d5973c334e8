"""Sampling answers from a causal LM (worker side): RFT rollouts and chat completions.

Prompts are left-padded into one batch and `model.generate` samples them together; an
answer ends at the tokenizer's end-of-turn token(s) or after `max_new_tokens`. Greedy when
`temperature` is 0, as the local backend's chat completions default to.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch


@dataclass(frozen=True, slots=True)
class Answer:
    ids: list[int]  # the answer's tokens, without the end-of-turn token
    finished: bool  # ended at an end-of-turn token (not the length limit)
    stop: int | None = None  # that token


def stop_ids(tokenizer: Any, model: Any) -> list[int]:
    """End-of-turn tokens: the tokenizer's eos plus the generation config's (ChatML's <|im_end|>...)."""
    ids = {tokenizer.eos_token_id}
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids.update(configured if isinstance(configured, list) else [configured])
    return sorted(i for i in ids if isinstance(i, int))


def sample(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[list[int]],
    max_new_tokens: int,
    temperature: float,
    top_p: float = 1.0,
) -> list[Answer]:
    device = next(model.parameters()).device
    width = max(len(p) for p in prompts)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    ids = torch.full((len(prompts), width), pad, dtype=torch.long, device=device)
    mask = torch.zeros((len(prompts), width), dtype=torch.long, device=device)
    for row, prompt in enumerate(prompts):
        ids[row, width - len(prompt) :] = torch.tensor(prompt, device=device)
        mask[row, width - len(prompt) :] = 1
    stops = stop_ids(tokenizer, model)
    options: dict[str, Any] = {"do_sample": temperature > 0, "max_new_tokens": max_new_tokens}
    if temperature > 0:
        options.update(temperature=temperature, top_p=top_p, top_k=0)
    else:
        options.update(temperature=None, top_p=None, top_k=None)
    with torch.no_grad():
        output = model.generate(
            input_ids=ids, attention_mask=mask, eos_token_id=stops, pad_token_id=pad, **options
        )
    return [_answer(row[width:].tolist(), stops) for row in output]


def _answer(tokens: list[int], stops: list[int]) -> Answer:
    for index, token in enumerate(tokens):
        if token in stops:
            return Answer(tokens[:index], True, token)
    return Answer(tokens, False)
