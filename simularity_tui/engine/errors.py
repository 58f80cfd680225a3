"""Errors the engine raises for things a person can fix."""

from __future__ import annotations

from ..errors import UserFacingError


class ModelFileError(UserFacingError):
    """The model file is missing, unreadable, not GGUF, or cut short."""


class ContextSizeError(UserFacingError):
    """The requested context is larger than the model was trained for."""


class OutOfMemoryError(UserFacingError):
    """The model or its context does not fit in the memory there is."""


class ModelLoadError(UserFacingError):
    """llama.cpp refused the model for another reason (e.g. an architecture it does not know)."""


class GrammarError(UserFacingError):
    """A GBNF grammar that llama.cpp cannot parse."""


class PromptTooLongError(UserFacingError):
    """A prompt that does not fit in the context window."""
