"""What the model reads for the next line, part by part: the prompt inspector's view.

The view is built from the very tokens the next turn would send (`Game.prompt`, with the open part
the turn puts at its end: the lore notes, the reminders and the stage line's opening), so its
parts add up to the real prompt's length. Each part is labelled: the pinned block's (scenario,
instructions, characters, examples, places, always-on lore, summary…), every line with its number
and speaker (and the lore notes and reminders it brought in), then the new line's open part, with
the key that brought each note in and how long it stays.

Where a text was tokenized as one (the pinned block, a line read again from its text), a token may
straddle two of its parts: the counts are then each part's own token count, and the last part of
the text takes the rest, so that the sum stays exact.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Literal

from ..engine import Prompt
from ..engine.context_window import Window, common_prefix, plan_window
from .lore import Firing, LoreScan
from .writing import STAGE_OPEN, has_stage_line, line_parts, note_text, reminder_label, reminder_text

if TYPE_CHECKING:
    from .game import Game

Section = Literal["pinned", "story", "open"]


@dataclass(frozen=True)
class PromptPart:
    section: Section  # the pinned block, the lines, the new line's open part
    label: str  # scenario, instructions, characters, examples, places, always-on lore, summary, line, …
    text: str
    tokens: int
    detail: str = ""  # a line: its number and speaker; a lore note: the key that fired it and when it expires


@dataclass(frozen=True)
class PromptView:
    parts: tuple[PromptPart, ...]
    n_ctx: int
    total_tokens: int
    reused_tokens: int  # the KV the next turn would keep (common prefix with session.kv_tokens)
    lore: LoreScan
    chat_template: str = "raw"  # the chat frame's name (engine/chat_template.py)


def build_prompt_view(game: Game) -> PromptView:
    """The view of what `game`'s next turn would read. It asks the game for its lore notes and
    reminders as a turn does: give it a game that may change (Game.prompt_view gives a copy)."""
    notes, notes_tokens = game.lore_notes()
    scan = _scan(game)
    reminders, reminder_tokens = game.reminders()
    stage_open = game.session.tokenize(STAGE_OPEN)
    prompt = game.prompt(notes_tokens + reminder_tokens + stage_open)
    window = _window(game, prompt)
    parts = [
        *_pinned(game, prompt.pinned),
        *_story(game, prompt.turns[:-1], window.first_turn),
        *_open(game, notes, notes_tokens, scan),
        *_reminders(game, reminders, reminder_tokens),
        PromptPart("open", "stage", STAGE_OPEN, len(stage_open), "the new line's stage commands come next"),
    ]
    reused = common_prefix(game.session.kv_tokens, window.tokens)
    return PromptView(tuple(parts), game.session.n_ctx, len(prompt), reused, scan, game.session.chat_frame.name)


def _scan(game: Game) -> LoreScan:
    """The lore scan of the next line (lore_notes() keeps it on the game)."""
    assert game.last_lore_scan is not None
    return game.last_lore_scan


def _window(game: Game, prompt: Prompt) -> Window:
    """The window the engine would hold for the next turn's first step (its stage commands)."""
    n_ctx = game.session.n_ctx
    reserve = min(game.budgets.directions, n_ctx // 4) + 1  # as the engine keeps room for a reply
    return plan_window(prompt, n_ctx, reserve, game.window_start - game.covered)


def _pinned(game: Game, tokens: Sequence[int]) -> list[PromptPart]:
    """The pinned block's parts, inside the chat frame's two (framing.py) when the model has one."""
    session, labelled = game.session, game.pinned_parts()
    bos = 1 if tokens and session.bos_token is not None and tokens[0] == session.bos_token else 0
    frame = session.chat_frame
    opening, closing = (len(session.tokenize(text, special=True)) if text else 0 for text in frame.texts)
    counts = token_counts(session.tokenize, len(tokens) - bos - opening - closing, [text for _label, text in labelled])
    parts = [PromptPart("pinned", label, text, count) for (label, text), count in zip(labelled, counts)]
    if frame.raw:
        return [replace(parts[0], tokens=parts[0].tokens + bos), *parts[1:]]  # the begin-of-text token first
    return [
        PromptPart("pinned", "chat template", frame.opening, bos + opening, f"{frame.name} · the system turn opens"),
        *parts,
        PromptPart("pinned", "chat template", frame.closing, closing, f"{frame.name} · the story's turn opens"),
    ]


def _story(game: Game, turns: Sequence[Sequence[int]], first_kept: int) -> list[PromptPart]:
    """Every line in the prompt, with the notes and reminders it brought in."""
    pack, covered = game.pack, game.covered
    firings = _firings(game)
    parts: list[PromptPart] = []
    for index, (line, tokens) in enumerate(zip(game.lines[covered:], turns)):
        number = covered + index + 1
        pieces = line_parts(pack, line, stage=has_stage_line(pack, line), reminders=game.known_reminders())
        counts = token_counts(game.session.tokenize, len(tokens), [text for _label, _id, text in pieces])
        leaving = " · leaves the window on the next turn" if index < first_kept else ""
        for (label, key, text), count in zip(pieces, counts):
            detail = _line_detail(pack.speaker_name(line.speaker), number, label, key, firings.get((number, key)))
            parts.append(PromptPart("story", label, text, count, detail + leaving))
    return parts


def _line_detail(speaker: str, number: int, label: str, key: str, firing: Firing | None) -> str:
    if label == "line":
        return f"line {number} · {speaker}"
    if firing is not None:
        return f"line {number} · {_fired(firing)}"
    return f"line {number} · {key}"


def _firings(game: Game) -> dict[tuple[int, str], Firing]:
    """What brought each note in, for the lines written in this session (the lore log)."""
    return {(scan.line, firing.entry): firing for scan in game.lore_log for firing in scan.fired}


def _open(game: Game, notes: Sequence[str], tokens: Sequence[int], scan: LoreScan) -> list[PromptPart]:
    """The new line's lore notes, with the key that brought each one in."""
    texts = [(lid, note_text(game.pack, [lid], scale=game.notes_scale)) for lid in notes]
    texts = [(lid, text) for lid, text in texts if text]
    if not texts:
        return [PromptPart("open", "lore note", "", len(tokens))] if tokens else []
    fired = {firing.entry: firing for firing in scan.fired}
    counts = token_counts(game.session.tokenize, len(tokens), [text for _lid, text in texts])
    return [
        PromptPart("open", "lore note", text, count, _fired(fired[lid]) if lid in fired else lid)
        for (lid, text), count in zip(texts, counts)
    ]


def _fired(firing: Firing) -> str:
    """Which entry, what brought it in, and until when."""
    if firing.via == "key":
        how = f"key “{firing.key}” in {firing.source}"
    elif firing.via == "recursion":
        how = f"key “{firing.key}” in entry {firing.source}"
    else:
        how = "sticky"
    until = f" · stays to line {firing.until}" if firing.until is not None else ""
    return f"{firing.entry} · {how}{until}"


def _reminders(game: Game, reminders: Sequence[str], tokens: Sequence[int]) -> list[PromptPart]:
    known = game.known_reminders()
    texts = [reminder_text(known, [rid], scale=game.reminder_scales.get(rid, 1.0)) for rid in reminders]
    counts = token_counts(game.session.tokenize, len(tokens), texts) if texts else []
    detail = f"after the story: carried again every {game.budgets.remind_every} lines"
    return [
        PromptPart("open", reminder_label(rid), text, count, detail)
        for rid, text, count in zip(reminders, texts, counts)
    ]


def token_counts(tokenize: Callable[[str], list[int]], total: int, texts: Sequence[str]) -> list[int]:
    """How many of `total` tokens each of `texts` (in order) accounts for: each its own count,
    within what is left, and the last the rest, so that the counts add up to `total`."""
    counts, left = [], total
    for text in texts[:-1]:
        count = min(len(tokenize(text)), left)
        counts.append(count)
        left -= count
    return [*counts, left]
