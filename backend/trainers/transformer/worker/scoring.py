"""Scoring tokens with a causal LM, padding-free (worker side).

A batch is packed into one row: the sequences end to end, `position_ids` restarting at 0
for each, which transformers turns into a block-diagonal causal mask (varlen kernels with
flash attention; `attention.py`'s `tunedeck_varlen` passes the boundaries to PyTorch's own
varlen kernel instead of any mask), so no compute is spent on padding. Logits are computed only at the
positions that predict a trained token, in chunks that are recomputed in the backward pass,
so a 150k-word vocabulary never materialises a full [tokens x vocabulary] fp32 tensor.

Training SFT takes a shorter path (`sft_loss`): the head and the cross-entropy are one
chunked autograd function that computes the head's gradients while it scores (the loss is a
plain mean, so they are known up to the scalar the backward pass brings), so the logits are
computed once per step instead of twice and no chunk's logits outlive its loop iteration.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch
from torch.utils.checkpoint import checkpoint

from .attention import VARLEN, boundaries_given
from .encoding import Encoded
from .loading import causal_parts

LOGIT_CHUNK = 4096  # scored positions per head call


@dataclass(frozen=True, slots=True)
class Packed:
    ids: torch.Tensor  # [1, T] packed, or [B, L] stacked
    positions: torch.Tensor  # the same shape
    predictors: torch.Tensor  # [K]: flat positions whose hidden state predicts a target
    targets: torch.Tensor  # [K]: the target token ids
    owners: torch.Tensor  # [K]: which sequence each target belongs to
    n_sequences: int
    cu_seqlens: torch.Tensor  # [n_sequences + 1] int32: where each sequence starts in the flattened ids, and the end
    longest: int  # the longest sequence's length

    @property
    def n_tokens(self) -> int:
        return int(self.ids.numel())


def pack(sequences: Sequence[Encoded], device: torch.device) -> Packed:
    """One packed row; or, when every sequence has the same length (packed pre-training style
    blocks), a plain [B, L] batch, which needs no block mask and keeps the fastest kernels."""
    if len(sequences) > 1 and len({len(s.ids) for s in sequences}) == 1:
        return _stack(sequences, device)
    ids: list[int] = []
    positions: list[int] = []
    predictors: list[int] = []
    targets: list[int] = []
    owners: list[int] = []
    for owner, seq in enumerate(sequences):
        offset = len(ids)
        ids.extend(seq.ids)
        positions.extend(range(len(seq.ids)))
        for j in range(1, len(seq.ids)):
            if seq.trained[j]:
                predictors.append(offset + j - 1)
                targets.append(seq.ids[j])
                owners.append(owner)

    def tensor(values: list[int]) -> torch.Tensor:
        return torch.tensor(values, dtype=torch.long, device=device)

    starts = [0]
    for seq in sequences:
        starts.append(starts[-1] + len(seq.ids))
    return Packed(
        tensor(ids)[None],
        tensor(positions)[None],
        tensor(predictors),
        tensor(targets),
        tensor(owners),
        len(sequences),
        torch.tensor(starts, dtype=torch.int32, device=device),
        max((len(s.ids) for s in sequences), default=0),
    )


def _stack(sequences: Sequence[Encoded], device: torch.device) -> Packed:
    length = len(sequences[0].ids)
    ids = torch.tensor([s.ids for s in sequences], dtype=torch.long, device=device)
    trained = torch.tensor([s.trained for s in sequences], dtype=torch.bool, device=device)
    trained[:, 0] = False
    rows, columns = trained.nonzero(as_tuple=True)
    return Packed(
        ids,
        torch.arange(length, device=device).expand(len(sequences), length),
        rows * length + columns - 1,
        ids[rows, columns],
        rows,
        len(sequences),
        torch.arange(0, (len(sequences) + 1) * length, length, dtype=torch.int32, device=device),
        length,
    )


@dataclass(frozen=True, slots=True)
class Scores:
    logprobs: torch.Tensor  # [K] log p(target), fp32
    hits: torch.Tensor  # [K] bool: the target was the argmax
    owners: torch.Tensor  # [K]
    n_sequences: int

    def per_sequence(self) -> torch.Tensor:
        """Sum of log-probabilities of each sequence's targets."""
        sums = torch.zeros(self.n_sequences, dtype=self.logprobs.dtype, device=self.logprobs.device)
        return sums.index_add(0, self.owners, self.logprobs)

    def counts(self) -> torch.Tensor:
        ones = torch.ones_like(self.logprobs)
        return torch.zeros(self.n_sequences, device=ones.device).index_add(0, self.owners, ones)


def logit_transform(model: Any) -> tuple[float | None, float]:
    """(soft cap, scale) the model's own forward applies to its logits, which scoring must
    repeat: Gemma 2/3's `final_logit_softcapping`, Cohere's `logit_scale`, Granite's
    `logits_scaling` (a divisor)."""
    config = getattr(model, "config", None)
    cap = getattr(config, "final_logit_softcapping", None)
    scale = float(getattr(config, "logit_scale", None) or 1.0)
    divisor = getattr(config, "logits_scaling", None)
    if divisor:
        scale /= float(divisor)
    return (float(cap) if cap else None), scale


def predicting_states(model: Any, packed: Packed) -> torch.Tensor:
    """[K, hidden]: the decoder's last hidden state at each position that predicts a target."""
    decoder, _ = causal_parts(model)
    # A packed row takes its boundaries to varlen attention; same-length rows ([B, L]) need none
    # (sdpa's causal kernel, as fast). H100, 0.5B, whole model: 32 short examples a step (~3.8k
    # tokens) 24.0k tokens/s with varlen against 17.3k with sdpa's block mask; 256 in a row (~18k
    # tokens) 67.9k against 20.8k.
    varlen = getattr(model.config, "_attn_implementation", None) == VARLEN
    if varlen and packed.ids.shape[0] == 1 and packed.n_sequences > 1:
        bounds = {"cu_seq_lens_q": packed.cu_seqlens, "cu_seq_lens_k": packed.cu_seqlens,
                  "max_length_q": packed.longest, "max_length_k": packed.longest}
        with boundaries_given():
            hidden = decoder(input_ids=packed.ids, position_ids=packed.positions, use_cache=False, **bounds)
    else:
        hidden = decoder(input_ids=packed.ids, position_ids=packed.positions, use_cache=False)
    hidden = hidden.last_hidden_state
    return hidden.reshape(-1, hidden.shape[-1]).index_select(0, packed.predictors)


def score(model: Any, packed: Packed) -> Scores:
    _, head = causal_parts(model)
    cap, scale = logit_transform(model)
    chosen = predicting_states(model, packed)
    logprobs, hits = [], []
    for start in range(0, chosen.shape[0], LOGIT_CHUNK):
        part = chosen[start : start + LOGIT_CHUNK]
        targets = packed.targets[start : start + LOGIT_CHUNK]
        if torch.is_grad_enabled() and chosen.shape[0] > LOGIT_CHUNK:
            lp, hit = checkpoint(_head_logprobs, head.weight, head.bias, part, targets, cap, scale, use_reentrant=False)
        else:
            lp, hit = _head_logprobs(head.weight, head.bias, part, targets, cap, scale)
        logprobs.append(lp)
        hits.append(hit)
    empty = chosen.new_zeros(0, dtype=torch.float32)
    return Scores(
        torch.cat(logprobs) if logprobs else empty,
        torch.cat(hits) if hits else empty.bool(),
        packed.owners,
        packed.n_sequences,
    )


def _head_logprobs(
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    hidden: torch.Tensor,
    targets: torch.Tensor,
    cap: float | None = None,
    scale: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    logits = torch.nn.functional.linear(hidden, weight, bias).float()
    if scale != 1.0:
        logits = logits * scale
    if cap is not None:
        logits = torch.tanh(logits / cap) * cap
    chosen = logits.gather(1, targets[:, None])[:, 0]
    logprobs = chosen - torch.logsumexp(logits, dim=-1)
    return logprobs, logits.argmax(-1) == targets


@dataclass(frozen=True, slots=True)
class SftLoss:
    loss: torch.Tensor  # scalar: mean of -log p(target) over the K targets (differentiable)
    hits: int  # targets that were the argmax
    count: int  # K


def sft_loss(model: Any, packed: Packed, chunk: int = LOGIT_CHUNK) -> SftLoss:
    """The mean token cross-entropy of `packed`, as `-score(...).logprobs.mean()` gives it, with
    the head fused into the loss (`_FusedHeadLoss`)."""
    _, head = causal_parts(model)
    cap, scale = logit_transform(model)
    chosen = predicting_states(model, packed)
    count = int(chosen.shape[0])
    if count == 0:  # zero, yet a backward pass from it runs through the decoder (a sharded model's collectives)
        return SftLoss(chosen.float().sum() * 0.0, 0, 0)
    total, hits = _FusedHeadLoss.apply(chosen, head.weight, head.bias, packed.targets, cap, scale, chunk)
    return SftLoss(total / count, int(hits.item()), count)


def _chunk_loss_eager(
    logits: torch.Tensor, wanted: torch.Tensor, cap: float | None, scale: float, need_grad: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """One chunk's summed -log p(target), its hits, and d(sum)/d(logits) in the logits' dtype.
    fp32 `logits` are overwritten (the caller drops them)."""
    z = logits.float()
    if scale != 1.0:
        z = z * scale
    squashed = None
    if cap is not None:
        squashed = torch.tanh(z / cap)
        z = squashed * cap
    lse = torch.logsumexp(z, dim=-1)
    loss = (lse - z.gather(1, wanted[:, None])[:, 0]).sum()
    hits = (z.argmax(-1) == wanted).sum()
    if not need_grad:
        return loss, hits, None
    grad = z.sub_(lse[:, None]).exp_()  # softmax, in z's memory
    grad.scatter_add_(1, wanted[:, None], grad.new_full((len(wanted), 1), -1.0))
    if squashed is not None:
        grad.mul_(1.0 - squashed * squashed)
    if scale != 1.0:
        grad.mul_(scale)
    return loss, hits, grad.to(logits.dtype)


_compiled_chunk_loss: Any = None


def compile_head_loss(dynamic: bool | None = True) -> None:
    """torch.compile the per-chunk loss (one fused pass over the logits instead of several);
    `loading.compile_layers` turns it on with the layers, `stop_compiling_head_loss` off."""
    global _compiled_chunk_loss
    _compiled_chunk_loss = torch.compile(_chunk_loss_eager, dynamic=dynamic)


def stop_compiling_head_loss() -> None:
    global _compiled_chunk_loss
    _compiled_chunk_loss = None


def _chunk_loss(
    logits: torch.Tensor, wanted: torch.Tensor, cap: float | None, scale: float, need_grad: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    global _compiled_chunk_loss
    if _compiled_chunk_loss is not None:
        try:
            return _compiled_chunk_loss(logits, wanted, cap, scale, need_grad)
        except Exception:  # noqa: BLE001 -- a compiler failure costs speed, never the run
            _compiled_chunk_loss = None
    return _chunk_loss_eager(logits, wanted, cap, scale, need_grad)


class _FusedHeadLoss(torch.autograd.Function):
    """sum over rows of -log softmax(cap/scale(hidden @ weight.T + bias))[target], chunked.

    The gradients of the hidden states, weight and bias are computed in the forward pass
    (softmax minus one-hot, per chunk) and scaled by the incoming scalar in the backward pass;
    each chunk's fp32 logits are freed before the next chunk. Returns (sum, hit count)."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        hidden: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        targets: torch.Tensor,
        cap: float | None,
        scale: float,
        chunk: int,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        need_hidden, need_weight = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        need_bias = bias is not None and ctx.needs_input_grad[2]
        grad_hidden = torch.empty_like(hidden) if need_hidden else None
        grad_weight = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device) if need_weight else None
        grad_bias = torch.zeros(bias.shape, dtype=torch.float32, device=bias.device) if need_bias else None
        total = torch.zeros((), dtype=torch.float32, device=hidden.device)
        hits = torch.zeros((), dtype=torch.long, device=hidden.device)
        need_grad = grad_hidden is not None or grad_weight is not None or grad_bias is not None
        for start in range(0, hidden.shape[0], chunk):
            part = hidden[start : start + chunk]
            wanted = targets[start : start + chunk]
            logits = torch.nn.functional.linear(part, weight, bias)
            loss, hit, grad_low = _chunk_loss(logits, wanted, cap, scale, need_grad)
            del logits
            total += loss
            hits += hit
            if grad_low is None:
                continue
            if grad_hidden is not None:
                grad_hidden[start : start + chunk] = grad_low @ weight
            if grad_weight is not None:
                grad_weight.add_(grad_low.t() @ part)
            if grad_bias is not None:
                grad_bias += grad_low.float().sum(0)
        ctx.save_for_backward(
            *(g if g is not None else torch.empty(0) for g in (grad_hidden, grad_weight, grad_bias))
        )
        ctx.present = (grad_hidden is not None, grad_weight is not None, grad_bias is not None)
        ctx.weight_dtype = weight.dtype
        ctx.bias_dtype = bias.dtype if bias is not None else None
        ctx.mark_non_differentiable(hits)
        return total, hits

    @staticmethod
    def backward(ctx: Any, grad_total: torch.Tensor, _grad_hits: Any) -> tuple[Any, ...]:  # type: ignore[override]
        saved = ctx.saved_tensors
        has_hidden, has_weight, has_bias = ctx.present
        grad_hidden = saved[0] * grad_total.to(saved[0].dtype) if has_hidden else None
        grad_weight = (saved[1] * grad_total).to(ctx.weight_dtype) if has_weight else None
        grad_bias = (saved[2] * grad_total).to(ctx.bias_dtype) if has_bias else None
        return grad_hidden, grad_weight, grad_bias, None, None, None, None
