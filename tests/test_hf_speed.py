"""The transformer trainer's fast paths, checked on the CPU against the slow ones: packed rows
with per-sequence attention boundaries, the head fused into the SFT loss, bf16 weights with
fp32 masters in the optimiser, and the start-up path (tokenising while the model loads)."""

from __future__ import annotations

import random

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from tunedeck.backend.trainers.transformer.worker import attention, loading
from tunedeck.backend.trainers.transformer.worker.encoding import Encoded
from tunedeck.backend.trainers.transformer.worker.precision import MasterAdamW, PlainAdamW
from tunedeck.backend.trainers.transformer.worker.scoring import _FusedHeadLoss, pack, score, sft_loss


def tiny_model(attn: str = "sdpa", seed: int = 0, dtype=torch.float32):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    config = Qwen2Config(
        vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=256, tie_word_embeddings=True,
    )
    model = Qwen2ForCausalLM(config).to(dtype)
    if attn == attention.VARLEN:
        attention.register()
    model.config._attn_implementation = attn
    return model.eval()


def sequences(count: int, seed: int = 1) -> list[Encoded]:
    rng = random.Random(seed)
    out = []
    for line in range(count):
        length = rng.randint(2, 40)
        ids = [rng.randrange(97) for _ in range(length)]
        out.append(Encoded(ids, [rng.random() < 0.7 for _ in range(length)], line))
    return out


@pytest.mark.parametrize("attn", ["sdpa", attention.VARLEN])
def test_packed_rows_score_each_sequence_as_if_it_were_alone(attn):
    model = tiny_model(attn)
    rows = sequences(9)
    with torch.no_grad():
        packed = score(model, pack(rows, torch.device("cpu")))
        alone = [score(model, pack([row], torch.device("cpu"))) for row in rows]
    expected = torch.stack([s.per_sequence()[0] for s in alone])
    assert torch.allclose(packed.per_sequence(), expected, atol=1e-5, rtol=1e-5)
    assert torch.equal(packed.hits, torch.cat([s.hits for s in alone]))
    assert packed.logprobs.numel() == sum(max(0, sum(r.trained[1:])) for r in rows)


def test_varlen_attention_equals_the_dense_block_mask_and_gets_no_mask(monkeypatch):
    rows = sequences(6, seed=3)
    dense, varlen = tiny_model("sdpa"), tiny_model(attention.VARLEN)
    masks = []
    forward = attention.varlen_attention_forward
    from transformers import AttentionInterface

    def spy(module, query, key, value, attention_mask, **kwargs):
        masks.append(attention_mask)
        return forward(module, query, key, value, attention_mask, **kwargs)

    monkeypatch.setitem(AttentionInterface._global_mapping, attention.VARLEN, spy)
    with torch.no_grad():
        a = score(dense, pack(rows, torch.device("cpu"))).logprobs
        b = score(varlen, pack(rows, torch.device("cpu"))).logprobs
    assert torch.allclose(a, b, atol=1e-5, rtol=1e-5)
    assert masks and all(m is None for m in masks)
    # same-length rows take the stacked [B, L] path, which needs no boundaries
    same = [Encoded(r.ids[:2], [True, True], r.line) for r in rows]
    with torch.no_grad():
        assert torch.allclose(score(dense, pack(same, torch.device("cpu"))).logprobs,
                              score(varlen, pack(same, torch.device("cpu"))).logprobs, atol=1e-5)


def test_the_varlen_model_still_generates_with_its_cache():
    model = tiny_model(attention.VARLEN)
    reference = tiny_model("sdpa")
    prompt = torch.tensor([[5, 6, 7, 8]])
    with torch.no_grad():
        a = model.generate(prompt, max_new_tokens=5, do_sample=False, pad_token_id=0)
        b = reference.generate(prompt, max_new_tokens=5, do_sample=False, pad_token_id=0)
    assert torch.equal(a, b)


@pytest.mark.parametrize("cap, scale, bias", [(None, 1.0, False), (30.0, 0.5, True)])
def test_the_fused_head_loss_matches_float64_maths(cap, scale, bias):
    torch.manual_seed(0)
    hidden = torch.randn(37, 16, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(101, 16, dtype=torch.float64, requires_grad=True)
    b = torch.randn(101, dtype=torch.float64, requires_grad=True) if bias else None
    targets = torch.randint(0, 101, (37,))
    logits = torch.nn.functional.linear(hidden, weight, b) * scale
    if cap:
        logits = torch.tanh(logits / cap) * cap
    reference = -(logits.gather(1, targets[:, None])[:, 0] - torch.logsumexp(logits, -1)).sum()
    inputs = [hidden, weight] + ([b] if bias else [])
    expected = torch.autograd.grad(reference * 0.3, inputs)
    total, hits = _FusedHeadLoss.apply(hidden, weight, b, targets, cap, scale, 8)  # five chunks
    got = torch.autograd.grad(total * 0.3, inputs)
    assert abs(total.item() - reference.item()) < 1e-4 * abs(reference.item())
    assert hits.item() == int((logits.argmax(-1) == targets).sum())
    for g, e in zip(got, expected):
        assert ((g - e).norm() / e.norm()).item() < 1e-5


def test_the_sft_loss_and_its_gradients_equal_the_scoring_path():
    rows = sequences(7, seed=5)
    fast, slow = tiny_model(), tiny_model()
    fast.train(), slow.train()
    result = sft_loss(fast, pack(rows, torch.device("cpu")), chunk=16)
    result.loss.backward()
    scores = score(slow, pack(rows, torch.device("cpu")))
    loss = -scores.logprobs.mean()
    loss.backward()
    assert abs(result.loss.item() - loss.item()) < 1e-5
    assert result.hits == int(scores.hits.sum()) and result.count == scores.logprobs.numel()
    for (name, p), q in zip(fast.named_parameters(), slow.parameters()):
        assert torch.allclose(p.grad, q.grad, atol=1e-6, rtol=1e-4), name


def test_a_compiled_chunk_loss_that_fails_falls_back_to_eager_maths(monkeypatch):
    from tunedeck.backend.trainers.transformer.worker import scoring

    def broken(*args):
        raise RuntimeError("the compiler failed")

    monkeypatch.setattr(scoring, "_compiled_chunk_loss", broken)
    logits, wanted = torch.randn(5, 11), torch.randint(0, 11, (5,))
    got = scoring._chunk_loss(logits.clone(), wanted, None, 1.0, True)  # (the maths reuses fp32 logits' memory)
    expected = scoring._chunk_loss_eager(logits.clone(), wanted, None, 1.0, True)
    assert scoring._compiled_chunk_loss is None
    for a, b in zip(got, expected):
        assert torch.equal(a, b)


def test_bf16_weights_with_fp32_masters_track_the_fp32_run_and_resume_exactly():
    rows = sequences(8, seed=7)
    full = tiny_model(seed=2).train()
    half = tiny_model(seed=2).train()
    masters = [p.detach().clone() for p in half.parameters()]
    half.to(torch.bfloat16)
    plain = PlainAdamW(list(full.parameters()), 1e-3, fused=False)
    mixed = MasterAdamW(list(half.parameters()), 1e-3, fused=False, masters=masters)
    assert all(m.dtype == torch.float32 for m in mixed.masters)
    assert torch.equal(mixed.masters[0], masters[0])  # the fp32 start, not its bf16 rounding
    losses = []
    for step in range(6):
        batch = pack(rows[step % 4 :: 2], torch.device("cpu"))
        pair = []
        for model, optimiser in ((full, plain), (half, mixed)):
            result = sft_loss(model, batch)
            result.loss.backward()
            optimiser.clip_and_step(1.0)
            pair.append(result.loss.item())
        losses.append(pair)
    assert all(p.grad is None for p in half.parameters())
    for fp32, bf16 in losses:
        assert abs(fp32 - bf16) < 0.02 * abs(fp32), losses
    assert losses[-1][1] < losses[0][1]  # it trains
    # a pause saves the masters; a resumed bf16 model gets them back exactly
    state = mixed.state_dict()
    again = tiny_model(seed=9).to(torch.bfloat16)
    resumed = MasterAdamW(list(again.parameters()), 1e-3, fused=False)
    resumed.load_state_dict(state)
    for m, n in zip(resumed.masters, mixed.masters):
        assert torch.equal(m, n)
    for p, q in zip(again.parameters(), half.parameters()):
        assert torch.equal(p, q)


def test_attention_choice_on_the_cpu_and_its_override(monkeypatch):
    cpu = torch.device("cpu")
    assert loading.attention_for(cpu) == "sdpa"
    assert not attention.varlen_usable(cpu)
    monkeypatch.setenv("TUNEDECK_ATTENTION", attention.VARLEN)
    assert loading.attention_for(cpu) == attention.VARLEN
