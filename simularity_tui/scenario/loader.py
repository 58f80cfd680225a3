"""Loading a pack: read its TOML files, check types and keys, then references and assets.

Every problem is collected and reported at once, each as `file:line:col: message`; a pack either
loads whole or not at all. Only `UserFacingError` ever leaves `load_pack`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from ..errors import UserFacingError
from ..toml_source import Problem, TomlProblems, validation_problems
from .assets import asset_references, check_assets
from .references import check_references
from .schema import Pack
from .sources import SCENARIO_FILE, read_sources


@dataclass(frozen=True)
class LoadedPack:
    root: Path
    pack: Pack
    files: tuple[Path, ...] = field(default=())  # the TOML files it was read from

    @property
    def asset_count(self) -> int:
        return sum(1 for _ in asset_references(self.pack))


class PackProblems(TomlProblems):
    """Everything wrong with a pack."""


def bundled_packs_dir() -> Path:
    """The packs that ship with Simularity: `scenarios/` at the top of the source tree.

    A wheel carries them inside the package as `_scenarios/` (see pyproject.toml); a source
    checkout or an editable install reads the directory itself.
    """
    installed = Path(__file__).resolve().parents[1] / "_scenarios"
    return installed if installed.is_dir() else Path(__file__).resolve().parents[2] / "scenarios"


def load_pack(root: Path) -> LoadedPack:
    """Load and validate the pack at `root`, or raise every problem it has."""
    if not root.is_dir():
        raise UserFacingError(f"{root}: no such pack directory", hint="Give the directory that holds scenario.toml.")
    if not (root / SCENARIO_FILE).is_file():
        raise UserFacingError(
            f"{root} is not a pack: it has no {SCENARIO_FILE}",
            hint="A pack is a directory with scenario.toml at its root.",
        )
    sources, problems = read_sources(root)
    hint = f"Fix the pack in {root} and save again; `simularity check {root}` lists every problem."
    if problems:
        raise PackProblems(sorted(problems, key=_order), hint=hint)
    try:
        pack = Pack.model_validate(sources.data)
    except ValidationError as error:
        raise PackProblems(sorted(validation_problems(error, Pack, sources.where), key=_order), hint=hint) from None
    findings = [*check_references(pack), *check_assets(pack, root)]
    if findings:
        raise PackProblems(sorted((sources.problem(*finding) for finding in findings), key=_order), hint=hint)
    return LoadedPack(root=root, pack=pack, files=tuple(sources.texts))


def _order(problem: Problem) -> tuple[str, int, int]:
    return (str(problem.path), problem.line, problem.col)


def discover_packs(*directories: Path) -> tuple[list[LoadedPack], list[UserFacingError]]:
    """Every pack directly inside `directories`; broken packs are returned as errors, not skipped."""
    packs: list[LoadedPack] = []
    problems: list[UserFacingError] = []
    for directory in directories:
        if not directory.is_dir():
            continue
        for candidate in sorted(directory.iterdir()):
            if (candidate / SCENARIO_FILE).is_file():
                try:
                    packs.append(load_pack(candidate))
                except UserFacingError as error:
                    problems.append(error)
    return packs, problems
