"""Is this job overfitting? A documented rule over its metric series, and what to do about it.

The rule, in plain words (the numbers are `DEFAULT_RULE`'s; `OverfitRule` holds them):

1. **The validation signal.** Loss jobs (SFT, DPO): the full validation loss, measured on the
   whole validation file at each epoch's end, the most reliable number a job reports, once
   there are 3 of them. Until then (or for a provider that never reports it) the small-batch
   validation loss, `valid_loss`: a few examples at a time, so noisy that one value means
   little and, over a long run, the lowest of many noisy values is a lucky one that
   everything after it looks worse than. So it is averaged per epoch (a provider that cycles
   through its validation batches covers the cycle in an epoch; without the epoch layout, in
   runs of 10 evaluations), once there are 3 such means. RFT: the validation reward (the
   validation file graded at each evaluation, on sampled answers, so it wobbles: smoothed
   with an EMA of strength 0.6, and 4 evaluations needed). For a loss, rising is bad; for a
   reward, falling. No validation metric: `no_validation`. Not enough evaluations yet:
   `too_early`.
2. **Worse.** Replaying the evaluations in order, each is compared with the best one so far;
   it is *worse* when it is worse than that best by more than `rise` (5% of the best loss,
   taken of at least 0.5 nats; 10% of the best reward) and by at least `min_abs_change`
   (0.01: a reward near zero that moves from 0.004 to 0.002 has not "halved"). A per-epoch
   mean of the small-batch loss must also be worse by more than its noise: `NOISE_Z` (3)
   standard errors of the difference of the two means, plus sqrt(2 ln n) standard errors for
   the best being the luckiest of n means. The standard error comes from the spread within
   the epochs (pooled) until there are 6 means, then from how the means themselves wander.
   With 5-15% noise, flat or slowly improving runs of a thousand evaluations and more never
   alarm; a real rise does (tests/test_overfit.py), the price being that a mild rise seen
   only through a noisy small-batch loss is reported as "within its noise".
3. **The rule holds** at an evaluation when the last `patience` evaluations in a row were
   worse (2 for losses, 3 for rewards), and training is still going its way: the training
   signal, smoothed (EMA 0.9: one batch per step is noisy), is better than it was at the
   best evaluation, or the generalisation gap (validation minus training) is wider than it
   was there; for the full validation loss, its last three values must also be rising (a
   least-squares slope above zero: one bad epoch after a good one is a wobble). Both getting
   worse is not overfitting (training itself has gone wrong); the verdict's reasons say so.
4. **Verdict.** `overfitting` when the rule has held at an evaluation after the best one;
   `fired_at_step` is the first such evaluation's step, so replaying the same events always
   gives the same step, and a watcher following the run sees the alarm go up there. A new
   best clears it. `watch`: the latest evaluation is worse than the best by more than
   `watch_share` (40%) of `rise` (and beyond its noise), without the rule holding.
   Otherwise `ok`.
5. **Best checkpoint**: among `checkpoint_steps` when given (a provider keeps only some),
   else the epoch ends and the last step (where SFT and DPO jobs save them), or for rewards
   the evaluation steps (RFT saves one at each): the one whose validation value as measured
   (the latest evaluation at or before it; smoothing would lag behind the real best) is
   best, the earliest on a tie. The advice says "stop now" while the job runs, and which
   checkpoint to use ("the final model is the best" when that is the last one).

The tests replay real curves recorded from the local backend (`scripts/record_curves.py`):
a clean run and a noisy but healthy one never alarm at any point, an overfitting one alarms
two epochs after its validation loss turned up, when the rise passed 5% twice in a row.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from .series import MetricSeries, ema, metric_family, value_at
from .verdict import Verdict

REWARD_VALIDATION = ("valid_reward_mean", "full_valid_mean_reward", "scores.valid_reward_mean")
REWARD_TRAINING = ("train_reward_mean", "train_mean_reward", "scores.train_reward_mean")
STATES = ("ok", "watch", "overfitting", "no_validation", "too_early")
LABELS = {
    "full_valid_loss": "full validation loss",
    "valid_loss": "validation loss",
}


NOISE_Z = 3.0
"""A worsening of the small-batch validation loss must exceed this many standard errors of
the difference between the two periods' means (see `_periods`)."""
FALLBACK_PERIOD = 10
"""Without the epoch layout (no n_epochs or total_steps), periods of this many evaluations."""
BETWEEN_FROM = 6
"""From this many periods on, their noise is read from how their means wander (`_between`)..."""
BETWEEN_WINDOW = 50
"""... the last this many of them (the noise shrinks as a loss falls; and a long job's many
periods would make each estimate cost as much as all before it)."""
"""Without the epoch layout (no n_epochs or total_steps), periods of this many evaluations."""


@dataclass(frozen=True)
class SignalRule:
    """How one kind of validation signal is judged."""

    smoothing: float
    """EMA strength applied to the signal before judging it (0: as measured)."""
    rise: float
    """How far worse than its best (a fraction of the best value) counts as worse."""
    patience: int
    """How many evaluations in a row must be worse."""
    min_evaluations: int
    """Evaluations needed before anything is judged (`too_early` until then)."""
    by_period: bool = False
    """Judge the mean of each period (an epoch; see `_periods`) rather than each evaluation,
    and require a worsening beyond the noise of those means."""
    trend_window: int = 0
    """The rule also needs the last this many judged points to be rising (least-squares slope
    above zero; 0: no trend check)."""


@dataclass(frozen=True)
class OverfitRule:
    """The thresholds of the overfitting rule (see the module docstring)."""

    full: SignalRule = SignalRule(smoothing=0.0, rise=0.05, patience=2, min_evaluations=3, trend_window=3)
    """Full validation loss: the whole file, once an epoch, no sampling noise; the model
    wobbles from epoch to epoch, so the last three must also be rising."""
    batch: SignalRule = SignalRule(smoothing=0.0, rise=0.05, patience=2, min_evaluations=3, by_period=True)
    """Small-batch validation loss: a few examples each time, far too noisy to judge one by
    one (over a long run the lowest of many noisy values is a lucky one, and everything after
    it looks worse), so each epoch's evaluations are averaged into one point (a provider that
    cycles through its validation batches covers the cycle in an epoch), and a worsening must
    also exceed `NOISE_Z` standard errors of the two means compared."""
    reward: SignalRule = SignalRule(smoothing=0.6, rise=0.10, patience=3, min_evaluations=4)
    """Validation reward (RFT): graded on sampled answers, so it wobbles; a fall of 10% of the
    best reward over three evaluations in a row."""
    train_smoothing: float = 0.9
    """EMA strength for the per-step training signal (one batch per step: noisy)."""
    watch_share: float = 0.4
    """`watch` when the latest value is worse than the best by more than this share of `rise`."""
    min_abs_change: float = 0.01
    """A worsening smaller than this (in the metric's own units) never counts: rewards near 0."""
    loss_floor: float = 0.5
    """A loss's `rise` is taken of at least this (nats): near zero a relative rise means
    nothing (0.0 -> 0.02 is "infinitely" worse), while 5% of 0.5 nats, the validation text's
    likelihood falling by about 2.5%, is a real change at any level."""


DEFAULT_RULE = OverfitRule()


@dataclass(frozen=True)
class _Signal:
    column: str
    label: str
    rule: SignalRule
    higher_is_better: bool
    points: list[tuple[int, float]]  # smoothed: what the rule judges
    measured: list[tuple[int, float]]  # as measured (periods averaged): what a checkpoint is chosen by
    errors: list[float | None] | None = None  # each period mean's standard error (by_period signals)
    evaluations: int = 0  # how many evaluations the points come from
    period_label: str = ""  # "epoch" or "" (runs of FALLBACK_PERIOD)


def assess(
    series: MetricSeries,
    *,
    method: str,
    n_epochs: int | None = None,
    checkpoint_steps: Sequence[int] | None = None,
    finished: bool = False,
    has_validation_file: bool = False,
    rule: OverfitRule = DEFAULT_RULE,
) -> Verdict:
    """Judge the job's metrics by `rule`. `finished`: the job has ended (the advice then names
    a checkpoint to use rather than saying to stop). `has_validation_file`: the job was given
    one, so no validation metric yet means none was measured yet (`too_early`) while it runs."""
    family = metric_family(series, method)
    signal, waiting = _pick_signal(series, family, rule, n_epochs)
    if signal is None:
        if waiting is None and has_validation_file and not finished:
            return Verdict(
                "too_early",
                advice="too early to tell: no validation evaluation yet",
                reasons=("the job has a validation file but no validation metric yet",),
            )
        if waiting is None and has_validation_file:
            return Verdict(
                "no_validation",
                advice="the job has a validation file but reported no usable validation metric",
                reasons=("no validation value was a finite number",),
            )
        if waiting is None:
            return Verdict(
                "no_validation",
                advice="no validation metrics: give the job a validation file to watch for overfitting",
                reasons=("the job reports no validation metric",),
            )
        column, count, needed, label = waiting
        return Verdict(
            "too_early",
            best_metric=column,
            advice=f"too early to tell: {count} of {needed} {label} so far",
            reasons=(f"{label}: {count}, {needed} needed",),
        )

    evals = signal.points
    better = _better(signal.higher_is_better)
    train = _train_points(series, family, rule)
    best_index = 0
    streak = 0
    fired: int | None = None
    for i, (step, value) in enumerate(evals):
        if better(value, evals[best_index][1]):
            best_index, streak, fired = i, 0, None
            continue
        best = evals[best_index][1]
        if _worse(signal, value, best, rule) and _beyond_noise(signal, i, best_index):
            streak += 1
        else:
            streak = 0
        holds = (
            i + 1 >= signal.rule.min_evaluations
            and streak >= signal.rule.patience
            and _rising(signal, evals, i)
            and _training_still_improving(signal, train, evals[best_index], (step, value))
        )
        if holds and fired is None:
            fired = step

    best_eval_step, best_eval_value = evals[best_index]
    last_step, last_value = evals[-1]
    change = _worse_by(signal, last_value, best_eval_value)
    checkpoint = _best_checkpoint(series, signal, family, n_epochs, checkpoint_steps)
    if checkpoint is None:
        measured = value_at(signal.measured, best_eval_step)
        checkpoint = (best_eval_step, best_eval_value if measured is None else measured)
    best_step, best_value = checkpoint
    final_step = series.total_steps if finished and series.total_steps else series.last_step()

    how = ["averaged per epoch" if signal.period_label == "epoch" else f"averaged in runs of {FALLBACK_PERIOD}"] if signal.rule.by_period else []
    if signal.rule.smoothing:
        how.append(f"smoothed (EMA {signal.rule.smoothing:g})")
    reasons = [
        f"{signal.label} ({signal.column}): {signal.evaluations} evaluations" + (f", {', '.join(how)}" if how else ""),
        f"best {best_eval_value:.4g} at step {best_eval_step}; latest {last_value:.4g} at step {last_step}"
        + (f" ({_signed_percent(signal, change)})" if last_step != best_eval_step else ""),
    ]
    trend = _train_trend(signal, train, evals[best_index], evals[-1])
    if trend:
        reasons.append(trend)
    if checkpoint_steps and best_eval_step not in set(checkpoint_steps):
        kept = ", ".join(str(s) for s in sorted(set(checkpoint_steps)))
        reasons.append(
            f"no checkpoint was kept at step {best_eval_step}; of those kept ({kept}) step {best_step} is best"
        )

    if fired is not None:
        state = "overfitting"
        beyond = f" and {NOISE_Z:g} standard errors" if signal.rule.by_period else ""
        reasons.append(
            f"worse than its best by more than {signal.rule.rise:.0%}{beyond} for {signal.rule.patience} evaluations"
            f" in a row, and rising, at step {fired}, while training kept improving (or the gap to it widened)"
        )
    elif _worse(signal, last_value, best_eval_value, rule, share=rule.watch_share) and _beyond_noise(
        signal, len(evals) - 1, best_index
    ):  # smaller than the rule's rise, but beyond the noise: worth watching
        state = "watch"
    else:
        state = "ok"

    advice = _advice(state, signal, finished, best_step, final_step, best_eval_step, change)
    return Verdict(
        state,
        fired_at_step=fired,
        best_step=best_step,
        best_metric=signal.column,
        best_value=best_value,
        advice=advice,
        reasons=tuple(reasons),
    )


# -- the signals ----------------------------------------------------------------------------------


def _pick_signal(
    series: MetricSeries, family: str, rule: OverfitRule, n_epochs: int | None
) -> tuple[_Signal | None, tuple[str, int, int, str] | None]:
    """The signal to judge, or (None, what is still awaited) / (None, None) without validation."""
    if family == "reward":
        candidates = [(c, "validation reward", rule.reward, True) for c in REWARD_VALIDATION if series.has(c)][:1]
    else:
        candidates = [(c, LABELS[c], r, False) for c, r in (("full_valid_loss", rule.full), ("valid_loss", rule.batch))
                      if series.has(c)]  # fmt: skip
    if not candidates:
        return None, None
    for column, label, signal_rule, higher in candidates:
        raw = series.values(column)
        errors: list[float | None] | None = None
        period_label = ""
        if signal_rule.by_period:
            per_epoch = series.steps_per_epoch(n_epochs)
            period_label = "epoch" if per_epoch else ""
            measured, errors = _periods(raw, per_epoch, series.last_step())
        else:
            measured = raw
        if len(measured) >= signal_rule.min_evaluations:
            points = ema(measured, signal_rule.smoothing)
            return _Signal(column, label, signal_rule, higher, points, measured, errors, len(raw), period_label), None
    column, label, signal_rule, _ = candidates[0]
    count = len(series.values(column))
    what = f"{label} evaluations"
    if signal_rule.by_period:  # periods, not evaluations, are what is counted
        per_epoch = series.steps_per_epoch(n_epochs)
        count = len(_periods(series.values(column), per_epoch, series.last_step())[0])
        what = f"epochs of {label}" if per_epoch else f"runs of {FALLBACK_PERIOD} {label} evaluations"
    return None, (column, count, signal_rule.min_evaluations, what)


def _periods(
    points: list[tuple[int, float]], per_epoch: float | None, last_step: int | None
) -> tuple[list[tuple[int, float]], list[float | None]]:
    """The mean of each period's evaluations at the period's last evaluated step, and that
    mean's standard error (the pooled within-period standard deviation / sqrt(n); None
    until some period has two evaluations).
    A period is an epoch when the layout is known (steps per epoch), else a run of
    `FALLBACK_PERIOD` evaluations. The period still under way is left out."""
    groups: list[list[tuple[int, float]]] = []
    if per_epoch:
        current = -1
        for step, value in points:
            index = int((step - 1) // per_epoch)
            if index != current:
                groups.append([])
                current = index
            groups[-1].append((step, value))
        done_through = int((last_step or 0) // per_epoch)  # epochs whose last step was reached
        groups = [g for g in groups if int((g[0][0] - 1) // per_epoch) < done_through]
    else:
        whole = len(points) - len(points) % FALLBACK_PERIOD
        groups = [points[i : i + FALLBACK_PERIOD] for i in range(0, whole, FALLBACK_PERIOD)]
    means: list[tuple[int, float]] = []
    errors: list[float | None] = []
    squares, freedom = 0.0, 0  # within-period sums of squares and degrees of freedom so far
    for group in groups:
        values = [v for _, v in group]
        mean = sum(values) / len(values)
        means.append((group[-1][0], mean))
        squares += sum((v - mean) ** 2 for v in values)
        freedom += len(values) - 1
        # The spread pooled over every period so far (a period of 2 or 3 evaluations says
        # little about it alone), and only from data up to this period: a replay sees what a
        # watcher saw.
        within = math.sqrt(squares / freedom / len(values)) if freedom else None
        errors.append(_between(means) if len(means) >= BETWEEN_FROM else within)
    return means, errors


def _between(means: list[tuple[int, float]]) -> float:
    """The noise of one period mean from how the means themselves wander: the median of their
    second differences (each mean minus the mean of its neighbours: a straight trend cancels;
    for independent noise their sd is sigma x sqrt 1.5, and a normal's median |x| is 0.674
    sd, hence x 1.21). Preferred once there are enough means: a provider that cycles through
    its validation batches makes evaluations within an epoch differ far more than epochs do."""
    values = [v for _, v in means[-BETWEEN_WINDOW:]]
    seconds = [abs(b - (a + c) / 2) for a, b, c in zip(values, values[1:], values[2:])]
    return statistics.median(seconds) * 1.2105


def _train_points(series: MetricSeries, family: str, rule: OverfitRule) -> list[tuple[int, float]]:
    columns = REWARD_TRAINING if family == "reward" else ("train_loss",)
    for column in columns:
        if series.has(column):
            return ema(series.values(column), rule.train_smoothing)
    return []


def _better(higher_is_better: bool):
    return (lambda a, b: a > b) if higher_is_better else (lambda a, b: a < b)


def _worse_by(signal: _Signal, value: float, best: float) -> float:
    """How much worse `value` is than `best`, as a fraction of the best's size (negative: better)."""
    delta = (best - value) if signal.higher_is_better else (value - best)
    return delta / max(abs(best), 1e-12)


def _worse(signal: _Signal, value: float, best: float, rule: OverfitRule, share: float = 1.0) -> bool:
    """Worse than `best` by more than `rise` of it (of `loss_floor` at least, for a loss) and
    by `min_abs_change`; `share` scales the relative bar (the `watch` state's 40%)."""
    delta = (best - value) if signal.higher_is_better else (value - best)
    size = abs(best) if signal.higher_is_better else max(abs(best), rule.loss_floor)
    return delta > share * signal.rule.rise * size and delta >= rule.min_abs_change


def _beyond_noise(signal: _Signal, i: int, best_index: int, share: float = 1.0) -> bool:
    """For a by-period signal: point `i` worse than the best point by more than `NOISE_Z`
    standard errors of their difference (the errors of both means, combined). With either
    error unknown (one evaluation in its period) the point is judged on the other bars alone.
    Other signals: always (their noise is handled by smoothing and the trend)."""
    if signal.errors is None:
        return True
    error_now, error_best = signal.errors[i], signal.errors[best_index]
    if error_now is None or error_best is None:
        return True
    now, best = signal.measured[i][1], signal.measured[best_index][1]
    delta = (best - now) if signal.higher_is_better else (now - best)
    # The best is the lowest of the i + 1 means so far, so a lucky one: the extreme of n
    # normal draws lies about sqrt(2 ln n) standard deviations beyond their mean.
    lucky = math.sqrt(2 * math.log(i + 1)) if i > 0 else 0.0
    return delta > share * (NOISE_Z * math.hypot(error_now, error_best) + lucky * error_best)


def _rising(signal: _Signal, evals: list[tuple[int, float]], i: int) -> bool:
    """The last `trend_window` judged points up to `i` getting worse (least-squares slope the
    wrong way): a flat run after a lucky low is worse than the low but not rising."""
    window = signal.rule.trend_window
    if window < 2:
        return True
    ys = [v for _, v in evals[max(0, i - window + 1) : i + 1]]
    n = len(ys)
    if n < 2:
        return True
    mean_x, mean_y = (n - 1) / 2, sum(ys) / n
    slope = sum((x - mean_x) * (y - mean_y) for x, y in enumerate(ys))
    return -slope > 0 if signal.higher_is_better else slope > 0


def _training_still_improving(
    signal: _Signal, train: list[tuple[int, float]], best: tuple[int, float], now: tuple[int, float]
) -> bool:
    """Training better than at the best evaluation, or the generalisation gap wider there than now."""
    if not train:
        return True  # nothing to compare: the validation signal decides alone
    train_best, train_now = value_at(train, best[0]), value_at(train, now[0])
    if train_best is None or train_now is None:
        return True
    if signal.higher_is_better:
        improving = train_now > train_best
        widened = (train_now - now[1]) > (train_best - best[1])
    else:
        improving = train_now < train_best
        widened = (now[1] - train_now) > (best[1] - train_best)
    return improving or widened


def _train_trend(
    signal: _Signal, train: list[tuple[int, float]], best: tuple[int, float], now: tuple[int, float]
) -> str:
    if not train or best[0] == now[0]:
        return ""
    train_best, train_now = value_at(train, best[0]), value_at(train, now[0])
    if train_best is None or train_now is None:
        return ""
    what = "train reward" if signal.higher_is_better else "train loss"
    improving = train_now > train_best if signal.higher_is_better else train_now < train_best
    direction = "still improving" if improving else "getting worse too"
    return f"{what} (smoothed) {train_best:.4g} at step {best[0]} -> {train_now:.4g} at step {now[0]}: {direction}"


def _best_checkpoint(
    series: MetricSeries,
    signal: _Signal,
    family: str,
    n_epochs: int | None,
    checkpoint_steps: Sequence[int] | None,
) -> tuple[int, float] | None:
    """(step, value) of the best checkpoint candidate, or None when none has a value. By the
    values as measured: smoothing lags, and would name a checkpoint after the real best."""
    if checkpoint_steps:
        candidates = sorted({int(s) for s in checkpoint_steps})
    elif family == "loss" and n_epochs and series.total_steps:
        candidates = [*series.epoch_boundaries(n_epochs), series.total_steps]
    else:
        candidates = [step for step, _ in signal.points]
    last = series.last_step()
    better = _better(signal.higher_is_better)
    best: tuple[int, float] | None = None
    for step in candidates:
        if last is not None and step > last:
            continue
        value = value_at(signal.measured, step)
        if value is not None and (best is None or better(value, best[1])):
            best = (step, value)
    return best


# -- words ----------------------------------------------------------------------------------------


def _signed_percent(signal: _Signal, change: float) -> str:
    """`change` (worse > 0) as the metric moved: "+12%" for a loss that rose, "-12%" for a reward that fell."""
    moved = -change if signal.higher_is_better else change
    return f"{moved:+.0%}"


def _advice(
    state: str,
    signal: _Signal,
    finished: bool,
    best_step: int,
    final_step: int | None,
    best_eval_step: int,
    change: float,
) -> str:
    moved = "fallen" if signal.higher_is_better else "risen"
    checkpoint = f"use the checkpoint at step {best_step}"
    if finished:
        return "the final model is the best" if best_step == final_step else checkpoint
    if state == "overfitting":
        return f"stop now: {signal.label} has {moved} {change:.0%} from its best (step {best_eval_step}); {checkpoint}"
    if state == "watch":
        return f"watch: {signal.label} is {change:.0%} worse than its best (step {best_eval_step})"
    if change <= 0:
        return f"{signal.label} is still improving"
    if change > signal.rule.rise:  # above the rule's rise, but its noise could make that much
        return f"{signal.label} is {change:.0%} worse than its best (step {best_eval_step}), within its noise"
    return f"{signal.label} is near its best (step {best_eval_step})"
