"""The overfitting rule on real curves recorded from the local backend (tests/data/curves, made
by scripts/record_curves.py), replayed event by event as a watcher sees them, and on small
made-up series for the edges (sparse or missing validation, RFT rewards, divergence)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from tunedeck.core.records import JobEvent
from tunedeck.core.watch.overfit import DEFAULT_RULE, OverfitRule, SignalRule, Verdict, assess
from tunedeck.core.watch.series import MetricSeries

CURVES = Path(__file__).parent / "data" / "curves"
JOBS = {row["name"]: row for row in map(json.loads, (CURVES / "jobs.jsonl").read_text().splitlines())}
QUIET = {"ok", "watch", "too_early", "no_validation"}


def curve(name: str, drop: tuple[str, ...] = ()) -> list[JobEvent]:
    """A recorded job's metric events, oldest first, without the `drop` keys."""
    events = []
    for line in (CURVES / f"{name}.jsonl").read_text().splitlines():
        raw = json.loads(line)
        raw["data"] = {k: v for k, v in raw["data"].items() if k not in drop}
        events.append(JobEvent.from_api(f"ftjob-{name}", raw))
    return events


def settings(name: str) -> tuple[str, int, list[int]]:
    """The recorded job's method, n_epochs and kept checkpoint steps."""
    job = JOBS[name]["job"]
    method = job["method"]["type"]
    return (
        method,
        job["method"][method]["hyperparameters"]["n_epochs"],
        [c["step_number"] for c in JOBS[name]["checkpoints"]],
    )


def replay(name: str, drop: tuple[str, ...] = (), rule: OverfitRule = DEFAULT_RULE) -> list[tuple[int, Verdict]]:
    """The verdict after each metric event, as a watcher following the running job sees it."""
    method, n_epochs, _ = settings(name)
    series = MetricSeries()
    seen = []
    for event in curve(name, drop):
        series.add_events([event])
        seen.append((event.data["step"], assess(series, method=method, n_epochs=n_epochs, rule=rule)))
    return seen


def full_valid(name: str) -> list[tuple[int, float]]:
    return [(e.data["step"], e.data["full_valid_loss"]) for e in curve(name) if "full_valid_loss" in e.data]


# -- real curves ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["clean", "noisy_healthy"])
def test_a_healthy_run_never_alarms_at_any_point(name):
    seen = replay(name)
    assert {v.state for _, v in seen} <= QUIET
    third_epoch = full_valid(name)[2][0]
    assert {v.state for step, v in seen if step >= third_epoch} == {"ok"}  # judged, not merely waiting
    method, n_epochs, checkpoints = settings(name)
    final = assess(MetricSeries.from_events(curve(name)), method=method, n_epochs=n_epochs,
                   checkpoint_steps=checkpoints, finished=True)  # fmt: skip
    last_step = full_valid(name)[-1][0]
    assert final.state == "ok" and final.best_step == last_step and final.best_metric == "full_valid_loss"
    assert final.advice == "the final model is the best"


def test_a_healthy_run_judged_on_its_noisy_small_batch_validation_alone_never_alarms():
    """A provider that reports only `valid_loss` (a few examples at a time): no false alarm."""
    for name in ("clean", "noisy_healthy"):
        seen = replay(name, drop=("full_valid_loss", "full_valid_mean_token_accuracy"))
        assert {v.state for _, v in seen} <= QUIET, name
        assert seen[-1][1].best_metric == "valid_loss"


def test_the_overfitting_run_alarms_just_after_its_validation_loss_turns_up():
    evaluations = full_valid("overfit")  # one per epoch, 16 steps each
    minimum_step, minimum = min(evaluations, key=lambda p: p[1])
    assert minimum_step == 96  # epoch 6: the model has learned the cue words...
    after = [(step, value / minimum - 1) for step, value in evaluations if step > minimum_step]
    assert (
        all(rise > 0 for _, rise in after) and after[-1][1] > 0.10
    )  # ...then memorises the noise: it never comes back
    # The rule: more than 5% above the minimum at two evaluations in a row. Epoch 7 is +3.7%,
    # epochs 8 and 9 are +5.6% and +6.3%: it fires at the end of epoch 9, step 144.
    first_two_over = next(
        after[i + 1][0] for i in range(len(after) - 1) if after[i][1] > 0.05 and after[i + 1][1] > 0.05
    )
    assert first_two_over == 144

    seen = replay("overfit")
    first_alarm = next(step for step, v in seen if v.alarm)
    assert first_alarm == 144
    assert all(v.alarm and v.fired_at_step == 144 for step, v in seen if step >= 144)  # it stays up
    assert {v.state for step, v in seen if step < 144} <= QUIET
    at_alarm = dict(seen)[144]
    assert at_alarm.best_step == 96 and at_alarm.best_metric == "full_valid_loss"
    assert at_alarm.best_value == pytest.approx(minimum)
    assert (
        at_alarm.advice
        == "stop now: full validation loss has risen 6% from its best (step 96); use the checkpoint at step 96"
    )
    assert any("train loss" in r and "still improving" in r for r in at_alarm.reasons)


def test_the_finished_overfitting_run_names_the_best_checkpoint_that_was_kept():
    method, n_epochs, checkpoints = settings("overfit")
    series = MetricSeries.from_events(curve("overfit"))
    assert checkpoints == [320, 304, 288]  # the provider keeps only the last three epochs
    kept = assess(series, method=method, n_epochs=n_epochs, checkpoint_steps=checkpoints, finished=True)
    assert kept.alarm and kept.fired_at_step == 144
    assert kept.best_step == 288 and kept.advice == "use the checkpoint at step 288"
    assert any("no checkpoint was kept at step 96" in r for r in kept.reasons)
    every_epoch = assess(series, method=method, n_epochs=n_epochs, finished=True)
    assert every_epoch.best_step == 96 and every_epoch.advice == "use the checkpoint at step 96"


def test_the_small_batch_validation_alone_never_cries_wolf_and_says_what_it_sees():
    """Without the full validation loss, the overfitting run's rise (+10% over 14 epochs) is
    within the noise of its per-epoch small-batch means: no alarm at any point, and the final
    advice says how far from its best it is, and why that is no alarm."""
    seen = replay("overfit", drop=("full_valid_loss", "full_valid_mean_token_accuracy"))
    assert not any(v.alarm for _, v in seen)
    final = seen[-1][1]
    assert final.best_metric == "valid_loss" and 64 <= final.best_step <= 112
    assert "worse than its best" in final.advice and "within its noise" in final.advice
    assert any("averaged per epoch" in reason for reason in final.reasons)


def noisy_run(seed: int, evaluations: int, every: int, sd: float, drop: float, epochs: int | None, rise_from: float | None = None):
    """A made-up SFT run: train loss falling, validation falling by `drop` (or flat), with
    Gaussian noise of `sd`, then rising steadily after `rise_from` of the run when given."""
    rng = random.Random(seed)
    steps = evaluations * every
    series = MetricSeries()
    for step in range(1, steps + 1):
        data = {"step": step, "total_steps": steps, "train_loss": 1.2 - 0.3 * step / steps + rng.gauss(0, 0.1)}
        if step % every == 0:
            valid = 1.2 - drop * step / steps
            if rise_from is not None and step > rise_from * steps:
                valid += 0.4 * (step / steps - rise_from)
            data["valid_loss"] = valid + rng.gauss(0, sd)
        series.add_data(data)
    return series


@pytest.mark.parametrize("epochs", [3, 20, 30, None])
@pytest.mark.parametrize("drop", [0.0, 0.1])
def test_noisy_flat_or_slowly_improving_validation_never_alarms(epochs, drop):
    """The false alarm a lucky low makes: 1,000-2,000 noisy small-batch evaluations (5-15%),
    flat or slowly improving, with the epoch layout known or not, over several seeds."""
    for seed in range(8):
        for evaluations, every, sd in ((1000, 1, 0.1), (600, 5, 0.15), (2000, 1, 0.05)):
            series = noisy_run(seed, evaluations, every, sd, drop, epochs)
            verdict = assess(series, method="supervised", n_epochs=epochs)
            assert not verdict.alarm, (seed, evaluations, sd, verdict.reasons)


@pytest.mark.parametrize("epochs", [20, None])
def test_a_steady_rise_after_the_minimum_alarms_through_the_noise(epochs):
    alarms = 0
    for seed in range(8):
        series = noisy_run(seed, 1000, 1, 0.1, 0.0, epochs, rise_from=0.4)
        verdict = assess(series, method="supervised", n_epochs=epochs)
        alarms += verdict.alarm
        if verdict.alarm:
            assert verdict.fired_at_step > 400  # never before the turn
    assert alarms >= 7


def test_dpo_on_pairs_with_nothing_to_learn_alarms_once_validation_has_risen_far_enough():
    evaluations = full_valid("dpo_overfit")
    assert evaluations[0][1] == min(v for _, v in evaluations)  # it only ever rises
    seen = replay("dpo_overfit")
    assert next(step for step, v in seen if v.alarm) == 120
    final = seen[-1][1]
    assert final.alarm and final.fired_at_step == 120 and final.best_step == 12
    rises = {step: value / evaluations[0][1] - 1 for step, value in evaluations}
    assert rises[108] > 0.05 and rises[120] > 0.05 and rises[96] < 0.05


def test_a_learning_rft_run_never_alarms_on_its_wobbly_validation_reward():
    seen = replay("rft")
    assert {v.state for _, v in seen} <= QUIET
    final = seen[-1][1]
    rewards = [(e.data["step"], e.data["valid_reward_mean"]) for e in curve("rft") if "valid_reward_mean" in e.data]
    best_step = max(rewards, key=lambda p: (p[1], -p[0]))[0]
    assert final.state == "ok" and final.best_metric == "valid_reward_mean" and final.best_step == best_step == 120


def test_the_verdict_is_the_same_every_time():
    method, n_epochs, checkpoints = settings("overfit")
    series = MetricSeries.from_events(curve("overfit"))
    first = assess(series, method=method, n_epochs=n_epochs, checkpoint_steps=checkpoints)
    assert assess(series, method=method, n_epochs=n_epochs, checkpoint_steps=checkpoints) == first


# -- made-up series: the edges --------------------------------------------------------------------


def made_up(points: dict[int, dict], total_steps: int) -> MetricSeries:
    series = MetricSeries()
    for step, data in points.items():
        series.add_data({"step": step, "total_steps": total_steps, **data})
    return series


def sft(valid: list[float], train: list[float] | None = None, per_epoch: int = 10) -> MetricSeries:
    """One full validation per epoch of `per_epoch` steps; train loss every step (falling unless given)."""
    total = per_epoch * len(valid)
    train = train or [2.0 / (1 + s / 10) for s in range(1, total + 1)]
    points = {s: {"train_loss": train[s - 1]} for s in range(1, total + 1)}
    for epoch, value in enumerate(valid, start=1):
        points[epoch * per_epoch]["full_valid_loss"] = value
    return made_up(points, total)


def test_no_validation_metrics():
    verdict = assess(made_up({s: {"train_loss": 1 / s} for s in range(1, 50)}, 50), method="supervised")
    assert verdict.state == "no_validation" and not verdict.alarm and verdict.best_step is None
    assert "validation file" in verdict.advice
    rft = assess(made_up({s: {"train_reward_mean": s / 50} for s in range(1, 50)}, 50), method="reinforcement")
    assert rft.state == "no_validation"


def test_sparse_validation_is_too_early_until_there_are_enough_evaluations():
    two = sft([1.0, 1.3])
    verdict = assess(two, method="supervised", n_epochs=2)
    assert verdict.state == "too_early" and "2 of 3" in verdict.advice
    three = sft([1.0, 1.3, 1.4])
    assert assess(three, method="supervised", n_epochs=3).alarm
    small_batch = made_up({s: {"train_loss": 1.0, "valid_loss": 1.0} for s in range(1, 26)}, 100)
    assert "2 of 3 runs of 10 validation loss evaluations" in assess(small_batch, method="supervised").advice


def test_a_rise_that_comes_back_is_not_an_alarm_and_a_new_best_clears_one():
    blip = assess(sft([1.0, 0.8, 0.9, 0.78, 0.7]), method="supervised", n_epochs=5)
    assert blip.state == "ok" and blip.best_step == 50
    cleared = assess(sft([1.0, 0.8, 0.9, 0.9, 0.7]), method="supervised", n_epochs=5)
    assert cleared.state == "ok" and cleared.fired_at_step is None
    assert assess(sft([1.0, 0.8, 0.9, 0.9]), method="supervised", n_epochs=4).fired_at_step == 40


def test_a_small_rise_is_watched_not_alarmed():
    verdict = assess(sft([1.0, 0.8, 0.7, 0.72, 0.725]), method="supervised", n_epochs=5)
    assert verdict.state == "watch" and verdict.best_step == 30
    assert verdict.advice.startswith("watch: full validation loss is 4% worse than its best (step 30)")


def test_both_losses_rising_is_divergence_not_overfitting():
    train = [1.0 - s / 100 for s in range(1, 31)] + [0.7 + (s / 10) for s in range(1, 21)]  # turns up after step 30
    verdict = assess(sft([1.0, 0.8, 0.7, 1.2, 1.4], train=train), method="supervised", n_epochs=5)
    assert verdict.state == "watch" and not verdict.alarm
    assert any("getting worse too" in r for r in verdict.reasons)


def test_rft_validation_reward_falling_while_train_reward_rises():
    points = {s: {"train_reward_mean": min(1.0, s / 100)} for s in range(1, 101)}
    for step, reward in zip(range(10, 101, 10), [0.2, 0.35, 0.5, 0.55, 0.5, 0.42, 0.38, 0.35, 0.33, 0.3]):
        points[step].update(valid_reward_mean=reward, full_valid_mean_reward=reward)
    series = made_up(points, 100)
    seen = {step: assess(made_up({s: d for s, d in points.items() if s <= step}, 100), method="reinforcement")
            for step in range(10, 101, 10)}  # fmt: skip
    # Smoothed (EMA 0.6) the reward peaks at step 50; 70, 80 and 90 are more than 10% below that.
    assert [step for step, v in seen.items() if v.alarm] == [90, 100]
    verdict = assess(series, method="reinforcement")
    assert verdict.alarm and verdict.fired_at_step == 90 and verdict.best_metric == "valid_reward_mean"
    assert verdict.best_step == 40 and verdict.best_value == 0.55  # the checkpoint by the peak as measured
    assert seen[90].advice.startswith("stop now: validation reward has fallen")
    assert seen[90].advice.endswith("use the checkpoint at step 40")
    assert assess(series, method="reinforcement", finished=True).advice == "use the checkpoint at step 40"


def test_rewards_near_zero_need_a_real_change():
    points = {s: {"train_reward_mean": s / 100} for s in range(1, 101)}
    for step, reward in zip(range(10, 101, 10), [0.004, 0.006, 0.008, 0.005, 0.004, 0.003, 0.004, 0.003, 0.002, 0.002]):
        points[step]["valid_reward_mean"] = reward  # a fall of 75%, but of less than 0.01
    assert assess(made_up(points, 100), method="reinforcement").state == "ok"


def test_the_thresholds_are_the_rules():
    series = sft([1.0, 0.8, 0.7, 0.72, 0.725])
    strict = OverfitRule(full=SignalRule(smoothing=0.0, rise=0.02, patience=2, min_evaluations=3))
    assert assess(series, method="supervised", rule=strict).alarm
    patient = OverfitRule(full=SignalRule(smoothing=0.0, rise=0.02, patience=3, min_evaluations=3))
    assert not assess(series, method="supervised", rule=patient).alarm


def test_the_verdict_travels_as_json():
    verdict = assess(sft([1.0, 0.8, 0.9, 0.9]), method="supervised", n_epochs=4)
    data = json.loads(json.dumps(verdict.to_json()))
    assert data["state"] == "overfitting" and data["alarm"] is True and data["fired_at_step"] == 40
    assert Verdict.from_json(data) == verdict
    assert Verdict.from_json({}) == Verdict("ok")
