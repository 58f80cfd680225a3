"""What the schema cannot see alone: that ids refer to things the pack defines.

Each check yields (key path, message); the loader turns the key path into the file and line that
define it. A dangling id comes with a "did you mean" when a close one exists.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Iterator, Sequence

from ..toml_source import KeyPath
from .lore_checks import key_findings
from .schema import NARRATOR, NARRATOR_NAME, Condition, Direction, Pack

Finding = tuple[KeyPath, str]


def check_references(pack: Pack) -> list[Finding]:
    return [
        *_players(pack),
        *_characters(pack),
        *_names(pack),
        *_episodes(pack),
        *_lore(pack),
        *(
            f
            for aid, achievement in pack.achievements.items()
            for f in _condition(pack, achievement.condition, ["achievements", aid, "condition"])
        ),
    ]


def _unknown(kind: str, name: str, known: Iterable[str]) -> str:
    known = list(known)
    guess = difflib.get_close_matches(name, known, n=1)
    if guess:
        return f"no {kind} '{name}'; did you mean '{guess[0]}'?"
    return f"no {kind} '{name}'" + (
        f" (the pack has: {', '.join(known)})" if known else f" (the pack defines no {kind}s)"
    )


def _players(pack: Pack) -> Iterator[Finding]:
    players = [cid for cid, character in pack.characters.items() if character.player]
    if not players:
        yield ["characters"], "no character has player = true: exactly one must be the player"
    for extra in players[1:]:
        yield ["characters", extra, "player"], f"'{extra}' is a second player (also '{players[0]}'): exactly one may be"
    if len(pack.characters) - len(players) < 1:
        yield ["characters"], "the pack needs at least one character besides the player"
    if not pack.episodes:
        yield ["episodes"], "the pack needs at least one episode to start from"


def _characters(pack: Pack) -> Iterator[Finding]:
    for cid, character in pack.characters.items():
        where = ["characters", cid]
        if character.default_expression is not None and character.default_expression not in character.expressions:
            yield (
                [*where, "default_expression"],
                _unknown("expression", character.default_expression, character.expressions),
            )
        if character.default_outfit is not None and character.default_outfit not in character.outfits:
            yield [*where, "default_outfit"], _unknown("outfit", character.default_outfit, character.outfits)


def _names(pack: Pack) -> Iterator[Finding]:
    """Each speaker is known by name in every line's head (`Mira (21:40): …`): two alike would be
    one speaker to the model, and to the game reading what it wrote."""
    seen = {NARRATOR_NAME.casefold(): NARRATOR}
    for cid, character in pack.characters.items():
        key = character.name.casefold()
        if key in seen:
            other = "the narrator" if seen[key] == NARRATOR else f"'{seen[key]}'"
            yield (
                ["characters", cid, "name"],
                f"'{character.name}' is also the name of {other}: give each a name of its own",
            )
        seen.setdefault(key, cid)


def _look(pack: Pack, cid: str, expression: str | None, outfit: str | None, where: KeyPath) -> Iterator[Finding]:
    character = pack.characters[cid]
    if expression is not None and expression not in character.expressions:
        yield [*where, "expression"], _unknown(f"expression of {cid}", expression, character.expressions)
    if outfit is not None and outfit not in character.outfits:
        yield [*where, "outfit"], _unknown(f"outfit of {cid}", outfit, character.outfits)


def _episodes(pack: Pack) -> Iterator[Finding]:
    for eid, episode in pack.episodes.items():
        where: list[str | int] = ["episodes", eid]
        if episode.scene is not None and episode.scene not in pack.scenes:
            yield [*where, "scene"], _unknown("scene", episode.scene, pack.scenes)
        seen: set[str] = set()
        for index, on_stage in enumerate(episode.characters):
            at = [*where, "characters", index]
            if on_stage.id not in pack.characters:
                yield [*at, "id"], _unknown("character", on_stage.id, pack.characters)
                continue
            if on_stage.id in seen:
                yield [*at, "id"], f"'{on_stage.id}' is on stage twice"
            seen.add(on_stage.id)
            yield from _look(pack, on_stage.id, on_stage.expression, on_stage.outfit, at)
        for index, line in enumerate(episode.lines):
            at = [*where, "lines", index]
            if line.speaker != NARRATOR and line.speaker not in pack.characters:
                yield [*at, "speaker"], _unknown("character", line.speaker, [NARRATOR, *pack.characters])
            for number, direction in enumerate(line.directions):
                yield from _direction(pack, direction, [*at, "directions", number])


def _direction(pack: Pack, direction: Direction, where: KeyPath) -> Iterator[Finding]:
    command = direction.command
    if command == "set_scene":
        assert direction.set_scene is not None
        if direction.set_scene not in pack.scenes:
            yield where, _unknown("scene", direction.set_scene, pack.scenes)
        return
    cid = direction.add_character or direction.remove_character or direction.character
    assert cid is not None
    if cid not in pack.characters:
        yield where, _unknown("character", cid, pack.characters)
        return
    if command == "add_character":
        yield from _look(pack, cid, direction.expression, direction.outfit, where)
    elif command == "set_expression":
        yield from _look(pack, cid, direction.set_expression, None, where)
    elif command == "set_outfit":
        yield from _look(pack, cid, None, direction.set_outfit, where)


def _lore(pack: Pack) -> Iterator[Finding]:
    """Entries without a way in, and keys that cannot be used (lore_checks.py, which also has the
    warnings `simularity check` adds: recursion cycles, entries that never come in, lone groups)."""
    for lid, entry in pack.lore.items():
        if not entry.always and not entry.keywords:
            yield ["lore", lid], "this entry never reaches the prompt: give it keywords, or always = true"
    yield from key_findings(pack)


def _condition(pack: Pack, condition: Condition, where: Sequence[str | int]) -> Iterator[Finding]:
    kind = condition.kind
    at = [*where, kind]
    if kind == "scene" and condition.scene not in pack.scenes:
        yield at, _unknown("scene", str(condition.scene), pack.scenes)
    elif kind == "on_stage" and condition.on_stage not in pack.characters:
        yield at, _unknown("character", str(condition.on_stage), pack.characters)
    elif kind == "expression":
        assert condition.character is not None
        if condition.character not in pack.characters:
            yield [*where, "character"], _unknown("character", condition.character, pack.characters)
        else:
            yield from _look(pack, condition.character, condition.expression, None, list(where))
    elif kind in ("all", "any"):
        for index, inner in enumerate(getattr(condition, kind)):
            yield from _condition(pack, inner, [*at, index])
