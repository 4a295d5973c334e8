"""A local backend with one model fine-tuned on learnable tickets, for the evaluation tests:
training takes seconds, so each module shares one (a module-scoped fixture calls this)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from conftest import generate_dataset

from tunedeck.backend import BUILTIN_BASE_MODEL, LocalBackend
from tunedeck.backend.http.faults import plan_from_dict

HELD_OUT = 40


@dataclass
class Trained:
    backend: LocalBackend
    job: dict[str, Any]
    """The succeeded job as the API gives it (a validation file, three checkpoints)."""
    held_out: Path
    """Rows drawn with another seed than the training rows: what the model never saw."""
    folder: Path

    @property
    def fine_tuned(self) -> str:
        return self.job["fine_tuned_model"]

    def set_faults(self, *rules: dict[str, Any]) -> None:
        self.backend.faults.set_rules([plan_from_dict({"rules": [rule]}).rules[0] for rule in rules])


def train(folder: Path) -> Trained:
    """Start a backend in a thread of its own and fine-tune the built-in model on 300 learnable
    SFT tickets (with a held-out validation file), to the end."""
    import openai

    backend = LocalBackend(folder / "backend", auto_advance=False)
    client = openai.OpenAI(base_url=backend.start(), api_key=backend.api_key, max_retries=0)
    try:
        training = generate_dataset("sft", 300, folder / "train.jsonl", "--learnable")
        held_out = generate_dataset("sft", HELD_OUT, folder / "held_out.jsonl", "--learnable", "--seed", "99")
        file = client.files.create(file=training, purpose="fine-tune")
        validation = client.files.create(file=held_out, purpose="fine-tune")
        job = client.fine_tuning.jobs.create(
            model=BUILTIN_BASE_MODEL, training_file=file.id, validation_file=validation.id, seed=3
        )
        backend.run_until_settled()
        done = client.fine_tuning.jobs.retrieve(job.id).model_dump(mode="json")
    finally:
        client.close()
    assert done["status"] == "succeeded", done
    return Trained(backend, done, held_out, folder)


def with_labels(source: Path, target: Path, *, drop_label_at: int | None = None) -> Path:
    """`source`'s rows, each with a `label` field holding its answer (one row without, when
    `drop_label_at` names its 0-based position): what a custom grader reads as `{{item.label}}`."""
    lines = []
    for position, line in enumerate(source.read_text(encoding="utf-8").splitlines()):
        row = json.loads(line)
        if position != drop_label_at:
            row["label"] = row["messages"][-1]["content"]
        lines.append(json.dumps(row))
    target.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return target
