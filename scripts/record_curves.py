"""Record real training curves from the local backend for the overfitting detector's tests.

    .venv/bin/python scripts/record_curves.py [OUT_DIR]    (default: tests/data/curves/ next to scripts/)

Each case below is a real fine-tuning job: its files are uploaded and the job created
through the unmodified `openai` SDK, against a throwaway `LocalBackend` (the built-in CPU
n-gram trainer) in manual time, advanced one step at a time on a clock that moves
`STEP_SECONDS` per step. The script writes, for each case, `<case>.jsonl`: every `metrics`
event of the job, oldest first, as `GET /fine_tuning/jobs/{id}/events` gave it (ids
renamed, see below); and `jobs.jsonl`: one line per case with the finished job object and
its checkpoints (the backend keeps the last three epochs' for SFT and DPO, the best three
and the last for RFT).

- `clean`: a learnable SFT set with a validation file, a few epochs: validation keeps falling.
- `overfit`: 16 SFT examples with 30% of their labels redrawn at random, 20 epochs, a
  validation file with the same noise: the model learns the cue words for six epochs, then
  memorises the wrong labels, and the full validation loss turns up and keeps rising.
- `noisy_healthy`: batch size 1 (each step's training loss is one example's, so it jumps
  around) on a larger set with some label noise: validation falls all the way.
- `dpo_overfit`: DPO on a dozen random preference pairs for many epochs: the training loss
  falls while the validation loss only rises.
- `rft`: RFT with an exact-match grader on a learnable set: the validation reward rises.

Deterministic: the datasets come from `tunedeck.core.datasets.synth` with fixed seeds (the
label noise from its own seeded generator), every job has a fixed `seed`, and the trainer
reproduces a run from its seed. The ids the backend draws at random (jobs, files, events,
checkpoints, model tags) are replaced by names made from the case, so running the script
again writes the same bytes. Nothing touches the user's config, cache or keys: everything
lives in a temporary TUNEDECK_HOME that is deleted afterwards. Takes well under a minute.
"""

from __future__ import annotations

import json
import os
import random
import re
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "tests" / "data" / "curves"
START = 1_750_000_000  # the clock's start (Unix seconds)
STEP_SECONDS = 2  # how far the clock moves per training step
LABELS = ["billing", "shipping", "account", "technical", "returns", "other"]
EXACT = {"type": "string_check", "name": "exact", "input": "{{sample.output_text}}",
         "reference": "{{item.reference_answer}}", "operation": "eq"}  # fmt: skip


@dataclass
class Case:
    name: str
    training: Callable[[Path], list[dict]]
    validation: Callable[[Path], list[dict]] | None
    method: dict[str, Any] = field(default_factory=lambda: {"type": "supervised"})
    seed: int = 1


# -- datasets -------------------------------------------------------------------------------------


def synth_rows(kind: str, n: int, seed: int, work: Path, learnable: bool = True) -> list[dict]:
    from tunedeck.core.datasets.synth import write_dataset

    path = work / f"{kind}-{n}-{seed}-{int(learnable)}.jsonl"
    write_dataset(kind, n, path, seed=seed, learnable=learnable)
    return [json.loads(line) for line in path.read_text().splitlines()]


def noisy(rows: list[dict], share: float, seed: int) -> list[dict]:
    """`rows` with each assistant label replaced, with probability `share`, by a random one
    (which may be the same label: the noise a careless labeller makes)."""
    r = random.Random(seed)
    for row in rows:
        for message in row["messages"]:
            if message["role"] == "assistant" and r.random() < share:
                message["content"] = r.choice(LABELS)
    return rows


def sft(n: int, seed: int, noise: float = 0.0) -> Callable[[Path], list[dict]]:
    return lambda work: noisy(synth_rows("sft", n, seed, work), noise, seed + 100)


def random_pairs(n: int, seed: int) -> Callable[[Path], list[dict]]:
    """Preference pairs with nothing to learn: random prompts, a random label preferred."""

    def make(_work: Path) -> list[dict]:
        r = random.Random(seed)
        rows = []
        for _ in range(n):
            good, bad = r.sample(LABELS, 2)
            prompt = [{"role": "user", "content": " ".join(r.choice("abcdefgh") for _ in range(6))}]
            rows.append({"input": {"messages": prompt}, "preferred_output": [{"role": "assistant", "content": good}],
                         "non_preferred_output": [{"role": "assistant", "content": bad}]})  # fmt: skip
        return rows

    return make


def rft(n: int, seed: int) -> Callable[[Path], list[dict]]:
    return lambda work: synth_rows("rft", n, seed, work)


def hyper(**values: Any) -> dict[str, Any]:
    return {"hyperparameters": values}


CASES = [
    Case("clean", sft(100, 1), sft(60, 2), {"type": "supervised", "supervised": hyper(n_epochs=5, batch_size=2)}),
    Case(
        "overfit",
        sft(16, 1, noise=0.3),
        sft(60, 2, noise=0.3),
        {"type": "supervised", "supervised": hyper(n_epochs=20, batch_size=1)},
    ),
    Case(
        "noisy_healthy",
        sft(80, 3, noise=0.15),
        sft(50, 4, noise=0.15),
        {"type": "supervised", "supervised": hyper(n_epochs=5, batch_size=1)},
    ),
    Case(
        "dpo_overfit",
        random_pairs(12, 5),
        random_pairs(40, 6),
        {"type": "dpo", "dpo": hyper(n_epochs=20, batch_size=1)},
    ),
    Case(
        "rft",
        rft(40, 1),
        rft(20, 11),
        {"type": "reinforcement", "reinforcement": {"grader": EXACT, **hyper(n_epochs=4, eval_interval=10)}},
    ),
]


# -- recording ------------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = float(START)

    def __call__(self) -> float:
        return self.now


def record(case: Case, backend: Any, clock: Clock, client: Any, work: Path) -> tuple[list[dict], dict]:
    """Run the case's job to its end; its metric events (oldest first) and {job, checkpoints}."""
    from tunedeck.backend import BUILTIN_BASE_MODEL

    def upload(rows: list[dict], name: str) -> str:
        data = "".join(json.dumps(r) + "\n" for r in rows).encode()
        return client.files.create(file=(name, data), purpose="fine-tune").id

    training = upload(case.training(work), f"{case.name}-train.jsonl")
    validation = upload(case.validation(work), f"{case.name}-valid.jsonl") if case.validation else None
    job = client.fine_tuning.jobs.create(model=BUILTIN_BASE_MODEL, training_file=training, validation_file=validation,
                                         method=case.method, seed=case.seed, suffix=case.name.replace("_", "-"))  # fmt: skip
    for _ in range(100_000):  # one step per trip, the clock moving with it
        state = backend.advance(job.id, 1)
        clock.now += STEP_SECONDS
        if state["status"] in ("succeeded", "failed", "cancelled"):
            break
    job = client.fine_tuning.jobs.retrieve(job.id)
    if job.status != "succeeded":
        raise SystemExit(f"{case.name}: the job ended {job.status}: {job.error}")
    events = [e.model_dump(mode="json") for e in client.fine_tuning.jobs.list_events(job.id, limit=100)]  # every page
    metrics = [e for e in reversed(events) if e.get("type") == "metrics"]
    checkpoints = [c.model_dump(mode="json") for c in client.fine_tuning.jobs.checkpoints.list(job.id, limit=100)]
    return metrics, {"name": case.name, "job": job.model_dump(mode="json"), "checkpoints": checkpoints}


ID_PATTERN = re.compile(
    r"(?P<job>ftjob-[A-Za-z0-9]+)|(?P<file>file-[A-Za-z0-9]+)|(?P<event>ftevent-[A-Za-z0-9]+)"
    r"|(?P<checkpoint>ftckpt[-_][A-Za-z0-9]+)|(?P<model>(?<=ft:tunedeck-ngram:local:)[A-Za-z0-9-]*:[A-Za-z0-9]+)"
)


def stable_ids(text: str, case: str) -> str:
    """Replace the ids the backend drew at random with ones made from the case's name and
    their order of appearance (the same id gets the same name throughout `text`)."""
    names: dict[str, str] = {}
    counts: dict[str, int] = {}

    def rename(match: re.Match[str]) -> str:
        found, kind = match.group(0), match.lastgroup or ""
        if found not in names:
            n = counts[kind] = counts.get(kind, 0) + 1
            names[found] = {
                "job": f"ftjob-{case}",
                "file": f"file-{case}-{n}",
                "event": f"ftevent-{case}-{n:05d}",
                "checkpoint": f"ftckpt-{case}-{n}",
                "model": f"{found.split(':')[0]}:{case.replace('_', '')[:8]}",
            }[kind]
        return names[found]

    return ID_PATTERN.sub(rename, text)


def main(argv: list[str]) -> int:
    out = Path(argv[0]) if argv else DEFAULT_OUT
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="tunedeck-curves-") as tmp:
        root = Path(tmp)
        os.environ["TUNEDECK_HOME"] = str(root / "home")
        os.environ["HF_HUB_CACHE"] = str(root / "hf-cache")  # the transformer trainer finds no models
        os.environ.pop("TUNEDECK_MODELS_DIR", None)
        import openai

        from tunedeck.backend import LocalBackend

        clock = Clock()
        backend = LocalBackend(root / "backend", auto_advance=False, clock=clock, models_dirs=[root / "models"])
        backend.start()
        jobs: list[str] = []
        try:
            client = openai.OpenAI(base_url=backend.base_url, api_key=backend.api_key, max_retries=0)
            for case in CASES:
                work = root / case.name
                work.mkdir()
                metrics, job = record(case, backend, clock, client, work)
                lines = stable_ids("".join(json.dumps(e) + "\n" for e in metrics), case.name)
                (out / f"{case.name}.jsonl").write_text(lines)
                jobs.append(stable_ids(json.dumps(job), case.name))
                print(f"{case.name}: {len(metrics)} metric events, {len(lines.encode()) // 1024} KiB", file=sys.stderr)
            client.close()
        finally:
            backend.stop()
        (out / "jobs.jsonl").write_text("".join(line + "\n" for line in jobs))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
