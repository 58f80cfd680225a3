"""`simularity prompt PACK_DIR`: exactly what the model would read for the next line, part by part,
with token counts and the KV reuse the next turn would get, without generating anything.

A new game of the pack (`--episode`), or a save of it (`--save`), after the player says `--say`
when given (not written to the save). Printed as labelled text, or with `--json` as a document
whose shape stays stable (`format` says its version): authors and players tune prompts with it.

It needs the model's tokenizer only: an in-process model is opened as its vocabulary alone
(milliseconds, a few MiB), with the context a game of the pack would have; a server (`--backend`)
tokenizes for itself. `prompt_output` does the work on any session (the tests pass theirs).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Coroutine
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import UserFacingError
from .untrusted_text import printable

if TYPE_CHECKING:  # the command line imports this module for its parser: `simularity --help` stays light
    from .engine import ModelSession, RestoredState
    from .scenario.loader import LoadedPack
    from .settings import Settings
    from .story import Game
    from .story.prompt_view import PromptPart, PromptView

JSON_FORMAT = 1  # the --json document's version: raised when a field changes meaning or goes
_TITLES = {"pinned": "Pinned block", "story": "The story", "open": "The next line"}


def add_prompt_command(commands: Any, model_options: argparse.ArgumentParser) -> None:
    """The `prompt` command's parser, under `commands` (the CLI's subparsers)."""
    prompt = commands.add_parser(
        "prompt", parents=[model_options], help="print what the model reads for the next line, without generating"
    )
    prompt.add_argument("pack_dir", type=Path, metavar="PACK_DIR")
    prompt.add_argument("--episode", metavar="ID", help="a new game of this episode (default: the pack's first)")
    prompt.add_argument("--save", metavar="NAME", help="the game of this save instead of a new one")
    prompt.add_argument("--say", metavar="TEXT", help="the player says TEXT first (not written to any save)")
    prompt.add_argument("--json", action="store_true", help="a JSON document instead of text")


def prompt_command(args: argparse.Namespace, settings: Settings) -> int:
    from .scenario import load_pack

    if args.episode is not None and args.save is not None:
        raise UserFacingError("--episode and --save both given", hint="--episode starts a new game; --save reads one.")
    loaded = load_pack(args.pack_dir)
    _check_choice(loaded, episode=args.episode, save=args.save)  # before the model: a typo is told at once
    session = _tokenizer(settings, getattr(args, "model", None), loaded)
    try:
        output, warnings = prompt_output(
            session, loaded, episode=args.episode, save=args.save, say=args.say, as_json=args.json, settings=settings
        )
    finally:
        session.close_blocking()
    for warning in warnings:
        print(f"simularity: warning: {printable(warning)}", file=sys.stderr)
    print(output)
    return 0


def _check_choice(loaded: LoadedPack, *, episode: str | None, save: str | None) -> None:
    """Refuse an episode the pack does not have, or a save it does not have."""
    from .story.saves import save_exists, save_path

    pack = loaded.pack
    if episode is not None and episode not in pack.episodes:
        raise UserFacingError(
            f"{loaded.root / 'scenario.toml'}: no episode '{episode}'",
            hint=f"Episodes of this pack: {', '.join(pack.episodes)}",
        )
    if save is not None and not save_exists(save_path(pack.id, save)):
        raise UserFacingError(f"{pack.name} has no save '{save}'", hint=f"Its saves: simularity saves {loaded.root}")


def _tokenizer(settings: Settings, model_override: Path | None, loaded: LoadedPack) -> ModelSession:
    """The model's tokenizer: a server's, or the model's vocabulary alone with the context a game
    of the pack would have."""
    from .engine import RemoteSession, VocabSession
    from .model_choice import model_path
    from .model_session import context_for

    remote = settings.remote_config()
    if remote is not None:
        return RemoteSession.open_blocking(remote)
    path = model_path(settings, model_override)
    config = settings.model_config_for(path)
    return VocabSession.open(replace(config, n_ctx=context_for(settings, loaded.pack, path)))


def prompt_output(
    session: ModelSession,
    loaded: LoadedPack,
    *,
    episode: str | None = None,
    save: str | None = None,
    say: str | None = None,
    as_json: bool = False,
    settings: Settings | None = None,
) -> tuple[str, list[str]]:
    """The view as text or JSON, and the warnings reading the save gave."""
    from .settings import Settings

    game, warnings = _game(session, loaded, episode=episode, save=save, settings=settings or Settings())
    view = game.prompt_view(say)
    if as_json:
        # Escaped: saved model text may hold C1 controls or bidi overrides, which JSON leaves raw.
        return json.dumps(view_document(view), indent=2, ensure_ascii=True), warnings
    return view_text(game, view, save=save), warnings


def _game(
    session: ModelSession, loaded: LoadedPack, *, episode: str | None, save: str | None, settings: Settings
) -> tuple[Game, list[str]]:
    """A new game of `episode`, or the game of the save `save` with its KV as resuming would find it."""
    from .story import Game
    from .story.play import read_game
    from .story.saves import kv_path, save_path

    sampling, budgets = settings.sampling_params(loaded.pack.sampling), settings.budgets()
    _check_choice(loaded, episode=episode, save=save)
    if save is None:
        first = next(iter(loaded.pack.episodes))
        return Game(session, loaded, episode or first, sampling=sampling, budgets=budgets), []
    path = save_path(loaded.pack.id, save)
    game, saved = read_game(session, loaded, path, sampling=sampling, budgets=budgets)
    warnings = list(saved.warnings)
    restored = _finished(session.restore_state(kv_path(path)))
    if restored.warning and kv_path(path).exists():
        warnings.append(restored.warning)
    return game, warnings


def _finished(job: Coroutine[Any, Any, RestoredState]) -> RestoredState:
    """Run `job` to its end from plain code: here, or on a thread of its own when an event loop
    runs here already (a test's, or a caller's), which cannot run another."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(job)
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, job).result()


# -- showing the view ---------------------------------------------------------------------------


def view_text(game: Game, view: PromptView, *, save: str | None) -> str:
    """The view for people: a heading per section, each part with its label, detail and tokens."""
    what = f"the save '{save}'" if save else f"a new game of '{game.episode}'"
    model = f"{game.session.info.name or 'model'} · chat template: {view.chat_template}"
    out = [f"{game.pack.name} · {what} · {model}", ""]
    for section in ("pinned", "story", "open"):
        parts = [part for part in view.parts if part.section == section]
        if parts:
            out.append(f"=== {_TITLES[section]} · {sum(p.tokens for p in parts):,} tokens ===")
            out += [line for part in parts for line in _part_lines(part)]
            out.append("")
    out += _totals(view)
    return printable("\n".join(out))


def _part_lines(part: PromptPart) -> list[str]:
    detail = f" · {part.detail}" if part.detail else ""
    return [f"--- {part.label}{detail} · {part.tokens:,} tokens", part.text.strip("\n")]


def _totals(view: PromptView) -> list[str]:
    share = view.total_tokens / view.n_ctx if view.n_ctx else 0.0
    kept = view.reused_tokens / view.total_tokens if view.total_tokens else 0.0
    fired = ", ".join(f.entry for f in view.lore.fired) or "none"
    dropped = ", ".join(f"{d.entry} ({d.why})" for d in view.lore.dropped) or "none"
    return [
        f"Total: {view.total_tokens:,} of {view.n_ctx:,} tokens of context ({share:.0%})",
        f"KV reuse: the next turn keeps {view.reused_tokens:,} tokens ({kept:.0%}) and reads "
        f"{view.total_tokens - view.reused_tokens:,}",
        f"Lore for line {view.lore.line}: brought in {fired}; already in view {', '.join(view.lore.kept) or 'none'}; "
        f"left out {dropped}",
    ]


def view_document(view: PromptView) -> dict[str, Any]:
    """The view as a JSON document: parts (section, label, text, tokens, detail), the context, the
    totals, and the lore scan of the next line (fired, kept, dropped)."""
    return {
        "format": JSON_FORMAT,
        "n_ctx": view.n_ctx,
        "chat_template": view.chat_template,
        "total_tokens": view.total_tokens,
        "reused_tokens": view.reused_tokens,
        "parts": [asdict(part) for part in view.parts],
        "lore": {
            "line": view.lore.line,
            "fired": [asdict(firing) for firing in view.lore.fired],
            "kept": list(view.lore.kept),
            "dropped": [asdict(dropped) for dropped in view.lore.dropped],
        },
    }
