"""Launching a job: what the user asked for (`request.py`), what it will cost and whether the
files pass (`preflight.py`), uploading them once (`uploads.py`), graders (`graders.py`) and
saved forms (`presets.py`). No Textual here: the launch form and `tunedeck jobs create` are
two front ends of the same code."""
