#!/usr/bin/env python3
"""Benchmark of the local backend; prints figures, asserts nothing.

1. Requests per second for `GET /v1/fine_tuning/jobs?limit=20` and
   `GET /v1/fine_tuning/jobs/{id}/events?limit=100`, against a backend holding `--jobs`
   finished jobs (a few thousand events), with `--concurrency` connections for `--seconds`.
   The backend runs in a child process, so the load generator does not share its GIL.
2. Wall and CPU time of a 500-example SFT job (`python -m tunedeck.core.datasets.synth sft
   500 --learnable`), default hyperparameters, automatic time with step_delay=0, from
   `jobs.create` to `succeeded`, in this process (CPU time counts the training threads).

usage: .venv/bin/python bench/local_backend.py [--jobs 50] [--seconds 3] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import platform
import statistics
import tempfile
import time
from pathlib import Path

import aiohttp
import openai

from tunedeck.backend import BUILTIN_BASE_MODEL, LocalBackend
from tunedeck.core.datasets.synth import write_dataset

SEED_EXAMPLES = 40  # per seeded job: 3 epochs x 40 steps, about 130 events each


# -- the backend under load, in a child process ------------------------------------------------------


def serve_in_child(data_dir: str, pipe: multiprocessing.connection.Connection) -> None:
    backend = LocalBackend(Path(data_dir), step_delay=0)
    pipe.send(backend.start())
    pipe.recv()  # any message: stop
    backend.stop()


async def seed_jobs(base_url: str, count: int, dataset: Path) -> list[str]:
    client = openai.AsyncOpenAI(base_url=base_url, api_key="bench", max_retries=0)
    try:
        file = await client.files.create(file=dataset, purpose="fine-tune")
        method = {"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 3, "batch_size": 1}}}
        ids = [
            (await client.fine_tuning.jobs.create(model=BUILTIN_BASE_MODEL, training_file=file.id, method=method)).id
            for _ in range(count)
        ]
        while True:  # the child trains them in automatic time; wait until all are done
            statuses = [job.status async for job in client.fine_tuning.jobs.list(limit=100)]
            if all(status in ("succeeded", "failed", "cancelled") for status in statuses):
                return ids
            await asyncio.sleep(0.2)
    finally:
        await client.close()


async def count_events(base_url: str, job_ids: list[str]) -> int:
    async with aiohttp.ClientSession() as http:
        total = 0
        for job_id in job_ids:
            async with http.get(f"{base_url}/fine_tuning/jobs/{job_id}/events?limit=1000") as response:
                total += len((await response.json())["data"])
        return total


async def load(base_url: str, paths: list[str], seconds: float, concurrency: int) -> dict[str, float]:
    """Hammer `paths` (round-robin) from `concurrency` workers; requests/s and latencies."""
    latencies: list[float] = []
    failures = 0
    deadline = time.perf_counter() + seconds
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as http:

        async def worker(offset: int) -> None:
            nonlocal failures
            index = offset
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                async with http.get(base_url + paths[index % len(paths)]) as response:
                    await response.read()
                    failures += response.status != 200
                latencies.append(time.perf_counter() - started)
                index += concurrency

        began = time.perf_counter()
        await asyncio.gather(*(worker(i) for i in range(concurrency)))
        elapsed = time.perf_counter() - began
    latencies.sort()
    return {
        "requests": len(latencies),
        "per_second": len(latencies) / elapsed,
        "p50_ms": 1000 * statistics.median(latencies),
        "p99_ms": 1000 * latencies[int(0.99 * (len(latencies) - 1))],
        "failures": failures,
    }


def bench_listing(args: argparse.Namespace, workdir: Path) -> None:
    dataset = generate(workdir / "seed.jsonl", SEED_EXAMPLES)
    context = multiprocessing.get_context("spawn")
    parent_end, child_end = context.Pipe()
    child = context.Process(target=serve_in_child, args=(str(workdir / "served"), child_end), daemon=True)
    child.start()
    try:
        base_url = parent_end.recv()
        started = time.perf_counter()
        job_ids = asyncio.run(seed_jobs(base_url, args.jobs, dataset))
        seeded = time.perf_counter() - started
        events = asyncio.run(count_events(base_url, job_ids))
        print(f"seeded {len(job_ids)} jobs ({events} events) in {seeded:.1f} s")
        scenarios = {
            "GET /v1/fine_tuning/jobs?limit=20": ["/fine_tuning/jobs?limit=20"],
            "GET /v1/fine_tuning/jobs/{id}/events?limit=100": [
                f"/fine_tuning/jobs/{job_id}/events?limit=100" for job_id in job_ids
            ],
        }
        for name, paths in scenarios.items():
            result = asyncio.run(load(base_url, paths, args.seconds, args.concurrency))
            print(
                f"{name:<50} {result['per_second']:8.0f} req/s  p50 {result['p50_ms']:6.2f} ms  "
                f"p99 {result['p99_ms']:6.2f} ms  ({result['requests']} requests, {result['failures']} failed, "
                f"concurrency {args.concurrency})"
            )
    finally:
        parent_end.send("stop")
        child.join(timeout=30)


# -- one 500-example SFT job --------------------------------------------------------------------


async def time_sft_job(workdir: Path, dataset: Path) -> None:
    backend = LocalBackend(workdir / "sft", step_delay=0)
    client = openai.AsyncOpenAI(base_url=await backend.start_async(), api_key="bench", max_retries=0)
    try:
        file = await client.files.create(file=dataset, purpose="fine-tune")
        wall, cpu = time.perf_counter(), time.process_time()
        job = await client.fine_tuning.jobs.create(model=BUILTIN_BASE_MODEL, training_file=file.id)
        await backend.run_until_settled_async()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        done = await client.fine_tuning.jobs.retrieve(job.id)
        recent = (await client.fine_tuning.jobs.list_events(job.id, limit=50)).data
        last = next(e.data for e in recent if e.type == "metrics")  # newest first
        hyper = done.hyperparameters
        print(
            f"SFT job, 500 examples: {done.status} in {wall:.2f} s wall, {cpu:.2f} s CPU "
            f"(n_epochs={hyper.n_epochs}, batch_size={hyper.batch_size}, {last['total_steps']} steps, "
            f"{done.trained_tokens} trained tokens, last train_loss={last['train_loss']:.3f}, "
            f"train_mean_token_accuracy={last['train_mean_token_accuracy']:.3f})"
        )
    finally:
        await client.close()
        await backend.stop_async()


def generate(out: Path, n: int) -> Path:
    write_dataset("sft", n, out, learnable=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=50, help="finished jobs to list (default 50)")
    parser.add_argument("--seconds", type=float, default=3.0, help="load duration per endpoint (default 3)")
    parser.add_argument("--concurrency", type=int, default=16, help="connections in flight (default 16)")
    args = parser.parse_args()
    print(
        f"tunedeck local backend benchmark: Python {platform.python_version()}, {platform.machine()}, "
        f"{multiprocessing.cpu_count()} CPUs, aiohttp {aiohttp.__version__}, openai {openai.__version__}"
    )
    with tempfile.TemporaryDirectory(prefix="tunedeck-bench-") as temporary:
        workdir = Path(temporary)
        bench_listing(args, workdir)
        asyncio.run(time_sft_job(workdir, generate(workdir / "sft500.jsonl", 500)))


if __name__ == "__main__":
    main()
