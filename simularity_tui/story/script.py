"""Headless play: a script of player lines and commands, the transcript on stdout.

Each script line is the player's line, or a command:

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
    /quit               stop here

Blank lines and lines starting with # are skipped. The game is saved after every change, as in the
TUI; what is printed is untrusted model text made safe for a terminal.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TextIO

from ..errors import UserFacingError
from ..untrusted_text import printable
from .game import Game, Turn
from .play import SavedGame
from .saves import delete_save, save_path, transcript_markdown, write_save
from .stage import describe
from .tree import Line


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
            elif await _command(saved, entry, out) is False:
                break
        except UserFacingError as error:
            raise ScriptError(f"{source}:{number}: {error.message}", hint=error.hint) from None
        await saved.after_turn()
    await saved.write_kv()


async def _command(saved: SavedGame, entry: str, out: TextIO) -> bool:
    game = saved.game
    name, _, argument = entry[1:].partition(" ")
    argument = argument.strip()
    if name == "continue":
        await _stream(game, game.continue_story(), out)
    elif name == "regen":
        await _stream(game, game.regenerate(), out)
    elif name in ("undo", "redo"):
        moved = game.undo() if name == "undo" else game.redo()
        print(f"[{name}: {'now' if moved else 'nothing to ' + name + ', still'} at line {len(game.lines)}]", file=out)
    elif name == "variant":
        _last_line(game, entry)
        index, count = game.variants()
        if not re.fullmatch(r"[+-]?\d+", argument):
            raise ScriptError(f"'{entry}' needs a variant number", hint="/variant 2, or /variant +1 or -1 to step")
        target = index + int(argument) if argument[0] in "+-" else int(argument) - 1
        if not 0 <= target < count:
            raise ScriptError(f"the last line has {count} variant{'s' if count > 1 else ''}; there is no {target + 1}")
        index, count = game.switch_variant(target - index)
        print(f"[variant {index + 1} of {count}]", file=out)
        _print_line(game, game.lines[-1], out)
    elif name == "edit":
        _last_line(game, entry)
        game.edit(argument)
        _print_line(game, game.lines[-1], out)
    elif name == "scene":
        unlocked = game.set_scene(argument)
        _print_line(game, game.lines[-1], out)
        _print_unlocked(game, unlocked, out)
    elif name in ("mute", "unmute"):
        if argument not in game.pack.characters:
            raise ScriptError(f"no character '{argument}'", hint=f"Characters: {', '.join(game.pack.characters)}")
        if (argument in game.silent) != (name == "mute"):
            game.toggle_speaker(argument)
        print(f"[{argument} {'may not' if name == 'mute' else 'may'} speak]", file=out)
    elif name in ("save", "save!"):
        copy = save_path(game.pack.id, argument)
        if name == "save" and (copy.exists() or copy.is_symlink()):
            # A script run twice, or a name reused by mistake, must not wipe out a story silently.
            note = f"[a save '{argument}' exists already; /save another name, or /save! {argument} to replace it]"
            print(note, file=out)
            return True
        if copy != saved.path:
            delete_save(copy)  # the old save's KV state file belongs to another story
        write_save(copy, game=game, created=saved.created)
        print(f"[saved a copy as '{argument}']", file=out)  # a save name is plain text (save_path)
    elif name == "export":
        try:
            Path(argument).write_text(transcript_markdown(game), encoding="utf-8")
        except OSError as error:
            raise ScriptError(f"cannot write {argument} ({error.strerror})") from None
        print(f"[transcript written to {argument}]", file=out)
    elif name == "quit":
        return False
    else:
        raise ScriptError(
            f"unknown command '/{name}'",
            hint="Commands: /continue /regen /undo /redo /variant N /edit TEXT /scene ID /mute ID /unmute ID "
            "/save NAME /save! NAME /export PATH /quit",
        )
    return True


async def _stream(game: Game, turn: Turn, out: TextIO) -> None:
    printed = False
    async for piece in turn:
        if not printed:
            for command in turn.directions:
                print(f"[stage: {printable(describe(game.pack, command))}]", file=out)
            out.write(f"{printable(game.pack.speaker_name(turn.speaker or 'narrator'))}: ")
            printed = True
        out.write(_continued(piece))
        out.flush()
    if printed:
        out.write("\n")
    _print_unlocked(game, turn.unlocked, out)
    if turn.summary_written:
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
