"""The scripted conversation the long-session and resume benchmarks play: fixed scenario, fixed
player lines, fixed reply length and seeds (seed = SEED_BASE + turn)."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from ..engine import GenerationParams, GenerationResult, Prompt, SamplingParams
from ..story.framing import framed

if TYPE_CHECKING:
    from ..engine import ModelSession

# Every benchmark samples with these, whatever the game's defaults become: figures measured in
# different releases stay comparable.
BENCH_SAMPLING = SamplingParams(temperature=0.8, top_k=40, top_p=0.95, min_p=0.05, repeat_penalty=1.1, repeat_last_n=64)
SEED_BASE = 1000
SCENARIO = (
    "The Lighthouse at Gull Point\n\n"
    "A winter storm batters Gull Point, a rocky headland with a single lighthouse. Ash, a traveller "
    "on the coast road, has taken shelter there for the night. Mira, the keeper, lives alone with her "
    "grey cat Pip and the great lamp, which she tends every hour. She is forty, weathered and dry-humoured, "
    "and she guards a secret: the light flickers in a pattern, as if signalling to someone out at sea. "
    "Ash is curious and polite, and wants to know what the signal means before the storm ends.\n\n"
    "Characters:\n- Ash (the player): a tired, curious traveller.\n"
    "- Mira: the keeper, sharp-tongued and protective of the lamp.\n- Pip: the cat.\n"
)
SUMMARIES = (
    "Ash arrived soaked; Mira let him stay but forbade him the lamp room.",
    "Ash saw the light flicker in threes; Mira admitted a boat is expected before dawn.",
)
PLAYER_LINES = (
    "Thank you for letting me in. Is it always this wild out here?",
    "What is that pattern the lamp keeps making?",
    "Who are you expecting on a night like this?",
    "Your cat has been staring at the door for an hour.",
    "I heard something below the cliffs. Did you hear it too?",
    "Tell me about the last keeper of this lighthouse.",
    "Is there anything I can do to help with the lamp?",
    "Why do you keep a logbook in a language I cannot read?",
    "The storm seems to be easing. Should we go down to the shore?",
    "There is a light answering from the sea. Look!",
    "You knew they would come tonight, didn't you?",
    "What happens to me once the boat arrives?",
)


def pinned_text(summary: str) -> str:
    return f"{SCENARIO}\nSummary of the story so far: {summary}\n\nStory:\n"


def player_text(turn: int, notes: str = "") -> str:
    """Turn `turn`'s player line, after the notes it brings in (bench/steering.py), and the reply's opening."""
    return f"{notes}Ash: {PLAYER_LINES[turn % len(PLAYER_LINES)]}\nMira:"


def reply_params(turn: int, reply_tokens: int, *, heal: bool) -> GenerationParams:
    sampling = replace(BENCH_SAMPLING, seed=SEED_BASE + turn)
    return GenerationParams(sampling=sampling, max_tokens=reply_tokens, heal=heal)


class ScriptedGame:
    """The conversation as the engine sees it: a pinned block and whole turns of exact tokens."""

    def __init__(self, session: ModelSession, summary: str = SUMMARIES[0]) -> None:
        self.session = session
        self.bos = [session.bos_token] if session.bos_token is not None else []
        self.turns: list[list[int]] = []
        self.set_summary(summary)

    def set_summary(self, summary: str) -> None:
        """The pinned block with `summary`, in the model's chat frame (`--template`), as a game has it."""
        self.pinned = self.bos + framed(self.session, self.session.tokenize(pinned_text(summary)))

    def prompt(self, turn: int, notes: str = "") -> Prompt:
        return Prompt.of(self.pinned, [*self.turns, self.session.tokenize(player_text(turn, notes))])

    async def play(self, turn: int, reply_tokens: int, *, heal: bool = True, notes: str = "") -> GenerationResult:
        prompt = self.prompt(turn, notes)
        generation = self.session.generate(prompt, reply_params(turn, reply_tokens, heal=heal))
        async for _piece in generation:
            pass
        result = await generation.result()
        opened = list(prompt.turns[-1])
        self.turns.append(
            opened[: len(opened) - result.healed_tokens] + list(result.tokens) + self.session.tokenize("\n")
        )
        return result
