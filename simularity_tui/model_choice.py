"""Which GGUF file to play on: `--model`, else the settings' `[model] path`, else the embedded one."""

from __future__ import annotations

from pathlib import Path

from . import paths
from .engine.embedded_model import Progress, prepare_embedded_model
from .settings import Settings


def model_path(settings: Settings, override: Path | None, progress: Progress | None = None) -> Path:
    """The path to load, assembling the embedded model into the cache on first use."""
    if override is not None:
        return override.expanduser()
    if settings.model.path:
        return Path(settings.model.path).expanduser()
    return prepare_embedded_model(paths.cache_dir(), progress)
