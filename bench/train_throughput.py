"""Transformer trainer throughput (prints figures; not a test).

1. CPU: the tiny Qwen2-shaped test model, SFT on 300 `--learnable` examples x 3 epochs
   through the worker's own run (`SftRun`), whole model, fp32; then the same as a job through
   the SDK, the local backend and a worker process. Target: under 10 s.
2. GPU (only when CUDA is present): a Qwen2.5-0.5B-shaped model built from its config (random
   weights, nothing downloaded), whole-model SFT steps on 2048-token rows and on packed short
   examples, per variant (see `gpu_figure`): the old path (`baseline`) against the trainer's
   (`trainer`, `trainer+compile`). Prints tokens/s, ms/step, peak memory, the first steps' time
   and the first losses (the same seed and data: they must agree). Target: 150k tokens/s.
3. GPU, job level (`--job full,lora`): `SftRun`, the worker's whole run, on 2,000 short
   support tickets, batch 32, 1 epoch, from a 0.5B-shaped model folder: time until ready and
   until the first step is done, then training tokens/s.

usage: python bench/train_throughput.py [--cpu-only] [--gpu-only] [--batch 8] [--steps 20]
           [--variants baseline,trainer,trainer+compile] [--job full,lora] [--tiny]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from tunedeck.core.datasets.synth import write_dataset


def cpu_figure() -> None:
    from tunedeck.backend.trainers.transformer.worker.sft import SftRun
    from tunedeck.backend.trainers.transformer.worker.tiny import build_tiny_model

    with tempfile.TemporaryDirectory() as folder:
        data = Path(folder) / "sft.jsonl"
        write_dataset("sft", 300, data, learnable=True)
        texts = [m["content"] for line in data.read_text().splitlines() for m in json.loads(line)["messages"]]
        started = time.perf_counter()
        model = build_tiny_model(Path(folder) / "tiny", texts)
        built = time.perf_counter()
        spec = {
            "method": "supervised",
            "base": {"name": "tiny", "path": str(model)},
            "training_path": str(data),
            "hyperparameters": {"n_epochs": 3, "batch_size": 8, "learning_rate_multiplier": 250},
            "seed": 1,
            "method_config": {},
            "options": {"training_type": "full", "device": "cpu"},
        }
        run = SftRun(spec, lambda *args: None)
        prepared = time.perf_counter()
        while run.steps_done < run.total_steps:
            run.step()
        trained = time.perf_counter()
        tokens = sum(len(e.ids) for e in run.train_rows) * 3
        print(f"CPU tiny model: build {built - started:.2f} s, load+encode {prepared - built:.2f} s, "
              f"{run.total_steps} steps {trained - prepared:.2f} s ({tokens / (trained - prepared):,.0f} tokens/s); "
              f"300 examples x 3 epochs end to end {trained - started:.2f} s (target < 10 s)")


def job_figure() -> None:
    """The same training as a user runs it: a job through the SDK, the local backend and a
    worker process (start-up, tokenising, 114 steps, 3 checkpoints, the result file)."""
    import asyncio

    import openai

    from tunedeck.backend import LocalBackend
    from tunedeck.backend.trainers.transformer.worker.tiny import build_tiny_model

    async def run(folder: Path) -> None:
        data = folder / "sft.jsonl"
        write_dataset("sft", 300, data, learnable=True)
        texts = [m["content"] for line in data.read_text().splitlines() for m in json.loads(line)["messages"]]
        build_tiny_model(folder / "models" / "acme" / "tiny", texts)
        backend = LocalBackend(folder / "backend", auto_advance=False, models_dirs=[folder / "models"])
        client = openai.AsyncOpenAI(base_url=await backend.start_async(), api_key=backend.api_key, max_retries=0)
        try:
            file = await client.files.create(file=data.open("rb"), purpose="fine-tune")
            started = time.perf_counter()
            job = await client.fine_tuning.jobs.create(
                model="acme/tiny", training_file=file.id,
                hyperparameters={"n_epochs": 3, "batch_size": 8, "learning_rate_multiplier": 250},
                extra_body={"tunedeck": {"training_type": "full", "device": "cpu"}},
            )
            await backend.run_until_settled_async()
            seconds = time.perf_counter() - started
            done = await client.fine_tuning.jobs.retrieve(job.id)
            print(f"CPU tiny model as a job (SDK -> local backend -> worker process): {done.status} in {seconds:.2f} s "
                  f"(worker start-up included; target < 10 s)")
        finally:
            await client.close()
            await backend.stop_async()

    with tempfile.TemporaryDirectory() as folder:
        asyncio.run(run(Path(folder)))


QWEN_05B = {  # Qwen2.5-0.5B's shape
    "vocab_size": 151_936, "hidden_size": 896, "intermediate_size": 4864, "num_hidden_layers": 24,
    "num_attention_heads": 14, "num_key_value_heads": 2, "max_position_embeddings": 32_768,
    "tie_word_embeddings": True, "rope_theta": 1_000_000.0,
}
TINY_SHAPE = {
    "vocab_size": 1000, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
    "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 4096, "tie_word_embeddings": True,
}


def model_config(tiny: bool) -> dict:
    """The 0.5B shape, or (`--tiny`, to check this script on a CPU) a few-MB one."""
    return dict(TINY_SHAPE if tiny else QWEN_05B)


def gpu_figure(batch: int, steps: int, variants: list[str], tiny: bool = False, device_name: str = "cuda") -> None:
    """Kernel-level figures: one optimiser step at a time on random tokens, per variant.

    baseline: what the trainer did before issue 22: fp32 weights under bf16 autocast, the
        scoring path (logits in recomputed chunks), sdpa (a dense block mask on packed rows),
        fused AdamW.
    trainer: what `SftRun` does now on CUDA: bf16 weights with fp32 masters in the optimiser
        (MasterAdamW), the head fused into the loss (`sft_loss`), padding-free varlen attention
        where this torch has it (`attention_for`); `+compile` adds torch.compile of the layers.
    Rows: `long` = batch x 2048-token sequences; `short` = 32 support-ticket-sized examples
    (30-110 tokens) packed into one row, as a short-example job steps."""
    import gc

    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from tunedeck.backend.trainers.transformer.worker.encoding import Encoded
    from tunedeck.backend.trainers.transformer.worker.loading import attention_for, compile_layers
    from tunedeck.backend.trainers.transformer.worker.precision import MasterAdamW
    from tunedeck.backend.trainers.transformer.worker.scoring import pack, score, sft_loss, stop_compiling_head_loss

    device = torch.device(device_name)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("GPU figure skipped: no CUDA device here")
        return
    cuda = device.type == "cuda"
    config = Qwen2Config(**model_config(tiny))
    length = 256 if tiny else 2048
    name = torch.cuda.get_device_name() if cuda else "cpu"
    results = []

    def batches(kind: str, seed: int) -> list:
        generator = torch.Generator().manual_seed(seed)
        if kind == "long":
            lengths = [length] * rows_of
        else:  # "short": one job step of 32 tickets; "pack": a row of ~256 of them (~18k tokens)
            lengths = torch.randint(30, 111, (32 if kind == "short" else 256,), generator=generator).tolist()
        return [Encoded(torch.randint(0, config.vocab_size, (n,), generator=generator).tolist(), [True] * n, 0)
                for n in lengths]

    def build(variant: str):
        torch.manual_seed(0)
        master = variant != "baseline"
        with torch.device(device):
            model = Qwen2ForCausalLM(config)
        if variant == "baseline":
            model.config._attn_implementation = "sdpa"
            optimizer = torch.optim.AdamW(model.parameters(), lr=2e-5, weight_decay=0.0, fused=cuda)
        else:
            model.config._attn_implementation = "sdpa" if "+sdpa" in variant else attention_for(device)
            masters = [p.detach().clone() for p in model.parameters()]
            model.to(torch.bfloat16 if cuda else torch.float32)
            optimizer = MasterAdamW(list(model.parameters()), 2e-5, cuda, masters)
            del masters
            if "compile" in variant:
                compile_layers(model)
        model.train()

        def one_step(sequences) -> float:
            packed = pack(sequences, device)
            if master:
                result = sft_loss(model, packed)
                result.loss.backward()
                optimizer.clip_and_step(1.0)
                return result.loss.detach()
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
                loss = -score(model, packed).logprobs.mean()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            return loss.detach()

        return model, one_step

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    for variant in variants:
        stop_compiling_head_loss()  # a compiled variant before must not leak into this one
        variant, _, wide = variant.partition("@")  # "trainer+compile@16": batch 16
        rows_of = int(wide or batch)
        model = one_step = None
        if cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        try:
            model, one_step = build(variant)
            losses = []
            started = time.perf_counter()
            for k in range(3):  # warm-up (and compilation); fixed data: the loss check below
                losses.append(float(one_step(batches("long", 100 + k))))
            sync()
            warm = time.perf_counter() - started
            for kind in ("long", "short", "pack") if not wide else ("long",):
                data = [batches(kind, k) for k in range(steps + 2)]
                for d in data[:2]:
                    one_step(d)
                sync()
                started = time.perf_counter()
                for d in data[2:]:
                    one_step(d)
                sync()
                seconds = time.perf_counter() - started
                tokens = sum(len(s.ids) for d in data[2:] for s in d)
                peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else 0.0
                results.append((variant, kind, tokens / seconds, seconds / steps * 1000, peak, warm, losses))
                label = variant + (f"@{wide}" if wide else "")
                print(f"{name} | {label:16} | {model.config._attn_implementation:15} | {kind:5} rows | "
                      f"{tokens / seconds:>9,.0f} tokens/s | "
                      f"{seconds / steps * 1000:7.1f} ms/step | peak {peak:5.1f} GiB | first 3 steps {warm:5.1f} s | "
                      f"losses {', '.join(f'{x:.4f}' for x in losses)}", flush=True)
            if "compile" in variant:
                from torch._dynamo.utils import counters

                dynamic = os.environ.get("TUNEDECK_COMPILE_DYNAMIC", "1")
                print(f"  compile (dynamic shapes: {dynamic}): graph breaks {dict(counters['graph_break']) or 'none'}; "
                      f"{counters['stats'].get('unique_graphs', 0)} graphs", flush=True)
        except Exception as exc:  # noqa: BLE001 -- one variant failing must not lose the others' figures
            import traceback

            traceback.print_exc()
            print(f"{name} | {variant}: FAILED {type(exc).__name__}: {str(exc)[:300]}", flush=True)
        finally:
            del model, one_step
            gc.collect()
    if cuda:
        print(f"(bench: Qwen2.5-0.5B shape, random weights, {steps} timed steps; long = batch {batch} x {length} "
              f"(@N: batch N); short = 32 examples of 30-110 tokens packed in one row; pack = 256 of them; "
              f"target 150k tokens/s on long rows)")


def exactness(device_name: str = "cuda") -> None:
    """On the GPU's own kernels: packed rows score each sequence as if alone (varlen and
    dense-mask attention), and the fused SFT loss equals the scoring path's, in bf16."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from tunedeck.backend.trainers.transformer.worker.attention import VARLEN, register
    from tunedeck.backend.trainers.transformer.worker.encoding import Encoded
    from tunedeck.backend.trainers.transformer.worker.scoring import pack, score, sft_loss

    device = torch.device(device_name)
    register()
    torch.manual_seed(0)
    shape = dict(TINY_SHAPE, hidden_size=256, intermediate_size=512, num_hidden_layers=4, vocab_size=5000,
                 num_attention_heads=4, num_key_value_heads=2)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    with torch.device(device):
        model = Qwen2ForCausalLM(Qwen2Config(**shape)).to(dtype).eval()
    generator = torch.Generator().manual_seed(1)
    rows = []
    for line in range(24):
        n = int(torch.randint(5, 300, (1,), generator=generator))
        rows.append(Encoded(torch.randint(0, 5000, (n,), generator=generator).tolist(), [True] * n, line))
    out = {}
    with torch.no_grad():
        for attn in ("sdpa", VARLEN):
            model.config._attn_implementation = attn
            out[attn] = score(model, pack(rows, device)).per_sequence()
            alone = torch.stack([score(model, pack([r], device)).per_sequence()[0] for r in rows])
            gap = ((out[attn] - alone).abs() / alone.abs()).max().item()
            print(f"exactness | {attn:15} | packed vs alone: max relative gap per sequence {gap:.2e}", flush=True)
        gap = ((out["sdpa"] - out[VARLEN]).abs() / out["sdpa"].abs()).max().item()
        print(f"exactness | varlen vs dense-mask sdpa, packed: max relative gap {gap:.2e}", flush=True)
    model.train()
    model.config._attn_implementation = VARLEN
    fused = sft_loss(model, pack(rows, device))
    fused.loss.backward()
    fused_grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad(set_to_none=True)
    slow = -score(model, pack(rows, device)).logprobs.mean()
    slow.backward()
    slow_grads = [p.grad.clone() for p in model.parameters()]
    import copy

    reference = copy.deepcopy(model).float()  # fp32 maths: which bf16 path is nearer the truth?
    reference.config._attn_implementation = "sdpa"
    reference.zero_grad(set_to_none=True)
    (-score(reference, pack(rows, device)).logprobs.mean()).backward()
    truth = [p.grad for p in reference.parameters()]

    def worst(grads: list) -> float:
        return max(((a.float() - t).norm() / t.norm()).item() for a, t in zip(grads, truth))

    print(f"exactness | fused SFT loss {fused.loss.item():.6f} vs scoring path {slow.item():.6f}; worst relative "
          f"gradient gap to fp32 maths: fused {worst(fused_grads):.2e}, scoring path {worst(slow_grads):.2e}",
          flush=True)


def job_level(examples: int, batch: int, training_type: str, tiny: bool = False) -> None:
    """Job-level figure: `SftRun` (the worker's whole run, as the local backend drives it)
    on `examples` short support tickets, 1 epoch, from a 0.5B-shaped model folder written
    here (random weights; a small BPE tokenizer trained on the data). Prints the time until
    the run is ready (weights loaded, data tokenised), the first step, and training tokens/s."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from tunedeck.backend.trainers.transformer.worker.scoring import stop_compiling_head_loss
    from tunedeck.backend.trainers.transformer.worker.sft import SftRun
    from tunedeck.backend.trainers.transformer.worker.tiny import build_tiny_model

    stop_compiling_head_loss()  # as in a fresh worker process: the run decides
    cuda = torch.cuda.is_available()
    with tempfile.TemporaryDirectory() as folder:
        data = Path(folder) / "sft.jsonl"
        write_dataset("sft", examples, data, learnable=True)
        texts = [m["content"] for line in data.read_text().splitlines() for m in json.loads(line)["messages"]]
        path = build_tiny_model(Path(folder) / "model", texts, vocab_size=2000)
        from transformers import AutoTokenizer

        shape = model_config(tiny)
        shape.update(eos_token_id=2, pad_token_id=0, bos_token_id=None)  # tiny.SPECIAL_TOKENS' ids
        shape["vocab_size"] = max(shape["vocab_size"], len(AutoTokenizer.from_pretrained(path)))
        torch.manual_seed(0)
        with torch.device("cuda" if cuda else "cpu"):
            model = Qwen2ForCausalLM(Qwen2Config(**shape)).to(torch.bfloat16 if cuda else torch.float32)
        model.save_pretrained(path)
        del model
        if cuda:
            torch.cuda.empty_cache()
        spec = {
            "method": "supervised",
            "base": {"name": "qwen-0.5b-shape", "path": str(path)},
            "training_path": str(data),
            "hyperparameters": {"n_epochs": 1, "batch_size": batch, "learning_rate_multiplier": 1},
            "seed": 1,
            "method_config": {},
            "options": {"training_type": training_type},
        }
        notices: list[str] = []
        started = time.perf_counter()
        run = SftRun(spec, lambda text, level="info": notices.append(text))
        ready = time.perf_counter()
        run.step()
        if cuda:
            torch.cuda.synchronize()
        first = time.perf_counter()
        while run.steps_done < run.total_steps:
            metrics = run.step()
        if cuda:
            torch.cuda.synchronize()
        done = time.perf_counter()
        tokens = run.tokens_per_epoch
        rest = tokens * (run.total_steps - 1) / run.total_steps
        peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else 0.0
        device = torch.cuda.get_device_name() if cuda else "cpu"
        print(f"{device} | job {training_type} (compiled: {run.compiled}): {examples} examples ({tokens:,} tokens), "
              f"batch {batch}, "
              f"{run.total_steps} steps | ready {ready - started:.2f} s, first step done {first - started:.2f} s | "
              f"training {done - first:.2f} s = {rest / (done - first):,.0f} tokens/s, "
              f"{(done - first) / max(1, run.total_steps - 1) * 1000:.1f} ms/step | peak {peak:.1f} GiB | "
              f"final loss {metrics.get('train_loss')}", flush=True)
        print("  notices: " + " / ".join(notices), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cpu-only", action="store_true")
    parser.add_argument("--gpu-only", action="store_true")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--variants", default="baseline,trainer,trainer+compile",
                        help="comma-separated: baseline, trainer, trainer+compile, trainer+sdpa (dense-mask attention)")
    parser.add_argument("--job", default="", help="job-level figures: comma-separated training types (full,lora)")
    parser.add_argument("--job-examples", type=int, default=2000)
    parser.add_argument("--job-batch", type=int, default=32)
    parser.add_argument("--exactness", action="store_true",
                        help="GPU: packed vs alone, varlen vs sdpa, fused vs slow loss")
    parser.add_argument("--tiny", action="store_true", help="a few-MB model on the CPU: checks this script, no figures")
    args = parser.parse_args()
    if not args.gpu_only:
        cpu_figure()
        job_figure()
    if args.exactness:
        exactness("cpu" if args.tiny else "cuda")
    if not args.cpu_only:
        variants = [v for v in args.variants.split(",") if v]
        gpu_figure(args.batch, args.steps, variants, tiny=args.tiny, device_name="cpu" if args.tiny else "cuda")
        for training_type in [t for t in args.job.split(",") if t]:
            job_level(args.job_examples, args.job_batch, training_type, tiny=args.tiny)


if __name__ == "__main__":
    main()
