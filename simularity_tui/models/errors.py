"""What goes wrong with the model library, said to the player (see errors.py at the package root)."""

from __future__ import annotations

from ..errors import UserFacingError


class ModelLibraryError(UserFacingError):
    """A model that cannot be found, pulled, checked, removed or used: what, and what to do."""


class PullStopped(UserFacingError):
    """A pull stopped on purpose (Ctrl+C, Cancel): what was kept, and how to go on."""
