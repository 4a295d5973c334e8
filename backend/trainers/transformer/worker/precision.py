"""Optimisers of the transformer trainer (worker side), and the weights' precision.

Whole-model training on CUDA runs the model in bf16 (no autocast re-casting fp32 weights on
every matrix product) while `MasterAdamW` keeps an fp32 master copy of every weight: the
gradients are moved to fp32, clipped and applied there (bf16 cannot hold learning-rate-sized
updates), and the result is written back into the bf16 weights. On the CPU, and for LoRA
(whose trained adapters are fp32 already), `PlainAdamW` is AdamW as it comes. Both clip the
gradients' global norm before the update; both are fused on CUDA.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch.distributed.tensor import DTensor


class PlainAdamW:
    def __init__(self, params: Sequence[torch.nn.Parameter], lr: float, fused: bool) -> None:
        self.params = list(params)
        self.inner = torch.optim.AdamW(self.params, lr=lr, weight_decay=0.0, fused=fused)

    @property
    def param_groups(self) -> list[dict[str, Any]]:
        return self.inner.param_groups

    def clip_and_step(self, max_norm: float) -> None:
        torch.nn.utils.clip_grad_norm_(self.params, max_norm)
        self.inner.step()
        self.inner.zero_grad(set_to_none=True)

    def state_dict(self) -> dict[str, Any]:
        return self.inner.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.inner.load_state_dict(state)


class MasterAdamW:
    """AdamW on fp32 masters of low-precision parameters. `masters` (optional) are the exact
    starting values when the caller has them (weights loaded in fp32 before the cast)."""

    def __init__(
        self,
        params: Sequence[torch.nn.Parameter],
        lr: float,
        fused: bool,
        masters: Sequence[torch.Tensor] | None = None,
    ) -> None:
        self.params = list(params)
        sources = masters if masters is not None else self.params
        self.masters = [
            s.detach().to(device=p.device, dtype=torch.float32, copy=True) for s, p in zip(sources, self.params)
        ]
        self.inner = torch.optim.AdamW(self.masters, lr=lr, weight_decay=0.0, fused=fused)

    @property
    def param_groups(self) -> list[dict[str, Any]]:
        return self.inner.param_groups

    def clip_and_step(self, max_norm: float) -> None:
        for param, master in zip(self.params, self.masters):
            master.grad = None if param.grad is None else param.grad.float()
            param.grad = None  # one parameter's gradient in two precisions at a time, not the model's
        torch.nn.utils.clip_grad_norm_(self.masters, max_norm)
        self.inner.step()
        self.inner.zero_grad(set_to_none=True)
        self._write_back()

    @torch.no_grad()
    def _write_back(self) -> None:
        # the shards themselves when the weights are sharded across ranks (`sharding.py`)
        torch._foreach_copy_([_local(p) for p in self.params], [_local(m) for m in self.masters])

    def state_dict(self) -> dict[str, Any]:
        return {"adamw": self.inner.state_dict(), "masters": self.masters}

    @torch.no_grad()
    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "masters" not in state:  # a state saved by a plain AdamW (fp32 weights): its weights are the masters
            self.inner.load_state_dict(state)
            return
        self.inner.load_state_dict(state["adamw"])
        for master, saved in zip(self.masters, state["masters"]):
            master.copy_(saved)
        self._write_back()


def _local(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.to_local() if isinstance(tensor, DTensor) else tensor


def uses_master_weights(device: torch.device, training_type: str) -> bool:
    """bf16 weights with fp32 masters: whole-model training on CUDA (dtype_for gives bf16 there)."""
    return training_type == "full" and device.type == "cuda"
