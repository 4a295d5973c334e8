"""How a job's alert reaches the user: a toast, the terminal bell, a desktop notification.

The profile's `notify` setting picks the channels (`toast`, `bell`, `desktop`). Desktop
notifications go through the optional `desktop-notifier` library (the `notify` extra),
loaded on the first alert that asks for one; without it, or without a notification
service to talk to (an SSH session has no D-Bus session bus), the other channels still
work and the app says once why the desktop stays quiet.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import sys
from typing import Protocol

from tunedeck.core.config import DEFAULT_NOTIFY as DEFAULT_CHANNELS
from tunedeck.core.config import NOTIFY_KINDS as CHANNELS

LIBRARY = "desktop_notifier"
INSTALL_HINT = "pip install 'tunedeck[notify]' (desktop-notifier)"


class DesktopSender(Protocol):
    async def send(self, title: str, message: str, severity: str) -> None:
        """Show one notification; raise `DesktopUnavailable` when it cannot be shown."""


class DesktopUnavailable(Exception):
    """No desktop notification can be shown here; the message says why."""


def channels(profile: object | None) -> frozenset[str]:
    """The channels the profile asked for (the default when it says nothing)."""
    chosen = getattr(profile, "notify", None)
    if chosen is None:
        chosen = DEFAULT_CHANNELS
    return frozenset(str(c) for c in chosen if c in CHANNELS)


def desktop_unavailable_reason(environ: dict[str, str] | None = None, platform: str | None = None) -> str | None:
    """Why no desktop notification can be shown here (None: one can be tried)."""
    if importlib.util.find_spec(LIBRARY) is None:
        return f"desktop notifications need the optional library: {INSTALL_HINT}"
    env = os.environ if environ is None else environ
    platform = platform or sys.platform
    if platform.startswith(("linux", "freebsd", "openbsd", "netbsd")) and not env.get("DBUS_SESSION_BUS_ADDRESS"):
        # desktop-notifier talks to the notification service over the D-Bus session bus.
        return "no D-Bus session bus here (DBUS_SESSION_BUS_ADDRESS is not set, e.g. over SSH)"
    return None


class _Failures(logging.Handler):
    """desktop-notifier logs a failed send (at WARNING, with the exception) instead of
    raising: keep the last one.

    Only failure records count: the library also warns about sends that got through in
    part (an attachment it could not read), and those must not switch the desktop off.
    """

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.last: str | None = None

    @staticmethod
    def is_failure(record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR:
            return True
        text = record.getMessage().lower()
        # "Notification failed" (any backend), "Notification '…' failed with …" (Windows),
        # "Notification server not supported" (a D-Bus server it cannot talk to).
        return text.startswith("notification") and ("failed" in text or "not supported" in text)

    def emit(self, record: logging.LogRecord) -> None:
        if not self.is_failure(record):
            return
        error = record.exc_info[1] if record.exc_info else None
        self.last = f"{record.getMessage()}: {error}" if error is not None else record.getMessage()


class LibraryDesktop:
    """`DesktopSender` over desktop-notifier (its async API, on the app's event loop)."""

    def __init__(self) -> None:
        from desktop_notifier import DesktopNotifier

        self._failures = _Failures()
        library_log = logging.getLogger(LIBRARY)
        library_log.addHandler(self._failures)
        library_log.propagate = False  # never to stderr, under the full-screen app
        if not library_log.isEnabledFor(logging.WARNING):  # its failures are warnings: keep hearing them
            library_log.setLevel(logging.WARNING)
        self._notifier = DesktopNotifier(app_name="tunedeck")

    async def send(self, title: str, message: str, severity: str) -> None:
        from desktop_notifier import Urgency

        urgency = {"error": Urgency.Critical, "warning": Urgency.Normal}.get(severity, Urgency.Low)
        self._failures.last = None
        await self._notifier.send(title=title, message=message, urgency=urgency)
        if self._failures.last:
            raise DesktopUnavailable(self._failures.last)


def default_desktop() -> DesktopSender:
    """The library's sender, or `DesktopUnavailable` saying why there is none."""
    reason = desktop_unavailable_reason()
    if reason is not None:
        raise DesktopUnavailable(reason)
    try:
        return LibraryDesktop()
    except Exception as exc:  # a broken install or a platform it does not support
        raise DesktopUnavailable(f"desktop-notifier failed to start: {exc}") from exc
