"""The characters' example lines, as the pinned block shows them: within a token budget, first
examples first.

An example is one entry of `Character.example_lines`: a line the character might say, or a whole
exchange (a card's `<START>` block, lines like `{{user}}: …` and `{{char}}: …`). Each is written in
the story's own shape, one line per speaker, `Name: text`, so that the model sees how each one
speaks and that lines begin with a name; the clock `(HH:MM)` of story lines is left out, so that no
example pretends to be a moment of the story. Budgets are counted in the model's tokens.
"""

from __future__ import annotations

from collections.abc import Callable

from ..scenario.macros import expand
from ..scenario.schema import Character, Pack

HEADER = "How they speak (examples, not part of the story):"


def examples_text(pack: Pack, count_tokens: Callable[[str], int], budget: int) -> str:
    """The example lines that fit `budget` tokens, with their header; "" when none does.

    Examples are taken in turns, the first of each character, then the second of each, and so on,
    so that every character has a voice before anyone has two; a character whose next example does
    not fit gets no later one (first examples first). Shown grouped by character, in pack order."""
    if budget <= 0:
        return ""
    cast = [c for c in pack.characters.values() if not c.player and c.example_lines]
    names = [c.name for c in pack.characters.values()]
    blocks = {c.name: [b for text in c.example_lines if (b := _block(c, text, pack.player.name, names))] for c in cast}
    chosen: dict[str, list[str]] = {c.name: [] for c in cast}
    open_ = [c.name for c in cast]
    used = count_tokens(HEADER + "\n")  # the budget is what the examples take in all
    for index in range(max((len(found) for found in blocks.values()), default=0)):
        for name in list(open_):
            block = blocks[name][index] if index < len(blocks[name]) else ""
            cost = count_tokens(block + "\n") if block else 0
            if not block or used + cost > budget:
                open_.remove(name)  # out of examples, or the next one does not fit: none after it
                continue
            chosen[name].append(block)
            used += cost
    kept = [block for name in chosen for block in chosen[name]]
    return f"{HEADER}\n{_joined(kept)}" if kept else ""


def _block(character: Character, text: str, user: str, names: list[str]) -> str:
    """One example as story lines: each line said by someone, `Name: text`. A line that names no
    one is the character's; a line that goes on without a name joins the line before it."""
    lines: list[str] = []
    for raw in expand(text, user=user, char=character.name).splitlines():
        line = " ".join(raw.split())
        if not line:
            continue
        if _speaker(line, [user, *names]):
            lines.append(line)
        elif lines:
            lines[-1] += " " + line
        else:
            lines.append(f"{character.name}: {line}")
    return "\n".join(lines)


def _speaker(line: str, names: list[str]) -> bool:
    return any(line.startswith(f"{name}:") for name in names)


def _joined(blocks: list[str]) -> str:
    """Single lines one under the other; an exchange of several lines set apart by blank lines."""
    text = blocks[0]
    for previous, block in zip(blocks, blocks[1:]):
        text += ("\n\n" if "\n" in previous or "\n" in block else "\n") + block
    return text
