"""Where Simularity keeps its files: platformdirs, overridable per process.

The SIMULARITY_*_DIR variables exist so that tests, and the SSH host (one game process per player),
can give each process its own settings and saves while sharing the model cache.
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

APP_NAME = "simularity"


def _dir(env_var: str, default: str) -> Path:
    override = os.environ.get(env_var)
    return Path(override).expanduser() if override else Path(default)


def config_dir() -> Path:
    """Settings (`settings.toml`) and themes the player adds."""
    return _dir("SIMULARITY_CONFIG_DIR", platformdirs.user_config_dir(APP_NAME))


def data_dir() -> Path:
    """The player's own: saves (`saves/<pack>/<name>.toml`, each with its KV state file beside it,
    `<name>.kv`), exported transcripts and the packs they install."""
    return _dir("SIMULARITY_DATA_DIR", platformdirs.user_data_dir(APP_NAME))


def cache_dir() -> Path:
    """What may be thrown away: the assembled embedded model (joined again from its chunks when
    missing) and the game's log."""
    return _dir("SIMULARITY_CACHE_DIR", platformdirs.user_cache_dir(APP_NAME))


def settings_file() -> Path:
    return config_dir() / "settings.toml"
