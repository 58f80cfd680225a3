"""`simularity import-card`: a SillyTavern character card becomes a pack.

Cards (https://github.com/malfoyslastname/character-card-spec-v2, and the V3 spec) are JSON, either
in a .json file or base64 in a PNG text chunk: `chara` for V1/V2, `ccv3` for V3 (which wins when
both are there). Cards come from strangers, so every step is careful, and every problem is a
`CardError` (card_errors.py) that names the file. The import goes in three steps, a module each:

1. read (card_read.py): only a regular file, only up to a cap; PNG chunks (png_chunks.py), base64,
   JSON, its nesting and the fields' types are checked; out come the card's data, avatar and spec.
2. build (card_build.py): the card's character, greetings and lore become the pack's TOML tables,
   laid out in files within the loader's limits; text loses its control characters, what does not
   fit is cut, and card data the pack has no place for is kept under `extensions`.
3. install (card_install.py): OUT_DIR is checked first; the pack is written and validated in a
   directory of its own, then moved into OUT_DIR, never through a symlink: a refused import leaves
   OUT_DIR as it was.

What was cleaned or cut is told as warnings, once the pack is in place.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from ..untrusted_text import printable
from .card_build import build_pack
from .card_errors import CardError
from .card_install import check_target, install
from .card_read import read_card
from .loader import LoadedPack

__all__ = ["CardError", "Warn", "import_card"]

Warn = Callable[[str], None]


def import_card(card: Path, out_dir: Path, *, replace: bool = False, warn: Warn | None = None) -> LoadedPack:
    """Make a pack in `out_dir` from `card`; what was cleaned or cut is told to `warn` (default: stderr)."""
    data, avatar, spec = read_card(card)
    check_target(out_dir, replace=replace)
    files, warnings = build_pack(data, spec, avatar, card=card)
    loaded = install(files, out_dir, card)
    for line in warnings:
        (warn or _print_warning)(f"{card}: {line}")
    return loaded


def _print_warning(line: str) -> None:
    print(f"simularity: warning: {printable(line)}", file=sys.stderr)
