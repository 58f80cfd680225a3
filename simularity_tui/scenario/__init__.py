"""The pack format: schema, loading, validation errors, watching for changes. Pure data: no model,
no screen."""

from .loader import LoadedPack, PackProblems, bundled_packs_dir, discover_packs, load_pack
from .schema import NARRATOR, Character, Episode, OpeningLine, Pack

__all__ = [
    "NARRATOR",
    "Character",
    "Episode",
    "LoadedPack",
    "OpeningLine",
    "Pack",
    "PackProblems",
    "bundled_packs_dir",
    "discover_packs",
    "load_pack",
]
