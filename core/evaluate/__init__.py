"""Evaluating models on a dataset: the prompted base model first, then fine-tuned models and
their checkpoints, scored by the same grader code the local backend trains RFT jobs with.

`records.py` (the shapes), `examples.py` (rows to prompts and references), `graders.py`
(scoring), `stats.py` (intervals and the paired test), `prices.py` (inference prices),
`results.py` (scores per model, paired comparisons, per-example rows and filters),
`analysis.py` (failure notes by a reasoning model, the Markdown report), `store.py` (the runs
in the cache), `runner.py` (asking the models, bounded and resumable), `service.py`
(`Evaluations`, what both front ends call).
"""
