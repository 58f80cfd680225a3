"""Saves: the whole story tree as human-readable TOML, written atomically after every change.

A save is `saves/<pack id>/<name>.toml` in the data directory; beside it, `<name>.kv` holds the
KV cache so that resuming reads only what is new. Each write goes to a temporary file that is
fsynced and renamed over the save, so a kill at any moment leaves the previous save or the new one,
never half of one: at most the line being written is lost.

Each line keeps its exact tokens (as a line of numbers) with the fingerprint of the model they
belong to; loaded on another model, the lines are tokenized again from their text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import tomli_w
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .. import paths
from ..atomic import write_atomic
from ..errors import UserFacingError
from ..scenario.loader import LoadedPack
from ..scenario.schema import Pack
from ..toml_source import TomlProblems, in_file, parse_toml, validation_problems
from ..untrusted_text import printable
from .stage import StageCommand
from .tree import Line, Node, StoryTree

SAVE_FORMAT = 1
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.-]{0,63}$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SavedCommand(_Strict):
    kind: str
    target: str
    value: str | None = None


class SavedNode(_Strict):
    id: Annotated[int, Field(ge=1)]
    parent: Annotated[int, Field(ge=0)]
    chosen: Annotated[int, Field(ge=0)] = 0
    speaker: str
    kind: str
    clock: Annotated[str, Field(pattern=r"^\d\d:\d\d$")]
    text: str
    tokens: str = ""
    seed: int | None = None
    notes: list[str] = []
    directions: list[SavedCommand] = []
    summary: str | None = None
    summary_covers: int | None = None


class SavedAchievement(_Strict):
    id: str
    at_line: int


class SaveFile(_Strict):
    format: Annotated[int, Field(ge=1)]
    pack: str
    pack_version: str = ""
    episode: str
    model: str = ""
    created: datetime
    updated: datetime
    head: Annotated[int, Field(ge=0)]
    root_chosen: Annotated[int, Field(ge=0)] = 0  # which variant of the first line is in play
    silent: list[str] = []
    player_name: str | None = None
    achievements: list[SavedAchievement] = []
    nodes: list[SavedNode] = []


@dataclass
class LoadedSave:
    tree: StoryTree
    episode: str
    unlocked: dict[str, int]
    silent: set[str]
    player_name: str | None
    created: datetime
    stale_tokens: bool  # saved with another model: the lines must be tokenized again
    warnings: list[str] = field(default_factory=list)


def saves_dir(pack_id: str) -> Path:
    return paths.data_dir() / "saves" / pack_id


def save_path(pack_id: str, name: str) -> Path:
    if not _NAME.match(name):
        raise UserFacingError(
            f"'{name}' cannot name a save", hint="Use letters, digits, spaces, '.', '-' and '_' (up to 64)."
        )
    return saves_dir(pack_id) / f"{name}.toml"


def kv_path(save: Path) -> Path:
    return save.with_suffix(".kv")


def list_saves(pack_id: str) -> list[Path]:
    directory = saves_dir(pack_id)
    return sorted(directory.glob("*.toml"), key=lambda p: p.stat().st_mtime, reverse=True) if directory.is_dir() else []


def delete_save(path: Path) -> None:
    path.unlink(missing_ok=True)
    kv_path(path).unlink(missing_ok=True)


# -- writing --------------------------------------------------------------------------------------


def write_save(path: Path, *, game: Any, created: datetime) -> None:
    """Write `game` (a story.game.Game) to `path`, atomically."""
    nodes = []
    for node in sorted(game.tree.nodes.values(), key=lambda n: n.id):
        if node.line is None:
            continue
        line = node.line
        entry: dict[str, Any] = {
            "id": node.id,
            "parent": node.parent,
            "chosen": node.chosen,
            "speaker": line.speaker,
            "kind": line.kind,
            "clock": line.clock,
            "text": line.text,
            "tokens": " ".join(map(str, line.tokens)),
        }
        if line.seed is not None:
            entry["seed"] = line.seed
        if line.notes:
            entry["notes"] = list(line.notes)
        if line.directions:
            entry["directions"] = [command.to_table() for command in line.directions]
        if node.summary is not None:
            entry["summary_covers"], entry["summary"] = node.summary
        nodes.append(entry)
    document = {
        "format": SAVE_FORMAT,
        "pack": game.pack.id,
        "pack_version": game.pack.version,
        "episode": game.episode,
        "model": game.session.info.identity,
        "created": created,
        "updated": datetime.now(UTC).replace(microsecond=0),
        "head": game.tree.head,
        "root_chosen": game.tree.nodes[0].chosen,
        "silent": sorted(game.silent),
        **({"player_name": game.player_name} if game.player_name else {}),
        "achievements": [{"id": aid, "at_line": at} for aid, at in game.unlocked.items()],
        "nodes": nodes,
    }
    write_atomic(path, "# A Simularity save. Each line's tokens are what the model read.\n" + tomli_w.dumps(document))


# -- reading --------------------------------------------------------------------------------------


def read_save(path: Path, loaded: LoadedPack, *, model: str) -> LoadedSave:
    """Read a save for the pack `loaded`; problems with the pack or model become warnings."""
    data, source = parse_toml(path)
    if isinstance(data.get("format"), int) and data["format"] > SAVE_FORMAT:
        raise UserFacingError(
            f"{path} was written by a newer Simularity (save format {data['format']}; this one reads {SAVE_FORMAT})",
            hint="Update Simularity to load it.",
            path=path,
        )
    try:
        save = SaveFile.model_validate(data)
    except ValidationError as error:
        raise TomlProblems(
            validation_problems(error, SaveFile, in_file(path, source)),
            hint="The save is damaged; earlier saves of this game may still load.",
        ) from None
    pack = loaded.pack
    warnings: list[str] = []
    if save.pack != pack.id:
        raise UserFacingError(f"{path} is a save of the pack '{save.pack}', not '{pack.id}'", path=path)
    if save.episode not in pack.episodes:
        raise UserFacingError(
            f"{path}: its episode '{save.episode}' is no longer in the pack",
            hint=f"Episodes now: {', '.join(pack.episodes)}",
            path=path,
        )
    if save.pack_version and save.pack_version != pack.version:
        warnings.append(f"saved with version {save.pack_version} of the pack; it is now {pack.version}")
    retokenize = save.model != model
    if retokenize:
        warnings.append("saved with another model: its lines are read again as text")
    tree, missing = _tree(save, pack_ids=(set(pack.characters), set(pack.scenes)))
    missing |= {lid for node in save.nodes for lid in node.notes if lid not in pack.lore}
    if missing:
        warnings.append(f"no longer in the pack: {', '.join(sorted(missing))} (their lines stay)")
    unlocked = {a.id: a.at_line for a in save.achievements}
    return LoadedSave(
        tree, save.episode, unlocked, set(save.silent), save.player_name, save.created, retokenize, warnings
    )


def _tree(save: SaveFile, pack_ids: tuple[set[str], set[str]]) -> tuple[StoryTree, set[str]]:
    characters, scenes = pack_ids
    nodes: dict[int, Node] = {0: Node(0, None, None, chosen=save.root_chosen)}
    missing: set[str] = set()
    for saved in save.nodes:
        if saved.parent not in nodes or saved.id in nodes:
            raise UserFacingError(f"the save's line {saved.id} comes before its parent {saved.parent} (damaged save)")
        if saved.speaker != "narrator" and saved.speaker not in characters:
            missing.add(saved.speaker)
        commands = tuple(StageCommand(c.kind, c.target, c.value) for c in saved.directions)
        missing |= {c.target for c in commands if c.target not in characters and c.target not in scenes}
        line = Line(
            speaker=saved.speaker,
            text=saved.text,
            clock=saved.clock,
            kind=saved.kind if saved.kind in ("scripted", "player", "model", "narration") else "model",  # type: ignore[arg-type]
            tokens=tuple(int(t) for t in saved.tokens.split()),
            directions=commands,
            notes=tuple(saved.notes),
            seed=saved.seed,
        )
        summary = (saved.summary_covers or 0, saved.summary) if saved.summary is not None else None
        nodes[saved.id] = Node(saved.id, saved.parent, line, chosen=saved.chosen, summary=summary)
        nodes[saved.parent].children.append(saved.id)
    if save.head not in nodes:
        raise UserFacingError(f"the save's head {save.head} is not one of its lines (damaged save)")
    for node in nodes.values():
        if node.children and node.chosen >= len(node.children):
            raise UserFacingError(f"the save's line {node.id} chooses a variant it does not have (damaged save)")
    return StoryTree.from_nodes(nodes, save.head), missing


# -- export ---------------------------------------------------------------------------------------


def transcript_markdown(game: Any) -> str:
    """The story in play, as Markdown."""
    return transcript_lines(game.pack, game.episode, game.lines, game.unlocked)


def transcript_lines(pack: Pack, episode: str, lines: list[Line], unlocked: dict[str, int]) -> str:
    """A story's lines as Markdown."""
    out = [f"# {pack.name}", "", f"*{pack.episodes[episode].name}*" if episode in pack.episodes else "", ""]
    for line in lines:
        if line.speaker == "narrator":
            out.append(f"*{line.text}*")
        else:
            out.append(f"**{pack.speaker_name(line.speaker)}** ({line.clock}): {line.text}")
        out.append("")
    if unlocked:
        out += ["## Achievements", ""]
        out += [f"- {pack.achievements[a].title}" for a in unlocked if a in pack.achievements]
    return printable("\n".join(out).rstrip() + "\n")  # read with `cat` in a terminal, too
