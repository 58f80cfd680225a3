"""The model library: a catalogue of GGUF models good for stories, downloads from the Hugging Face
Hub, and the files a player has.

It may use the engine (to read a GGUF header, to ask how much memory there is) and nothing that
plays: no story, pack, screen or settings. The command line (`simularity models`, cli_models.py)
and the Models screen (ui/models_screen.py) are its two faces; `model_setting.py` writes the choice.

- catalogue.py: `models.toml` (bundled) and the player's own, validated like a pack
- store.py: where pulled files live, which are installed (checked), which are partial
- fit.py: which quantizations fit this machine's memory
- hub.py: the Hub through huggingface_hub: where a file is, how big, its bytes (resumable);
  hub_errors.py: what its exceptions mean, in words
- verify.py: the checks a finished file passes before it is offered
- pull.py: a pull from start to end; library.py: the catalogue and the store together
"""

from __future__ import annotations

from .errors import ModelLibraryError, PullStopped

__all__ = ["ModelLibraryError", "PullStopped"]
