"""Chat completions from a transformer model (worker side, `mode: chat`).

One model stays loaded per worker: a base model from the catalog or a tunedeck checkpoint
(adapter on its base, or a whole model), answering with its own chat template. Decoding:
greedy at temperature 0 (the local backend's default), else sampling with `top_p`; `seed`
makes sampling repeatable; `stop` sequences cut the text and finish with "stop".
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from tunedeck.backend.stop_sequences import cut_pieces

from .encoding import ChatEncoder
from .generation import sample
from .loading import BaseModel, choose_device, load_base, load_checkpoint, load_tokenizer

CHAT_CONTEXT = 32_768


class ChatSession:
    def __init__(self, spec: dict[str, Any]) -> None:
        device = choose_device(spec.get("device"))
        if spec.get("checkpoint"):
            path = Path(spec["checkpoint"])
            self.model, _ = load_checkpoint(path, device, trainable=False)
            self.tokenizer = load_tokenizer(path)
        else:
            base = BaseModel.from_json(spec["base"])
            self.model = load_base(base, device)
            self.tokenizer = load_tokenizer(base.path, base.gguf_file)
        self.model.eval()
        self.encoder = ChatEncoder(self.tokenizer, spec["name"], CHAT_CONTEXT)

    def answer(self, request: dict[str, Any]) -> dict[str, Any]:
        limit = max(16, CHAT_CONTEXT - int(request["max_tokens"]))
        prompt = self.encoder.prompt_ids(request["messages"], request.get("tools"), limit)
        if request.get("seed") is not None:
            torch.manual_seed(int(request["seed"]) % 2**63)
        answers = sample(
            self.model,
            self.tokenizer,
            [prompt] * int(request.get("n", 1)),
            int(request["max_tokens"]),
            float(request.get("temperature", 0.0)),
            float(request.get("top_p", 1.0)),
        )
        stops = [s for s in request.get("stop", []) if s]
        return {
            "answers": [self._pieces(a.ids, a.finished, stops) for a in answers],
            "prompt_tokens": len(prompt),
        }

    def _pieces(self, ids: list[int], finished: bool, stops: list[str]) -> dict[str, Any]:
        """The answer's text token by token (what a stream sends), cut before the first stop
        sequence, even one that spans several tokens."""
        pieces: list[str] = []
        previous = ""
        for end in range(1, len(ids) + 1):
            text = self.tokenizer.decode(ids[:end], skip_special_tokens=True)
            pieces.append(text[len(previous) :])
            previous = text
            cut = min((previous.index(s) for s in stops if s in previous), default=None)
            if cut is not None:
                return {"pieces": cut_pieces(pieces, cut), "finish_reason": "stop", "completion_tokens": end}
        return {"pieces": pieces, "finish_reason": "stop" if finished else "length", "completion_tokens": len(ids)}
