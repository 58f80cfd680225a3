"""`simularity models list | pull | rm | use`: the model library on the command line.

`pull` shows a progress bar on stderr (rich); Ctrl+C stops it, keeping what came, and the next pull
goes on from there. Every failure is a message and a hint (exit status 2), a stop exits 130.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import UserFacingError
from .untrusted_text import printable

if TYPE_CHECKING:  # the library is imported when a `models` command runs, not at every start of the game
    from .models.catalogue import Catalogue
    from .models.fit import Memory
    from .models.library import Row
    from .models.pull import Target

_WORDS = "NAME[:QUANT], or OWNER/NAME FILE.gguf"


def add_models_command(commands: Any) -> None:
    """The `models` command's parser, under `commands` (the CLI's subparsers)."""
    models = commands.add_parser("models", help="the model library: list, pull, rm, use")
    models.add_argument(
        "--settings",
        type=Path,
        metavar="FILE",
        default=argparse.SUPPRESS,
        help="the settings file `use` (and `rm`, for the model in use) write",
    )
    actions = models.add_subparsers(dest="models_command", metavar="ACTION", required=True)
    actions.add_parser("list", help="the catalogue and what is installed: sizes, context, licence, what fits")
    for name, about in (
        ("pull", "download a model from the Hugging Face Hub (NAME alone: its largest quantization that fits)"),
        ("rm", "delete a pulled model (NAME alone: every quantization of it)"),
        ("use", "play on an installed model from the next start (sets [model] path)"),
    ):
        action = actions.add_parser(name, help=about)
        action.add_argument("words", nargs="+", metavar="MODEL", help=_WORDS)


def models_command(args: argparse.Namespace) -> int:
    from .models.catalogue import load_catalogue

    catalogue = load_catalogue()
    settings_file = getattr(args, "settings", None)
    if args.models_command == "list":
        return _list(catalogue, settings_file)
    if len(args.words) > 2:
        raise UserFacingError(f"'{' '.join(args.words)}' names no model", hint=f"Give {_WORDS}.")
    if args.models_command == "pull":
        return _pull(catalogue, args.words)
    if args.models_command == "rm":
        return _rm(catalogue, args.words, settings_file)
    return _use(catalogue, args.words, settings_file)


# -- list ---------------------------------------------------------------------------------------------


def _list(catalogue: Catalogue, settings_file: Path | None) -> int:
    from .model_setting import model_in_use
    from .models import store
    from .models.catalogue import user_catalogue_path
    from .models.fit import how_judged, machine_memory
    from .models.library import rows

    memory = machine_memory()
    in_use = model_in_use(settings_file)
    listed = rows(catalogue, memory)
    own = " + " + str(user_catalogue_path()) if user_catalogue_path().exists() else ""
    print(printable(f"Catalogue: bundled{own}. Files: {store.library_dir()}"))
    print(how_judged(memory))
    title = None
    for row in listed:
        if row.name is not None and row.name != title:
            title = row.name
            about = f"{row.title} · {row.context:,} tokens · {row.licence}"
            print(printable(f"\n{row.name:<18}{about}\n{'':<18}{row.description}"))
        elif row.name is None and title is not None:
            title = None
            print("\nPulled by repository and file:")
        print(printable(_line(row, in_use)))
    print("\n`simularity models pull NAME` fetches one (the largest that fits); `use NAME` plays on it.")
    return 0


def _line(row: Row, in_use: Path | None) -> str:
    size = f"{'' if row.exact else '~'}{row.size / 1e9:.2f} GB"
    state = {"partial": f"partial ({row.kept / 1e6:,.0f} MB kept)"}.get(row.state, row.state)
    if row.path is not None and in_use is not None and _same(row.path, in_use):
        state += ", in use"
    what = row.quant if row.name else f"{row.repo} {row.file}"
    return f"  {what:<10} {size:>9}  {row.verdict:<8} {state}".rstrip()


def _same(a: Path, b: Path) -> bool:
    return a.resolve() == b.resolve()


# -- pull ---------------------------------------------------------------------------------------------


def _pull(catalogue: Catalogue, words: list[str]) -> int:
    from .models import store
    from .models.fit import machine_memory
    from .models.library import pull_target
    from .models.pull import pull, stopped

    memory = machine_memory()
    target = pull_target(catalogue, words, memory)
    existing = store.installed(target.repo, target.file)
    if existing is not None:
        print(printable(f"{target.label} is installed already: {existing.path}"))
        return 0
    _warn_fit(target, catalogue, memory)
    kept = store.partial_bytes(store.target_path(target.repo, target.file))
    if kept:
        print(printable(f"going on with {target.label} from {kept / 1e6:,.1f} MB"), file=sys.stderr)
    bar = _Bar(target.label)
    try:
        done = pull(target, progress=bar.update)
    except KeyboardInterrupt:
        bar.close()  # the bar first, then what was kept
        part = store.partial_bytes(store.target_path(target.repo, target.file))
        halt = stopped(target, part, bar.total)
        print(f"simularity: {printable(halt.message)}\n  {printable(halt.hint)}", file=sys.stderr)
        return 130
    finally:
        bar.close()
    print(printable(f"pulled {target.label}: {done.size / 1e9:.2f} GB, a complete GGUF file, sha256 {done.sha256}"))
    print(printable(f"  {done.path}\nplay on it: simularity models use {' '.join(words)}"))
    return 0


def _warn_fit(target: Target, catalogue: Catalogue, memory: Memory) -> None:
    """A quantization the player chose may not fit: said, not refused (a GPU may hold it)."""
    from .models.library import rows

    for row in rows(catalogue, memory):
        if (row.repo, row.file) == (target.repo, target.file) and row.verdict != "fits":
            print(
                printable(f"simularity: warning: {target.label} ({row.size / 1e9:.1f} GB) is {row.verdict} for "
                          f"the memory free now ({memory.available / 1e9:.1f} GB)"),
                file=sys.stderr,
            )  # fmt: skip


class _Bar:
    """The terminal's progress bar for a pull: the download, then the sha256 check. It appears with
    the first bytes (a pull refused before them prints its message alone)."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.total: int | None = None
        self.tasks: dict[str, Any] = {}  # rich's TaskID by phase
        self.progress: Any = None

    def update(self, phase: str, done: int, total: int | None) -> None:
        if self.progress is None:
            self.progress = _progress()
            self.progress.start()
        if phase not in self.tasks:
            what = f"pulling {self.label}" if phase == "download" else "checking sha256"
            self.tasks[phase] = self.progress.add_task(printable(what), total=total)
        self.total = total if phase == "download" else self.total
        self.progress.update(self.tasks[phase], completed=done, total=total)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


def _progress() -> Any:
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

    return Progress(
        TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
        TimeRemainingColumn(), console=Console(stderr=True),
    )  # fmt: skip


# -- rm and use ---------------------------------------------------------------------------------------


def _rm(catalogue: Catalogue, words: list[str], settings_file: Path | None) -> int:
    from .model_setting import model_in_use, set_model_path
    from .models import store
    from .models.fit import machine_memory
    from .models.library import matching

    found = matching(catalogue, words, machine_memory())
    if any(row.state == "bundled" for row in found):
        raise UserFacingError(f"{words[0]} comes with the game and cannot be removed")
    chosen = [row for row in found if row.state in ("installed", "partial")]
    if not chosen:
        raise UserFacingError(f"{' '.join(words)} is not installed", hint="simularity models list")
    in_use = model_in_use(settings_file)
    for row in chosen:
        assert row.repo is not None
        target = store.target_path(row.repo, row.file)
        freed = store.remove(row.repo, row.file)
        print(printable(f"removed {row.spec} ({freed / 1e9:.2f} GB freed)"))
        if in_use is not None and _same(target, in_use):
            written = set_model_path("", settings_file)
            print(printable(f"it was [model] path in {written}: the game plays on the embedded model now"))
    return 0


def _use(catalogue: Catalogue, words: list[str], settings_file: Path | None) -> int:
    from .model_setting import set_model_path
    from .models.fit import machine_memory
    from .models.library import matching

    memory = machine_memory()
    ready = [row for row in matching(catalogue, words, memory) if row.state in ("installed", "bundled")]
    if not ready:
        raise UserFacingError(f"{' '.join(words)} is not installed", hint=f"simularity models pull {' '.join(words)}")
    fitting = [row for row in ready if row.verdict == "fits"]
    row = max(fitting, key=lambda r: r.size) if fitting else min(ready, key=lambda r: r.size)
    value = "" if row.state == "bundled" else str(row.path)
    written = set_model_path(value, settings_file)
    print(printable(f"[model] path = {value!r} in {written}"))
    print(printable(f"the game plays on {row.spec} from its next start"))
    return 0
