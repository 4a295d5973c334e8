"""Synthetic fine-tuning datasets: support tickets to classify, deterministic for a seed.

Tests, benchmarks and the screenshot script all draw their files from here, so the project
needs nothing outside itself to exercise the validator, the browser or the trainers.

    from tunedeck.core.datasets.synth import write_dataset
    planted = write_dataset("sft", 500, "train.jsonl", learnable=True, bad_every=50)

or from a shell: `python -m tunedeck.core.datasets.synth sft 500 train.jsonl --learnable`.

- `sft`: chat examples (a system prompt, one to three user/assistant turns; 1 in 20 ends
  with an explicit `weight: 1`);
- `dpo`: one user turn with a preferred and a non-preferred answer;
- `rft`: a developer and a user message with a `reference_answer` to grade against.

`learnable` puts a cue word of the label into each ticket so a trained model can beat the
untrained one; without it the labels are random and can only be memorised. `bad_every=K`
makes every K-th line malformed (bad JSON, a non-object, a missing `messages` key, in turn)
and returns those line numbers. Each example draws from one `random.Random(seed)` in a fixed
order, so a file is byte-identical across runs and machines.
"""

from __future__ import annotations

import json
import random
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

KINDS = ("sft", "dpo", "rft")

WORDS = (
    "order refund shipping delay invoice account password login crash billing upgrade plan "
    "cancel subscription warranty replace broken screen battery charger address change "
    "delivery tracking discount coupon expired payment declined card bank transfer"
).split()
LABELS = ["billing", "shipping", "account", "technical", "returns", "other"]
CUES = {
    "billing": ["overcharged", "chargeback", "receipt"],
    "shipping": ["parcel", "courier", "postage"],
    "account": ["username", "lockout", "verification"],
    "technical": ["freeze", "bug", "timeout"],
    "returns": ["return", "exchange", "defective"],
    "other": ["feedback", "suggestion", "compliment"],
}
SYSTEM_PROMPT = "Classify the support ticket into one of: " + ", ".join(LABELS) + "."
Example = dict[str, Any]


class _Tickets:
    """The example makers, all drawing from one seeded generator."""

    def __init__(self, seed: int, learnable: bool) -> None:
        self.rng = random.Random(seed)
        self.learnable = learnable

    def sentence(self, lo: int, hi: int) -> str:
        r = self.rng
        return " ".join(r.choice(WORDS) for _ in range(r.randint(lo, hi))).capitalize() + "."

    def ticket(self) -> tuple[str, str]:
        r = self.rng
        label = r.choice(LABELS)
        text = " ".join(self.sentence(4, 18) for _ in range(r.randint(1, 6)))
        if self.learnable:
            text = f"{text} {r.choice(CUES[label]).capitalize()} issue."
        return label, text

    def sft(self) -> Example:
        messages: list[dict[str, Any]] = [{"role": "system", "content": SYSTEM_PROMPT}]
        for _ in range(self.rng.choice([1, 1, 1, 2, 3])):
            label, text = self.ticket()
            messages.append({"role": "user", "content": text})
            messages.append({"role": "assistant", "content": label})
        if self.rng.random() < 0.05:
            messages[-1]["weight"] = 1
        return {"messages": messages}

    def dpo(self) -> Example:
        return {
            "input": {"messages": [{"role": "user", "content": self.sentence(6, 30)}]},
            "preferred_output": [{"role": "assistant", "content": self.sentence(5, 25)}],
            "non_preferred_output": [{"role": "assistant", "content": self.sentence(5, 25)}],
        }

    def rft(self) -> Example:
        label, text = self.ticket()
        return {
            "messages": [
                {"role": "developer", "content": "Answer with the ticket category only."},
                {"role": "user", "content": text},
            ],
            "reference_answer": label,
        }


# The malformed lines, in the order they are planted.
_BROKEN: list[Callable[[Example], str]] = [
    lambda ex: "{not json",
    lambda ex: json.dumps([ex]),
    lambda ex: json.dumps({"msgs": ex.get("messages")}),
]


def write_dataset(
    kind: str,
    n: int,
    out: str | Path,
    *,
    seed: int = 7,
    learnable: bool = False,
    bad_every: int = 0,
) -> list[int]:
    """Write `n` examples of `kind` to `out`; return the line numbers made malformed."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
    tickets = _Tickets(seed, learnable)
    make: Callable[[], Example] = getattr(tickets, kind)
    planted: list[int] = []
    with open(out, "w", encoding="utf-8") as f:
        for line in range(1, n + 1):
            example = make()
            if bad_every and line % bad_every == 0:
                f.write(_BROKEN[(line // bad_every) % len(_BROKEN)](example) + "\n")
                planted.append(line)
            else:
                f.write(json.dumps(example, ensure_ascii=False) + "\n")
    return planted


USAGE = "usage: python -m tunedeck.core.datasets.synth sft|dpo|rft N OUT.jsonl [--learnable] [--seed S] [--bad-every K]"


def main(argv: list[str] | None = None) -> int:
    """The command line; prints the malformed line numbers (if any) to stderr."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m tunedeck.core.datasets.synth", usage=USAGE[7:])
    parser.add_argument("kind", choices=KINDS)
    parser.add_argument("n", type=int)
    parser.add_argument("out")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--learnable", action="store_true")
    parser.add_argument("--bad-every", type=int, default=0, metavar="K")
    args = parser.parse_args(argv)
    planted = write_dataset(
        args.kind, args.n, args.out, seed=args.seed, learnable=args.learnable, bad_every=args.bad_every
    )
    if planted:
        print(" ".join(map(str, planted)), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
