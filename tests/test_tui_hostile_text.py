"""Hostile names and texts walked through every screen, toast and status line of the app,
checked where it matters: in what the app would write to the terminal.

The headless driver writes nothing, so the app here renders each screen update to terminal
bytes the way `App._display` does for a real terminal, and keeps them. A control sequence
that reaches those bytes from a file name, a path, dataset text or an API field fails the
test, whichever call site let it through; so does markup that was interpreted (the literal
text must show) and any toast that parses markup.
"""

from __future__ import annotations

import asyncio
import json
import re
import time

import pytest
from conftest import generate_dataset
from textual.notifications import Notification, Notify

from tunedeck.core.bootstrap import open_service
from tunedeck.core.paths import AppPaths
from tunedeck.core.text import strip_controls
from tunedeck.tui.app import TunedeckApp
from tunedeck.tui.messages import (
    CancelFailed,
    ConnectionUpdated,
    JobCancelled,
    JobLaunched,
    JobNotFound,
    LaunchFailed,
    ModelsLoaded,
    NoticePosted,
    PollFailed,
    ServiceFailed,
)
from tunedeck.tui.screens.confirm import ConfirmScreen
from tunedeck.tui.screens.dataset import DatasetScreen
from tunedeck.tui.screens.dataset_prompts import OpenDatasetScreen
from tunedeck.tui.screens.job import JobScreen
from tunedeck.tui.screens.launch import LaunchScreen
from tunedeck.tui.textshot import screen_text

# A file name cannot hold "/", so the closing tag of the markup comes from the folder's name:
# the path reads ".../[@click=app.quit]x[/]osc52...". The name itself holds an unclosed action
# (live to the end of the text if parsed) and an unclosed tag (a parse error if parsed).
FOLDER = "[@click=app.quit]x["
NAME = "]osc52\x1b]52;c;aGk=\x07 osc0\x1b]0;pwned\x07 csi\x1b[6n c1\x9b2J bidi\u202eevil zw\u200bsp [@click=app.quit]x [bold"
TEXT = "[@click=app.quit]x[/] [bold " + NAME.lstrip("]") + " \u2066iso\u2069 \ufeffbom \u200ftail"
"""What an API or a dataset may send: the same, and the closing tag too."""

RAW = ("\x1b", "\x07", "\x9b", "\u202e", "\u200b", "\u2066", "\u2069", "\ufeff", "\u200f")
"""Characters of the hostile input that must never reach the terminal as they are."""
SHOWN = ("␛]52;c;aGk=␇", "␛]0;pwned␇", "␛[6n", "\\x9b2J", "\\u202eevil", "zw\\u200bsp")
"""How they show instead."""

# What Textual itself writes: colours and styles (SGR) and cursor moves (CUP) between the
# characters of a frame, and the mouse pointer's shape (OSC 22). Anything else starting with
# ESC came from the hostile input.
TEXTUAL_SEQUENCE = re.compile(r"\x1b\[[0-9;:]*m|\x1b\[[0-9]+;[0-9]+H|\x1b\]22;[a-z-]*\x07")


class RecordingApp(TunedeckApp):
    """The app, keeping the terminal bytes of every screen update (and any direct write)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.frames: list[str] = []
        self.notes: list[Notification] = []
        """Every notification, also those whose toast has timed out since."""

    def _display(self, screen, renderable) -> None:
        # `App._display` renders an update with `render_segments(console)` for a terminal
        # driver and skips it for the headless one: the same call, kept here.
        if renderable is not None and hasattr(renderable, "render_segments"):
            self.frames.append(renderable.render_segments(self.console))
        super()._display(screen, renderable)

    # Textual calls the handlers of every class in the MRO: these two add to the app's own.
    def _on_notify(self, event: Notify) -> None:
        self.notes.append(event.notification)

    def on_mount(self) -> None:
        driver = self._driver
        if driver is not None:  # copy_to_clipboard, bell, cursor shape: written directly
            driver.write = self.frames.append


@pytest.fixture
def paths(tmp_path, monkeypatch) -> AppPaths:
    monkeypatch.chdir(tmp_path)
    return AppPaths(config_dir=tmp_path / "config", cache_dir=tmp_path / "cache", data_dir=tmp_path / "data")


def hostile_job(status: str = "running") -> dict:
    return {
        "id": "ftjob-" + TEXT,
        "object": "fine_tuning.job",
        "model": "model " + TEXT,
        "status": status,
        "created_at": int(time.time()) - 60,
        "method": {"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 2, TEXT: TEXT}}},
        "fine_tuned_model": "ft:" + TEXT,
        "error": {"code": "code " + TEXT, "message": "message " + TEXT},
        "suffix": TEXT,
    }


async def settle(pilot) -> None:
    await asyncio.wait_for(pilot.app.workers.wait_for_complete(), 60)
    await pilot.pause()
    await pilot.pause()


async def finish_workers(pilot) -> None:
    """`settle()` for workers meant to fail (waiting on a failed worker raises its error)."""
    await asyncio.gather(*(worker.wait() for worker in list(pilot.app.workers)), return_exceptions=True)
    await pilot.pause()
    await pilot.pause()


def check_screen(app: TunedeckApp, *literal: str) -> str:
    """The screen as text: no raw hostile character, and each of `literal` shown as it is."""
    shown = screen_text(app)
    for char in RAW:
        assert char not in shown, (char, type(app.screen).__name__)
    for text in literal:
        assert text in shown, (text, type(app.screen).__name__, shown)
    return shown


def check_terminal(app: RecordingApp) -> None:
    written = "".join(app.frames)
    assert app.frames and "osc52" in written  # the walk rendered the names at all
    written.encode("utf-8")  # a lone surrogate would stop the terminal's writer
    leftover = TEXTUAL_SEQUENCE.sub("", written)
    for char in RAW:
        where = leftover.find(char)
        assert where < 0, (char, leftover[max(0, where - 60) : where + 60])
    assert not re.search("[\x00-\x08\x0b-\x1f\x7f-\x9f]", leftover.replace("\r", "").replace("\n", ""))


def check_toasts(app: RecordingApp) -> list[str]:
    """Every notification so far: literal (markup off), with control characters made visible."""
    messages = []
    for note in app.notes:
        assert not note.markup, note.message
        for part in (note.message, note.title):
            assert part == strip_controls(part), part
        messages.append(f"{note.title}: {note.message}")
    return messages


async def test_hostile_names_and_texts_never_reach_the_terminal(paths, tmp_path, monkeypatch):
    folder = tmp_path / FOLDER
    folder.mkdir()
    data = generate_dataset("sft", 30, folder / f"{NAME}.jsonl", "--bad-every", "10")
    with data.open("a", encoding="utf-8") as handle:  # dataset text: contents, an image, a role, a key
        image = {"type": "image_url", "image_url": {"url": TEXT, "detail": TEXT}}
        turns = [{"role": "user", "content": [{"type": "text", "text": TEXT}, image]}, {"role": TEXT, "content": TEXT}]
        handle.write(json.dumps({"messages": turns, TEXT: TEXT}, ensure_ascii=False) + "\n")
    undecodable = folder / "bytes\udcff\udcfe.jsonl"  # a name that is not UTF-8 at all
    undecodable.write_bytes(data.read_bytes()[:2000].rsplit(b"\n", 1)[0] + b"\n")
    full_path = str(data)
    assert "[@click=app.quit]x[/]osc52" in full_path

    service = await open_service(paths=paths)
    job = hostile_job()
    await service.cache.upsert_jobs("local", [job])
    events = [{"id": "ftevent-1", "created_at": int(time.time()), "level": TEXT, "message": "event " + TEXT}]
    await service.cache.add_events("local", job["id"], events)
    await service.close()

    app = RecordingApp(lambda: open_service(paths=paths), poll=False, connect=False)
    async with app.run_test(size=(220, 50)) as pilot:
        await settle(pilot)

        # -- the jobs list, one job, its cancel question ------------------------------------
        check_screen(app, "ftjob-[@click=app.quit]x[/] [bold osc52␛]52;c;aGk=␇")
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, JobScreen)
        check_screen(
            app, "job ftjob-[@click=app.quit]x[/]", "event [@click=app.quit]x[/]", "model [@click=app.quit]x[/]", *SHOWN
        )
        app.post_message(JobNotFound(job["id"], TEXT))
        await pilot.press("c")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen)
        check_screen(app, "Cancel job ftjob-[@click=app.quit]x[/]")
        await pilot.press("n")
        await pilot.pause()

        # -- what the service reports: the header, toasts, the jobs screen's notice ----------
        from tunedeck.core.records import Job

        parsed = Job.from_api(job)
        for message in (
            PollFailed(TEXT, "server"),
            PollFailed(TEXT, "training_not_available"),
            CancelFailed(job["id"], TEXT),
            JobCancelled(parsed),
            JobLaunched(parsed),
            LaunchFailed(TEXT),
            NoticePosted(TEXT, topic=TEXT),
        ):
            app.post_message(message)
            await pilot.pause()

        def a_bug() -> None:
            raise RuntimeError(f"{full_path}: {TEXT}")

        app.run_worker(a_bug, thread=True, exit_on_error=False, description=TEXT)
        await finish_workers(pilot)
        await pilot.press("escape")
        await settle(pilot)
        check_screen(app, "[@click=app.quit]x[/] [bold osc52␛]52")  # the notice the backend sent

        # -- the dataset screen: header, status line, list, views, issues --------------------
        screen = DatasetScreen(data)
        app.push_screen(screen)
        await settle(pilot)
        assert screen.browser.report is not None and screen.browser.report.error_count
        name_shown = strip_controls(data.name)
        check_screen(app, f"dataset {name_shown}"[:50], *SHOWN)  # the header, the status line
        assert screen.browser.status_line.startswith(data.name)  # plain; shown through the funnel
        # the last line (the hostile one), raw, stats, then its last issue (a key named TEXT) marked
        for keys in (["G"], ["r"], ["t"], ["escape", "i", "G", "enter"]):
            await pilot.press(*keys)
            await settle(pilot)
            check_screen(app)
        assert screen.browser.chosen_issue is not None and screen.browser.chosen_issue.field == TEXT
        check_screen(app, " ✖ [@click=app.quit]x[/] [bold osc52␛]52", "(detail [@click=app.quit]x[/]")

        # -- its file actions and their toasts -----------------------------------------------
        assert app.screen is screen
        await pilot.press("w", "enter")  # a copy without the invalid lines, where it offers
        await settle(pilot)
        clean_copy = data.with_name(data.stem + ".clean.jsonl")
        assert clean_copy.is_file()
        # The raw file ("split the clean lines" unticked): the bad lines stop the split, its error names the file
        await pilot.press("s", "tab", "tab", "tab", "space", "shift+tab", "enter")
        await settle(pilot)
        screen.open_file(clean_copy)
        await settle(pilot)
        await pilot.press("s", "enter")
        await settle(pilot)
        assert "split" in screen.written
        toasts = check_toasts(app)
        assert any("writing a copy of " + name_shown in t for t in toasts), toasts
        assert any("split failed" in t for t in toasts) and any(t.startswith("split: ") for t in toasts), toasts
        check_screen(app)

        # -- the launch form, prefilled with the split's paths --------------------------------
        await pilot.press("l")
        await settle(pilot)
        form = app.screen
        assert isinstance(form, LaunchScreen)
        train, valid = screen.written["split"]
        field = form.query_one("#training-path")
        assert field.value == strip_controls(str(train)) and field.path_text == str(train)
        check_screen(app, strip_controls(str(train))[-40:])
        app.post_message(ModelsLoaded(["base " + TEXT]))
        await settle(pilot)
        check_screen(app, "base [@click=app.quit]x[/]")
        valid.unlink()  # its error quotes the path
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert "no such file" in form.error_text
        check_screen(app, "no such file")
        await pilot.press("escape")
        await settle(pilot)

        # -- opening files: recent ones, a suggestion, the folder tree, a missing file --------
        await pilot.press("o")
        await settle(pilot)
        prompt = app.screen
        assert isinstance(prompt, OpenDatasetScreen) and str(clean_copy) in prompt.recent
        check_screen(app, strip_controls(str(clean_copy))[-40:])
        await pilot.press("ctrl+o")  # the tree's loader lives as long as the tree: no settle() here
        for _ in range(50):
            await pilot.pause(0.02)
            if "bytes\\udcff" in screen_text(app):
                break
        check_screen(app, FOLDER, "bytes\\udcff\\udcfe.jsonl")
        await pilot.press("ctrl+o", "/")  # back to the field: the newest recent path is suggested
        field = prompt.query_one("#open-path")
        for _ in range(50):
            await pilot.pause(0.02)
            if field._suggestion:
                break
        assert field._suggestion == strip_controls(str(clean_copy))
        check_screen(app)
        await pilot.press("right", "enter")  # accept the suggestion: the real path opens
        await settle(pilot)
        assert app.screen is screen and screen.browser.path == clean_copy
        screen.open_file(undecodable)
        await settle(pilot)
        check_screen(app, "bytes\\udcff\\udcfe.jsonl")
        assert not screen.open_file(folder / NAME)  # missing: a toast names it
        from tunedeck.core import datasets

        def unreadable(path, **_):
            raise datasets.DatasetIOError(f"{path}: cannot read ({TEXT})")

        monkeypatch.setattr(datasets, "validate_file", unreadable)
        screen.open_file(data)
        await finish_workers(pilot)
        toasts = check_toasts(app)
        assert any(t.startswith("validation failed: ") and "osc52␛]52" in t for t in toasts), toasts
        assert any(t.startswith("cannot open: ") and "osc52␛]52" in t for t in toasts), toasts
        check_screen(app)

        # -- a built-in profile's question (its destination comes from the environment) ------
        app.post_message(ConnectionUpdated("consent", f"Send the key to {TEXT}?"))
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen)
        check_screen(app, "Send the key to [@click=app.quit]x[/]")
        await pilot.press("n")
        await pilot.pause()

        # -- the connection failing, a config that cannot be read: the header and toasts ------
        app.post_message(ConnectionUpdated("error", TEXT))
        await pilot.pause()
        check_screen(app, "✖ error: [@click=app.quit]x[/]")
        app.post_message(ServiceFailed(f"{full_path}: not valid TOML"))
        await pilot.pause()
        check_screen(app, "✖ error: /")
        await pilot.press("question_mark")
        await pilot.pause()
        check_screen(app)
        await pilot.press("escape")
        await pilot.pause()

        toasts = check_toasts(app)
        for shown in (
            "unexpected error: [@click=app.quit]x[/]",
            "cannot cancel ftjob-",
            "cannot open tunedeck: ",
            "connection: ",
        ):
            assert any(shown in t for t in toasts), (shown, toasts)
        assert app.is_running  # no markup ran: [@click=app.quit] stayed text
    check_terminal(app)
    assert app.return_code in (None, 0)
