"""Headless play: a script of player lines and commands, the transcript on stdout.

Each script line is the player's line, or a command:

    /do TEXT            an action of the player's, which the narrator tells ("Ash opens the door.")
    /story TEXT         a line of narration the player writes
    /ooc TEXT           a direction outside the story that the next line alone reads
    /extend             the last line goes on where it stopped (token healing: mid-word, a whole word)
    /lead NAME: TEXT    a line begun for a character who may speak, finished by the model
    /impersonate        the model writes the player's next line, which is then said
    /lore add ID KEY, KEY: TEXT   a lore entry of the player's, kept in the save (as pack lore reads)
    /lore edit ID: TEXT           its text (or a pack entry's, kept as the player's version)
    /lore disable ID, /lore enable ID, /lore delete ID; /lore alone lists the player's entries

    /continue           the story goes on without the player
    /regen              a new variant of the last line (a fresh seed)
    /undo, /redo        step back, or forward again along the chosen variants
    /variant N          show variant N (1 = the first) of the last line; /variant +1, /variant -1
    /edit TEXT          rewrite the last line
    /scene ID           move the story to a scene
    /mute ID, /unmute ID   stop a character speaking, or let them again
    /save NAME          write a copy of the game under another name (a branch); a save by that
                        name is never overwritten: the script says so and goes on
    /save! NAME         the same, replacing a save by that name if there is one
    /export PATH        write the transcript as Markdown
    /note TEXT          the author's note: text the model reads near the end of the prompt, from the
                        next line on; /note --clear removes it; /note alone prints it
    /memory TEXT        correct the summary of the story so far (the model's memory); /memory alone
                        prints it
    /essentials TEXT    plot essentials: facts the model always reads, in the pinned block;
                        /essentials --clear removes them; /essentials alone prints them
    /persona NAME: TEXT who the player is from now on: a name, and a description after ": " (the
                        pack's own where left out); /persona alone prints it
    /quit               stop here

Blank lines and lines starting with # are skipped. The game is saved after every change, as in the
TUI; what is printed is untrusted model text made safe for a terminal.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from ..errors import UserFacingError
from ..scenario.schema import NARRATOR
from ..untrusted_text import printable
from .completion import Completion
from .game import ACTS, Game
from .play import SavedGame
from .player_lore import lore_command
from .saves import SaveExists, export_transcript
from .stage import describe
from .tree import Line
from .turn import Turn


class ScriptError(UserFacingError):
    pass


async def play_script(saved: SavedGame, script: Iterable[str], *, source: str, out: TextIO = sys.stdout) -> None:
    game = saved.game
    for line in game.lines:
        _print_line(game, line, out)
    for number, raw in enumerate(script, start=1):
        entry = raw.rstrip("\n")
        if not entry.strip() or entry.lstrip().startswith("#"):
            continue
        try:
            if not entry.startswith("/"):
                before = len(game.lines)
                turn = game.say(entry)
                for said in game.lines[before:]:
                    _print_line(game, said, out)
                await _stream(game, turn, out)
            elif entry[1:].partition(" ")[0] == "quit":
                break
            else:
                await _command(saved, entry, out)
        except UserFacingError as error:
            raise ScriptError(f"{source}:{number}: {error.message}", hint=error.hint) from None
        await saved.after_turn()
    await saved.write_kv()


@dataclass(frozen=True)
class _Call:
    """A command line of the script: `/name argument`."""

    saved: SavedGame
    entry: str  # the whole line, for messages
    name: str
    argument: str
    out: TextIO

    @property
    def game(self) -> Game:
        return self.saved.game


async def _command(saved: SavedGame, entry: str, out: TextIO) -> None:
    name, _, argument = entry[1:].partition(" ")
    run = _COMMANDS.get(name)
    if run is None:
        raise ScriptError(
            f"unknown command '/{name}'",
            hint="Commands: /continue /regen /undo /redo /variant N /edit TEXT /scene ID /mute ID /unmute ID "
            "/save NAME /save! NAME /export PATH /note TEXT /memory TEXT /essentials TEXT /persona NAME: TEXT "
            "/do TEXT /story TEXT /ooc TEXT /extend /lead NAME: TEXT /impersonate /lore … /quit",
        )
    await run(_Call(saved, entry, name, argument.strip(), out))


async def _continue(call: _Call) -> None:
    await _stream(call.game, call.game.continue_story(), call.out)


async def _extend(call: _Call) -> None:
    _last_line(call.game, call.entry)
    await _complete(call.game.extend(), "[extended] …", call.out)


async def _lead(call: _Call) -> None:
    game = call.game
    completion = game.lead(call.argument)
    name = game.pack.speaker_name(completion.speaker or NARRATOR)
    await _complete(completion, f"{printable(name)}: {_continued(completion.begun)}", call.out)


async def _complete(completion: Completion, opening: str, out: TextIO) -> None:
    """A line finished by the model: `opening` (printable already), then what it writes, streamed."""
    out.write(opening)
    async for piece in completion:
        out.write(_continued(piece))
        out.flush()
    out.write("\n")
    out.flush()


async def _impersonate(call: _Call) -> None:
    game = call.game
    written = await game.impersonate().finish()
    print(f"[impersonated] {printable(game.pack.player.name)}: {_continued(written.text)}", file=call.out)
    if written.text:
        before = len(game.lines)
        turn = game.say(written.text)
        for line in game.lines[before:]:
            _print_line(game, line, call.out)
        await _stream(game, turn, call.out)


async def _lore(call: _Call) -> None:
    for said in lore_command(call.game, call.argument):
        print(f"[{printable(said)}]", file=call.out)


async def _act(call: _Call) -> None:
    game = call.game
    if not call.argument:
        raise ScriptError(f"'{call.entry}' needs a text", hint=f"/{call.name} TEXT")
    before = len(game.lines)
    turn = game.act(next(act for act in ACTS if act == call.name), call.argument)
    for line in game.lines[before:]:
        _print_line(game, line, call.out)
    if call.name == "ooc":
        print(f"[direction: {printable(game.direction)}]", file=call.out)
    await _stream(game, turn, call.out)


async def _regen(call: _Call) -> None:
    await _stream(call.game, call.game.regenerate(), call.out)


async def _undo_or_redo(call: _Call) -> None:
    game, name = call.game, call.name
    moved = game.undo() if name == "undo" else game.redo()
    print(f"[{name}: {'now' if moved else 'nothing to ' + name + ', still'} at line {len(game.lines)}]", file=call.out)


async def _variant(call: _Call) -> None:
    game, argument = call.game, call.argument
    _last_line(game, call.entry)
    index, count = game.variants()
    if not re.fullmatch(r"[+-]?\d+", argument):
        raise ScriptError(f"'{call.entry}' needs a variant number", hint="/variant 2, or /variant +1 or -1 to step")
    target = index + int(argument) if argument[0] in "+-" else int(argument) - 1
    if not 0 <= target < count:
        raise ScriptError(f"the last line has {count} variant{'s' if count > 1 else ''}; there is no {target + 1}")
    index, count = game.switch_variant(target - index)
    print(f"[variant {index + 1} of {count}]", file=call.out)
    _print_line(game, game.lines[-1], call.out)


async def _edit(call: _Call) -> None:
    _last_line(call.game, call.entry)
    call.game.edit(call.argument)
    _print_line(call.game, call.game.lines[-1], call.out)


async def _scene(call: _Call) -> None:
    if call.game.stage.scene == call.argument:  # what the line asks already holds (the model moved there)
        scene = call.game.pack.scenes.get(call.argument)  # gone from a pack reloaded meanwhile: its id
        print(f"[already in {printable(scene.name if scene else call.argument)}]", file=call.out)
        return
    unlocked = call.game.set_scene(call.argument)
    _print_line(call.game, call.game.lines[-1], call.out)
    _print_unlocked(call.game, unlocked, call.out)


async def _mute_or_unmute(call: _Call) -> None:
    game, character, mute = call.game, call.argument, call.name == "mute"
    if character not in game.pack.characters:
        raise ScriptError(f"no character '{character}'", hint=f"Characters: {', '.join(game.pack.characters)}")
    if (character in game.silent) != mute:
        game.toggle_speaker(character)
    print(f"[{character} {'may not' if mute else 'may'} speak]", file=call.out)


async def _save(call: _Call) -> None:
    name = call.argument
    try:
        call.saved.save_copy(name, replace=call.name == "save!")
    except SaveExists:
        # A script run twice, or a name reused by mistake, must not wipe out a story silently.
        print(f"[a save '{name}' exists already; /save another name, or /save! {name} to replace it]", file=call.out)
        return
    print(f"[saved a copy as '{name}']", file=call.out)  # a save name is plain text (save_path)


async def _export(call: _Call) -> None:
    export_transcript(call.game, Path(call.argument))
    print(f"[transcript written to {call.argument}]", file=call.out)


async def _note(call: _Call) -> None:
    game = call.game
    if call.argument == "--clear":
        game.set_authors_note("")
    elif call.argument:
        game.set_authors_note(call.argument)
    shown = f"author's note: {printable(game.authors_note)}" if game.authors_note else "no author's note"
    print(f"[{shown}]", file=call.out)


async def _memory(call: _Call) -> None:
    game, text = call.game, call.argument
    if call.name == "memory":
        cost = game.set_memory(summary=text) if text else 0
        shown = f"memory: {printable(game.summary or '')}" if game.summary else "no summary yet"
    else:
        cost = game.set_memory(essentials="" if text == "--clear" else text) if text else 0
        shown = f"essentials: {printable(game.essentials)}" if game.essentials else "no essentials"
    print(f"[{shown}{f' · the next line reads {cost:,} tokens again' if cost else ''}]", file=call.out)


async def _persona(call: _Call) -> None:
    game, cost = call.game, 0
    if call.argument:
        name, _, description = call.argument.partition(": ")
        cost = game.set_persona(name.strip() or None, description.strip() or None)
    player = game.pack.player
    shown = f"persona: {printable(player.name)}: {printable(player.description)}".rstrip(": ")
    print(f"[{shown}{f' · the next line reads {cost:,} tokens again' if cost else ''}]", file=call.out)


_COMMANDS: dict[str, Callable[[_Call], Awaitable[None]]] = {
    "continue": _continue,
    "regen": _regen,
    "undo": _undo_or_redo,
    "redo": _undo_or_redo,
    "variant": _variant,
    "edit": _edit,
    "scene": _scene,
    "mute": _mute_or_unmute,
    "unmute": _mute_or_unmute,
    "save": _save,
    "save!": _save,
    "export": _export,
    "note": _note,
    "do": _act,
    "story": _act,
    "ooc": _act,
    "extend": _extend,
    "lead": _lead,
    "impersonate": _impersonate,
    "lore": _lore,
    "memory": _memory,
    "essentials": _memory,
    "persona": _persona,
}


async def _stream(game: Game, turn: Turn, out: TextIO) -> None:
    printed = False
    async for piece in turn:
        if not printed:
            for command in turn.directions:
                print(f"[stage: {printable(describe(game.pack, command))}]", file=out)
            out.write(f"{printable(game.pack.speaker_name(turn.speaker or NARRATOR))}: ")
            printed = True
        out.write(_continued(piece))
        out.flush()
    if printed:
        out.write("\n")
    _print_unlocked(game, turn.unlocked, out)
    idle = game.idle_work(read_ahead=False)  # a script has no idle time: the summary, between its entries
    if idle is not None and await idle.run():
        print("[the story so far was summarised]", file=out)
    out.flush()


def _last_line(game: Game, entry: str) -> None:
    if not game.lines:
        raise ScriptError(f"'{entry}': the story has no line yet (everything was undone)")


def _print_unlocked(game: Game, unlocked: list[str], out: TextIO) -> None:
    for achievement in unlocked:
        print(f"[achievement: {printable(game.pack.achievements[achievement].title)}]", file=out)


def _print_line(game: Game, line: Line, out: TextIO) -> None:
    for command in line.directions:
        print(f"[stage: {printable(describe(game.pack, command))}]", file=out)
    print(f"{printable(game.pack.speaker_name(line.speaker))}: {_continued(line.text)}", file=out, flush=True)


def _continued(text: str) -> str:
    """A line's text for the transcript: printable, its continuation lines indented, so that text
    with newlines in it (a pack's opening lines may have some) cannot pass for lines of other speakers."""
    return printable(text).replace("\n", "\n    ")
