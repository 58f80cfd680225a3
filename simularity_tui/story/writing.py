"""What the model reads and may write: the pinned block, each line as a turn, and the grammars.

A model line is written in three steps, each under its own grammar (turn.py): first the stage
line, `[stage: none]` or `[stage: Pip enters (alert); Mira: smile]`, choosing only among the
commands legal on the current stage; then the line's head, `Mira (21:40):`, by a speaker allowed to
speak and on stage (or the narrator), at an in-story time that does not run backwards; then its
text, ` text` to the line's end.
Lore notes a line brought in come before it in the same turn, so the prompt only ever grows at its
end and the KV cache stays valid.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from ..scenario.macros import expand
from ..scenario.schema import NARRATOR, Character, Pack
from .reminders import AUTHORS_NOTE, AUTHORS_NOTE_TAG, DIRECTION, DIRECTION_TAG, Reminder, sole_character
from .stage import Stage, StageCommand, describe, stage_line
from .tree import Line

STAGE_OPEN = "[stage:"
_LINE_HEAD = re.compile(r"^(?P<name>[^\n(]+?) \((?P<clock>\d\d:\d\d)\): ")
_CLOCK_HEAD = re.compile(r" \((?P<clock>\d\d:\d\d)\): ")
_NOTE = "lore note"  # the label of a note among a line's parts (prompt_view.py)
_SAID_ALREADY = 40  # characters: a text this long found inside another is taken as said there


def preamble(
    pack: Pack, episode_id: str, summary: str | None, *, scale: float = 1.0, examples: str = "", essentials: str = ""
) -> str:
    """The pinned block: the world, the cast and how they speak, the places, what is always known,
    the player's essentials, the summary. `examples`: the example lines, as examples.py chose them
    for the budget.

    `scale` below 1 shortens every text of the pack to that share of its length (the prompt budget,
    budgets.py): a pack may carry far more than a context holds."""
    parts = pinned_parts(pack, episode_id, summary, scale=scale, examples=examples, essentials=essentials)
    return "".join(text for _label, text in parts)


def pinned_parts(
    pack: Pack, episode_id: str, summary: str | None, *, scale: float = 1.0, examples: str = "", essentials: str = ""
) -> list[tuple[str, str]]:
    """The pinned block as labelled parts, (label, text), whose texts joined are `preamble`'s.

    Each fact once: a scenario that a character's description already says (a card's description
    copied into both) is left out, and so is a description the scenario already holds."""
    user, char = pack.player.name, sole_character(pack)
    scenario = expand(pack.prompt.scenario.strip(), user=user, char=char)
    descriptions = [expand(c.description.strip(), user=user, char=c.name) for c in pack.characters.values()]
    if any(_holds(description, scenario) for description in descriptions):
        scenario = ""
    cast = "\n".join(_character_sheet(c, user, scale, told=scenario) for c in pack.characters.values())
    episode = pack.episodes.get(episode_id)
    scene_id = episode.scene if episode and episode.scene else next(iter(pack.scenes), None)
    scene = pack.scenes.get(scene_id) if scene_id else None
    lore = [clip(expand(e.content, user=user), scale) for e in pack.lore.values() if e.always and e.enabled]
    scenes = "\n".join(
        f"- {s.name}: {clip(expand(s.description, user=user), scale)}".rstrip(": ") for s in pack.scenes.values()
    )
    labelled = [
        ("title", pack.name),
        ("scenario", clip(scenario, scale)),
        ("instructions", clip(expand(pack.prompt.instructions.strip(), user=user, char=char), scale)),
        ("characters", f"Characters:\n{cast}"),
        ("examples", examples),
        ("places", f"Places:\n{scenes}" if scenes else ""),
        ("always-on lore", "Background:\n" + "\n".join(f"- {fact}" for fact in lore) if lore else ""),
        ("opening", f"The story begins in {scene.name}." if scene else ""),
        ("essentials", f"Keep in mind:\n{clip(essentials, scale)}" if essentials else ""),
        ("summary", f"Summary of the story so far: {summary}" if summary else ""),
    ]
    kept = [(label, text) for label, text in labelled if text]
    parts = [(label, text if index == 0 else "\n\n" + text) for index, (label, text) in enumerate(kept)]
    label, text = parts[-1]
    parts[-1] = (label, text + "\n\nStory:\n")
    return parts


def _holds(text: str, part: str) -> bool:
    """Whether `text` says all of `part` already (whitespace aside). A short part is only taken
    for said when it is the whole text: a few words may well occur in a longer text by chance."""
    text, part = " ".join(text.split()), " ".join(part.split())
    return bool(part) and (text == part or (len(part) >= _SAID_ALREADY and part in text))


def _character_sheet(character: Character, user: str, scale: float, *, told: str = "") -> str:
    """A character's line in the cast: description, personality, appearance, outfits. A description
    the scenario (`told`) already holds is left out."""
    description = expand(character.description.strip(), user=user, char=character.name)
    facts = [
        "" if _holds(told, description) else description,
        expand(character.personality.strip(), user=user, char=character.name),
        expand(character.appearance.strip(), user=user, char=character.name),
    ]
    text = " ".join(clip(fact, scale) for fact in facts if fact)
    outfits = "; ".join(
        f"{o.name}: {clip(o.description, scale).rstrip('.')}".rstrip(": ") for o in character.outfits.values()
    )  # the list ends with its own full stop
    if outfits:
        text += f" Outfits: {outfits}."
    role = " (the player)" if character.player else ""
    return f"- {character.name}{role}: {text}".rstrip(": ")


def note_text(pack: Pack, lore_ids: Iterable[str], *, scale: float = 1.0) -> str:
    """The lore notes a line brought in (entries the pack no longer has are left out)."""
    user = pack.player.name
    return "".join(
        f"[note: {clip(expand(pack.lore[lid].content, user=user), scale)}]\n" for lid in lore_ids if lid in pack.lore
    )


def clip(text: str, scale: float) -> str:
    """`text` cut to `scale` of its length (at a word, with "…"); whole when `scale` is 1 or more."""
    keep = max(40, int(len(text) * scale))
    if scale >= 1.0 or len(text) <= keep:
        return text
    cut = text[:keep]
    space = cut.rfind(" ")
    if space > keep * 0.8:
        cut = cut[:space]
    return cut.rstrip() + "…"


def reminder_text(known: Sequence[Reminder], reminder_ids: Iterable[str], *, scale: float = 1.0) -> str:
    """The reminders (reminders.py) a line carried, of those `known` (the pack's and the author's
    notes of the game: one the pack no longer has is left out)."""
    by_id = {reminder.id: reminder for reminder in known}
    return "".join(f"[{by_id[rid].tag}: {clip(by_id[rid].text, scale)}]\n" for rid in reminder_ids if rid in by_id)


def line_text(pack: Pack, line: Line, *, stage: bool, reminders: Sequence[Reminder] = ()) -> str:
    """A whole line as the transcript shows it to the model (`reminders`: those the game knows)."""
    return "".join(text for _label, _id, text in line_parts(pack, line, stage=stage, reminders=reminders))


def line_parts(
    pack: Pack, line: Line, *, stage: bool, reminders: Sequence[Reminder] = ()
) -> list[tuple[str, str, str]]:
    """A line as labelled parts, (label, id, text), whose texts joined are `line_text`'s: each lore
    note (id: the entry's) and reminder (label and id: the reminder's) it brought in, its open part;
    then the line itself (id ""), with its stage line."""
    said = f"{line_head(pack, line.speaker, line.clock)}{line.text}\n"
    parts = [(_NOTE, lid, note_text(pack, [lid])) for lid in line.notes]
    parts += [(reminder_label(rid), rid, reminder_text(reminders, [rid])) for rid in line.reminders]
    parts.append(("line", "", (stage_line(pack, list(line.directions)) if stage else "") + said))
    return [part for part in parts if part[2]]


def has_stage_line(pack: Pack, line: Line) -> bool:
    """Whether the model reads a stage line before `line`: before the story's lines, not a player's
    (the pack's player character's, or the character a player holds in a shared room)."""
    return line.speaker != pack.player_id and line.kind != "player"


def reminder_label(reminder_id: str) -> str:
    """How the inspector names a reminder: "author's note", "direction", or the pack reminder's id."""
    if reminder_id.startswith(AUTHORS_NOTE):
        return AUTHORS_NOTE_TAG
    return DIRECTION_TAG if reminder_id.startswith(DIRECTION) else reminder_id


def line_head(pack: Pack, speaker: str, clock: str) -> str:
    """How a line begins: `Name (HH:MM): `."""
    return f"{pack.speaker_name(speaker)} ({clock}): "


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


def parse_directions(
    pack: Pack, stage: Stage, written: str, table: dict[str, StageCommand]
) -> tuple[list[StageCommand], bool]:
    """The legal commands in what the model wrote after `[stage:`, applied in order, and whether
    that was the whole of it (a complete stage line, every command legal).

    Commands are found by their written forms, not by splitting at "; ": a name may hold one."""
    body = written.removesuffix("\n").removesuffix("]").strip()
    if body == "none":
        return [], written.endswith("]\n")
    applied: list[StageCommand] = []
    rest = body
    while rest:
        form = rest if rest in table else next((f for f in table if rest.startswith(f + "; ")), None)
        if form is None:
            break
        command = table[form]
        if not stage.is_legal(pack, command):
            break
        stage = stage.apply(pack, command)
        applied.append(command)
        rest = rest[len(form) :].removeprefix("; ")
    return applied, written.endswith("]\n") and not rest and bool(applied)


# What follows a line's head: a space, then one line of text that starts with a word. The space is
# the text's: the model writes it with the first word (" The"), as it reads it everywhere else.
_TEXT = '" " [^\\n ] [^\\n]* "\\n"'
TEXT_GRAMMAR = f"root ::= {_TEXT}\n"  # the line's text, after its head (turn.py's last step)


def head_grammar(pack: Pack, speakers: list[str], clock: str) -> str:
    """A grammar for a line's head, `Name (HH:MM):`, by one of `speakers`, at `clock` or up to two
    hours later."""
    return _line_rules(pack, speakers, clock, "")


def line_grammar(pack: Pack, speakers: list[str], clock: str) -> str:
    """A grammar for one whole line, its head and its text (`head_grammar`, then `TEXT_GRAMMAR`)."""
    return _line_rules(pack, speakers, clock, " " + _TEXT)


def _line_rules(pack: Pack, speakers: list[str], clock: str, text: str) -> str:
    names = " | ".join(_literal(pack.speaker_name(s)) for s in speakers)
    hour = int(clock[:2])
    hours = " | ".join(_literal(f"{(hour + step) % 24:02d}") for step in range(3))
    return f'root ::= speaker " (" hour ":" [0-5] [0-9] "):"{text}\nspeaker ::= {names}\nhour ::= {hours}\n'


def parse_line_head(pack: Pack, written: str, speakers: list[str]) -> tuple[str, str, str] | None:
    """(speaker id, clock, the text after the head) once the head `Name (HH:MM): ` is complete.

    The speakers' own names are looked for first (the longest first, so "Ann" does not take
    "Ann (young)"'s lines): a name may hold a parenthesis. A head naming no one who may speak
    (a server that ignores the grammar) is the narrator's."""
    for speaker in sorted(speakers, key=lambda s: -len(pack.speaker_name(s))):
        name = pack.speaker_name(speaker)
        if written.startswith(name) and (clock := _CLOCK_HEAD.match(written, len(name))):
            return speaker, clock.group("clock"), written[clock.end() :]
    match = _LINE_HEAD.match(written)
    if match is None:
        return None
    return NARRATOR, match.group("clock"), written[match.end() :]


class LineReader:
    """A line's text read as it streams: first its head `Name (HH:MM): ` (who speaks, and
    when), then the line's own text, up to the end of the line."""

    def __init__(self, pack: Pack, speakers: list[str], clock: str) -> None:
        self.pack = pack
        self.speakers = speakers  # who may speak
        self._written = ""  # the text so far, while the head is not complete
        self.speaker: str | None = None  # known once the head is complete
        self.clock = clock  # the head's time once it is complete
        self.head = ""  # the head as written
        self.ended = False  # the line is over (or it can have no head): the rest is not the line's

    def feed(self, piece: str) -> str:
        """The part of `piece` that is the line's text (none while the head is being written)."""
        if self.speaker is None:
            self._written += piece
            head = parse_line_head(self.pack, self._written, self.speakers)
            if head is None:
                self.ended = "\n" in self._written  # a line without its head: nothing to keep
                return ""
            self.speaker, self.clock, piece = head
            self.head = self._written[: len(self._written) - len(piece)]
        text, newline, _rest = piece.partition("\n")  # one line per turn
        self.ended = bool(newline)
        return text

    def kept_head(self) -> str:
        """The head as the story keeps the line (once a head was read)."""
        assert self.speaker is not None
        return line_head(self.pack, self.speaker, self.clock)


def later_clock(previous: str, written: str) -> str:
    """`written`, unless that would turn the clock back within the same day: then `previous`."""
    return written if (written >= previous or written[:2] < previous[:2] and previous[:2] >= "22") else previous


def next_minute(clock: str, minutes: int = 1) -> str:
    total = (int(clock[:2]) * 60 + int(clock[3:]) + minutes) % (24 * 60)
    return f"{total // 60:02d}:{total % 60:02d}"


def _literal(text: str) -> str:
    """`text` as a GBNF string literal. Quotes and backslashes are escaped, and so is every character
    that is not printable (as \\xHH, \\uHHHH or \\UHHHHHHHH): names are checked when a pack loads,
    and even so nothing in one can end the literal or carry a terminal escape into a log. A NUL is
    left out: raw it ends the C string llama.cpp reads, escaped llama.cpp's sampler takes it for the
    end of a piece and aborts the process."""
    out = []
    for char in text:
        code = ord(char)
        if code == 0:
            continue
        if char in '"\\':
            out.append("\\" + char)
        elif char.isprintable() and not 0x7F <= code <= 0x9F:
            out.append(char)
        elif code <= 0xFF:
            out.append(f"\\x{code:02X}")
        elif code <= 0xFFFF:
            out.append(f"\\u{code:04X}")
        else:
            out.append(f"\\U{code:08X}")
    return '"' + "".join(out) + '"'
