"""A job's alert (core's `JobAlert`) reaches the user on whatever screen is open: a toast,
the terminal bell and a desktop notification, as the profile's `notify` setting asks."""

from __future__ import annotations

import dataclasses
import importlib.util
import logging
import sys

import pytest
from tui_support import make_app, settle

from tunedeck.core.service import JobAlert as CoreJobAlert
from tunedeck.tui import alerts
from tunedeck.tui.screens.help import HelpScreen
from tunedeck.tui.screens.launch import LaunchScreen

HOSTILE = "[@click=app.quit]x[/] \x1b]0;pwned\x07"


class FakeDesktop:
    def __init__(self, fail: str | None = None) -> None:
        self.sent: list[tuple[str, str, str]] = []
        self.fail = fail

    async def send(self, title: str, message: str, severity: str) -> None:
        self.sent.append((title, message, severity))
        if self.fail:
            raise alerts.DesktopUnavailable(self.fail)


def bells(app, monkeypatch) -> list[None]:
    rung: list[None] = []
    monkeypatch.setattr(app, "bell", lambda: rung.append(None))
    return rung


def set_notify(app, *channels: str) -> None:
    app.service.profile = dataclasses.replace(app.service.profile, notify=tuple(channels))


def toasts(app) -> list[tuple[str, str]]:
    return [(n.title, n.message) for n in app._notifications]


def alert(kind: str = "failed", job: str = "ftjob-a1", message: str = "it failed: out of memory") -> CoreJobAlert:
    return CoreJobAlert(job, kind, f"{job} failed", message, "error")


async def test_an_alert_toasts_and_rings_by_default_on_any_screen(paths, monkeypatch):
    app = make_app(paths, connect=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        rung = bells(app, monkeypatch)
        app.desktop = FakeDesktop()
        app.service.publish(alert())
        await settle(pilot)
        assert ("ftjob-a1 failed", "it failed: out of memory") in toasts(app)
        assert len(rung) == 1
        assert app.desktop.sent == []  # not asked for: the default is toast and bell

        # Elsewhere: the launch form, then a modal over it.
        await pilot.press("n")
        await settle(pilot)
        assert isinstance(app.screen, LaunchScreen)
        app.service.publish(CoreJobAlert("ftjob-b2", "status", "ftjob-b2 succeeded", "ft:model:b2 is ready"))
        await settle(pilot)
        assert ("ftjob-b2 succeeded", "ft:model:b2 is ready") in toasts(app)
        await pilot.press("f1")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        app.service.publish(CoreJobAlert("ftjob-c3", "overfitting", "ftjob-c3 is overfitting", "stop now: use step 40", "warning"))
        await settle(pilot)
        assert ("ftjob-c3 is overfitting", "stop now: use step 40") in toasts(app)
        assert len(rung) == 3


async def test_alert_text_is_shown_literally(paths, monkeypatch):
    app = make_app(paths, connect=False)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        bells(app, monkeypatch)
        app.service.publish(CoreJobAlert("ftjob-x", "failed", f"job {HOSTILE}", f"error {HOSTILE}", "error"))
        await settle(pilot)
        (note,) = [n for n in app._notifications if n.title.startswith("job ")]
        title, message = note.title, note.message
        assert not note.markup
        assert "\x1b" not in title + message and "␛]0;pwned␇" in message
        assert "[@click=app.quit]x[/]" in message  # literal: the toast takes no markup
        assert app.is_running


async def test_the_profile_picks_the_channels(paths, monkeypatch):
    app = make_app(paths, connect=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        rung = bells(app, monkeypatch)
        app.desktop = FakeDesktop()

        set_notify(app, "toast", "bell", "desktop")
        app.service.publish(alert(job="ftjob-d1"))
        await settle(pilot)
        assert app.desktop.sent == [("ftjob-d1 failed", "it failed: out of memory", "error")]
        assert len(rung) == 1 and any(t[0] == "ftjob-d1 failed" for t in toasts(app))

        set_notify(app, "desktop")
        app.service.publish(alert(job="ftjob-d2"))
        await settle(pilot)
        assert [s[0] for s in app.desktop.sent] == ["ftjob-d1 failed", "ftjob-d2 failed"]
        assert len(rung) == 1 and not any(t[0] == "ftjob-d2 failed" for t in toasts(app))

        set_notify(app)  # nothing at all
        app.service.publish(alert(job="ftjob-d3"))
        await settle(pilot)
        assert len(app.desktop.sent) == 2 and len(rung) == 1
        assert not any(t[0] == "ftjob-d3 failed" for t in toasts(app))


async def test_no_desktop_here_is_said_once_and_the_rest_works(paths, monkeypatch):
    monkeypatch.setattr(alerts, "desktop_unavailable_reason", lambda: "the optional library is not installed")
    app = make_app(paths, connect=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        rung = bells(app, monkeypatch)
        set_notify(app, "toast", "bell", "desktop")
        for n in range(2):
            app.service.publish(alert(job=f"ftjob-e{n}"))
            await settle(pilot)
        assert len(rung) == 2
        said = [t for t in toasts(app) if t[0] == "desktop notifications are off"]
        assert said == [("desktop notifications are off", "the optional library is not installed")]
        assert app.desktop is None and app.desktop_off


async def test_a_failing_desktop_turns_itself_off(paths, monkeypatch):
    app = make_app(paths, connect=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        bells(app, monkeypatch)
        app.desktop = FakeDesktop(fail="Notification failed: no notification service")
        set_notify(app, "desktop")
        for n in range(3):
            app.service.publish(alert(job=f"ftjob-f{n}"))
            await settle(pilot)
        assert len(app.desktop.sent) == 1  # tried once, then quiet for the session
        assert [t for t in toasts(app) if t[0] == "desktop notifications are off"] == [
            ("desktop notifications are off", "Notification failed: no notification service")
        ]


class BrokenDesktop:
    """A sender whose library raises something other than `DesktopUnavailable`."""

    def __init__(self) -> None:
        self.tries = 0

    async def send(self, title: str, message: str, severity: str) -> None:
        self.tries += 1
        raise RuntimeError("authorisation request failed")


async def test_any_desktop_error_turns_it_off_once_without_an_unexpected_error(paths, monkeypatch):
    app = make_app(paths, connect=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        bells(app, monkeypatch)
        app.desktop = broken = BrokenDesktop()
        set_notify(app, "toast", "desktop")
        for n in range(3):
            app.service.publish(alert(job=f"ftjob-g{n}"))
            await settle(pilot)
        assert broken.tries == 1
        assert app.desktop_off == "RuntimeError: authorisation request failed"
        titles = [t[0] for t in toasts(app)]
        assert titles.count("desktop notifications are off") == 1
        assert not any("unexpected error" in t for t in titles)
        assert titles.count("ftjob-g2 failed") == 1  # the toasts go on


def failure_record(message: str, level: int = logging.WARNING, exc: BaseException | None = None) -> logging.LogRecord:
    exc_info = (type(exc), exc, None) if exc is not None else None
    return logging.LogRecord("desktop_notifier.backends.base", level, __file__, 1, message, (), exc_info)


def test_only_failed_sends_count_as_failures():
    handler = alerts._Failures()
    handler.handle(failure_record("Could not access attachment file", exc=OSError("gone")))
    handler.handle(failure_record("Notification sent: x", level=logging.DEBUG))
    assert handler.last is None
    handler.handle(failure_record("Notification failed", exc=FileNotFoundError(2, "No such file or directory")))
    assert handler.last == "Notification failed: [Errno 2] No such file or directory"
    handler.last = None
    handler.handle(failure_record("Notification server not supported"))
    assert handler.last == "Notification server not supported"


@pytest.mark.skipif(
    importlib.util.find_spec(alerts.LIBRARY) is None, reason="the optional notify extra is not installed"
)
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="a bogus D-Bus address only breaks the Linux backend")
async def test_the_library_adapter_reports_a_send_that_failed(monkeypatch, tmp_path):
    # desktop-notifier catches a failed send and logs it at WARNING; the adapter must turn
    # that into DesktopUnavailable, or the app never learns the desktop is quiet.
    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", f"unix:path={tmp_path / 'no-such-bus'}")
    library_log = logging.getLogger(alerts.LIBRARY)
    monkeypatch.setattr(library_log, "handlers", list(library_log.handlers))
    monkeypatch.setattr(library_log, "propagate", library_log.propagate)
    monkeypatch.setattr(library_log, "level", library_log.level)
    sender = alerts.LibraryDesktop()
    with pytest.raises(alerts.DesktopUnavailable, match="Notification failed"):
        await sender.send("ftjob-a1 failed", "it failed", "error")


def test_desktop_detection():
    reason = alerts.desktop_unavailable_reason(environ={}, platform="linux")
    if reason is not None and "optional library" in reason:  # the extra is not installed here
        assert "pip install" in reason
        return
    assert reason is not None and "DBUS_SESSION_BUS_ADDRESS" in reason
    assert alerts.desktop_unavailable_reason(environ={"DBUS_SESSION_BUS_ADDRESS": "unix:path=/x"}, platform="linux") is None
    assert alerts.desktop_unavailable_reason(environ={}, platform="darwin") is None


def test_channels_from_the_profile():
    class Profile:
        notify = ("bell", "desktop", "carrier pigeon")

    assert alerts.channels(Profile()) == {"bell", "desktop"}
    assert alerts.channels(None) == {"toast", "bell"}
