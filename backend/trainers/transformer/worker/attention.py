"""Padding-free attention for packed rows (worker side).

A packed batch is one row of many sequences end to end (`scoring.pack`). With PyTorch's
scaled-dot-product attention, transformers turns the restarting `position_ids` into a dense
[tokens x tokens] block-diagonal mask, which grows with the square of the row. The
`tunedeck_varlen` attention implementation instead hands each sequence's boundaries
(`cu_seq_lens_q`, as flash-attention's variable-length kernels take them) to PyTorch's own
`torch.nn.attention.varlen.varlen_attn` on CUDA, so no mask exists and no work crosses a
boundary; on the CPU (tests) it runs causal attention per sequence, which is exact too.
Calls that carry no boundaries (generation with a KV cache, batched chat with padding) go
to transformers' sdpa path with its usual mask.
"""

from __future__ import annotations

import inspect
import itertools
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

VARLEN = "tunedeck_varlen"
_state = threading.local()


def varlen_kernel() -> Any | None:
    """PyTorch's variable-length flash attention, when this torch has it."""
    try:
        from torch.nn.attention.varlen import varlen_attn
    except ImportError:
        return None
    return varlen_attn


def varlen_usable(device: torch.device) -> bool:
    if device.type != "cuda" or varlen_kernel() is None:
        return False
    major, _ = torch.cuda.get_device_capability(device)
    return major >= 8  # flash attention's kernels: Ampere and later


def register() -> str:
    """Make `tunedeck_varlen` a transformers attention implementation (idempotent)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

    def mask(*args: Any, **kwargs: Any) -> Any:
        if getattr(_state, "boundaries", False):
            return None  # the boundaries travel as cu_seq_lens: no mask to build
        return sdpa_mask(*args, **kwargs)

    AttentionInterface.register(VARLEN, varlen_attention_forward)
    ALL_MASK_ATTENTION_FUNCTIONS.register(VARLEN, mask)
    return VARLEN


@contextmanager
def boundaries_given() -> Iterator[None]:
    """Inside: the model is called with `cu_seq_lens_q` (see `boundary_kwargs`), so masks are skipped."""
    before = getattr(_state, "boundaries", False)
    _state.boundaries = True
    try:
        yield
    finally:
        _state.boundaries = before


def varlen_attention_forward(
    module: torch.nn.Module,
    query: torch.Tensor,  # [B, Hq, T, D]
    key: torch.Tensor,  # [B, Hkv, T, D]
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    cu_seqlens = kwargs.get("cu_seq_lens_q")
    if cu_seqlens is None:
        if getattr(_state, "boundaries", False):
            raise RuntimeError("packed attention was called without sequence boundaries")
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
        )
    batch, heads, length, dim = query.shape
    q = query.transpose(1, 2).reshape(batch * length, heads, dim)
    k = key.transpose(1, 2).reshape(batch * length, key.shape[1], dim)
    v = value.transpose(1, 2).reshape(batch * length, value.shape[1], dim)
    kernel = varlen_kernel() if query.is_cuda else None
    if kernel is not None:
        wanted = query.dtype
        if wanted not in (torch.float16, torch.bfloat16) or key.dtype != wanted or value.dtype != wanted:
            # flash kernels take one 16-bit dtype; under autocast, rotary embeddings leave q and k in fp32
            low = torch.get_autocast_dtype("cuda") if torch.is_autocast_enabled("cuda") else torch.bfloat16
            q, k, v = q.to(low), k.to(low), v.to(low)
        out = _run_varlen(kernel, q, k, v, cu_seqlens, int(kwargs["max_length_q"]), scaling).to(wanted)
    else:
        out = _per_sequence(q, k, v, cu_seqlens, scaling)
    return out.view(batch, length, heads, dim), None


_SIGNATURES: dict[Any, set[str]] = {}


def _run_varlen(kernel: Any, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cu: torch.Tensor, longest: int,
                scaling: float | None) -> torch.Tensor:
    names = _SIGNATURES.get(kernel)
    if names is None:
        names = _SIGNATURES[kernel] = set(inspect.signature(kernel).parameters)
    options: dict[str, Any] = {}
    if "scale" in names:
        options["scale"] = scaling
    elif scaling is not None:  # an older kernel scales by 1/sqrt(dim): fold the model's scale into q
        q = q * (scaling * q.shape[-1] ** 0.5)
    if "window_size" in names:
        options["window_size"] = (-1, 0)  # causal
    else:
        options["is_causal"] = True
    if k.shape[1] != q.shape[1]:
        if "enable_gqa" in names:
            options["enable_gqa"] = True
        else:
            groups = q.shape[1] // k.shape[1]
            k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)
    return kernel(q, k, v, cu, cu, longest, longest, **options)


def _per_sequence(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cu: torch.Tensor,
                  scaling: float | None) -> torch.Tensor:
    bounds = cu.tolist()
    parts = []
    for start, end in itertools.pairwise(bounds):
        parts.append(
            torch.nn.functional.scaled_dot_product_attention(
                q[start:end].transpose(0, 1), k[start:end].transpose(0, 1), v[start:end].transpose(0, 1),
                is_causal=True, scale=scaling, enable_gqa=k.shape[1] != q.shape[1],
            ).transpose(0, 1)
        )
    return torch.cat(parts)
