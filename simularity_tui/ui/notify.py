"""Notifications that quote what is not ours: a pack's names, the model's words, a file's path or
problem. Textual reads a notification as markup by default, and a terminal obeys escape sequences;
this is the one way the game notifies, so such text is shown as plain, printable text."""

from __future__ import annotations

from typing import Any

from textual.app import App
from textual.notifications import SeverityLevel
from textual.widget import Widget

from ..untrusted_text import printable


def notify_plain(
    where: App[Any] | Widget,
    message: str,
    *,
    title: str = "",
    severity: SeverityLevel = "information",
    timeout: float | None = None,
) -> None:
    where.notify(printable(message), title=printable(title), severity=severity, timeout=timeout, markup=False)
