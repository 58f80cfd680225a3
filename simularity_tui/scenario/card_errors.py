"""The one error of `simularity import-card`, shared by the modules that read a card and install
its pack (card_read.py, card_install.py), so that neither has to import the other."""

from __future__ import annotations

from ..errors import UserFacingError


class CardError(UserFacingError):
    """A card that cannot become a pack, or an OUT_DIR the pack cannot go to, said in words."""
