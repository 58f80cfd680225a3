"""Finding and loading packs: a pack is a directory with `scenario.toml` at its root."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import UserFacingError
from ..toml_source import load_model
from .schema import Pack

SCENARIO_FILE = "scenario.toml"


@dataclass(frozen=True)
class LoadedPack:
    root: Path
    pack: Pack


def bundled_packs_dir() -> Path:
    """The packs that ship with Simularity: `scenarios/` at the top of the source tree.

    A wheel carries them inside the package as `_scenarios/` (see pyproject.toml); a source
    checkout or an editable install reads the directory itself.
    """
    installed = Path(__file__).resolve().parents[1] / "_scenarios"
    return installed if installed.is_dir() else Path(__file__).resolve().parents[2] / "scenarios"


def load_pack(root: Path) -> LoadedPack:
    """Load and validate the pack at `root`; raises `UserFacingError` naming file and line."""
    manifest = root / SCENARIO_FILE
    if not root.is_dir():
        raise UserFacingError(f"{root}: no such pack directory", hint="Give the directory that holds scenario.toml.")
    if not manifest.is_file():
        raise UserFacingError(
            f"{root} is not a pack: it has no {SCENARIO_FILE}",
            hint="A pack is a directory with scenario.toml at its root.",
        )
    pack = load_model(manifest, Pack, hint=f"Fix {manifest} and save it again.")
    assert isinstance(pack, Pack)
    return LoadedPack(root=root, pack=pack)


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
