"""How a model wants its prompt framed: its chat template, reduced to the two texts the story needs.

A story is not a chat. The pinned block (the world, the cast, the instructions) goes where the
template puts a system message, and the whole story is one assistant turn that is never closed:
each new line only extends it, so the prompt still grows at its end only, and the context shift
and the KV reuse work exactly as on a raw transcript. A `ChatFrame` is therefore the text before
the pinned block (`opening`) and the text between it and the story (`closing`: the system turn's
end and the assistant turn's start).

`[model] template` picks the frame: "raw" (no frame: a base model's plain transcript), a preset
(PRESETS), or "auto": the template in the GGUF (`tokenizer.chat_template`), rendered in a sandbox
(template_sandbox.py: a stranger's file runs no Python and gets bounded time and memory), and
"raw" when the model has none.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, get_args

from .errors import ChatTemplateError

if TYPE_CHECKING:
    from .gguf_file import GgufInfo
    from .native import NativeModel


@dataclass(frozen=True)
class ChatFrame:
    name: str  # a preset's name, "raw", or "auto (…)" for a GGUF's own template
    opening: str = ""  # before the pinned block: the system turn's start
    closing: str = ""  # after it: the system turn's end, then the assistant turn's start

    @property
    def texts(self) -> tuple[str, str]:
        return self.opening, self.closing

    @property
    def raw(self) -> bool:
        return not self.opening and not self.closing


RAW = ChatFrame("raw")

# The presets, written from each family's published prompt format. A family without a system role
# (Gemma, Mistral's [INST]) takes the pinned block as the first user turn, as its own template does.
PRESETS: dict[str, ChatFrame] = {
    frame.name: frame
    for frame in (
        ChatFrame("chatml", "<|im_start|>system\n", "<|im_end|>\n<|im_start|>assistant\n"),
        ChatFrame(
            "llama3",
            "<|start_header_id|>system<|end_header_id|>\n\n",
            "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n",
        ),
        ChatFrame("mistral", "[INST] ", " [/INST]"),
        ChatFrame("gemma", "<start_of_turn>user\n", "<end_of_turn>\n<start_of_turn>model\n"),
        ChatFrame("alpaca", "### Instruction:\n", "\n\n### Response:\n"),
    )
}
TemplateChoice = Literal["auto", "raw", "chatml", "llama3", "mistral", "gemma", "alpaca"]
CHOICES: tuple[str, ...] = get_args(TemplateChoice)
assert CHOICES == ("auto", "raw", *PRESETS), "every preset is a choice"

# What marks a family's template, for a GGUF template whose messages could not be found by
# rendering (one that insists on a user turn between system and assistant, say).
_MARKERS = (
    ("<|im_start|>", "chatml"),
    ("<|start_header_id|>", "llama3"),
    ("<start_of_turn>", "gemma"),
    ("[INST]", "mistral"),
    ("### Instruction:", "alpaca"),
)


def chosen_frame(
    choice: str, embedded: str | None, *, bos: str, eos: str, source: str, strip_bos: bool = True
) -> ChatFrame:
    """The frame for `[model] template = choice`. `embedded`: the model's own template (the GGUF's
    `tokenizer.chat_template`, or what a server says); `bos`/`eos`: its begin/end token texts;
    `source`: the file or server it came from, for messages."""
    if choice == "raw":
        return RAW
    if choice in PRESETS:
        return PRESETS[choice]
    if choice != "auto":
        raise ChatTemplateError(
            f"Unknown chat template '{choice}'.", hint=f"[model] template is one of: {', '.join(CHOICES)}."
        )
    if not embedded or not embedded.strip():
        return RAW  # a base model: it continues text
    return embedded_frame(embedded, bos=bos, eos=eos, source=source, strip_bos=strip_bos)


def model_frame(choice: str, gguf: GgufInfo, model: NativeModel) -> ChatFrame:
    """The frame for a GGUF loaded in-process (weights or vocabulary alone)."""
    bos, eos = model.token_text(model.bos), model.token_text(model.eos)
    source = str(gguf.path)
    return chosen_frame(choice, gguf.chat_template, bos=bos, eos=eos, source=source, strip_bos=model.add_bos)


def embedded_frame(template: str, *, bos: str, eos: str, source: str, strip_bos: bool = True) -> ChatFrame:
    """The frame a model's own Jinja template gives, found by rendering it in the sandbox with
    marker messages; a family preset when it cannot be rendered that way. `strip_bos`: the session
    puts the BOS token first itself, so a template's own `bos_token` is left out of the opening."""
    from .template_sandbox import STORY, SYSTEM, render_shapes

    rendered = render_shapes(template, bos=bos, eos=eos, source=source)
    # What closes the system turn on its own: a reply's start must add to it (Mistral v7 keeps its
    # system prompt outside the conversation, so a system text and a reply there have no turn between).
    alone = rendered.system_alone.partition(SYSTEM)[2] if rendered.system_alone else None
    for text in rendered.shapes:
        if text.count(SYSTEM) == 1 and text.count(STORY) == 1 and text.find(SYSTEM) < text.find(STORY):
            before, _, rest = text.partition(SYSTEM)
            closing = rest.partition(STORY)[0]
            if alone is not None and closing.strip() == alone.strip():
                continue
            opening = before.removeprefix(bos) if bos and strip_bos else before  # the session adds its BOS
            return ChatFrame(f"auto ({_family(template) or 'its own'})", opening, closing)
    family = _family(template)
    if family is None:
        why = rendered.unreadable or "gives no place for a system text and a reply"
        raise ChatTemplateError(
            f"{source}: the model's chat template {why}.",
            hint=f"Set [model] template to one of {', '.join(CHOICES[1:])} (the model card says which).",
        )
    return PRESETS[family]


def template_summary(embedded: str | None) -> str:
    """What a GGUF's own template is, in a few words, without rendering it (`simularity doctor`)."""
    if not embedded or not embedded.strip():
        return 'none in the file (a base model: "auto" plays it raw)'
    family = _family(embedded)
    return f"its own, {family}-like" if family else "its own (no known family)"


def _family(template: str) -> str | None:
    return next((family for marker, family in _MARKERS if marker in template), None)
