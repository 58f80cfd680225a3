"""The one error type a person may see: what went wrong, where, and what to do.

Every room raises subclasses of `UserFacingError` for problems caused by input (files, settings,
models, packs). The command line prints them as two lines and exits 2; the TUI shows them on a
screen. Anything else is a bug and may carry a traceback.
"""

from __future__ import annotations

from pathlib import Path


class UserFacingError(Exception):
    """A problem with the player's input, explained in words.

    `message` says what is wrong (naming the file), `hint` says what to do about it.
    """

    def __init__(self, message: str, *, hint: str = "", path: Path | str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.path = Path(path) if path is not None else None

    def render(self) -> str:
        """Plain text: the message, then the hint on its own line."""
        return f"{self.message}\n{self.hint}" if self.hint else self.message
