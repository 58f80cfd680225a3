"""The pack format: schema, loading and validation errors. Pure data: no model, no screen."""

from .loader import bundled_packs_dir, discover_packs, load_pack
from .schema import Character, Episode, OpeningLine, Pack

__all__ = ["Character", "Episode", "OpeningLine", "Pack", "bundled_packs_dir", "discover_packs", "load_pack"]
