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

Around the card: the world-info book it names (`extensions.world`) when that book sits beside it
(card_world.py), or the one given with --lorebook (lorebook_read.py); a SillyTavern expression
folder (--expressions) and a V3 card's image assets (card_art.py). The card's book and the world
book map to lore in one way (lorebook_map.py).

What was cleaned or cut is told as warnings, once the pack is in place; what came in and what had
no place in a pack go to the `ImportReport` for the command's output.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from ..untrusted_text import printable
from .card_art import CardArt, expression_folder, v3_assets
from .card_build import build_pack
from .card_errors import CardError
from .card_install import check_target, install
from .card_read import read_card
from .card_world import find_world, name_problem, world_name
from .import_report import ImportReport, entries
from .loader import LoadedPack
from .lorebook import Lorebook
from .lorebook_read import read_lorebook

__all__ = ["CardError", "ImportReport", "Warn", "import_card"]

Warn = Callable[[str], None]


def import_card(
    card: Path,
    out_dir: Path,
    *,
    replace: bool = False,
    warn: Warn | None = None,
    lorebook: Path | None = None,
    expressions: Path | None = None,
    report: ImportReport | None = None,
) -> LoadedPack:
    """Make a pack in `out_dir` from `card`; what was cleaned or cut is told to `warn` (default: stderr).

    `lorebook`: a world-info file to import with it (default: the one the card names, when it sits
    beside the card); `expressions`: a SillyTavern expression folder; `report` gets what came in."""
    report = report if report is not None else ImportReport()
    data, avatar, spec = read_card(card)
    check_target(out_dir, replace=replace)
    world = _world(card, data, lorebook, report)
    art = CardArt()
    if expressions is not None:
        expression_folder(expressions, art)
    v3_assets(data.get("assets"), art)
    report.done.extend(art.done)
    files, warnings = build_pack(data, spec, avatar, card=card, world=world, art=art, report=report)
    loaded = install(files, out_dir, card)
    for line in warnings:
        report.warnings.append(line)
        (warn or _print_warning)(f"{card}: {line}")
    return loaded


def _world(card: Path, data: dict[str, object], given: Path | None, report: ImportReport) -> Lorebook | None:
    """The world-info book to import with the card: `given`, or the one the card names beside it."""
    name = world_name(data)
    if given is not None:
        book = read_lorebook(given)
        report.done.append(f"the world info {book.name!r} from {given.name} (--lorebook)")
    elif name is None:
        return None
    elif problem := name_problem(name):
        report.unmapped.append(f"the card names the world info {name[:60]!r}, which {problem}: not looked for")
        return None
    else:
        path, places = find_world(card, name)
        if path is None:
            where = ", ".join(f"{place}/" for place in places)
            report.unmapped.append(
                f"the card names the world info {name!r}: no {name}.json in {where}; give it with --lorebook FILE"
            )
            return None
        book = read_lorebook(path)
        report.done.append(f"the world info {name!r} the card names, from {path}")
    if book.skipped:
        report.done.append(f"left out {entries(book.skipped)} of {book.name!r} with no content (as SillyTavern does)")
    return book


def _print_warning(line: str) -> None:
    print(f"simularity: warning: {printable(line)}", file=sys.stderr)
