"""Saves: the whole story tree as human-readable TOML, written atomically after every change.

A save is `saves/<pack id>/<name>.toml` in the data directory; beside it, `<name>.kv` holds the
KV cache so that resuming reads only what is new. Each write goes to a temporary file that is
fsynced and renamed over the save, so a kill at any moment leaves the previous save or the new one,
never half of one: at most the line being written is lost.

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
from typing import Annotated, Any

import tomli_w
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .. import paths
from ..atomic import write_atomic
from ..errors import UserFacingError
from ..scenario.loader import LoadedPack
from ..scenario.schema import Pack
from ..toml_source import KeyPath, Problem, TomlProblems, in_file, locate, parse_toml, validation_problems
from ..untrusted_text import printable
from .stage import StageCommand
from .tree import Line, Node, StoryTree

SAVE_FORMAT = 1
# A save holds every line with its tokens: a long game (thousands of lines, all their variants) is some
# MiB. The cap keeps a stranger's file (or /dev/zero behind a link) from being read without end.
MAX_SAVE_BYTES = 256 << 20
NAME_LENGTH = 64
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.-]{0,63}$")
_TOKEN_ID = re.compile(r"[0-9]{1,10}")  # ASCII digits only; ten are more than any vocabulary needs
_TOKEN_LIMIT = 1 << 31  # llama_token is an int32: nothing at or past this is a token of any model
_NAMED = 5  # mended places named one by one in warnings (each is a scan of the file); past that, counted
_REFUSED = 10  # the most problems a refused save lists
_STAMP = "%Y-%m-%d %H.%M.%S"


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
    damaged_tokens: set[int] = field(default_factory=set)  # node ids whose tokens must be read again


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
    """The pack's saves, the last played first. A link that leads nowhere or a file that cannot be
    read is listed too (reading it says what is wrong, and it can be deleted); a directory is not."""
    directory = saves_dir(pack_id)
    if not directory.is_dir():
        return []
    found: list[tuple[float, Path]] = []
    for path in directory.glob("*.toml"):
        try:
            if path.is_dir():
                continue
            found.append((path.lstat().st_mtime, path))  # lstat: a dangling link has no target to stat
        except OSError:  # gone since the listing, or a directory we may not look into
            continue
    return [path for _mtime, path in sorted(found, key=lambda item: item[0], reverse=True)]


def save_summary(path: Path) -> tuple[str, str]:
    """(last played, number of lines) of a save for a listing, or ("unreadable", "?")."""
    try:
        document, _source = parse_toml(path, max_bytes=MAX_SAVE_BYTES)
    except UserFacingError:  # not a regular file, too big, not UTF-8, not TOML, nested past reason
        return "unreadable", "?"
    nodes = document.get("nodes", [])
    if not isinstance(nodes, list):
        return "unreadable", "?"
    return str(document.get("updated", "?")), str(len(nodes))


def delete_save(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        raise UserFacingError(f"{path} is a directory, not a save", hint="Remove it by hand if it is not wanted.")
    try:
        path.unlink(missing_ok=True)
        kv_path(path).unlink(missing_ok=True)
    except OSError as error:
        raise UserFacingError(f"{path}: cannot delete ({error.strerror})", path=path) from None


def copy_name(pack_id: str, stem: str, *, now: datetime | None = None) -> str:
    """A name for a copy of the save `stem`: the stem, then the time, then " 2", " 3"... if a save by
    that name exists already. A long stem is shortened, never the time: two copies made one after
    the other must not get one name (the second would overwrite the first)."""
    stamp = (now or datetime.now()).strftime(_STAMP)
    for number in range(1, 10_000):
        tail = f" {stamp}" + (f" {number}" if number > 1 else "")
        name = f"{stem[: NAME_LENGTH - len(tail)].rstrip()}{tail}"
        copy = save_path(pack_id, name)
        if not (copy.exists() or copy.is_symlink()):
            return name
    raise UserFacingError(f"too many copies of '{stem}' this second", hint="Try again in a moment.")


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


def read_save(path: Path, loaded: LoadedPack, *, model: str, n_vocab: int | None = None) -> LoadedSave:
    """Read a save for the pack `loaded`; problems with the pack or model become warnings.

    `n_vocab` is the model's vocabulary size, where the backend knows it: tokens at or past it are
    damage (llama.cpp would refuse to decode them). Without it only what is no token id at all is.
    """
    data, source = parse_toml(path, max_bytes=MAX_SAVE_BYTES)
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
    tree, missing, damaged = _tree(
        save,
        pack_ids=(set(pack.characters), set(pack.scenes)),
        n_vocab=n_vocab,
        stale=retokenize,
        path=path,
        source=source,
        warnings=warnings,
    )
    missing |= {lid for node in save.nodes for lid in node.notes if lid not in pack.lore}
    if missing:
        warnings.append(f"no longer in the pack: {', '.join(sorted(missing))} (their lines stay)")
    unlocked = {a.id: a.at_line for a in save.achievements}
    return LoadedSave(
        tree,
        save.episode,
        unlocked,
        set(save.silent),
        save.player_name,
        save.created,
        retokenize,
        warnings,
        damaged_tokens=damaged,
    )


def token_ids(text: str, n_vocab: int | None) -> tuple[int, ...] | None:
    """The token ids a saved line holds, or None when they cannot be what this model read: not
    numbers, none at all (every line has some), or outside the vocabulary (`n_vocab`, if known)."""
    parts = text.split()
    if not parts or not all(_TOKEN_ID.fullmatch(part) for part in parts):
        return None
    tokens = tuple(int(part) for part in parts)
    return tokens if max(tokens) < (n_vocab or _TOKEN_LIMIT) else None


def _tree(
    save: SaveFile,
    pack_ids: tuple[set[str], set[str]],
    *,
    n_vocab: int | None,
    stale: bool,
    path: Path,
    source: str,
    warnings: list[str],
) -> tuple[StoryTree, set[str], set[int]]:
    """The story tree of a save, and the ids the pack lacks, and the lines whose tokens are damaged
    (none when the tokens are `stale`: every line is read again from its text then).

    Anything that points nowhere is brought back in range (with a warning), so that nothing later
    (undo, redo, variants, the prompt) meets an index that is not there.
    """
    characters, scenes = pack_ids
    mended: list[tuple[KeyPath, str]] = []  # what was put back in range, and where it is in the file
    problems: list[Problem] = []

    def refuse(key: KeyPath, message: str) -> None:
        if len(problems) < _REFUSED:
            line, col = locate(source, key)
            problems.append(Problem(path, line, col, f"{'.'.join(map(str, key))}: {message}"))

    nodes: dict[int, Node] = {0: Node(0, None, None, chosen=save.root_chosen)}
    depth = {0: 0}  # lines from the start up to and including each node
    index_of = {0: -1}  # each node's place in the save's `nodes` (for positions); the root is no node
    missing: set[str] = set()
    damaged: set[int] = set()
    refused: set[int] = set()
    # Ids grow as lines are added, so a parent's id is below its lines' (the order of a hand-edited
    # file does not matter). A line whose parent is not in the save has no place in the story:
    # guessing one would tell another story than the player's.
    for index, saved in sorted(enumerate(save.nodes), key=lambda entry: entry[1].id):
        if saved.id in nodes:
            refuse(["nodes", index, "id"], f"{saved.id} is the id of an earlier line too")
            continue
        if saved.parent not in nodes:
            if saved.parent not in refused:  # its parent's problem is said already
                refuse(["nodes", index, "parent"], f"line {saved.id} follows line {saved.parent}, not in the save")
            refused.add(saved.id)
            continue
        if saved.speaker != "narrator" and saved.speaker not in characters:
            missing.add(saved.speaker)
        commands = tuple(StageCommand(c.kind, c.target, c.value) for c in saved.directions)
        missing |= {c.target for c in commands if c.target not in characters and c.target not in scenes}
        tokens = token_ids(saved.tokens, n_vocab)
        if tokens is None and not stale:
            damaged.add(saved.id)
            mended.append(
                (["nodes", index, "tokens"], f"line {saved.id}'s tokens are damaged; it is read again from its text")
            )
        depth[saved.id] = depth[saved.parent] + 1
        index_of[saved.id] = index
        line = Line(
            speaker=saved.speaker,
            text=saved.text,
            clock=saved.clock,
            kind=saved.kind if saved.kind in ("scripted", "player", "model", "narration") else "model",  # type: ignore[arg-type]
            tokens=tokens or (),
            directions=commands,
            notes=tuple(saved.notes),
            seed=saved.seed,
        )
        summary = None
        if saved.summary is not None:
            # It stands for lines from the start, and can stand for no more than lead up to it.
            covers = saved.summary_covers or 0
            if not 0 <= covers <= depth[saved.id]:
                kept = min(max(covers, 0), depth[saved.id])
                mended.append(
                    (
                        ["nodes", index, "summary_covers"],
                        f"summary_covers = {covers} is out of range for the summary at line {saved.id} "
                        f"(0 to {depth[saved.id]}); it is taken as {kept}",
                    )
                )
                covers = kept
            summary = (covers, saved.summary)
        nodes[saved.id] = Node(saved.id, saved.parent, line, chosen=saved.chosen, summary=summary)
        nodes[saved.parent].children.append(saved.id)
    if problems:
        raise TomlProblems(problems, hint="The save is damaged; earlier saves of this game may still load.")
    for node in nodes.values():
        if not node.children:
            node.chosen = 0  # nothing to choose yet; a new line after it is chosen when it is added
        elif node.chosen >= len(node.children):
            key: KeyPath = ["root_chosen"] if node.id == 0 else ["nodes", index_of[node.id], "chosen"]
            count = len(node.children)
            after = "the start" if node.id == 0 else f"line {node.id}"
            plural = "s" if count > 1 else ""
            mended.append(
                (key, f"the line after {after} has {count} variant{plural}, not {node.chosen + 1}; the last is shown")
            )
            node.chosen = count - 1
    head = save.head
    if head not in nodes:
        head = 0
        while nodes[head].children:  # the end of the chosen lines: what redo would reach
            head = nodes[head].children[nodes[head].chosen]
        mended.append((["head"], f"head = {save.head} is no line of the save; the story goes on from line {head}"))
    warnings += [f"{path}:{locate(source, place)[0]}: {message}" for place, message in mended[:_NAMED]]
    if len(mended) > _NAMED:
        warnings.append(f"{path}: {len(mended) - _NAMED} more places like these were mended the same way")
    return StoryTree.from_nodes(nodes, head), missing, damaged


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
