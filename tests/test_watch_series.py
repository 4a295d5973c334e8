"""MetricSeries: every numeric metric of a job by step, from metric events in any order, with
duplicates, nested blocks and junk; its CSV; epochs; the EMA the charts and the rule smooth with.
Real events come from tests/data/curves (scripts/record_curves.py)."""

from __future__ import annotations

import io
import itertools
import json
import math
import random
from pathlib import Path

import pytest

from tunedeck.core.records import JobEvent
from tunedeck.core.watch.series import MetricSeries, ema, metric_family

CURVES = Path(__file__).parent / "data" / "curves"


def curve(name: str) -> list[JobEvent]:
    """A recorded job's metric events, oldest first."""
    lines = (CURVES / f"{name}.jsonl").read_text().splitlines()
    return [JobEvent.from_api(f"ftjob-{name}", json.loads(line)) for line in lines]


def metrics(step: int, **data) -> JobEvent:
    return JobEvent(f"ev-{step}-{len(data)}", "ftjob-x", 0, "info", f"Step {step}", "metrics", {"step": step, **data})


def test_events_in_any_order_and_repeated_give_the_same_series():
    events = curve("overfit")
    reference = MetricSeries.from_events(events)
    shuffled = events * 2 + events[:50]
    random.Random(3).shuffle(shuffled)
    again = MetricSeries.from_events(shuffled)
    assert reference.steps == again.steps == list(range(1, 321))
    assert reference.rows() == again.rows()
    assert again.values("full_valid_loss") == reference.values("full_valid_loss")
    assert again.total_steps == 320 and again.last_step() == 320

    version = again.version
    assert again.add_events(events[:10]) == 0 and again.version == version  # nothing new: no redraw


def test_a_new_value_for_a_step_replaces_the_old_one_and_bumps_the_version():
    series = MetricSeries()
    assert series.add_data({"step": 1, "total_steps": 4, "train_loss": 2.0}) == 2  # total_steps and the loss
    version = series.version
    assert series.add_data({"step": 1, "train_loss": 2.0}) == 0 and series.version == version
    assert series.add_data({"step": 1, "train_loss": 1.5, "valid_loss": 1.8}) == 2
    assert series.version == version + 1
    assert series.values("train_loss") == [(1, 1.5)] and series.latest("valid_loss") == 1.8


def test_nested_blocks_are_flattened_and_junk_is_skipped():
    series = MetricSeries()
    series.add_data({
        "step": 3, "total_steps": 10, "train_loss": 1, "flag": True, "note": "hi", "nan": math.nan, "inf": math.inf,
        "scores": {"valid_reward_mean": 0.5, "graders": [{"name": "exact", "valid_reward_mean": 0.5}]},
        "timing": {"step": {"sampling": 1.25, "eval": None}}, "valid_loss": 0.75,
    })  # fmt: skip
    assert series.columns == ["train_loss", "scores.valid_reward_mean", "timing.step.sampling", "valid_loss"]
    assert series.values("timing.step.sampling") == [(3, 1.25)]
    assert series.values("flag") == [] and series.latest("nope") is None


def test_events_that_are_not_metrics_or_have_no_step_are_ignored():
    message = JobEvent("ev-m", "ftjob-x", 0, "info", "Fine-tuning job started", "message", {"step": 1, "x": 1.0})
    series = MetricSeries.from_events([message, metrics(2, train_loss=1.0)])
    series.add_data({"train_loss": 3.0})
    series.add_data({"step": "4", "train_loss": 3.0})
    series.add_data({"step": True, "train_loss": 3.0})
    assert series.steps == [2] and series.columns == ["train_loss"]
    assert MetricSeries().last_step() is None and MetricSeries().steps == []


def test_the_recorded_rft_events_flatten_their_nested_blocks():
    series = MetricSeries.from_events(curve("rft"))
    assert {"train_reward_mean", "train_mean_reward", "valid_reward_mean", "full_valid_mean_reward",
            "completion_tokens_mean", "scores.train_reward_mean", "scores.valid_reward_mean"} <= set(series.columns)  # fmt: skip
    assert "step" not in series.columns and "total_steps" not in series.columns
    assert not any("graders" in column for column in series.columns)  # per-grader lists are skipped
    assert [s for s, _ in series.values("valid_reward_mean")] == list(range(10, 161, 10))
    assert series.values("scores.valid_reward_mean") == series.values("valid_reward_mean")
    assert metric_family(series, "reinforcement") == "reward"


def test_csv_has_every_column_and_one_row_per_step():
    series = MetricSeries()
    series.add_data({"step": 2, "train_loss": 0.5, "valid_loss": 0.25})
    series.add_data({"step": 1, "train_loss": 1.0, "total_steps": 2, "scores": {"x": 3}})
    out = io.StringIO()
    series.write_csv(out)
    assert out.getvalue().splitlines() == ["step,train_loss,valid_loss,scores.x", "1,1,,3", "2,0.5,0.25,"]
    assert series.rows() == [
        {"step": 1, "train_loss": 1.0, "valid_loss": None, "scores.x": 3.0},
        {"step": 2, "train_loss": 0.5, "valid_loss": 0.25, "scores.x": None},
    ]


def test_csv_of_a_recorded_job_keeps_full_precision():
    events = curve("clean")
    series = MetricSeries.from_events(events)
    out = io.StringIO()
    series.write_csv(out)
    lines = out.getvalue().splitlines()
    assert lines[0] == "step," + ",".join(series.columns)
    assert len(lines) == 1 + 250
    header = lines[0].split(",")
    last = dict(zip(header, lines[-1].split(",")))
    assert float(last["full_valid_loss"]) == events[-1].data["full_valid_loss"]


def test_epoch_boundaries_fall_where_the_full_validation_was_measured():
    series = MetricSeries.from_events(curve("overfit"))  # 16 examples, batch 1, 20 epochs
    boundaries = series.epoch_boundaries(20)
    assert boundaries == list(range(16, 320, 16))
    assert [s for s, _ in series.values("full_valid_loss")] == [*boundaries, 320]
    assert series.epoch_of(24, 20) == 1.5 and series.epoch_of(320, 20) == 20
    assert series.epoch_boundaries(None) == [] and series.epoch_of(24, None) is None
    assert series.epoch_boundaries(1) == []
    assert MetricSeries().epoch_boundaries(3) == []  # total steps unknown


def test_epoch_boundaries_round_when_steps_do_not_divide():
    series = MetricSeries()
    series.add_data({"step": 1, "total_steps": 10})
    assert series.epoch_boundaries(3) == [3, 7]


def test_ema_is_debiased_like_tensorboard():
    points = [(1, 1.0), (2, 0.0), (3, 0.0)]
    assert ema(points, 0.0) == points
    smoothed = ema(points, 0.5)
    assert smoothed[0] == (1, 1.0)  # debiased: starts at the first value, not at half of it
    assert smoothed[1][1] == pytest.approx(0.25 / 0.75)
    assert smoothed[2][1] == pytest.approx(0.125 / 0.875)
    assert [v for _, v in ema([(i, 2.0) for i in range(10)], 0.9)] == pytest.approx([2.0] * 10)
    assert ema([], 0.9) == []
    for bad in (1.0, -0.1):
        with pytest.raises(ValueError):
            ema(points, bad)


def test_ema_tames_the_noisy_per_step_train_loss():
    series = MetricSeries.from_events(curve("noisy_healthy"))  # batch size 1
    raw = [v for _, v in series.values("train_loss")]
    smooth = [v for _, v in ema(series.values("train_loss"), 0.9)]

    def jumps(values):
        return sum(abs(b - a) for a, b in itertools.pairwise(values))

    assert jumps(smooth) < jumps(raw) / 5
    assert smooth[-1] < smooth[0] / 3  # the trend survives


def test_metric_family():
    loss = MetricSeries.from_events([metrics(1, train_loss=1.0)])
    assert metric_family(loss, "supervised") == metric_family(loss, "dpo") == "loss"
    assert metric_family(loss, "reinforcement") == "reward"
    rewards = MetricSeries.from_events([metrics(1, train_reward_mean=0.5)])
    assert metric_family(rewards, "supervised") == "reward"  # no loss column at all
