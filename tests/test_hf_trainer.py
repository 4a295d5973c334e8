"""The transformer trainer end to end, on CPU with a tiny Qwen2-shaped model built in a
fixture (no downloads): the unmodified openai SDK drives whole jobs through worker processes."""

from __future__ import annotations

import json
import os

import pytest

pytest.importorskip("transformers")
pytest.importorskip("peft")

from conftest import generate_dataset  # noqa: E402
from hf_support import FULL, TINY, dataset_texts, mean, messages, metric_events, start, upload  # noqa: E402

from tunedeck.backend.trainers.transformer.worker.tiny import build_tiny_model  # noqa: E402

LABELS = ["billing", "shipping", "account", "technical", "returns", "other"]


@pytest.fixture(scope="session")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hf-data")
    files = {
        "sft": generate_dataset("sft", 240, folder / "sft.jsonl", "--learnable"),
        "sft_valid": generate_dataset("sft", 40, folder / "sft_valid.jsonl", "--learnable", "--seed", "11"),
        "rft": generate_dataset("rft", 60, folder / "rft.jsonl", "--learnable", "--seed", "5"),
        "dpo": generate_dataset("dpo", 40, folder / "dpo.jsonl"),
    }
    return files


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory, data):
    folder = tmp_path_factory.mktemp("hf-models")
    build_tiny_model(folder / TINY, dataset_texts(*data.values()))
    return folder


def model_tokens(models_dir, path) -> int:
    from transformers import AutoTokenizer

    from tunedeck.backend.trainers.transformer.worker.encoding import ChatEncoder

    encoder = ChatEncoder(AutoTokenizer.from_pretrained(models_dir / TINY), TINY, 2048)
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    return sum(len(encoder.encode_chat_row(row, n).ids) for n, row in enumerate(rows, 1))


def prompt_tokens(models_dir, messages) -> int:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(models_dir / TINY)
    return len(tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)["input_ids"])


@pytest.fixture
async def local(tmp_path, models_dir):
    """A backend in manual time whose models folder holds the tiny model, and an SDK client."""
    backend, client = await start(tmp_path, models_dir)
    yield backend, client
    await client.close()
    await backend.stop_async()


async def classify(client, model: str, rows: list[dict]) -> tuple[float, float]:
    """Shares of RFT-style prompts answered with the reference label, and with any label."""
    right = labels = 0
    for row in rows:
        reply = await client.chat.completions.create(model=model, messages=row["messages"], max_tokens=4)
        answer = reply.choices[0].message.content.strip()
        right += answer == row["reference_answer"]
        labels += answer in LABELS
    return right / len(rows), labels / len(rows)


async def test_the_sdk_drives_an_sft_job_and_the_model_learns(local, data, models_dir):
    backend, client = local
    assert TINY in [m.id async for m in client.models.list()]
    job = await client.fine_tuning.jobs.create(
        model=TINY,
        training_file=await upload(client, data["sft"]),
        validation_file=await upload(client, data["sft_valid"]),
        hyperparameters={"n_epochs": 3, "batch_size": 8, "learning_rate_multiplier": 250},
        extra_body=FULL,
        suffix="tiny",
    )
    await backend.run_until_settled_async()
    done = await client.fine_tuning.jobs.retrieve(job.id)
    assert done.status == "succeeded", done.error
    assert done.hyperparameters.n_epochs == 3 and done.fine_tuned_model.startswith(f"ft:{TINY}:")
    assert done.trained_tokens == 3 * model_tokens(models_dir, data["sft"])  # by the model's own tokenizer
    metrics = await metric_events(client, job.id)
    assert len(metrics) == metrics[-1]["total_steps"] == 3 * 30
    assert mean([m["train_loss"] for m in metrics[-10:]]) < mean([m["train_loss"] for m in metrics[:10]]) / 3
    assert sum("full_valid_loss" in m for m in metrics) == 3  # one full validation per epoch
    checkpoints = (await client.fine_tuning.jobs.checkpoints.list(job.id)).data
    assert len(checkpoints) == 3
    held_out = [json.loads(line) for line in data["rft"].read_text().splitlines()[:30]]
    tuned, tuned_labels = await classify(client, done.fine_tuned_model, held_out)
    base, base_labels = await classify(client, TINY, held_out)
    assert tuned > base and tuned_labels > base_labels
    assert tuned_labels >= 0.9  # it answers in the trained format: a label and nothing else
    events = await messages(client, job.id)
    assert any("full fine-tuning" in m and "on cpu" in m for m in events)
    assert any(m.startswith("New fine-tuned model created") for m in events)


def test_weight_zero_turns_and_prompts_are_not_trained(models_dir):
    from transformers import AutoTokenizer

    from tunedeck.backend.trainers.transformer.worker.encoding import ChatEncoder

    tokenizer = AutoTokenizer.from_pretrained(models_dir / TINY)
    encoder = ChatEncoder(tokenizer, TINY, 512)
    row = {
        "messages": [
            {"role": "system", "content": "Classify."},
            {"role": "user", "content": "parcel late"},
            {"role": "assistant", "content": "returns", "weight": 0},
            {"role": "user", "content": "refund please"},
            {"role": "assistant", "content": "billing"},
        ]
    }
    encoded = encoder.encode_chat_row(row, 1)
    trained = tokenizer.decode([t for t, keep in zip(encoded.ids, encoded.trained) if keep])
    assert trained == "billing<|im_end|>\n"
    row["messages"][2]["weight"] = 1
    encoded = encoder.encode_chat_row(row, 1)
    trained = tokenizer.decode([t for t, keep in zip(encoded.ids, encoded.trained) if keep])
    assert trained == "returns<|im_end|>\nbilling<|im_end|>\n"


def test_a_template_that_rewrites_earlier_turns_is_refused_by_name(models_dir):
    from transformers import AutoTokenizer

    from tunedeck.backend.trainers.base import TrainingFailure
    from tunedeck.backend.trainers.transformer.worker.encoding import ChatEncoder

    tokenizer = AutoTokenizer.from_pretrained(models_dir / TINY)
    # Like templates that drop earlier reasoning: a turn renders differently once another follows.
    tokenizer.chat_template = (
        "{% for m in messages %}{% if loop.last %}<|im_start|>{{ m.role }}\\n{{ m.content }}<|im_end|>\\n"
        "{% else %}<|im_start|>{{ m.role }}\\n...<|im_end|>\\n{% endif %}{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\\n{% endif %}"
    )
    row = {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
                        {"role": "user", "content": "c"}, {"role": "assistant", "content": "d"}]}
    with pytest.raises(TrainingFailure) as failure:
        ChatEncoder(tokenizer, "acme/rewriter", 512).encode_chat_row(row, 7)
    assert failure.value.code == "invalid_model"
    assert "`acme/rewriter`" in failure.value.message and "line 7" in failure.value.message
    tokenizer.chat_template = None
    with pytest.raises(TrainingFailure, match="has no chat template"):
        ChatEncoder(tokenizer, "acme/plain", 512)


async def test_dpo_reward_margins_rise(local, data):
    backend, client = local
    job = await client.fine_tuning.jobs.create(
        model=TINY,
        training_file=await upload(client, data["dpo"]),
        method={"type": "dpo", "dpo": {"hyperparameters": {
            "n_epochs": 4, "batch_size": 4, "learning_rate_multiplier": 100, "beta": 0.5}}},
        extra_body=FULL,
    )
    await backend.run_until_settled_async()
    done = await client.fine_tuning.jobs.retrieve(job.id)
    assert done.status == "succeeded", done.error
    assert done.method.dpo.hyperparameters.beta == 0.5
    metrics = await metric_events(client, job.id)
    margins = [m["train_mean_reward_margin"] for m in metrics]
    assert mean(margins[-5:]) > mean(margins[:5]) + 0.5
    assert mean([m["train_reward_accuracy"] for m in metrics[-5:]]) > 0.8


async def test_rft_mean_reward_rises_after_an_sft_warm_up(local, data):
    backend, client = local
    warm_up = await client.fine_tuning.jobs.create(
        model=TINY,
        training_file=await upload(client, data["sft"]),
        hyperparameters={"n_epochs": 2, "batch_size": 8, "learning_rate_multiplier": 250},
        extra_body=FULL,
    )
    await backend.run_until_settled_async()
    warmed = await client.fine_tuning.jobs.retrieve(warm_up.id)
    assert warmed.status == "succeeded", warmed.error
    # A house style the policy can learn by trial: the grader pays for one label only. (The
    # tiny random model learns the answer format from SFT, not which cue means which label.)
    grader = {"type": "string_check", "name": "house label", "operation": "eq",
              "input": "{{sample.output_text}}", "reference": "billing"}
    job = await client.fine_tuning.jobs.create(
        model=warmed.fine_tuned_model,
        training_file=await upload(client, data["rft"]),
        method={"type": "reinforcement", "reinforcement": {"grader": grader, "hyperparameters": {
            "n_epochs": 4, "batch_size": 6, "learning_rate_multiplier": 50, "compute_multiplier": 2}}},
        extra_body={"tunedeck": {"max_completion_tokens": 4}},
    )
    await backend.run_until_settled_async()
    done = await client.fine_tuning.jobs.retrieve(job.id)
    assert done.status == "succeeded", done.error
    rewards = [m["train_reward_mean"] for m in await metric_events(client, job.id)]
    assert len(rewards) == 40
    assert mean(rewards[:10]) < 0.5
    assert mean(rewards[-10:]) > mean(rewards[:10]) + 0.25


async def test_a_small_noisy_set_overfits(local, tmp_path):
    train = generate_dataset("sft", 12, tmp_path / "noisy.jsonl", "--seed", "3")  # random labels
    valid = generate_dataset("sft", 12, tmp_path / "noisy_valid.jsonl", "--seed", "4")
    backend, client = local
    job = await client.fine_tuning.jobs.create(
        model=TINY,
        training_file=await upload(client, train),
        validation_file=await upload(client, valid),
        hyperparameters={"n_epochs": 50, "batch_size": 4, "learning_rate_multiplier": 500},
        seed=1,
        extra_body=FULL,
    )
    await backend.run_until_settled_async()
    metrics = await metric_events(client, job.id)
    full = [(m["train_loss"], m["full_valid_loss"]) for m in metrics if "full_valid_loss" in m]
    best = min(range(len(full)), key=lambda i: full[i][1])
    assert best < len(full) - 5  # validation loss turned up well before the end...
    assert full[-1][1] > full[best][1] + 0.1
    assert full[-1][0] < full[best][0]  # ...while training loss kept falling


async def test_cancel_ends_the_worker_process(local, data):
    backend, client = local
    job = await client.fine_tuning.jobs.create(
        model=TINY, training_file=await upload(client, data["sft"]), extra_body=FULL
    )
    await backend.advance_async(job.id, 2)
    run = backend._engine._active[job.id].run
    pid = run.pid
    os.kill(pid, 0)  # alive while the job runs
    await client.fine_tuning.jobs.cancel(job.id)
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # killed and reaped at once
    assert (await client.fine_tuning.jobs.retrieve(job.id)).status == "cancelled"


async def test_pause_frees_the_process_and_resume_continues_from_the_checkpoint(local, data):
    backend, client = local
    job = await client.fine_tuning.jobs.create(
        model=TINY, training_file=await upload(client, data["sft"]),
        hyperparameters={"n_epochs": 1, "batch_size": 8, "learning_rate_multiplier": 250}, extra_body=FULL,
    )
    await backend.advance_async(job.id, 5)
    run = backend._engine._active[job.id].run
    pid = run.pid
    await client.fine_tuning.jobs.pause(job.id)
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert run.pid is None
    paused_name = [c.fine_tuned_model_checkpoint async for c in client.fine_tuning.jobs.checkpoints.list(job.id)]
    assert paused_name and paused_name[0].endswith(":ckpt-step-5")
    await client.fine_tuning.jobs.resume(job.id)
    await backend.run_until_settled_async()
    done = await client.fine_tuning.jobs.retrieve(job.id)
    assert done.status == "succeeded", done.error
    steps = [m["step"] for m in await metric_events(client, job.id)]
    assert steps == list(range(1, 31))  # each step once: resumed at step 6, not from the start
    reply = await client.chat.completions.create(model=paused_name[0], messages=[{"role": "user", "content": "hi"}])
    assert reply.choices[0].message.content is not None  # the pause checkpoint is a usable model


async def test_a_missing_model_fails_the_job_and_says_where_it_looked(local, data, models_dir):
    backend, client = local
    job = await client.fine_tuning.jobs.create(model="acme/not-here", training_file=await upload(client, data["sft"]))
    await backend.run_until_settled_async()
    done = await client.fine_tuning.jobs.retrieve(job.id)
    assert done.status == "failed" and done.error.code == "model_not_found"
    assert str(models_dir) in done.error.message and "Hugging Face cache" in done.error.message


async def test_without_the_extra_a_job_fails_naming_the_install_command(local, data, monkeypatch):
    import tunedeck.backend.trainers.transformer.server.trainer as trainer_module

    monkeypatch.setattr(trainer_module, "missing_packages", lambda: ["torch", "transformers"])
    backend, client = local
    job = await client.fine_tuning.jobs.create(model=TINY, training_file=await upload(client, data["sft"]))
    await backend.run_until_settled_async()
    done = await client.fine_tuning.jobs.retrieve(job.id)
    assert done.status == "failed" and done.error.code == "trainer_not_installed"
    assert "pip install 'tunedeck[train]'" in done.error.message and "torch" in done.error.message


async def test_long_rows_are_truncated_with_a_warning_event(local, data):
    backend, client = local
    job = await client.fine_tuning.jobs.create(
        model=TINY, training_file=await upload(client, data["sft"]),
        hyperparameters={"n_epochs": 1}, extra_body={"tunedeck": {"training_type": "full", "max_length": 48}},
    )
    await backend.advance_async(job.id, 1)
    events = [e async for e in client.fine_tuning.jobs.list_events(job.id)]
    warning = next(e for e in events if "truncated" in e.message)
    assert warning.level == "warn" and "longer than 48 tokens" in warning.message and "(lines " in warning.message
    await client.fine_tuning.jobs.cancel(job.id)


async def test_bad_tunedeck_options_are_refused_by_field(local, data):
    import openai

    backend, client = local
    training = await upload(client, data["sft"])
    with pytest.raises(openai.BadRequestError) as refused:
        await client.fine_tuning.jobs.create(model=TINY, training_file=training, extra_body={"tunedeck": {"lora_rank": 0}})
    assert refused.value.body["param"] == "tunedeck.lora_rank"
    with pytest.raises(openai.BadRequestError) as refused:
        await client.fine_tuning.jobs.create(model=TINY, training_file=training, extra_body={"tunedeck": {"colour": "red"}})
    assert refused.value.body["param"] == "tunedeck.colour"


async def test_transformer_jobs_train_one_at_a_time_the_rest_wait_queued(tmp_path, data, models_dir):
    import itertools

    import openai

    from tunedeck.backend import LocalBackend

    ticks = itertools.count(1_800_000_000)  # a clock that moves on every reading: events order strictly

    async def no_wait(seconds: float) -> None:
        return None

    small = tmp_path / "small.jsonl"
    small.write_text("\n".join(data["sft"].read_text().splitlines()[:20]) + "\n")
    backend = LocalBackend(tmp_path / "auto", models_dirs=[models_dir], clock=lambda: next(ticks), sleep=no_wait)
    client = openai.AsyncOpenAI(base_url=await backend.start_async(), api_key=backend.api_key, max_retries=0)
    try:
        training = await upload(client, small)
        jobs = [
            await client.fine_tuning.jobs.create(
                model=TINY, training_file=training, hyperparameters={"n_epochs": 1, "batch_size": 10}, extra_body=FULL
            )
            for _ in range(2)
        ]
        await backend.run_until_settled_async()
        spans = []
        for job in jobs:
            events = [e async for e in client.fine_tuning.jobs.list_events(job.id, limit=100)]
            times = {e.message: e.created_at for e in events}
            assert (await client.fine_tuning.jobs.retrieve(job.id)).status == "succeeded"
            spans.append((times["Fine-tuning job started"], times["The job has successfully completed"]))
        first, second = sorted(spans)
        assert second[0] > first[1]  # the second started only after the first had finished
    finally:
        await client.close()
        await backend.stop_async()


def test_out_of_memory_becomes_a_clear_job_error():
    import torch

    from tunedeck.backend.trainers.transformer.worker.main import _failure

    failure = _failure(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"), " at step 3")
    assert failure["code"] == "oom"
    assert "at step 3" in failure["message"] and "LoRA" in failure["message"] and "batch_size" in failure["message"]


async def test_lora_adapters_train_pause_resume_chat_and_continue(local, tmp_path, data, models_dir):
    backend, client = local
    lora = {"tunedeck": {"training_type": "lora", "lora_rank": 4, "lora_alpha": 8}}
    job = await client.fine_tuning.jobs.create(
        model=TINY, training_file=await upload(client, data["sft"]),
        hyperparameters={"n_epochs": 1, "batch_size": 8, "learning_rate_multiplier": 20}, extra_body=lora,
    )
    await backend.advance_async(job.id, 4)
    await client.fine_tuning.jobs.pause(job.id)
    await client.fine_tuning.jobs.resume(job.id)
    await backend.run_until_settled_async()
    done = await client.fine_tuning.jobs.retrieve(job.id)
    assert done.status == "succeeded", done.error
    assert done.model_extra["tunedeck"] == lora["tunedeck"]  # the job echoes its options
    events = await messages(client, job.id)
    assert any("with LoRA:" in m for m in events)
    assert [m["step"] for m in await metric_events(client, job.id)] == list(range(1, 31))
    weights = sorted((tmp_path / "backend" / "models" / job.id).iterdir())
    assert weights and all((w / "adapter_config.json").is_file() for w in weights)  # adapters, not whole models
    reply = await client.chat.completions.create(model=done.fine_tuned_model, messages=[{"role": "user", "content": "hi"}])
    assert reply.choices[0].finish_reason in ("stop", "length")
    assert reply.usage.prompt_tokens == prompt_tokens(models_dir, [{"role": "user", "content": "hi"}])
    follow_up = await client.fine_tuning.jobs.create(
        model=done.fine_tuned_model, training_file=await upload(client, data["sft"]),
        hyperparameters={"n_epochs": 1, "batch_size": 16}, extra_body=lora,
    )
    await backend.run_until_settled_async()
    continued = await client.fine_tuning.jobs.retrieve(follow_up.id)
    assert continued.status == "succeeded", continued.error
    assert continued.fine_tuned_model.startswith(f"ft:{TINY}:")  # named after the base, as the API does


def test_an_opening_assistant_turn_trains_its_text_only_and_long_prompts_lose_their_start(models_dir):
    from transformers import AutoTokenizer

    from tunedeck.backend.trainers.transformer.worker.encoding import ChatEncoder

    tokenizer = AutoTokenizer.from_pretrained(models_dir / TINY)

    def trained_text(encoded) -> str:
        return tokenizer.decode([t for t, keep in zip(encoded.ids, encoded.trained) if keep])

    encoder = ChatEncoder(tokenizer, TINY, 24)
    opening = encoder.encode_chat_row({"messages": [{"role": "assistant", "content": "hello"}]}, 1)
    assert trained_text(opening) == "hello<|im_end|>\n"  # not the template's `<|im_start|>assistant`
    long_prompt = [{"role": "user", "content": "parcel courier postage " * 20}]
    answer = encoder.encode_answer(long_prompt, {"content": "shipping"}, None, 3)
    assert answer.truncated and len(answer.ids) == 24
    assert trained_text(answer) == "shipping<|im_end|>\n"  # the answer survives; the prompt's start went


def test_a_template_that_drops_earlier_reasoning_still_trains_each_answer(models_dir):
    from transformers import AutoTokenizer

    from tunedeck.backend.trainers.transformer.worker.encoding import ChatEncoder

    tokenizer = AutoTokenizer.from_pretrained(models_dir / TINY)
    # Like Qwen3: only the last assistant turn gets an (empty) reasoning block.
    tokenizer.chat_template = (
        "{% for m in messages %}<|im_start|>{{ m.role }}\n"
        "{% if m.role == 'assistant' and loop.last %}<think></think>{% endif %}{{ m.content }}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )
    row = {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "billing"},
                        {"role": "user", "content": "c"}, {"role": "assistant", "content": "shipping"}]}
    encoder = ChatEncoder(tokenizer, "acme/thinker", 512)
    encoded = encoder.encode_chat_row(row, 1)
    trained = tokenizer.decode([t for t, keep in zip(encoded.ids, encoded.trained) if keep])
    assert trained == "billing<|im_end|>\nshipping<|im_end|>\n"
    assert encoder.located_by_text == 1


def test_tool_calls_and_tools_are_rendered_and_trained(models_dir):
    from transformers import AutoTokenizer

    from tunedeck.backend.trainers.transformer.worker.encoding import ChatEncoder

    tokenizer = AutoTokenizer.from_pretrained(models_dir / TINY)
    call = {"id": "call_1", "type": "function", "function": {"name": "track", "arguments": '{"parcel": "A1"}'}}
    row = {
        "tools": [{"type": "function", "function": {"name": "track", "parameters": {"type": "object"}}}],
        "messages": [
            {"role": "user", "content": "where is parcel A1"},
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "call_1", "content": "in transit"},
            {"role": "assistant", "content": "It is in transit."},
        ],
    }
    encoded = ChatEncoder(tokenizer, TINY, 512).encode_chat_row(row, 1)
    text = tokenizer.decode(encoded.ids)
    trained = tokenizer.decode([t for t, keep in zip(encoded.ids, encoded.trained) if keep])
    assert "# Tools" in text and '"name": "track"' in text  # the tools block, from the row's `tools`
    assert '<tool_call>{"name": "track", "arguments": {"parcel": "A1"}}</tool_call>' in trained  # arguments as JSON
    assert trained.endswith("It is in transit.<|im_end|>\n") and "in transit<|im_end|>" not in trained.replace(
        "It is in transit.<|im_end|>", ""
    )  # the tool's result is context, not a target


async def test_a_restart_requeues_a_running_job_and_leaves_no_worker_behind(tmp_path, data, models_dir):
    import openai

    from tunedeck.backend import LocalBackend

    backend, client = await start(tmp_path, models_dir)
    job = await client.fine_tuning.jobs.create(
        model=TINY, training_file=await upload(client, data["sft"]),
        hyperparameters={"n_epochs": 1, "batch_size": 16}, extra_body=FULL,
    )
    await backend.advance_async(job.id, 3)
    pid = backend._engine._active[job.id].run.pid
    await client.close()
    await backend.stop_async()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # stopping the server ended its worker
    again = LocalBackend(tmp_path / "backend", auto_advance=False, models_dirs=[models_dir])
    client = openai.AsyncOpenAI(base_url=await again.start_async(), api_key=again.api_key, max_retries=0)
    try:
        assert (await client.fine_tuning.jobs.retrieve(job.id)).status == "queued"
        await again.run_until_settled_async()
        done = await client.fine_tuning.jobs.retrieve(job.id)
        assert done.status == "succeeded", done.error
        assert any("re-queued" in m for m in await messages(client, job.id))
        streamed = await client.chat.completions.create(
            model=done.fine_tuned_model, messages=[{"role": "user", "content": "parcel"}], max_tokens=6, stream=True
        )
        text = "".join([chunk.choices[0].delta.content or "" async for chunk in streamed if chunk.choices])
        whole = await client.chat.completions.create(
            model=done.fine_tuned_model, messages=[{"role": "user", "content": "parcel"}], max_tokens=6
        )
        assert text == whole.choices[0].message.content  # streamed pieces add up to the answer
    finally:
        await client.close()
        await again.stop_async()


async def test_rft_with_a_multi_grader_evaluates_and_keeps_the_best_checkpoints(local, tmp_path, data):
    rows = data["rft"].read_text().splitlines()
    train_file, valid_file = tmp_path / "rft_train.jsonl", tmp_path / "rft_valid.jsonl"
    train_file.write_text("\n".join(rows[:12]) + "\n")
    valid_file.write_text("\n".join(rows[12:18]) + "\n")
    exact = {"type": "string_check", "name": "exact", "operation": "eq",
             "input": "{{sample.output_text}}", "reference": "{{item.reference_answer}}"}
    close = {"type": "text_similarity", "name": "close", "evaluation_metric": "fuzzy_match",
             "input": "{{sample.output_text}}", "reference": "{{item.reference_answer}}"}
    grader = {"type": "multi", "name": "blend", "calculate_output": "0.5 * exact + 0.5 * close",
              "graders": {"exact": exact, "close": close}}
    backend, client = local
    job = await client.fine_tuning.jobs.create(
        model=TINY, training_file=await upload(client, train_file), validation_file=await upload(client, valid_file),
        method={"type": "reinforcement", "reinforcement": {"grader": grader, "hyperparameters": {
            "n_epochs": 4, "batch_size": 6, "eval_interval": 2, "compute_multiplier": 0.5}}},
        extra_body={"tunedeck": {"max_completion_tokens": 4, "training_type": "full"}},
    )
    await backend.run_until_settled_async()
    done = await client.fine_tuning.jobs.retrieve(job.id)
    assert done.status == "succeeded", done.error
    steps = await metric_events(client, job.id)
    assert len(steps) == 8
    evaluated = [s for s in steps if "valid_reward_mean" in s]
    assert [s["step"] for s in evaluated] == [2, 4, 6, 8]
    assert [g["name"] for g in steps[-1]["scores"]["graders"]] == ["exact", "close"]
    assert all(0.0 <= s["valid_reward_mean"] <= 1.0 for s in evaluated)
    checkpoints = (await client.fine_tuning.jobs.checkpoints.list(job.id)).data
    assert 1 <= len(checkpoints) <= 4 and all(c.step_number % 2 == 0 for c in checkpoints)


async def test_a_fine_tuned_model_trains_on_after_its_base_left_the_catalog(tmp_path, data, models_dir):
    import shutil

    own_models = tmp_path / "own-models"
    shutil.copytree(models_dir / TINY, own_models / "acme" / "moving")
    backend, client = await start(tmp_path, own_models)
    try:
        small = await upload(client, data["sft_valid"])
        first = await client.fine_tuning.jobs.create(
            model="acme/moving", training_file=small, hyperparameters={"n_epochs": 1, "batch_size": 20}, extra_body=FULL
        )
        await backend.run_until_settled_async()
        tuned = (await client.fine_tuning.jobs.retrieve(first.id)).fine_tuned_model
        shutil.rmtree(own_models / "acme" / "moving")  # the base model is gone from disk
        again = await client.fine_tuning.jobs.create(
            model=tuned, training_file=small, hyperparameters={"n_epochs": 1, "batch_size": 20}, extra_body=FULL
        )
        await backend.run_until_settled_async()
        done = await client.fine_tuning.jobs.retrieve(again.id)
        assert done.status == "succeeded", done.error  # a whole-model checkpoint needs no base
    finally:
        await client.close()
        await backend.stop_async()
