"""Watching jobs: the pure analytics behind the Job screen, the jobs table and `jobs watch`.

- `series`: every numeric metric of one job by step (`MetricSeries`), EMA smoothing, epochs;
- `overfit`: the overfitting rule (`assess` gives a `Verdict`: state, best checkpoint, advice);
- `progress`: elapsed time, ETA and cost so far (`Money`);
- `compare`: several jobs side by side (settings and results) and curves aligned for overlays.

No Textual, rich or SDK here: records in, plain values out. Nothing is imported eagerly, so
importing this package costs nothing; import the module you need.
"""
