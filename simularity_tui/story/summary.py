"""Memory: a summary of the lines the engine evicted, which stands for them in the pinned block.

The summary is written in the story's language, on the same context as the story: asking for one
costs a generation and one re-read of the window afterwards, paid once per eviction, which the
engine makes rare.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..engine import GenerationParams, ModelSession, SamplingParams
from ..scenario.schema import Pack
from .framing import framed
from .tree import Line

# Greedy: a summary is the likeliest account of what happened, not a creative one; the penalty
# a little over the default keeps a small model from repeating itself over a long list of events.
SUMMARY_SAMPLING = SamplingParams(temperature=0.0, repeat_penalty=1.15)
SUMMARY_END = "\n\n"  # the request asks for one paragraph
REQUEST_ROOM = 200  # tokens kept for the request's own words, around the events and the summary


@dataclass(frozen=True)
class SummaryRequest:
    """A summary to write: of the lines from the start up to `covers`, asked for with `prompt`."""

    covers: int
    prompt: list[int]
    params: GenerationParams


def summary_request(
    session: ModelSession,
    pack: Pack,
    events: Sequence[Line],
    previous: str | None,
    *,
    covers: int,
    budget: int,
    bos: Sequence[int],
) -> SummaryRequest:
    """Ask for a new summary: the `previous` one, then the newest of the lines it does not cover yet
    (`events`), as many as leave room in the context for the request and its answer."""
    room = session.n_ctx - budget - REQUEST_ROOM - len(session.tokenize(previous or ""))
    kept: list[str] = []
    for line in reversed(events):
        event = f"{pack.speaker_name(line.speaker)}: {line.text}"
        room -= len(session.tokenize(event)) + 1
        if room < 0:
            break
        kept.insert(0, event)
    events_text = "\n".join(kept)
    request = (
        f"{pack.name}\n\nSummary of the story so far: {previous or '(the story has just begun)'}\n\n"
        f"What happened next:\n{events_text}\n\n"
        "A new summary of the whole story so far, in one short paragraph, in the language of the story:\n"
    )
    params = GenerationParams(sampling=SUMMARY_SAMPLING, max_tokens=budget, stop=(SUMMARY_END,), heal=False)
    return SummaryRequest(covers, [*bos, *framed(session, session.tokenize(request))], params)
