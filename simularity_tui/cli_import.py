"""`simularity import-card` and `simularity import-lorebook`: their options and their output.

Both say what came in, what had no place in a pack (and where it is kept), and end with the pack
checked as `simularity check` checks it: an import that leaves a pack the check refuses is a bug,
said loudly, with exit status 1.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from .untrusted_text import printable

if TYPE_CHECKING:  # the import modules are loaded when a command runs: startup stays quick
    from .scenario.import_report import ImportReport

COMMANDS = ("import-card", "import-lorebook")


def add_import_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    card = commands.add_parser("import-card", help="turn a SillyTavern character card into a pack")
    card.add_argument("card", type=Path, metavar="CARD", help="a card: PNG (V1/V2/V3) or JSON")
    card.add_argument("out_dir", type=Path, metavar="OUT_DIR", help="the pack directory to create")
    card.add_argument("--force", action="store_true", help="replace OUT_DIR's scenario.toml if it exists")
    card.add_argument(
        "--lorebook", type=Path, metavar="FILE",
        help="a SillyTavern world-info .json to import as lore too (default: the one the card names, "
        "when <name>.json sits beside the card or in a worlds/ folder there)",
    )  # fmt: skip
    card.add_argument(
        "--expressions", type=Path, metavar="DIR",
        help="a SillyTavern expression folder (joy.png, anger.png, …): the character's expressions",
    )  # fmt: skip
    book = commands.add_parser("import-lorebook", help="add a SillyTavern world-info book to a pack's lore")
    book.add_argument("lorebook", type=Path, metavar="FILE", help="a world-info .json (SillyTavern's worlds/ folder)")
    book.add_argument("pack_dir", type=Path, metavar="PACK_DIR", help="the pack to add it to")


def import_command(args: argparse.Namespace) -> int:
    if args.command == "import-card":
        return _import_card(args)
    return _import_lorebook(args)


def _import_card(args: argparse.Namespace) -> int:
    from .scenario.card_import import import_card
    from .scenario.import_report import ImportReport

    report = ImportReport()
    loaded = import_card(
        args.card, args.out_dir, replace=args.force, lorebook=args.lorebook, expressions=args.expressions, report=report
    )
    _say(f"{args.out_dir}: made the pack {loaded.pack.name!r} from {args.card.name}")
    _tell(report)
    if _checked(args.out_dir) != 0:
        return 1
    print(f"play it: simularity --pack {printable(str(args.out_dir))}")
    return 0


def _import_lorebook(args: argparse.Namespace) -> int:
    from .scenario.import_report import ImportReport
    from .scenario.lorebook_import import import_lorebook

    report = ImportReport()
    import_lorebook(args.lorebook, args.pack_dir, report)
    _say(f"{args.pack_dir}: imported the world info {args.lorebook.name}")
    _tell(report)
    for line in report.warnings:
        print(f"simularity: warning: {printable(f'{args.lorebook}: {line}')}", file=sys.stderr)
    return _checked(args.pack_dir)


def _tell(report: ImportReport) -> None:
    for line in report.done:
        _say(f"  {line}")
    if report.unmapped:
        _say("not mapped (no place for it in a pack; kept where said):")
        for line in report.unmapped:
            _say(f"  - {line}")


def _say(line: str) -> None:
    print(printable(line))


def _checked(pack_dir: Path) -> int:
    """`simularity check PACK_DIR`, said; a refused pack after an import is a bug, said so."""
    from .cli import _check

    status = _check(pack_dir)
    if status != 0:
        print(
            "simularity: the imported pack does not pass `simularity check` (above): please report this as a bug",
            file=sys.stderr,
        )
    return status
