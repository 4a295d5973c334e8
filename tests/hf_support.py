"""Helpers for the transformer trainer's tests: a tiny model built once per session, a
backend in manual time that finds it, and small readers of job events."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import openai

from tunedeck.backend import LocalBackend

TINY = "acme/tiny-qwen"  # how the test model is named in its models folder (org/name)
FULL = {"tunedeck": {"training_type": "full"}}  # a random tiny model learns best with all weights


def dataset_texts(*paths: Path) -> list[str]:
    texts = []
    for path in paths:
        for line in path.read_text().splitlines():
            row = json.loads(line)
            messages = row.get("messages") or row.get("input", {}).get("messages", [])
            texts.extend(str(m.get("content")) for m in messages)
            texts.extend(str(v) for k, v in row.items() if isinstance(v, str))
    return texts


async def start(tmp_path: Path, models_dir: Path) -> tuple[LocalBackend, openai.AsyncOpenAI]:
    backend = LocalBackend(tmp_path / "backend", auto_advance=False, models_dirs=[models_dir])
    client = openai.AsyncOpenAI(base_url=await backend.start_async(), api_key=backend.api_key, max_retries=0)
    return backend, client


async def upload(client: openai.AsyncOpenAI, path: Path) -> str:
    return (await client.files.create(file=(path.name, path.read_bytes()), purpose="fine-tune")).id


async def metric_events(client: openai.AsyncOpenAI, job_id: str) -> list[dict[str, Any]]:
    """The job's metric data, oldest first."""
    events = [e async for e in client.fine_tuning.jobs.list_events(job_id, limit=1000)]
    return [e.data for e in reversed(events) if e.type == "metrics"]


async def messages(client: openai.AsyncOpenAI, job_id: str) -> list[str]:
    events = [e async for e in client.fine_tuning.jobs.list_events(job_id, limit=1000)]
    return [e.message for e in reversed(events)]


def mean(values: list[float]) -> float:
    return sum(values) / len(values)


def tiny_model_and_tickets(folder: Path, n: int) -> Path:
    """`n` learnable SFT tickets in `folder/train.jsonl`, and the tiny model built on their
    text in `folder/models` (where a backend's `models_dirs` finds it); the tickets' path."""
    from conftest import generate_dataset

    from tunedeck.backend.trainers.transformer.worker.tiny import build_tiny_model

    training = generate_dataset("sft", n, folder / "train.jsonl", "--learnable")
    build_tiny_model(folder / "models" / TINY, dataset_texts(training))
    return training

