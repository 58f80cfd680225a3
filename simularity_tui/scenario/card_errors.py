"""The errors of `simularity import-card` and `import-lorebook`, shared by the modules that read a
card or a book and install its pack (card_read.py, lorebook_read.py, card_install.py, …), so that
none has to import another."""

from __future__ import annotations

from ..errors import UserFacingError


class CardError(UserFacingError):
    """A card that cannot become a pack, or an OUT_DIR the pack cannot go to, said in words."""


class LorebookError(CardError):
    """A lorebook (a world-info file, or a card's character book) that cannot become lore, said in
    words that name the file, the entry and the field. A `CardError`, as a card may carry the book."""
