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
from typing import Any

from .errors import ChatTemplateError

# Marker texts for the pinned block and the story: plain words, which survive a template's `trim`.
SYSTEM = "SimularityPinnedBlock7F3A"
STORY = "SimularityStoryTurn7F3A"
# The message lists tried, in order: a system message and a reply; then, for families with no
# system role (Gemma, older Mistral), the same text as the first user turn.
SHAPES = (
    [{"role": "system", "content": SYSTEM}, {"role": "assistant", "content": STORY}],
    [{"role": "user", "content": SYSTEM}, {"role": "assistant", "content": STORY}],
)
WALL_SECONDS = 8.0  # a child's own start (Python, Jinja) takes well under a second; the rest is the template's
CPU_SECONDS = 5
MEMORY_BYTES = 768 * 1024 * 1024
LONGEST_RENDER = 100_000  # characters: a real template renders these two messages in a few hundred


def render_shapes(template: str, *, bos: str, eos: str, source: str) -> list[str]:
    """`template` rendered with each of SHAPES that it accepts (a template may refuse a shape with
    `raise_exception`); a ChatTemplateError when the sandbox refuses the template itself."""
    request = json.dumps({"template": template, "bos": bos, "eos": eos})
    hint = 'Set [model] template to "raw" or a preset (chatml, llama3, mistral, gemma, alpaca) to play this model.'
    try:
        child = subprocess.run(
            [sys.executable, "-I", "-m", __name__],
            input=request.encode(),
            capture_output=True,
            timeout=WALL_SECONDS,
            check=False,
        )
    except subprocess.TimeoutExpired:
        child = None
    if child is None or child.returncode == -signal.SIGXCPU:
        raise ChatTemplateError(
            f"{source}: the model's chat template ran too long (an endless loop?) and was stopped.", hint=hint
        )
    try:
        answer = json.loads(child.stdout)
    except ValueError:
        why = f"its renderer ended with status {child.returncode}"  # killed for memory, say
        problem = f"{source}: the model's chat template could not be rendered ({why})."
        raise ChatTemplateError(problem, hint=hint) from None
    if "refused" in answer:
        raise ChatTemplateError(f"{source}: the model's chat template was refused: {answer['refused']}.", hint=hint)
    return [str(text) for text in answer["rendered"]]


def _render_all(request: dict[str, Any]) -> dict[str, Any]:
    """The child's work: every shape the template renders (see render_shapes)."""
    from datetime import datetime

    from jinja2 import TemplateError, TemplateSyntaxError
    from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError

    def raise_exception(message: str) -> None:
        raise TemplateError(message)

    environment = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    environment.globals.update(raise_exception=raise_exception, strftime_now=lambda f: datetime.now().strftime(f))
    try:
        template = environment.from_string(request["template"])
    except TemplateSyntaxError as error:
        return {"refused": f"it is not valid Jinja (line {error.lineno}: {error.message})"}
    rendered = []
    for messages in SHAPES:
        try:
            text = template.render(
                messages=messages, bos_token=request["bos"], eos_token=request["eos"], add_generation_prompt=False
            )
        except SecurityError as error:
            return {"refused": f"it reached for something the sandbox forbids ({error})"}
        except MemoryError:
            return {"refused": f"it asked for more than {MEMORY_BYTES >> 20} MiB of memory"}
        except Exception:  # the template's own raise_exception, a missing key: this shape is not for it
            continue
        if len(text) > LONGEST_RENDER:
            return {"refused": f"it renders two short messages as over {LONGEST_RENDER:,} characters"}
        rendered.append(text)
    return {"rendered": rendered}


def main() -> None:
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_BYTES, MEMORY_BYTES))
    resource.setrlimit(resource.RLIMIT_CPU, (CPU_SECONDS, CPU_SECONDS + 2))  # SIGXCPU first, SIGKILL after
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
