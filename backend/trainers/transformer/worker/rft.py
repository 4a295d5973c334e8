"""Reinforcement fine-tuning (worker side): GRPO with the job's grader as the reward.

Each step takes `batch_size` prompts (the row's `messages`, ending with a user turn), samples
a group of answers to each at temperature 1, grades every answer with the same grader code
as `POST /v1/fine_tuning/alpha/graders/run` (`{{item.*}}` is the row, `{{sample.output_text}}`
the answer), and raises the log-probability of answers that beat their group's mean reward:
loss = -sum(advantage x log p(answer tokens)) / answer tokens, advantage = (reward - group
mean) / (group std + 1e-4) (GRPO, one update per rollout, so no ratio clipping is needed).
Group size: `GROUP_SIZE * compute_multiplier`, from 2 to 64. Answers stop at end-of-turn or
`tunedeck.max_completion_tokens` (default 64).

Every `eval_interval` steps (and at the end) each validation prompt gets `eval_samples`
greedy answers; their mean reward is `valid_reward_mean` and the checkpoint's score (the
engine keeps the best three). Metric names are the built-in RFT trainer's (`reward_metrics`).

On several devices (a copy of the model on each) every rank samples, grades and scores the
answers of its share of the step's prompts, with sampling seeded by the job's seed, the rank
and the step (so ranks do not draw the same numbers, and a resumed run draws what it would
have); the loss is divided by the step's answer tokens across ranks, and the graded answers
of every rank make the metrics, as one process's would. Evaluations are shared the same way.
"""

from __future__ import annotations

from typing import Any

import torch

from tunedeck.backend.graders.grader import asker_for, compile_grader, sample_namespace
from tunedeck.backend.graders.rewards import Graded, reward_metrics

from .encoding import Encoded
from .generation import Answer, sample
from .runs import Run, read_rows
from .scoring import pack, score

GROUP_SIZE = 4
MIN_GROUP, MAX_GROUP = 2, 64
EVALUATIONS_PER_RUN = 10


class RftRun(Run):
    def prepare(self) -> None:
        self.max_answer = self.options.max_completion_tokens
        endpoint = self.spec.get("grader_endpoint")
        self.grader = compile_grader(
            self.spec["method_config"].get("grader"),
            "method.reinforcement.grader",
            ask=asker_for(tuple(endpoint) if endpoint else None),
        )
        self.train_prompts = self._prompts(self.spec["training_path"])
        self.valid_prompts = self._prompts(self.spec.get("validation_path"))
        self.n_train, self.n_valid = len(self.train_prompts), len(self.valid_prompts)
        self.tokens_per_epoch = sum(len(ids) for _, ids in self.train_prompts)
        compute = float(self.hyper.get("compute_multiplier") or 1.0)
        self.group_size = int(min(MAX_GROUP, max(MIN_GROUP, round(GROUP_SIZE * compute))))
        self.eval_samples = max(1, int(self.hyper.get("eval_samples") or 1))
        self._since_eval: list[float] = []

    def _prompts(self, path: str | None) -> list[tuple[dict[str, Any], list[int]]]:
        limit = max(16, self.encoder.max_length - self.max_answer)  # room for the answer in the context
        return [(row, self.encoder.prompt_ids(row["messages"], row.get("tools"), limit)) for _, row in read_rows(path)]

    @property
    def eval_interval(self) -> int:
        interval = self.hyper.get("eval_interval")
        if isinstance(interval, int) and interval > 0:
            return interval
        return max(1, self.total_steps // EVALUATIONS_PER_RUN)

    def _grade(self, item: dict[str, Any], answer: Answer, graded: Graded) -> float:
        text = self.tokenizer.decode(answer.ids, skip_special_tokens=True)
        grade = self.grader.grade({"item": item, "sample": sample_namespace(text)})
        graded.add(grade.reward, grade.sub_rewards, grade.errors, len(answer.ids))
        return grade.reward

    def train_on(self, indices: list[int]) -> dict[str, Any]:
        """Sample, grade and learn from this rank's share of the step's prompts (all of them
        in one process)."""
        graded = Graded()
        loss, tokens = None, 0
        if indices:  # a rank may have none in a step smaller than the ranks
            self.model.eval()
            prompts = [self.train_prompts[i] for i in indices for _ in range(self.group_size)]
            answers = self._sample([ids for _, ids in prompts], 1.0)
            rewards = torch.tensor([self._grade(item, a, graded) for (item, _), a in zip(prompts, answers)])
            groups = rewards.view(-1, self.group_size)
            advantages = ((groups - groups.mean(1, keepdim=True)) / (groups.std(1, keepdim=True) + 1e-4)).flatten()
            self.model.train()
            sequences = [_rollout(ids, a) for (_, ids), a in zip(prompts, answers)]
            scores = score(self.model, pack(sequences, self.device))
            per_answer = scores.per_sequence()
            tokens = scores.logprobs.numel()
            loss = -(advantages.to(per_answer.device) * per_answer).sum()
        if self.parallel is not None:
            tokens = int(self.parallel.sum_values([tokens], self.device)[0])
            graded = Graded.merged(self.parallel.gather(graded))
        if loss is not None:
            (loss / max(1, tokens)).backward()
        self._since_eval.append(graded.mean)
        self._train_graded = graded
        return {"train_loss": None, "train_mean_token_accuracy": None}

    def _sample(self, prompts: list[list[int]], temperature: float) -> list[Answer]:
        if self.parallel is None or temperature == 0:
            return sample(self.model, self.tokenizer, prompts, self.max_answer, temperature)
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            seed = (int(self.spec["seed"]) * 1_000_003 + self.parallel.rank) * 1_000_033 + self.steps_done
            torch.manual_seed(seed % 2**63)
            return sample(self.model, self.tokenizer, prompts, self.max_answer, temperature)

    def after_step(self, epoch_ended: bool) -> dict[str, Any]:
        evaluate = self.steps_done % self.eval_interval == 0 or self.steps_done == self.total_steps
        valid = self._evaluate() if evaluate and self.valid_prompts else None
        metrics: dict[str, Any] = {"extra": reward_metrics(self.grader, self._train_graded, valid)}
        summary = f"train mean reward={self._train_graded.mean:.2f}"
        if evaluate:
            score_now = valid.mean if valid is not None else sum(self._since_eval) / max(1, len(self._since_eval))
            self._since_eval = []
            metrics.update(checkpoint=True, checkpoint_score=score_now)
            if valid is not None:
                summary += f", full validation mean reward={valid.mean:.2f}"
        else:
            metrics["checkpoint"] = False
        metrics["summary"] = summary
        return metrics

    def extra_state(self) -> dict[str, Any]:
        return {"since_eval": list(self._since_eval)}  # the next evaluation's score without a validation file

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self._since_eval = list(state.get("since_eval", []))

    def _evaluate(self) -> Graded:
        """Greedy answers to the validation prompts, graded (each rank answers its share)."""
        graded = Graded()
        world = self.parallel.world if self.parallel is not None else 1
        chunks = [self.valid_prompts[start : start + 32 * world] for start in range(0, self.n_valid, 32 * world)]
        for share, _ in self.shares(chunks):  # never a stand-in: RFT is not sharded
            batch = [p for p in share for _ in range(self.eval_samples)]
            answers = self._sample([ids for _, ids in batch], 0.0)
            for (item, _), answer in zip(batch, answers):
                self._grade(item, answer, graded)
        return graded if self.parallel is None else Graded.merged(self.parallel.gather(graded))


def _rollout(prompt: list[int], answer: Answer) -> Encoded:
    """Prompt and answer as one sequence with only the answer's tokens scored."""
    answer_ids = answer.ids + ([answer.stop] if answer.stop is not None else [])  # learn to stop, too
    return Encoded(prompt + answer_ids, [False] * len(prompt) + [True] * len(answer_ids), 0)
