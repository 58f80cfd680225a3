"""The stage: the scene, who is on it, and how each of them looks.

Stage commands change it. The model writes them in a short form a grammar offers, built from the
pack and the current stage so that only legal, state-changing commands can be written: a scene
other than the current one, a character who is off stage entering (with any of their expressions),
one who is on stage leaving, an expression or outfit that is not the current one. The same form is
how scripted directions appear in the transcript, so the model sees examples of it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from ..scenario.schema import Direction, Pack


@dataclass(frozen=True)
class Look:
    expression: str | None
    outfit: str | None


@dataclass(frozen=True)
class StageCommand:
    kind: str  # set_scene | add_character | remove_character | set_expression | set_outfit
    target: str  # the scene or character id
    value: str | None = None  # the expression or outfit (and, for add_character, the expression)

    @classmethod
    def from_direction(cls, direction: Direction) -> StageCommand:
        kind = direction.command
        if kind == "set_scene":
            return cls(kind, str(direction.set_scene))
        if kind == "add_character":
            return cls(kind, str(direction.add_character), direction.expression)
        if kind == "remove_character":
            return cls(kind, str(direction.remove_character))
        value = direction.set_expression if kind == "set_expression" else direction.set_outfit
        return cls(kind, str(direction.character), value)

    def to_table(self) -> dict[str, str]:
        table = {"kind": self.kind, "target": self.target}
        if self.value is not None:
            table["value"] = self.value
        return table


@dataclass(frozen=True)
class Stage:
    scene: str | None
    cast: dict[str, Look] = field(default_factory=dict)  # who is on stage, in order of entry

    @classmethod
    def opening(cls, pack: Pack, episode_id: str) -> Stage:
        episode = pack.episodes[episode_id]
        scene = episode.scene or next(iter(pack.scenes), None)
        cast = {}
        for member in episode.characters:
            character = pack.characters[member.id]
            cast[member.id] = Look(
                member.expression or character.default_expression or next(iter(character.expressions), None),
                member.outfit or character.default_outfit,
            )
        return cls(scene, cast)

    def is_legal(self, pack: Pack, command: StageCommand) -> bool:
        """Whether `command` exists in the pack and changes this stage."""
        if command.kind == "set_scene":
            return command.target in pack.scenes and command.target != self.scene
        character = pack.characters.get(command.target)
        if character is None or character.player:
            return False
        on_stage = self.cast.get(command.target)
        if command.kind == "add_character":
            return on_stage is None and (command.value is None or command.value in character.expressions)
        if on_stage is None:
            return False
        if command.kind == "remove_character":
            return True
        if command.kind == "set_expression":
            return command.value in character.expressions and command.value != on_stage.expression
        if command.kind == "set_outfit":
            return command.value in character.outfits and command.value != on_stage.outfit
        return False

    def apply(self, pack: Pack, command: StageCommand) -> Stage:
        """The stage after `command` (which must be legal)."""
        if command.kind == "set_scene":
            return replace(self, scene=command.target)
        cast = dict(self.cast)
        if command.kind == "add_character":
            character = pack.characters[command.target]
            expression = command.value or character.default_expression or next(iter(character.expressions), None)
            cast[command.target] = Look(expression, character.default_outfit)
        elif command.kind == "remove_character":
            del cast[command.target]
        elif command.kind == "set_expression":
            cast[command.target] = replace(cast[command.target], expression=command.value)
        else:
            cast[command.target] = replace(cast[command.target], outfit=command.value)
        return replace(self, cast=cast)

    def legal_commands(self, pack: Pack) -> list[StageCommand]:
        commands = [StageCommand("set_scene", sid) for sid in pack.scenes if sid != self.scene]
        for cid, character in pack.characters.items():
            if character.player:
                continue
            look = self.cast.get(cid)
            if look is None:
                commands.append(StageCommand("add_character", cid))
                commands += [StageCommand("add_character", cid, e) for e in character.expressions]
                continue
            commands.append(StageCommand("remove_character", cid))
            commands += [StageCommand("set_expression", cid, e) for e in character.expressions if e != look.expression]
            commands += [StageCommand("set_outfit", cid, o) for o in character.outfits if o != look.outfit]
        return commands


def describe(pack: Pack, command: StageCommand) -> str:
    """The words a command is written with in the transcript (and chosen with by the model).

    A command an older line made may name what the pack no longer has: its id stands in.
    """
    if command.kind == "set_scene":
        scene = pack.scenes.get(command.target)
        return f"go to {scene.name if scene else command.target}"
    character = pack.characters.get(command.target)
    name = character.name if character else command.target
    if command.kind == "add_character":
        return f"{name} enters" + (f" ({command.value})" if command.value else "")
    if command.kind == "remove_character":
        return f"{name} leaves"
    if command.kind == "set_expression":
        return f"{name}: {command.value}"
    outfit = character.outfits.get(str(command.value)) if character else None
    return f"{name} wears {outfit.name if outfit else command.value}"


def stage_line(pack: Pack, commands: list[StageCommand]) -> str:
    """The transcript line that carries a turn's stage commands."""
    return "[stage: " + ("; ".join(describe(pack, c) for c in commands) or "none") + "]\n"
