"""A save file: the whole story tree as human-readable TOML, written atomically, read back mended.

Each write goes to a temporary file that is fsynced and renamed over the save, so a kill at any
moment leaves the previous save or the new one, never half of one: at most the line being written
is lost.

Each line keeps its exact tokens (as a line of numbers) with the fingerprint of the model they
belong to; loaded on another model, the lines are tokenized again from their text.

A save is a file a person may edit, or that a disk may damage, so reading one trusts nothing in it:
a line whose tokens are not token ids of this model (not numbers, outside its vocabulary) is
tokenized again from its text, and choices, the head and summaries that point nowhere are brought
back in range, each with a warning naming the save's file and line. Only what cannot be put back
together (a line whose parent is not in the save, two lines with one id) is refused, as
`file:line:col`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeGuard, get_args

import tomli_w
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..atomic import write_atomic
from ..errors import UserFacingError
from ..scenario.loader import LoadedPack
from ..scenario.schema import NARRATOR, LoreEntry, Pack
from ..toml_source import KeyPath, Problem, TomlProblems, in_file, locate, parse_toml, validation_problems
from .player_lore import saved_lore
from .stage import StageCommand
from .tree import Line, LineKind, Node, StoryTree

if TYPE_CHECKING:
    from .game import Game

SAVE_FORMAT = 1
# A save holds every line with its tokens: a long game (thousands of lines, all their variants) is some
# MiB. The cap keeps a stranger's file (or /dev/zero behind a link) from being read without end.
MAX_SAVE_BYTES = 256 << 20
_TOKEN_ID = re.compile(r"[0-9]{1,10}")  # ASCII digits only; ten are more than any vocabulary needs
_TOKEN_LIMIT = 1 << 31  # llama_token is an int32: nothing at or past this is a token of any model
_NAMED = 5  # mended places named one by one in warnings (each is a scan of the file); past that, counted
_REFUSED = 10  # the most problems a refused save lists
_DAMAGED_HINT = "The save is damaged; earlier saves of this game may still load."


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
    reminders: list[str] = []  # absent from saves written before reminders: none carried
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
    player_description: str | None = None  # who the player is, in place of the pack's description
    authors_note: str = ""  # the player's note to the model, carried near the end of the prompt
    authors_notes: dict[str, str] = {}  # every author's note (and direction) a line carried: id -> text
    essentials: str = ""  # the player's plot essentials, in the pinned block
    lore: dict[str, dict[str, Any]] = {}  # the player's own lore entries (story/player_lore.py)
    achievements: list[SavedAchievement] = []
    nodes: list[SavedNode] = []


@dataclass
class LoadedSave:
    tree: StoryTree
    episode: str
    unlocked: dict[str, int]
    silent: set[str]
    player_name: str | None
    player_description: str | None
    authors_note: str
    note_texts: dict[str, str]
    essentials: str
    player_lore: dict[str, LoreEntry]
    created: datetime
    stale_tokens: bool  # saved with another model: the lines must be tokenized again
    warnings: list[str] = field(default_factory=list)
    damaged_tokens: set[int] = field(default_factory=set)  # node ids whose tokens must be read again


# -- writing --------------------------------------------------------------------------------------


def write_save(path: Path, *, game: Game, created: datetime) -> None:
    """Write `game` to `path`, atomically."""
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
        **({"player_description": game.player_description} if game.player_description else {}),
        **({"authors_note": game.authors_note} if game.authors_note else {}),
        **({"authors_notes": carried} if (carried := _notes_carried(game)) else {}),
        **({"essentials": game.essentials} if game.essentials else {}),
        **({"lore": _player_lore_table(game)} if game.player_lore else {}),
        "achievements": [{"id": aid, "at_line": at} for aid, at in game.unlocked.items()],
        "nodes": [
            _node_table(node) for node in sorted(game.tree.nodes.values(), key=lambda n: n.id) if node.line is not None
        ],
    }
    write_atomic(path, "# A Simularity save. Each line's tokens are what the model read.\n" + tomli_w.dumps(document))


def _player_lore_table(game: Game) -> dict[str, dict[str, Any]]:
    return {lid: entry.model_dump(exclude_defaults=True) for lid, entry in game.player_lore.items()}


def _notes_carried(game: Game) -> dict[str, str]:
    """The author's notes some line of the story carried (what it read stays known after a reload)."""
    carried = {rid for node in game.tree.nodes.values() if node.line is not None for rid in node.line.reminders}
    return {rid: text for rid, text in game.note_texts.items() if rid in carried}


def _node_table(node: Node) -> dict[str, Any]:
    line = node.line
    assert line is not None
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
    if line.reminders:
        entry["reminders"] = list(line.reminders)
    if line.directions:
        entry["directions"] = [command.to_table() for command in line.directions]
    if node.summary is not None:
        entry["summary_covers"], entry["summary"] = node.summary
    return entry


# -- reading --------------------------------------------------------------------------------------


def read_save(path: Path, loaded: LoadedPack, *, model: str, n_vocab: int | None = None) -> LoadedSave:
    """Read a save for the pack `loaded`; problems with the pack or model become warnings.

    `n_vocab` is the model's vocabulary size, where the backend knows it: tokens at or past it are
    damage (llama.cpp would refuse to decode them). Without it only what is no token id at all is.
    `model` is the model's identity: a save made on another one (or read with "", to show it without
    a model) is read from its lines' text.
    """
    save, source = _parsed(path)
    pack = loaded.pack
    warnings = _pack_warnings(save, pack, path)
    stale = save.model != model
    if stale:
        warnings.append("saved with another model: its lines are read again as text")
    reading = _Reading(path, source)
    tree, missing, damaged = _tree(save, pack, reading, n_vocab=n_vocab, stale=stale)
    warnings += reading.warnings()
    player_lore, lore_warnings = saved_lore(save.lore)
    warnings += lore_warnings
    missing |= {lid for node in save.nodes for lid in node.notes if lid not in pack.lore and lid not in player_lore}
    if missing:
        warnings.append(f"no longer in the pack: {', '.join(sorted(missing))} (their lines stay)")
    unlocked = {a.id: a.at_line for a in save.achievements}
    return LoadedSave(
        tree=tree,
        episode=save.episode,
        unlocked=unlocked,
        silent=set(save.silent),
        player_name=save.player_name,
        player_description=save.player_description,
        authors_note=save.authors_note,
        note_texts=dict(save.authors_notes),
        essentials=save.essentials,
        player_lore=player_lore,
        created=save.created,
        stale_tokens=stale,
        warnings=warnings,
        damaged_tokens=damaged,
    )


def _parsed(path: Path) -> tuple[SaveFile, str]:
    """The save at `path`, validated, and its text (for positions)."""
    data, source = parse_toml(path, max_bytes=MAX_SAVE_BYTES)
    if isinstance(data.get("format"), int) and data["format"] > SAVE_FORMAT:
        raise UserFacingError(
            f"{path} was written by a newer Simularity (save format {data['format']}; this one reads {SAVE_FORMAT})",
            hint="Update Simularity to load it.",
            path=path,
        )
    try:
        return SaveFile.model_validate(data), source
    except ValidationError as error:
        raise TomlProblems(validation_problems(error, SaveFile, in_file(path, source)), hint=_DAMAGED_HINT) from None


def _pack_warnings(save: SaveFile, pack: Pack, path: Path) -> list[str]:
    """Refuse a save of another pack or of an episode the pack lost; warn of another version."""
    if save.pack != pack.id:
        raise UserFacingError(f"{path} is a save of the pack '{save.pack}', not '{pack.id}'", path=path)
    if save.episode not in pack.episodes:
        raise UserFacingError(
            f"{path}: its episode '{save.episode}' is no longer in the pack",
            hint=f"Episodes now: {', '.join(pack.episodes)}",
            path=path,
        )
    if save.pack_version and save.pack_version != pack.version:
        return [f"saved with version {save.pack_version} of the pack; it is now {pack.version}"]
    return []


def token_ids(text: str, n_vocab: int | None) -> tuple[int, ...] | None:
    """The token ids a saved line holds, or None when they cannot be what this model read: not
    numbers, none at all (every line has some), or outside the vocabulary (`n_vocab`, if known)."""
    parts = text.split()
    if not parts or not all(_TOKEN_ID.fullmatch(part) for part in parts):
        return None
    tokens = tuple(int(part) for part in parts)
    return tokens if max(tokens) < (n_vocab or _TOKEN_LIMIT) else None


class _Reading:
    """A save being read: what was mended on the way and what is refused, each with its place."""

    def __init__(self, path: Path, source: str) -> None:
        self.path = path
        self.source = source
        self.mended: list[tuple[KeyPath, str]] = []  # what was put back in range, and where it is in the file
        self.problems: list[Problem] = []

    def mend(self, key: KeyPath, message: str) -> None:
        self.mended.append((key, message))

    def refuse(self, key: KeyPath, message: str) -> None:
        if len(self.problems) < _REFUSED:
            line, col = locate(self.source, key)
            self.problems.append(Problem(self.path, line, col, f"{'.'.join(map(str, key))}: {message}"))

    def raise_refused(self) -> None:
        if self.problems:
            raise TomlProblems(self.problems, hint=_DAMAGED_HINT)

    def warnings(self) -> list[str]:
        named = [f"{self.path}:{locate(self.source, key)[0]}: {message}" for key, message in self.mended[:_NAMED]]
        if len(self.mended) > _NAMED:
            named.append(f"{self.path}: {len(self.mended) - _NAMED} more places like these were mended the same way")
        return named


def _tree(
    save: SaveFile, pack: Pack, reading: _Reading, *, n_vocab: int | None, stale: bool
) -> tuple[StoryTree, set[str], set[int]]:
    """The story tree of a save, and the ids the pack lacks, and the lines whose tokens are damaged
    (none when the tokens are `stale`: every line is read again from its text then).

    Anything that points nowhere is brought back in range (with a warning), so that nothing later
    (undo, redo, variants, the prompt) meets an index that is not there.
    """
    nodes: dict[int, Node] = {0: Node(0, None, None, chosen=save.root_chosen)}
    depth = {0: 0}  # lines from the start up to and including each node
    index_of = {0: -1}  # each node's place in the save's `nodes` (for positions); the root is no node
    missing: set[str] = set()
    damaged: set[int] = set()
    refused: set[int] = set()
    # Ids grow as lines are added, so a parent's id is below its lines' (the order of a hand-edited
    # file does not matter).
    for index, saved in sorted(enumerate(save.nodes), key=lambda entry: entry[1].id):
        if not _has_place(saved, index, nodes, refused, reading):
            continue
        missing |= _unknown_ids(saved, pack)
        tokens = token_ids(saved.tokens, n_vocab)
        if tokens is None and not stale:
            damaged.add(saved.id)
            reading.mend(
                ["nodes", index, "tokens"], f"line {saved.id}'s tokens are damaged; it is read again from its text"
            )
        depth[saved.id] = depth[saved.parent] + 1
        index_of[saved.id] = index
        summary = _summary(saved, index, depth[saved.id], reading)
        nodes[saved.id] = Node(saved.id, saved.parent, _line(saved, tokens), chosen=saved.chosen, summary=summary)
        nodes[saved.parent].children.append(saved.id)
    reading.raise_refused()
    _mend_choices(nodes, index_of, reading)
    return StoryTree.from_nodes(nodes, _mended_head(save.head, nodes, reading)), missing, damaged


def _has_place(saved: SavedNode, index: int, nodes: dict[int, Node], refused: set[int], reading: _Reading) -> bool:
    """Whether a line can join the tree read so far. A line whose parent is not in the save has no
    place in the story: guessing one would tell another story than the player's."""
    if saved.id in nodes:
        reading.refuse(["nodes", index, "id"], f"{saved.id} is the id of an earlier line too")
        return False
    if saved.parent not in nodes:
        if saved.parent not in refused:  # its parent's problem is said already
            reading.refuse(["nodes", index, "parent"], f"line {saved.id} follows line {saved.parent}, not in the save")
        refused.add(saved.id)
        return False
    return True


def _unknown_ids(saved: SavedNode, pack: Pack) -> set[str]:
    """The characters and scenes a line names that the pack no longer has."""
    unknown = {saved.speaker} if saved.speaker != NARRATOR and saved.speaker not in pack.characters else set()
    return unknown | {
        c.target for c in saved.directions if c.target not in pack.characters and c.target not in pack.scenes
    }


def _line(saved: SavedNode, tokens: tuple[int, ...] | None) -> Line:
    return Line(
        speaker=saved.speaker,
        text=saved.text,
        clock=saved.clock,
        kind=saved.kind if _is_line_kind(saved.kind) else "model",
        tokens=tokens or (),
        directions=tuple(StageCommand(c.kind, c.target, c.value) for c in saved.directions),
        notes=tuple(saved.notes),
        reminders=tuple(saved.reminders),
        seed=saved.seed,
    )


def _is_line_kind(kind: str) -> TypeGuard[LineKind]:
    return kind in get_args(LineKind)


def _summary(saved: SavedNode, index: int, depth: int, reading: _Reading) -> tuple[int, str] | None:
    """A line's summary: it stands for lines from the start, and for no more than lead up to it."""
    if saved.summary is None:
        return None
    covers = saved.summary_covers or 0
    if not 0 <= covers <= depth:
        kept = min(max(covers, 0), depth)
        reading.mend(
            ["nodes", index, "summary_covers"],
            f"summary_covers = {covers} is out of range for the summary at line {saved.id} (0 to {depth}); "
            f"it is taken as {kept}",
        )
        covers = kept
    return covers, saved.summary


def _mend_choices(nodes: dict[int, Node], index_of: dict[int, int], reading: _Reading) -> None:
    """Each line's chosen variant, brought in range: a choice past the last variant shows the last."""
    for node in nodes.values():
        if not node.children:
            node.chosen = 0  # nothing to choose yet; a new line after it is chosen when it is added
        elif node.chosen >= len(node.children):
            key: KeyPath = ["root_chosen"] if node.id == 0 else ["nodes", index_of[node.id], "chosen"]
            count = len(node.children)
            after = "the start" if node.id == 0 else f"line {node.id}"
            plural = "s" if count > 1 else ""
            reading.mend(
                key, f"the line after {after} has {count} variant{plural}, not {node.chosen + 1}; the last is shown"
            )
            node.chosen = count - 1


def _mended_head(head: int, nodes: dict[int, Node], reading: _Reading) -> int:
    """The saved head, or, if it is no line of the save, the end of the chosen lines (what redo
    would reach)."""
    if head in nodes:
        return head
    end = 0
    while nodes[end].children:
        end = nodes[end].children[nodes[end].chosen]
    reading.mend(["head"], f"head = {head} is no line of the save; the story goes on from line {end}")
    return end
