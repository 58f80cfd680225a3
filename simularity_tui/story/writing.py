"""What the model reads and may write: the pinned block, each line as a turn, and the grammars.

A model line is written in two steps, each under its own grammar and token budget: first the
stage line, `[stage: none]` or `[stage: Pip enters (alert); Mira: smile]`, choosing only among the
commands legal on the current stage; then the line itself, `Mira (21:40): text`, by a speaker
allowed to speak and on stage (or the narrator), at an in-story time that does not run backwards.
Lore notes a line brought in come before it in the same turn, so the prompt only ever grows at its
end and the KV cache stays valid.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from ..scenario.macros import expand
from ..scenario.schema import NARRATOR, Character, Pack
from .stage import Stage, StageCommand, describe, stage_line
from .tree import Line

STAGE_OPEN = "[stage:"
_LINE_HEAD = re.compile(r"^(?P<name>[^\n(]+?) \((?P<clock>\d\d:\d\d)\): ")


def preamble(pack: Pack, episode_id: str, summary: str | None) -> str:
    user = pack.player.name
    cast = "\n".join(_character_sheet(c, user) for c in pack.characters.values())
    episode = pack.episodes.get(episode_id)
    scene_id = episode.scene if episode and episode.scene else next(iter(pack.scenes), None)
    scene = pack.scenes.get(scene_id) if scene_id else None
    lore = [expand(entry.content, user=user) for entry in pack.lore.values() if entry.always and entry.enabled]
    scenes = "\n".join(f"- {s.name}: {expand(s.description, user=user)}".rstrip(": ") for s in pack.scenes.values())
    parts = [
        pack.name,
        expand(pack.prompt.scenario.strip(), user=user),
        expand(pack.prompt.instructions.strip(), user=user),
        f"Characters:\n{cast}",
        f"Places:\n{scenes}" if scenes else "",
        "Background:\n" + "\n".join(f"- {fact}" for fact in lore) if lore else "",
        f"The story begins in {scene.name}." if scene else "",
        f"Summary of the story so far: {summary}" if summary else "",
    ]
    return "\n\n".join(part for part in parts if part) + "\n\nStory:\n"


def _character_sheet(character: Character, user: str) -> str:
    facts = [character.description, character.personality, character.appearance]
    text = " ".join(expand(fact.strip(), user=user, char=character.name) for fact in facts if fact.strip())
    outfits = "; ".join(f"{o.name}: {o.description}".rstrip(": ") for o in character.outfits.values())
    if outfits:
        text += f" Outfits: {outfits}."
    role = " (the player)" if character.player else ""
    return f"- {character.name}{role}: {text}".rstrip(": ")


def note_text(pack: Pack, lore_ids: Iterable[str]) -> str:
    """The lore notes a line brought in (entries the pack no longer has are left out)."""
    user = pack.player.name
    return "".join(f"[note: {expand(pack.lore[lid].content, user=user)}]\n" for lid in lore_ids if lid in pack.lore)


def line_text(pack: Pack, line: Line, *, stage: bool) -> str:
    """A whole line as the transcript shows it to the model."""
    head = f"{pack.speaker_name(line.speaker)} ({line.clock}): {line.text}\n"
    return note_text(pack, line.notes) + (stage_line(pack, list(line.directions)) if stage else "") + head


# -- grammars -------------------------------------------------------------------------------------


def directions_grammar(pack: Pack, stage: Stage) -> tuple[str, dict[str, StageCommand]]:
    """A grammar for what follows `[stage:`, and the command each written form stands for."""
    table: dict[str, StageCommand] = {}
    for command in stage.legal_commands(pack):
        table.setdefault(describe(pack, command), command)
    if not table:
        return 'root ::= " none]\\n"\n', table
    alternatives = " | ".join(_literal(text) for text in table)
    grammar = f'root ::= " none]\\n" | " " command ("; " command)? "]\\n"\ncommand ::= {alternatives}\n'
    return grammar, table


def parse_directions(pack: Pack, stage: Stage, written: str, table: dict[str, StageCommand]) -> list[StageCommand]:
    """The legal commands in what the model wrote after `[stage:`, applied in order."""
    body = written.strip().removesuffix("]").strip()
    applied: list[StageCommand] = []
    for part in body.split("; "):
        command = table.get(part.strip())
        if command is not None and stage.is_legal(pack, command):
            stage = stage.apply(pack, command)
            applied.append(command)
    return applied


def line_grammar(pack: Pack, speakers: list[str], clock: str) -> str:
    """A grammar for one line by one of `speakers`, at `clock` or up to two hours later."""
    names = " | ".join(_literal(pack.speaker_name(s)) for s in speakers)
    hour = int(clock[:2])
    hours = " | ".join(_literal(f"{(hour + step) % 24:02d}") for step in range(3))
    return (
        'root ::= speaker " (" hour ":" [0-5] [0-9] "): " [^\\n ] [^\\n]* "\\n"\n'
        f"speaker ::= {names}\n"
        f"hour ::= {hours}\n"
    )


def parse_line_head(pack: Pack, written: str, speakers: list[str]) -> tuple[str, str, str] | None:
    """(speaker id, clock, the text after the head) once the head `Name (HH:MM): ` is complete."""
    match = _LINE_HEAD.match(written)
    if match is None:
        return None
    by_name = {pack.speaker_name(s): s for s in speakers}
    speaker = by_name.get(match.group("name"), NARRATOR)
    return speaker, match.group("clock"), written[match.end() :]


def later_clock(previous: str, written: str) -> str:
    """`written`, unless that would turn the clock back within the same day: then `previous`."""
    return written if (written >= previous or written[:2] < previous[:2] and previous[:2] >= "22") else previous


def next_minute(clock: str, minutes: int = 1) -> str:
    total = (int(clock[:2]) * 60 + int(clock[3:]) + minutes) % (24 * 60)
    return f"{total // 60:02d}:{total % 60:02d}"


def _literal(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
