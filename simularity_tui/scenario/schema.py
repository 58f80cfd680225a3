"""What a `scenario.toml` may hold, validated with precise errors.

This is the first slice of the format: metadata, the prompt, characters and episodes with scripted
opening lines. Every table forbids unknown keys so that a typo is reported, not ignored.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

Identifier = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]
Colour = Annotated[str, StringConstraints(pattern=r"^#[0-9a-fA-F]{6}$")]
NARRATOR = "narrator"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Prompt(_Strict):
    scenario: str = Field(description="The world and the situation, as the model reads it.")
    instructions: str = ""


class Character(_Strict):
    name: Annotated[str, StringConstraints(min_length=1, max_length=40)]
    color: Colour = "#c0c0c0"
    player: bool = False
    description: str = ""


class OpeningLine(_Strict):
    speaker: str = Field(description="A character id, or 'narrator'.")
    text: Annotated[str, StringConstraints(min_length=1)]


class Episode(_Strict):
    name: str
    description: str = ""
    lines: list[OpeningLine] = []


class Pack(_Strict):
    id: Identifier
    name: str
    version: str = "1.0.0"
    author: str = ""
    description: str = ""
    tags: list[str] = []
    prompt: Prompt
    characters: dict[Identifier, Character]
    episodes: dict[Identifier, Episode]

    @model_validator(mode="after")
    def _references_hold(self) -> Pack:
        players = [cid for cid, character in self.characters.items() if character.player]
        if len(players) != 1:
            raise ValueError(f"exactly one character must have player = true (found {len(players)})")
        if len(self.characters) < 2:
            raise ValueError("a pack needs the player and at least one other character")
        if not self.episodes:
            raise ValueError("a pack needs at least one episode")
        for eid, episode in self.episodes.items():
            for number, line in enumerate(episode.lines, start=1):
                if line.speaker != NARRATOR and line.speaker not in self.characters:
                    raise ValueError(
                        f"episodes.{eid}.lines[{number}]: speaker '{line.speaker}' is not a character id "
                        f"(known: {', '.join([NARRATOR, *self.characters])})"
                    )
        return self

    @property
    def player_id(self) -> str:
        return next(cid for cid, character in self.characters.items() if character.player)

    @property
    def player(self) -> Character:
        return self.characters[self.player_id]

    def speaker_name(self, speaker: str) -> str:
        return "Narrator" if speaker == NARRATOR else self.characters[speaker].name
