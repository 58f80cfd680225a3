"""A story being played: the lines so far, as text and as the exact tokens the model read.

The prompt is a pinned preamble (the pack's world and characters) followed by one turn per line,
`Name: text`. Each line keeps its own tokens, so the prompt is made of token lists and never
re-tokenized: the engine evaluates only what its KV cache lacks, and when the story outgrows the
context it evicts the oldest lines by shifting the cache. A GBNF grammar makes every reply one line
by a character who may speak.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

from ..engine import Generation, GenerationParams, GenerationResult, LlamaSession, Prompt, SamplingParams
from ..errors import UserFacingError
from ..scenario.loader import LoadedPack
from ..scenario.macros import expand
from ..scenario.schema import NARRATOR, Character, Pack
from ..scenario.watch import watch_pack


@dataclass(frozen=True)
class Line:
    speaker: str  # a character id, or "narrator"
    text: str
    tokens: tuple[int, ...] = field(repr=False)


class Reply:
    """A line being written: iterate for pieces of its text; `speaker` is known once named."""

    def __init__(self, playthrough: Playthrough, generation: Generation, names: dict[str, str]) -> None:
        self._playthrough = playthrough
        self._generation = generation
        self._names = names  # "Mira" -> "mira"
        self.speaker: str | None = None
        self.text = ""
        self.line: Line | None = None  # set when the reply is committed to the story
        self.generation_result: GenerationResult | None = None

    def cancel(self) -> None:
        self._generation.cancel()

    def __aiter__(self) -> AsyncIterator[str]:
        return self._pieces()

    async def _pieces(self) -> AsyncIterator[str]:
        prefix = ""
        async for piece in self._generation:
            if self.speaker is None:
                prefix += piece
                name, separator, rest = prefix.partition(": ")
                if not separator:
                    continue
                self.speaker = self._names.get(name, NARRATOR)
                piece = rest
            piece = piece.replace("\n", "")  # the grammar ends every line with one
            if piece:
                self.text += piece
                yield piece
        self.generation_result = await self._generation.result()
        self.line = self._playthrough._commit(self, self.generation_result)


class Playthrough:
    def __init__(
        self,
        session: LlamaSession,
        loaded: LoadedPack,
        episode_id: str,
        *,
        sampling: SamplingParams | None = None,
        max_reply_tokens: int = 160,
    ) -> None:
        self.session = session
        self.pack: Pack = loaded.pack
        self.pack_root = loaded.root
        self.episode_id = episode_id
        self.sampling = sampling or SamplingParams()
        self.max_reply_tokens = max_reply_tokens
        self._bos = [session.bos_token] if session.bos_token is not None else []
        self._preamble: list[int] = self._bos + session.tokenize(self._preamble_text())
        self.lines: list[Line] = []
        user = self.pack.player.name
        for opening in self.pack.episodes[episode_id].lines:
            self._add_line(
                opening.speaker, expand(opening.text, user=user, char=self.pack.speaker_name(opening.speaker))
            )

    # -- what the model reads ---------------------------------------------------------------------

    def _preamble_text(self) -> str:
        pack = self.pack
        user = pack.player.name
        cast = "\n".join(_character_sheet(c, user) for c in pack.characters.values())
        episode = pack.episodes.get(self.episode_id)
        scene_id = episode.scene if episode and episode.scene else next(iter(pack.scenes), None)
        scene = pack.scenes.get(scene_id) if scene_id else None
        lore = [expand(entry.content, user=user) for entry in pack.lore.values() if entry.always and entry.enabled]
        parts = [
            pack.name,
            expand(pack.prompt.scenario.strip(), user=user),
            expand(pack.prompt.instructions.strip(), user=user),
            f"Characters:\n{cast}",
            "Background:\n" + "\n".join(f"- {fact}" for fact in lore) if lore else "",
            f"Scene: {scene.name}. {expand(scene.description, user=user)}".strip() if scene else "",
        ]
        return "\n\n".join(part for part in parts if part) + "\n\nStory:\n"

    def apply_pack(self, loaded: LoadedPack) -> None:
        """Play on from here with a changed pack (hot reload). The lines so far stay as they are;
        the engine re-reads only from the first token of the prompt that changed."""
        self.pack = loaded.pack
        self.pack_root = loaded.root
        self._preamble = self._bos + self.session.tokenize(self._preamble_text())

    def prompt(self) -> Prompt:
        """The preamble, pinned, then every line as a turn: the engine keeps what fits."""
        return Prompt.of(self._preamble, [line.tokens for line in self.lines])

    def _add_line(self, speaker: str, text: str, tokens: Sequence[int] | None = None) -> Line:
        if tokens is None:
            tokens = self.session.tokenize(f"{self.pack.speaker_name(speaker)}: {text}\n")
        line = Line(speaker, text, tuple(tokens))
        self.lines.append(line)
        return line

    def _speaker_grammar(self) -> tuple[str, dict[str, str]]:
        names = {c.name: cid for cid, c in self.pack.characters.items() if not c.player}
        names["Narrator"] = NARRATOR
        alternatives = " | ".join(_gbnf_literal(name) for name in names)
        grammar = f'root ::= speaker ": " text "\\n"\nspeaker ::= {alternatives}\ntext ::= [^\\n]+\n'
        return grammar, names

    async def follow_pack_changes(self) -> AsyncIterator[LoadedPack | UserFacingError]:
        """Watch the pack's files; apply each valid save, and pass on what happened (the problems
        of an invalid save leave the last good pack in play)."""
        async for change in watch_pack(self.pack_root):
            if isinstance(change, LoadedPack):
                self.apply_pack(change)
            yield change

    # -- turns ------------------------------------------------------------------------------------

    def player_says(self, text: str) -> Reply:
        """Add the player's line, then start the reply to it."""
        text = " ".join(text.split())
        if text:
            self._add_line(self.pack.player_id, text)
        return self.continue_story()

    def continue_story(self) -> Reply:
        """Let a character (or the narrator) write the next line."""
        grammar, names = self._speaker_grammar()
        params = GenerationParams(
            sampling=self.sampling,
            max_tokens=self.max_reply_tokens,
            grammar=grammar,
            heal=False,  # the grammar decides how each line starts
        )
        return Reply(self, self.session.generate(self.prompt(), params), names)

    def _commit(self, reply: Reply, result: GenerationResult) -> Line | None:
        if reply.speaker is None or not reply.text.strip():
            return None  # stopped before a character said anything: nothing to keep
        tokens = list(result.tokens)
        if not result.text.endswith("\n"):  # cut short (stopped, or out of tokens): close the line
            tokens += self.session.tokenize("\n")
        return self._add_line(reply.speaker, reply.text.strip(), tokens)


def _character_sheet(character: Character, user: str) -> str:
    facts = [character.description, character.personality, character.appearance]
    text = " ".join(expand(fact.strip(), user=user, char=character.name) for fact in facts if fact.strip())
    role = " (the player)" if character.player else ""
    return f"- {character.name}{role}: {text}" if text else f"- {character.name}{role}"


def _gbnf_literal(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
