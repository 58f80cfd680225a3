"""The engine's errors a player can act on, each a `UserFacingError`: a message naming the file or
setting, and a hint (the command line prints them, the TUI shows them).

Not here: a model server's failures (remote/errors.py), and what the engine handles itself without
the player: a KV state file it cannot use (kv_state.StateFileError: a warning, and the story is
read again) and a failed decode (native.DecodeError: the KV keeps what was decoded).
"""

from __future__ import annotations

from ..errors import UserFacingError


class ModelFileError(UserFacingError):
    """The model file is missing, unreadable, not GGUF, or cut short."""


class ContextSizeError(UserFacingError):
    """The requested context is larger than the model was trained for."""


class OutOfMemoryError(UserFacingError):
    """The model or its context does not fit in the memory there is (checked before loading, or
    llama.cpp's own allocation failed)."""


class ModelLoadError(UserFacingError):
    """llama.cpp could not load the model or create its context for another reason (an architecture
    it does not know, say). native.py raises it bare; the worker raises it again with the reasons
    llama.cpp logged, or as an OutOfMemoryError when those say memory."""


class GrammarError(UserFacingError):
    """A grammar the sampler cannot work with: GBNF that llama.cpp cannot parse, or a model state
    whose scores no token of the grammar can follow (not numbers: a damaged state)."""


class PromptTooLongError(UserFacingError):
    """The pinned part of a prompt leaves no room in the context for the story and the reply. A
    conversation of any length never raises it: its oldest turns are evicted instead."""


class ChatTemplateError(UserFacingError):
    """A chat template that cannot frame the story: an unknown preset, or a model's own Jinja
    template that the sandbox refused (it reached for Python's internals, ran too long, used too
    much memory) or that gives no place for a system text and a reply."""
