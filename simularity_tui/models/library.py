"""The catalogue and the files together: what `models list` and the Models screen show, and which
file a name (`NAME[:QUANT]`, `OWNER/NAME FILE.gguf`) means to `pull`, `use` and `rm`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from .. import paths
from ..engine.embedded_model import embedded_model_path
from . import store
from .catalogue import Catalogue, Entry, find_entry, find_quant, split_spec
from .errors import ModelLibraryError
from .fit import Memory, Verdict, judge, largest_fitting
from .pull import Target

State = Literal["bundled", "installed", "partial", ""]


@dataclass(frozen=True)
class Row:
    """One quantization of a catalogue entry, or an installed file the catalogue does not name."""

    name: str | None  # the catalogue's name; None for a file pulled as OWNER/NAME FILE
    quant: str | None
    title: str
    repo: str | None
    file: str
    size: int
    exact: bool  # `size` is the file's own, not the size the repository lists
    context: int | None
    licence: str
    description: str
    state: State
    kept: int  # bytes of a stopped pull
    verdict: Verdict
    path: Path | None  # where the file is, once installed

    @property
    def spec(self) -> str:
        return " ".join(self.words)

    @property
    def words(self) -> list[str]:
        """How `simularity models pull` (and use, rm) names it."""
        return [f"{self.name}:{self.quant}"] if self.name else [self.repo or "", self.file]


def rows(catalogue: Catalogue, memory: Memory) -> list[Row]:
    found: list[Row] = []
    named: set[tuple[str, str]] = set()
    for name, entry in catalogue.models.items():
        for quant, spec in entry.quants.items():
            found.append(_row(name, entry, quant, memory))
            named.add((entry.repo or "", spec.file))
    for item in store.installed_files():
        if (item.repo, item.file) not in named:
            found.append(_other(item, memory))
            named.add((item.repo, item.file))
    for repo, file in store.stopped_pulls():
        if (repo, file) not in named:
            found.append(_stopped(repo, file, memory))
    return found


def _row(name: str, entry: Entry, quant: str, memory: Memory) -> Row:
    spec = entry.quants[quant]
    state: State = "bundled" if entry.embedded else ""
    path: Path | None = embedded_model_path(paths.cache_dir()) if entry.embedded else None
    size, exact, kept = spec.approx_bytes, spec.size is not None, 0
    if entry.repo is not None:
        item = store.installed(entry.repo, spec.file)
        kept = store.partial_bytes(store.target_path(entry.repo, spec.file))
        if item is not None:
            state, path, size, exact = "installed", item.path, item.size, True
        elif kept:
            state = "partial"
    return Row(
        name, quant, entry.title, entry.repo, spec.file, size, exact, entry.context, entry.licence,
        entry.description, state, kept, judge(size, memory), path,
    )  # fmt: skip


def _other(item: store.InstalledFile, memory: Memory) -> Row:
    return Row(
        None, None, item.file.removesuffix(".gguf"), item.repo, item.file, item.size, True, None, "see the model card",
        "Pulled by its repository and file name.", "installed", 0, judge(item.size, memory), item.path,
    )  # fmt: skip


def _stopped(repo: str, file: str, memory: Memory) -> Row:
    kept = store.partial_bytes(store.target_path(repo, file))
    return Row(
        None, None, file.removesuffix(".gguf"), repo, file, kept, False, None, "see the model card",
        "A pull that stopped: pull it again to go on, or delete it.", "partial", kept, judge(kept, memory), None,
    )  # fmt: skip


def pull_target(catalogue: Catalogue, words: Sequence[str], memory: Memory) -> Target:
    """What `pull WORDS` fetches: NAME (the largest quantization that fits), NAME:QUANT, or
    OWNER/NAME FILE.gguf (the catalogue's checks too, when it names that file)."""
    repo_file = _repo_file(words)
    if repo_file is not None:
        return _file_target(catalogue, *repo_file)
    name, quant = split_spec(words[0])
    entry = find_entry(catalogue, name)
    if entry.embedded:
        raise ModelLibraryError(
            f"{name} comes with the game: there is nothing to pull", hint=f"simularity models use {name}"
        )
    if quant is None:
        quant = largest_fitting({q: s.approx_bytes for q, s in entry.quants.items()}, memory)
        if quant is None:
            smallest = min(entry.quants, key=lambda q: entry.quants[q].approx_bytes)
            raise ModelLibraryError(
                f"None of {name}'s quantizations fits in the memory this machine has free "
                f"({memory.available / 1e9:.1f} GB)",
                hint=f"Choose a smaller model, or pull one anyway: simularity models pull {name}:{smallest}",
            )
    quant = find_quant(entry, name, quant)
    spec = entry.quants[quant]
    assert entry.repo is not None
    return Target(entry.repo, spec.file, f"{name}:{quant}", spec.size, spec.sha256)


def _file_target(catalogue: Catalogue, repo: str, file: str) -> Target:
    store.check_repo_file(repo, file)
    for name, entry in catalogue.models.items():
        for quant, spec in entry.quants.items():
            if entry.repo == repo and spec.file == file:
                return Target(repo, file, f"{name}:{quant}", spec.size, spec.sha256)
    return Target(repo, file, f"{repo} {file}")


def _repo_file(words: Sequence[str]) -> tuple[str, str] | None:
    """OWNER/NAME FILE, or OWNER/NAME/FILE in one word; None for a catalogue name."""
    if len(words) == 2:
        return words[0].strip("/"), words[1]
    if len(words) != 1:
        raise ModelLibraryError(
            f"'{' '.join(words)}' names no model", hint="Give NAME[:QUANT], or OWNER/NAME FILE.gguf"
        )
    if words[0].count("/") >= 2 and words[0].endswith(".gguf"):
        owner, name, file = words[0].split("/", 2)
        return f"{owner}/{name}", file
    return None


def matching(catalogue: Catalogue, words: Sequence[str], memory: Memory) -> list[Row]:
    """The rows `use WORDS` and `rm WORDS` mean: one quantization, every one of NAME, or one file."""
    repo_file = _repo_file(words)
    every = rows(catalogue, memory)
    if repo_file is not None:
        chosen = [row for row in every if (row.repo, row.file) == repo_file]
        if not chosen:
            raise ModelLibraryError(f"{' '.join(words)} is not installed", hint="simularity models list")
        return chosen[:1]
    name, quant = split_spec(words[0])
    entry = find_entry(catalogue, name)
    if quant is not None:
        quant = find_quant(entry, name, quant)
    return [row for row in every if row.name == name and (quant is None or row.quant == quant)]
