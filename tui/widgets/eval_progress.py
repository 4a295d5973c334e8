"""Where one evaluation stands: its data and grader, a progress bar with done/total, errors
and the ETA while it runs, and a score per model once answers are graded."""

from __future__ import annotations

from pathlib import PurePath
from typing import TYPE_CHECKING

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import ProgressBar, Static

from tunedeck.core.describe import duration_text, eta_text

from ..safe_text import one_line

if TYPE_CHECKING:  # pragma: no cover
    from tunedeck.core.evaluate.records import EvalProgress, EvalRunInfo
    from tunedeck.core.evaluate.results import EvalSummary


def progress_line(info: EvalRunInfo, progress: EvalProgress | None) -> Text:
    """`12/40 answers · 1 error · 35s · ETA 1m · c cancels` while running; what to do next after."""
    done, total, errors = (progress.done, progress.total, progress.errors) if progress else (info.done, info.total, info.errors)
    text = Text(end="", no_wrap=True, overflow="ellipsis")
    text.append(f"{done}/{total or '?'} answers", style="bold")
    text.append(" · ")
    text.append(f"{errors} error{'s' if errors != 1 else ''}", style="red" if errors else "dim")
    if progress is not None:
        text.append(f" · {duration_text(progress.elapsed_s, compact=True)}")
        text.append(" · ETA ")
        text.append(eta_text(progress.eta_s) if progress.eta_s is not None else "…", style="bold")
        text.append("  c cancels (it resumes)", style="dim")
        return text
    status = info.status
    hints = {
        "finished": "  enter: the results" + (" · F re-runs the failed" if errors else ""),
        "cancelled": "  R resumes it" + (" · F also re-runs the failed" if errors else ""),
        "interrupted": "  R resumes it" + (" · F also re-runs the failed" if errors else ""),
        "created": "  R starts it",
    }
    text.append(f" · {status}", style="bold")
    text.append(hints.get(status, ""), style="dim")
    return text


def scores_line(info: EvalRunInfo, summary: EvalSummary | None, running: bool = False) -> Text:
    """`base 0.12 · fine-tuned 0.85 (pass 82%) · step 10 0.40`: each model's mean score."""
    text = Text(end="", no_wrap=False)
    if summary is None or not summary.scores:
        labels = ", ".join(m.label for m in info.settings.models)
        text.append("models ", style="dim")
        text.append_text(one_line(labels))
        return text
    text.append("score " if info.status == "finished" and not running else "score so far ", style="dim")
    for index, score in enumerate(summary.scores):
        if index:
            text.append(" · ", style="dim")
        text.append_text(one_line(score.key, "bold"))
        text.append(" ")
        text.append(f"{score.mean:.2f}" if score.mean is not None else "-")
        if score.pass_rate is not None:
            text.append(f" ({score.pass_rate:.0%} pass)", style="dim")
        if score.errors:
            text.append(f" {score.errors}✖", style="red")
    return text


def title_line(info: EvalRunInfo) -> Text:
    from tunedeck.core.evaluate.graders import describe_grader

    settings = info.settings
    text = Text(end="", no_wrap=True, overflow="ellipsis")
    text.append_text(one_line(info.id, "bold"))
    text.append(" · ")
    text.append_text(one_line(PurePath(settings.data_path).name))
    text.append(f" · {info.examples} rows" if info.examples else "")
    text.append(" · ")
    text.append_text(one_line(describe_grader(settings.grader)))
    if settings.job_id:
        text.append(" · job ", style="dim")
        text.append_text(one_line(settings.job_id))
    return text


class EvalProgressPanel(Vertical):
    """One run: a title, the bar (while it runs), a line of figures, a line of scores."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.shown_run_id: str | None = None

    def compose(self) -> ComposeResult:
        yield Static(id="eval-progress-title")
        yield ProgressBar(total=None, show_eta=False, id="eval-progress-bar")
        yield Static(id="eval-progress-line")
        yield Static(id="eval-progress-scores")

    @property
    def text(self) -> str:
        """What the panel says, in plain text (tests read it)."""
        parts = [self.query_one(f"#eval-progress-{name}", Static).content for name in ("title", "line", "scores")]
        return "\n".join(p.plain if isinstance(p, Text) else str(p) for p in parts)

    def show(self, info: EvalRunInfo | None, progress: EvalProgress | None, summary: EvalSummary | None) -> None:
        self.display = info is not None
        if info is None:
            self.shown_run_id = None
            return
        self.shown_run_id = info.id
        bar = self.query_one(ProgressBar)
        running = progress is not None
        bar.display = running or info.status != "finished"
        done, total = (progress.done, progress.total) if progress else (info.done, info.total)
        bar.update(total=total or None, progress=done)
        self.query_one("#eval-progress-title", Static).update(title_line(info))
        self.query_one("#eval-progress-line", Static).update(progress_line(info, progress))
        self.query_one("#eval-progress-scores", Static).update(scores_line(info, summary, running))
        self.set_class(running, "-running")
