"""What the room tells its clients of the story: a line, the stage (protocol.py says how it travels)."""

from __future__ import annotations

from ..scenario.schema import NARRATOR, Pack
from ..story.stage import Stage
from ..story.tree import Line
from .protocol import Message


def line_message(pack: Pack, line: Line, author: str = "") -> Message:
    """A line as the clients show it; `author`: the player who wrote it (a player's line)."""
    return {**speaker_fields(pack, line.speaker), "player": author, "text": line.text, "clock": line.clock}


def speaker_fields(pack: Pack, speaker: str) -> Message:
    """Who speaks, as a screen names them: their name, colour, and whether it is narration."""
    character = pack.characters.get(speaker)
    return {
        "speaker": pack.speaker_name(speaker),
        "colour": character.color if character else "",
        "narration": speaker == NARRATOR,
    }


def stage_message(stage: Stage) -> Message:
    return {
        "scene": stage.scene,
        "cast": [[cid, look.expression, look.outfit] for cid, look in stage.cast.items()],
    }
