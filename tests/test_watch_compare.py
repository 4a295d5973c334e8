"""Several jobs side by side, on the jobs recorded in tests/data/curves: settings and results
rows with differences flagged, the JSON `jobs compare --json` prints, curves aligned for overlays."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tunedeck.core.records import Job, JobEvent
from tunedeck.core.watch.compare import aligned, compare
from tunedeck.core.watch.overfit import assess
from tunedeck.core.watch.series import MetricSeries

CURVES = Path(__file__).parent / "data" / "curves"
RECORDED = {row["name"]: row for row in map(json.loads, (CURVES / "jobs.jsonl").read_text().splitlines())}


def recorded(name: str) -> tuple[Job, MetricSeries]:
    job = Job.from_api(RECORDED[name]["job"])
    lines = (CURVES / f"{name}.jsonl").read_text().splitlines()
    return job, MetricSeries.from_events(JobEvent.from_api(job.id, json.loads(line)) for line in lines)


def rows(comparison, part: str) -> dict[str, tuple[tuple[str, ...], bool]]:
    return {row.label: (row.values, row.differs) for row in getattr(comparison, part)}


def test_two_runs_side_by_side():
    (clean, clean_series), (overfit, overfit_series) = recorded("clean"), recorded("overfit")
    verdicts = {job.id: assess(s, method=job.method, n_epochs=job.hyperparameters["n_epochs"], finished=True)
                for job, s in ((clean, clean_series), (overfit, overfit_series))}  # fmt: skip
    comparison = compare([clean, overfit], {clean.id: clean_series, overfit.id: overfit_series}, verdicts)
    assert comparison.job_ids == ("ftjob-clean", "ftjob-overfit")

    settings = rows(comparison, "settings")
    assert list(settings)[:2] == ["model", "method"] and list(settings)[-4:] == ["suffix", "seed", "training file",
                                                                                  "validation file"]  # fmt: skip
    assert settings["model"] == (("tunedeck-ngram", "tunedeck-ngram"), False)
    assert settings["method"] == (("SFT", "SFT"), False)
    assert settings["n_epochs"] == (("5", "20"), True)
    assert settings["batch_size"] == (("2", "1"), True)
    assert settings["learning_rate_multiplier"] == (("1", "1"), False)
    assert settings["suffix"] == (("clean", "overfit"), True) and settings["seed"] == (("1", "1"), False)

    results = rows(comparison, "results")
    assert results["status"] == (("succeeded", "succeeded"), False)
    assert results["steps"] == (("250/250", "320/320"), True)
    assert results["best full_valid_loss"][0] == ("0.5559 (step 250)", "1.073 (step 96)")
    assert results["final full_valid_loss"][0][1] == f"{overfit_series.latest('full_valid_loss'):.4g}"
    assert "best train_mean_token_accuracy" in results and "final valid_loss" in results
    assert results["overfitting"] == (("ok", "overfitting (from step 144)"), True)
    assert results["trained tokens"][0] == (str(clean.trained_tokens), str(overfit.trained_tokens))


def test_the_comparison_as_json():
    (dpo, dpo_series), (rft, rft_series) = recorded("dpo_overfit"), recorded("rft")
    data = json.loads(json.dumps(compare([dpo, rft], {dpo.id: dpo_series, rft.id: rft_series}).to_json()))
    assert data["job_ids"] == ["ftjob-dpo_overfit", "ftjob-rft"]
    by_label = {row["label"]: row for row in data["results"]}
    assert by_label["best valid_reward_mean"]["values"] == ["-", "0.4 (step 120)"]  # rewards: higher is better
    assert by_label["best train_loss"]["values"][1] == "-" and by_label["overfitting"]["values"] == ["-", "-"]
    assert by_label["best train_reward_accuracy"]["differs"] is True
    assert not any("." in label for label in by_label)  # nested blocks repeat the top-level columns
    settings = {row["label"]: row for row in data["settings"]}
    assert settings["method"] == {"label": "method", "values": ["DPO", "RFT"], "differs": True}
    assert settings["beta"]["values"][1] == "-" and settings["eval_interval"]["values"] == ["-", "10"]


def test_a_job_without_metrics_shows_dashes():
    job, _ = recorded("clean")
    comparison = compare([job], {})
    assert rows(comparison, "results")["steps"] == (("-",), False)


def test_curves_aligned_by_step_and_by_epoch():
    _, series = recorded("overfit")  # 20 epochs of 16 steps
    by_step = aligned(series, "full_valid_loss")
    assert by_step[0] == (16.0, series.values("full_valid_loss")[0][1]) and len(by_step) == 20
    by_epoch = aligned(series, "full_valid_loss", by="epoch", n_epochs=20)
    assert [x for x, _ in by_epoch] == [float(e) for e in range(1, 21)]
    assert aligned(series, "full_valid_loss", by="epoch") == []  # epochs unknown
    normalised = aligned(series, "train_loss", normalise=True)
    assert normalised[0][1] == 1.0 and normalised[-1][1] == pytest.approx(
        series.latest("train_loss") / series.values("train_loss")[0][1]
    )
    with pytest.raises(ValueError):
        aligned(series, "train_loss", by="time")


def test_normalising_skips_a_zero_first_value():
    series = MetricSeries()
    for step, value in ((1, 0.0), (2, 0.5), (3, 1.0)):
        series.add_data({"step": step, "train_reward_mean": value})
    assert aligned(series, "train_reward_mean", normalise=True) == [(1.0, 0.0), (2.0, 1.0), (3.0, 2.0)]
