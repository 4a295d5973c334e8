"""Transformer trainer throughput (prints figures; not a test).

1. CPU: the tiny Qwen2-shaped test model, SFT on 300 `--learnable` examples x 3 epochs
   through the worker's own run (`SftRun`), whole model, fp32; then the same as a job through
   the SDK, the local backend and a worker process. Target: under 10 s.
2. GPU (only when CUDA is present): a Qwen2.5-0.5B-shaped model built from its config (random
   weights, nothing downloaded), fp32 master weights with bf16 autocast (as the trainer), whole-model SFT on packed 2048-token sequences with the
   trainer's scoring path (logits only where scored, in recomputed chunks), fused AdamW, no
   gradient checkpointing; `--compile` adds torch.compile of the decoder. Prints tokens/s.
   Target: 100k tokens/s on one H100.

usage: python bench/train_throughput.py [--cpu-only] [--gpu-only] [--batch 8] [--steps 20] [--compile] [--pure-bf16]
"""

from __future__ import annotations

import argparse
import json
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
        client = openai.AsyncOpenAI(base_url=await backend.start_async(), api_key="local", max_retries=0)
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


def gpu_figure(batch: int, steps: int, compile_decoder: bool, pure_bf16: bool) -> None:
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from tunedeck.backend.trainers.transformer.worker.encoding import Encoded
    from tunedeck.backend.trainers.transformer.worker.scoring import pack, score

    if not torch.cuda.is_available():
        print("GPU figure skipped: no CUDA device here")
        return
    config = Qwen2Config(  # Qwen2.5-0.5B's shape
        vocab_size=151_936, hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
        num_attention_heads=14, num_key_value_heads=2, max_position_embeddings=32_768,
        tie_word_embeddings=True, rope_theta=1_000_000.0,
    )
    device = torch.device("cuda")
    # As the trainer runs whole-model training: fp32 master weights, bf16 compute under autocast.
    model = Qwen2ForCausalLM(config).to(device=device, dtype=torch.bfloat16 if pure_bf16 else torch.float32)
    model.config._attn_implementation = "sdpa"
    if compile_decoder:
        model.model = torch.compile(model.model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-5, weight_decay=0.0, fused=True)
    generator = torch.Generator().manual_seed(0)
    length = 2048

    def one_step() -> None:
        sequences = [
            Encoded(torch.randint(0, config.vocab_size, (length,), generator=generator).tolist(), [True] * length, 0)
            for _ in range(batch)
        ]
        with torch.autocast("cuda", dtype=torch.bfloat16):
            scores = score(model, pack(sequences, device))
        (-scores.logprobs.mean()).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    model.train()
    for _ in range(3):  # warm-up (and compilation)
        one_step()
    torch.cuda.synchronize()
    started = time.perf_counter()
    for _ in range(steps):
        one_step()
    torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    rate = batch * length * steps / seconds
    peak = torch.cuda.max_memory_allocated() / 2**30
    name = torch.cuda.get_device_name()
    weights = "bf16 weights" if pure_bf16 else "fp32 master weights + bf16 autocast"
    print(f"GPU {name}: Qwen2.5-0.5B shape, {weights}, batch {batch} x {length} tokens, compile={compile_decoder}: "
          f"{rate:,.0f} tokens/s ({seconds / steps * 1000:.0f} ms/step), peak memory {peak:.1f} GiB (target 100k tokens/s)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cpu-only", action="store_true")
    parser.add_argument("--gpu-only", action="store_true")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--pure-bf16", action="store_true", help="bf16 weights too (faster, but not what the trainer does)")
    args = parser.parse_args()
    if not args.gpu_only:
        cpu_figure()
        job_figure()
    if not args.cpu_only:
        gpu_figure(args.batch, args.steps, args.compile, args.pure_bf16)


if __name__ == "__main__":
    main()
