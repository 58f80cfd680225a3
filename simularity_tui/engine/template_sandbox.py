"""A model's own chat template, rendered where it can do no harm.

A GGUF's `tokenizer.chat_template` is Jinja written by whoever made the file. Jinja's sandbox
(ImmutableSandboxedEnvironment, as llama-cpp-python uses) stops it from reaching Python's internals,
but not from looping for hours or asking for gigabytes. So it renders in a child process of its
own, with a memory limit (RLIMIT_AS) and a CPU limit, under a wall-clock timeout: whatever the
template does, the game gets either the rendered texts or a clear refusal.

Run as `python -m simularity_tui.engine.template_sandbox`: the request comes on stdin as JSON
({"template", "bos", "eos"}), the answer goes to stdout as JSON ({"rendered": [...]} or
{"refused": reason}).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..untrusted_text import printable
from .errors import ChatTemplateError

# Marker texts for the pinned block and the story: plain words, which survive a template's `trim`.
SYSTEM = "SimularityPinnedBlock7F3A"
STORY = "SimularityStoryTurn7F3A"
# The message lists rendered: the system message alone (to tell its own end from a reply's start),
# then the shapes tried in order: a system message and a reply; then, for families with no system
# role (Gemma, older Mistral) or whose system turn is outside the conversation (Mistral v7), the
# same text as the first user turn.
SYSTEM_ALONE = [{"role": "system", "content": SYSTEM}]
SHAPES = (
    [{"role": "system", "content": SYSTEM}, {"role": "assistant", "content": STORY}],
    [{"role": "user", "content": SYSTEM}, {"role": "assistant", "content": STORY}],
)
# A fixed day for templates that write today's date into the system turn (Llama 3.x): a date that
# changed would change the pinned block, and a save resumed the next day would reuse none of its KV.
FIXED_DAY = (2024, 7, 26)
WALL_SECONDS = 8.0  # a child's own start (Python, Jinja) takes well under a second; the rest is the template's
CPU_SECONDS = 5
MEMORY_BYTES = 768 * 1024 * 1024
LONGEST_RENDER = 100_000  # characters: a real template renders these two messages in a few hundred


@dataclass(frozen=True)
class Rendered:
    system_alone: str | None  # SYSTEM_ALONE rendered (None: the template refused it)
    shapes: list[str]  # each of SHAPES the template accepted, in order
    unreadable: str = ""  # why the template is not Jinja this sandbox reads ("" when it is)


HINT = 'Set [model] template to "raw" or a preset (chatml, llama3, mistral, gemma, alpaca) to play this model.'


def render_shapes(template: str, *, bos: str, eos: str, source: str) -> Rendered:
    """`template` rendered with SYSTEM_ALONE and each of SHAPES that it accepts (a template may refuse a
    shape with `raise_exception`); a ChatTemplateError when the sandbox refuses the template itself
    (`unreadable` says so instead when it is merely not Jinja this sandbox reads)."""
    request = json.dumps({"template": template, "bos": bos, "eos": eos})
    # The child imports this module from where the parent found it: `-I` keeps the environment and
    # the working directory out, and this path works from an install and from a source tree alike.
    root = str(Path(__file__).resolve().parents[2])
    boot = f"import sys; sys.path.insert(0, {root!r}); from {__name__} import main; main()"
    try:
        child = subprocess.run(
            [sys.executable, "-I", "-c", boot],
            input=request.encode(),
            capture_output=True,
            timeout=WALL_SECONDS,
            check=False,
        )
    except subprocess.TimeoutExpired:
        child = None
    except OSError as error:  # no process to be had (a limit on processes, memory)
        raise ChatTemplateError(
            f"{source}: the chat template's renderer could not start: {error}.", hint=HINT
        ) from None
    if child is None or child.returncode == -signal.SIGXCPU:
        raise ChatTemplateError(
            f"{source}: the model's chat template ran too long (an endless loop?) and was stopped.", hint=HINT
        )
    try:
        answer = json.loads(child.stdout)
    except ValueError:
        said = child.stderr.decode(errors="replace").strip().splitlines()[-1:]  # killed for memory, say
        why = f"its renderer ended with status {child.returncode}" + (f": {printable(said[0])[:200]}" if said else "")
        raise ChatTemplateError(
            f"{source}: the model's chat template could not be rendered ({why}).", hint=HINT
        ) from None
    if "refused" in answer:
        raise ChatTemplateError(f"{source}: the model's chat template was refused: {answer['refused']}.", hint=HINT)
    texts = [answer.get("system_alone"), *answer["rendered"]]
    for text in texts:
        if text is not None and (problem := _unusable(text)):
            raise ChatTemplateError(f"{source}: the model's chat template renders {problem}.", hint=HINT)
    return Rendered(
        answer.get("system_alone"), [str(text) for text in answer["rendered"]], answer.get("unreadable", "")
    )


def _unusable(text: str) -> str | None:
    """Why a rendered text cannot go to the model: not encodable (a lone surrogate), or a control
    character other than newline and tab."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "text that is not valid Unicode"
    if any(ord(char) < 32 and char not in "\n\t" or 0x7F <= ord(char) <= 0x9F for char in text):
        return "control characters"
    return None


def _render_all(request: dict[str, Any]) -> dict[str, Any]:
    """The child's work: SYSTEM_ALONE and every shape the template renders (see render_shapes)."""
    from datetime import date

    from jinja2 import TemplateError, TemplateSyntaxError
    from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError

    def raise_exception(message: str) -> None:
        raise TemplateError(message)

    day = date(*FIXED_DAY)
    # As Hugging Face renders them: loop controls ({% break %}) are used by real templates.
    environment = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"]
    )
    environment.globals.update(raise_exception=raise_exception, strftime_now=day.strftime)
    try:
        template = environment.from_string(request["template"])
    except TemplateSyntaxError as error:
        return {
            "rendered": [],
            "unreadable": f"is not Jinja this sandbox reads (line {error.lineno}: {error.message})",
        }
    texts: list[str | None] = []
    for messages in (SYSTEM_ALONE, *SHAPES):
        try:
            text = template.render(
                messages=messages,
                bos_token=request["bos"],
                eos_token=request["eos"],
                add_generation_prompt=False,
                date_string=day.strftime("%d %b %Y"),
            )
        except SecurityError as error:
            return {"refused": f"it reached for something the sandbox forbids ({error})"}
        except MemoryError:
            return {"refused": f"it asked for more than {MEMORY_BYTES >> 20} MiB of memory"}
        except Exception:  # the template's own raise_exception, a missing key: this shape is not for it
            texts.append(None)
            continue
        if len(text) > LONGEST_RENDER:
            return {"refused": f"it renders two short messages as over {LONGEST_RENDER:,} characters"}
        texts.append(text)
    return {"system_alone": texts[0], "rendered": [text for text in texts[1:] if text is not None]}


def main() -> None:
    import resource

    def limit(kind: int, soft: int, hard: int) -> None:  # never above a limit the parent already has
        ceiling = resource.getrlimit(kind)[1]
        if ceiling != resource.RLIM_INFINITY:
            soft, hard = min(soft, ceiling), min(hard, ceiling)
        resource.setrlimit(kind, (soft, hard))

    limit(resource.RLIMIT_AS, MEMORY_BYTES, MEMORY_BYTES)
    limit(resource.RLIMIT_CPU, CPU_SECONDS, CPU_SECONDS + 2)  # SIGXCPU at the soft limit, SIGKILL at the hard
    limit(resource.RLIMIT_CORE, 0, 0)  # SIGXCPU would dump core where systemd-coredump listens
    request = json.loads(sys.stdin.buffer.read())
    try:
        answer = _render_all(request)
    except MemoryError:
        answer = {"refused": f"it asked for more than {MEMORY_BYTES >> 20} MiB of memory"}
    except RecursionError:
        answer = {"refused": "it recursed without end"}
    sys.stdout.write(json.dumps(answer))


if __name__ == "__main__":
    main()
