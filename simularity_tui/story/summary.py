"""Memory: a summary of the lines the engine evicted, which stands for them in the pinned block.

The summary is asked for at the end of the story as the model reads it (the request is the open
turn after the window's lines): the engine reads only the request, and the story stays in the KV.
Putting the summary in the pinned block then costs its own tokens, not a re-read of the window
(engine/kv_cache.py puts a changed pinned tail in place and slides the lines after it). The request
holds the evicted lines' text, as many of the newest as leave room for it and its answer; when the
context has no such room, the request is read on its own, as a prompt of its own (the next line
reads the window again then).

Where the session has room aside (`ModelSession.aside_room`: the engine's cells beyond the
story's), the request is written there, beside the story (`GenerationParams.aside`): what the
model read ahead after the window's lines (the line being typed, the turn written ahead) stays in
the KV. Its room is then the room aside, less what of the story the KV lacks; with too little of
it, there is no request aside (None), and the summary is asked for the usual way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..engine import GenerationParams, ModelSession, Prompt, SamplingParams
from ..engine.context_window import unread
from ..scenario.schema import Pack
from .framing import framed
from .tree import Line

# Greedy: a summary is the likeliest account of what happened, not a creative one; the penalty
# a little over the default keeps a small model from repeating itself over a long list of events.
SUMMARY_SAMPLING = SamplingParams(temperature=0.0, repeat_penalty=1.15)
# One paragraph, on one line, and never an empty one (a small model likes to end at once); the
# grammar ends the generation when the line does.
SUMMARY_GRAMMAR = 'root ::= "\\n"? [^\\n]+ "\\n"\n'
REQUEST_ROOM = 80  # tokens kept for the request's own words, around the events
MIN_EVENTS = 3  # fewer evicted lines than this in the room: ask on a prompt of its own


@dataclass(frozen=True)
class SummaryRequest:
    """A summary to write: of the lines from the start up to `covers`, asked for with `prompt` (the
    story's window with the request as its open turn, or a prompt of its own)."""

    covers: int
    prompt: Prompt | list[int]
    params: GenerationParams


def summary_request(
    session: ModelSession,
    pack: Pack,
    events: Sequence[Line],
    previous: str | None,
    *,
    covers: int,
    budget: int,
    story: Prompt,
    in_view: Prompt,
    bos: Sequence[int],
    aside: bool = False,
) -> SummaryRequest | None:
    """Ask for a new summary of the `previous` one and the lines after it that it does not cover
    (`events`, evicted from the window), at the end of the `story` as the model reads it now
    (`in_view`: the story as the engine's window holds it). `aside`: beside the story, in the
    session's room aside (None when it has too little)."""
    params = GenerationParams(
        sampling=SUMMARY_SAMPLING, max_tokens=budget, grammar=SUMMARY_GRAMMAR, heal=False, aside=aside
    )
    if aside:  # beside the story: the room aside holds the request, its answer and what the KV lacks
        room_at_end = room_alone = session.aside_room
        room_at_end -= unread(session.kv_tokens, in_view)
    else:
        room_at_end, room_alone = session.n_ctx - len(in_view), session.n_ctx
    kept = _events(session, pack, events, room_at_end - budget - REQUEST_ROOM)
    if len(kept) >= min(MIN_EVENTS, len(events)):
        request = (
            "[Not part of the story: the summary at the top, brought up to date. Lines since it, before "
            f"the ones above:\n{chr(10).join(kept)}\nA new summary of the whole story so far, in one short "
            "paragraph, in the language of the story:]\n"
        )
        lines = [turn for turn in story.turns if turn]  # the story's lines, without an empty open turn
        return SummaryRequest(covers, Prompt.of(story.pinned, [*lines, session.tokenize(request)]), params)
    # No room at the story's end: a prompt of its own, with the previous summary in it.
    room = room_alone - len(bos) - budget - REQUEST_ROOM - len(session.tokenize(previous or ""))
    kept = _events(session, pack, events, room)
    if aside and len(kept) < min(MIN_EVENTS, len(events)):
        return None
    events_text = "\n".join(kept)
    alone = (
        f"{pack.name}\n\nSummary of the story so far: {previous or '(the story has just begun)'}\n\n"
        f"What happened next:\n{events_text}\n\n"
        "A new summary of the whole story so far, in one short paragraph, in the language of the story:\n"
    )
    return SummaryRequest(covers, [*bos, *framed(session, session.tokenize(alone))], params)


def _events(session: ModelSession, pack: Pack, events: Sequence[Line], room: int) -> list[str]:
    """The newest of `events` as text lines, as many as fit `room` tokens, oldest first."""
    kept: list[str] = []
    for line in reversed(events):
        event = f"{pack.speaker_name(line.speaker)}: {line.text}"
        room -= len(session.tokenize(event)) + 1
        if room < 0:
            break
        kept.insert(0, event)
    return kept
