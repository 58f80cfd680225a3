"""`simularity`: the game, and its command-line tools.

Problems with input (a model file, the settings, a pack) are printed as a message and a hint, with
exit status 2; never as a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from . import __version__, paths
from .cli_doctor import add_doctor_command, doctor_command
from .cli_import import COMMANDS as IMPORT_COMMANDS
from .cli_import import add_import_commands, import_command
from .cli_models import add_models_command, models_command
from .cli_prompt import add_prompt_command, prompt_command
from .cli_room import add_room_command, room_command
from .errors import UserFacingError
from .first_frame import AUTOSAVE, GRAPHICS_MODES
from .native_stderr import restore_native_stderr, route_native_stderr
from .untrusted_text import printable

if TYPE_CHECKING:
    from .first_frame import FirstFrameSettings
    from .settings import Settings
    from .ui.app import LaunchOptions

log = logging.getLogger("simularity")

# The parser's own copies of names, so that `simularity --help` and `simularity check` import no
# settings (pydantic), engine or story: engine.chat_template.CHOICES and engine.config.KvCacheType
# here, and from first_frame.py settings.GraphicsMode and story.saves.AUTOSAVE (tests/test_imports.py
# holds them equal).
TEMPLATE_CHOICES = ("auto", "raw", "chatml", "llama3", "mistral", "gemma", "alpaca")
KV_CACHE_CHOICES = ("f16", "q8_0")
# The model options (_model_options) that set a `[model]` setting of the same name.
_MODEL_OVERRIDES = (
    "backend",
    "api",
    "server_slot",
    "n_ctx",
    "threads",
    "gpu_layers",
    "template",
    "context_shift",
    "kv_cache",
)


def _model_options() -> argparse.ArgumentParser:
    """Options every command that loads a model shares; they override settings.toml.

    A new parent for each parser: parsers built from one parent share its actions, so a
    set_defaults() on one command would change the default for all of them.
    """
    # SUPPRESS: an option left out must not reset one given before the command (simularity --model X bench …).
    parent = argparse.ArgumentParser(add_help=False, argument_default=argparse.SUPPRESS)
    group = parent.add_argument_group("model (overrides settings.toml)")
    group.add_argument(
        "--model", type=Path, metavar="PATH.gguf", help="a GGUF model (default: the embedded Gemma 3 270M)"
    )
    group.add_argument(
        "--backend", type=_backend_url, metavar="URL",
        help="play on an OpenAI-compatible server (llama-server, vLLM, SGLang), e.g. http://127.0.0.1:8080",
    )  # fmt: skip
    group.add_argument("--api-key", metavar="KEY", help="the server's API key (or set SIMULARITY_API_KEY)")
    group.add_argument(
        "--api", choices=("completions", "chat"),
        help="the server's API: completions (default), or chat for a server with chat completions only",
    )  # fmt: skip
    group.add_argument(
        "--server-slot", type=int, metavar="N",
        help="llama-server's slot to play in, on a server of several (simularity host sets it)",
    )  # fmt: skip
    group.add_argument("--n-ctx", type=int, metavar="N", help="context size in tokens")
    group.add_argument("--threads", type=int, metavar="N", help="CPU threads (default: physical cores)")
    group.add_argument(
        "--gpu-layers", type=_gpu_layers, metavar="N",
        help="layers to offload to the GPU (-1: all; auto: as many as fit, as `simularity doctor` suggests)",
    )  # fmt: skip
    group.add_argument(
        "--template", choices=TEMPLATE_CHOICES, metavar="NAME",
        help=f"the chat frame: auto (the model's own), raw (a plain transcript), or {', '.join(TEMPLATE_CHOICES[2:])}",
    )  # fmt: skip
    group.add_argument(
        "--kv-cache", choices=KV_CACHE_CHOICES, metavar="TYPE",
        help="the KV cache's type: f16, or q8_0 (half the memory and the resume file, a little less exact)",
    )  # fmt: skip
    group.add_argument(
        "--no-context-shift",
        dest="context_shift",
        action="store_false",
        help="when the context is full, re-evaluate the kept window instead of shifting the KV cache",
    )
    group.add_argument(
        "--settings", type=Path, metavar="FILE", help=f"settings file (default: {paths.settings_file()})"
    )
    return parent


@dataclass(frozen=True)
class Bench:
    """One `simularity bench` command: its options beside the model's, and what runs it."""

    name: str
    help: str
    run: str  # "module:function" in simularity_tui.bench, imported only when it runs (llama.cpp, numpy…)
    options: tuple[tuple[str, int, str], ...] = ()  # (--option, default, what it is)
    n_ctx: int | None = None  # its own default context size; --n-ctx still wins
    in_process: bool = False  # it measures the engine against llama-cpp-python: never on a server

    def runner(self) -> Callable[[argparse.Namespace, Settings, Path | None], int]:
        module, function = self.run.split(":")
        return getattr(importlib.import_module(f"{__package__}.bench.{module}"), function)  # type: ignore[no-any-return]


BENCHES = (
    Bench(
        "decode", "streaming tokens/s of the session vs a raw llama-cpp-python loop", "decode:run_decode_bench",
        (("--tokens", 200, "tokens per generation"), ("--rounds", 5, "generations per side")), in_process=True,
    ),
    Bench(
        "long-session",
        "a long conversation: engine vs naive frontend vs lower bound (--peers 1: and vs llama-server)",
        "long_session:run_long_session_bench",
        (("--turns", 150, "turns to play"), ("--reply-tokens", 40, "tokens per reply"),
         ("--authors-note", 0, "1: an author's note, due 4 lines after its last copy"),
         ("--lore", 0, "lore entries keyed on the player's words (up to 20)"),
         ("--peers", 0, "1: also the naive prompts on llama-server, with and without --cache-reuse 256")),
        n_ctx=1024, in_process=True,
    ),
    Bench(
        "story", "a whole story game with summaries, turn after turn", "story:run_story_bench",
        (("--turns", 300, "turns to play"), ("--reply-tokens", 40, "tokens per line"),
         ("--think-ms", 3000, "the player reading and typing between turns: summaries are written then"),
         ("--write-ahead", 1, "1: each turn's stage line and head are written while the player types; 0: not")),
        n_ctx=1024,
    ),
    Bench(
        "resume", "resuming from a KV state file (or llama-server's slot file) vs re-evaluating",
        "resume:run_resume_bench", (("--rounds", 3, "measurements per side"),), n_ctx=2048,
    ),
    Bench(
        "startup", "time to the first frame and to play, model cached and not", "startup:run_startup_bench",
        (("--rounds", 3, "starts per case"),),
    ),
    Bench(
        "tree", "opening the story-tree browser on 200 lines and 40 variants", "tree:run_tree_bench",
        (("--rounds", 5, "openings per side"),),
    ),
    Bench(
        "host", "N players over SSH on loopback: time to first token, memory", "host:run_host_bench",
        (("--players", 4, "players at once, 1 to 8"), ("--turns", 3, "turns each player plays"),
         ("--reply-tokens", 40, "tokens per line"),
         ("--shared-server", 0, "1: then the same on one llama-server the host starts (a slot per player)"),
         ("--room", 0, "1: then the N players in one room: the reply on the others' screens, memory per player")),
        n_ctx=1024,
    ),
)  # fmt: skip
BENCH_BY_NAME = {bench.name: bench for bench in BENCHES}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="simularity",
        description="A terminal engine for AI-driven visual novels. With no command, starts the game.",
        parents=[_model_options()],
    )
    parser.add_argument("--version", action="version", version=f"simularity {__version__}")
    parser.add_argument("--pack", type=Path, metavar="DIR", help="play this pack (default: the bundled demo)")
    parser.add_argument("--episode", metavar="ID", help="start at this episode of the pack")
    parser.add_argument("--save", default=AUTOSAVE, metavar="NAME", help="the save to play (resumed if it exists)")
    parser.add_argument("--new", action="store_true", help="start a new game, in a new save")
    parser.add_argument(
        "--graphics", choices=GRAPHICS_MODES,
        help="how to draw the stage (default: auto, or [ui] graphics in settings.toml)",
    )  # fmt: skip
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    check = commands.add_parser("check", help="validate a scenario pack and list every problem")
    check.add_argument("pack_dir", type=Path, metavar="PACK_DIR")
    add_import_commands(commands)  # import-card, import-lorebook (cli_import.py)

    run = commands.add_parser(
        "run", parents=[_model_options()], help="play a pack headless from a script; the transcript goes to stdout"
    )
    run.add_argument("pack_dir", type=Path, metavar="PACK_DIR")
    run.add_argument("--episode", metavar="ID", help="the episode to start (default: the pack's first)")
    run.add_argument(
        "--script", type=Path, required=True, metavar="FILE", help="player lines and /commands; - reads stdin"
    )
    run.add_argument("--save", default="run", metavar="NAME", help="the save to write (default: run)")
    run.add_argument("--resume", action="store_true", help="go on with the save NAME instead of starting afresh")

    host = commands.add_parser("host", help="an SSH server where several players each play their own game")
    host.add_argument("--config", type=Path, metavar="FILE", help="the host's TOML config (see docs/hosting.md)")
    host.add_argument("--hash-password", action="store_true", help="read a password and print its hash for the config")

    add_prompt_command(commands, _model_options())
    add_room_command(commands, _model_options())  # room serve | join (cli_room.py), started by `host`
    add_models_command(commands)  # models list | pull | rm | use (cli_models.py)
    add_doctor_command(commands, _model_options())  # doctor (cli_doctor.py)

    saves = commands.add_parser("saves", help="list the saves of a pack, or delete one")
    saves.add_argument("pack_dir", type=Path, metavar="PACK_DIR")
    saves.add_argument("--delete", metavar="NAME", help="delete this save (and its KV state file)")

    benches = commands.add_parser("bench", help="benchmarks").add_subparsers(
        dest="bench", metavar="BENCHMARK", required=True
    )
    for spec in BENCHES:
        bench = benches.add_parser(spec.name, parents=[_model_options()], help=spec.help)
        for flag, default, about in spec.options:
            bench.add_argument(flag, type=int, default=default, help=f"{about} (default: {default})")
        bench.add_argument("--json", type=Path, metavar="PATH", help="also write the figures as JSON")
        if spec.n_ctx is not None:
            bench.set_defaults(n_ctx=spec.n_ctx)
    return parser


def _gpu_layers(text: str) -> int | str:
    if text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of layers or 'auto'") from None


def _backend_url(text: str) -> str:
    from .engine.remote.config import checked_url

    try:
        return checked_url(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def settings_with_overrides(args: argparse.Namespace) -> Settings:
    from pydantic import ValidationError

    from .settings import API_KEY_VARIABLE, load_settings

    settings = load_settings(getattr(args, "settings", None))
    _check_model_or_backend(args)
    if getattr(args, "api_key", None):
        # Through the environment, never into the settings (a key must not land in settings.toml when
        # the player saves settings); the game processes `simularity host` starts inherit it too.
        os.environ[API_KEY_VARIABLE] = args.api_key
    if getattr(args, "model", None) is not None:
        # A model file on the command line wins over a server in settings.toml: `simularity host`
        # passes its model, and a player's own settings must not point a hosted game elsewhere.
        settings.model.backend = ""
    for key in _MODEL_OVERRIDES:
        value = getattr(args, key, None)
        if value is not None:
            try:
                setattr(settings.model, key, value)
            except ValidationError as error:
                raise UserFacingError(
                    f"--{key.replace('_', '-')} {value}: {error.errors()[0]['msg']}", hint="See simularity --help."
                ) from None
    return settings


def _check_model_or_backend(args: argparse.Namespace) -> None:
    if getattr(args, "model", None) is not None and getattr(args, "backend", None) is not None:
        raise UserFacingError("--model and --backend both given", hint="Choose one: a GGUF file, or a server's URL.")


def _configure_logging() -> None:
    """Log to a file: the terminal belongs to the game (llama.cpp's log included)."""
    log_file = paths.cache_dir() / "simularity.log"
    try:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        handler: logging.Handler = logging.FileHandler(log_file, encoding="utf-8")
    except OSError:
        handler = logging.NullHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _configure_logging()
    if argv is None:  # the real command (not a test calling main in-process): native stderr to the log
        route_native_stderr()
    try:
        if args.command == "bench":
            return _bench(args)
        if args.command == "check":
            return _check(args.pack_dir)
        if args.command == "host":
            from .host import host_command

            return host_command(args)
        if args.command in IMPORT_COMMANDS:
            return import_command(args)
        if args.command == "run":
            return _run(args)
        if args.command == "room":
            return room_command(args, lambda: settings_with_overrides(args))
        if args.command == "prompt":
            return prompt_command(args, settings_with_overrides(args))
        if args.command == "saves":
            return _saves(args)
        if args.command == "models":
            return models_command(args)
        if args.command == "doctor":
            return doctor_command(args, settings_with_overrides(args))
        return _play(args)
    except UserFacingError as error:  # may quote a pack, a card or a model server: printable only
        print(f"simularity: {printable(error.message)}", file=sys.stderr)
        if error.hint:
            print(f"  {printable(error.hint)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _check(pack_dir: Path) -> int:
    from .scenario import PackProblems, load_pack
    from .scenario.lore_checks import lore_warning_problems

    try:
        loaded = load_pack(pack_dir)
    except PackProblems as problems:
        for problem in problems.problems:
            print(printable(str(problem)))
        print(f"{_count(len(problems.problems), 'problem')} in {pack_dir}")
        return 1
    pack = loaded.pack
    counts = (
        (len(pack.characters), "character"),
        (len(pack.scenes), "scene"),
        (len(pack.episodes), "episode"),
        (len(pack.lore), "lore entry"),
        (len(pack.achievements), "achievement"),
        (loaded.asset_count, "image"),
        (len(loaded.files), "TOML file"),
    )
    summary = ", ".join(_count(n, word) for n, word in counts)
    warnings = lore_warning_problems(pack_dir, pack)  # the pack plays, but perhaps not as meant
    for warning in warnings:
        print(printable(str(warning)))
    if warnings:
        summary += f"; {_count(len(warnings), 'warning')}"
    print(printable(f"{pack_dir}: valid: {pack.name} {pack.version}, {summary}"))
    return 0


def _count(number: int, word: str) -> str:
    plural = word[:-1] + "ies" if word.endswith("y") else word + "s"
    return f"{number} {word if number == 1 else plural}"


def _run(args: argparse.Namespace) -> int:
    import asyncio

    from .model_session import open_model_session
    from .scenario import load_pack
    from .story import open_game
    from .story.saves import save_path
    from .story.script import play_script

    settings = settings_with_overrides(args)
    loaded = load_pack(args.pack_dir)
    path = save_path(loaded.pack.id, args.save)
    if path.exists() and not args.resume:
        raise UserFacingError(
            f"There is already a save '{args.save}' of {loaded.pack.name} ({path}).",
            hint="Pass --resume to go on with it, or choose another --save name.",
        )
    script = _stdin_lines() if str(args.script) == "-" else _read_script(args.script)

    async def play() -> None:
        session = await open_model_session(settings, getattr(args, "model", None), pack=loaded.pack)
        try:
            saved = await open_game(
                session, loaded, path, episode=args.episode, resume=args.resume,
                sampling=settings.sampling_params(loaded.pack.sampling), budgets=settings.budgets(),
            )  # fmt: skip
            for warning in saved.warnings:
                print(f"simularity: warning: {printable(warning)}", file=sys.stderr)
            await play_script(saved, script, source=str(args.script))
        finally:
            await session.close()

    asyncio.run(play())
    return 0


def _saves(args: argparse.Namespace) -> int:
    from .scenario import load_pack
    from .story.saves import delete_save, save_exists, save_path, save_summaries

    pack = load_pack(args.pack_dir).pack
    if args.delete:
        path = save_path(pack.id, args.delete)
        if not save_exists(path):  # a link to nowhere is listed, so it can go too
            raise UserFacingError(f"{pack.name} has no save '{args.delete}'", hint=f"simularity saves {args.pack_dir}")
        delete_save(path)
        print(printable(f"deleted the save '{args.delete}' of {pack.name}"))
        return 0
    for save in save_summaries(pack.id):
        about = f"{save.last_played}, {save.lines} lines" if save.readable else "unreadable"
        print(printable(f"{save.name}\t{about}\t{save.path}"))
    return 0


def _stdin_lines() -> Iterator[str]:
    """Standard input, line by line as it comes (a script may be fed live), checked as UTF-8."""
    for number, raw in enumerate(sys.stdin.buffer, start=1):
        try:
            yield raw.decode("utf-8")
        except UnicodeDecodeError:
            raise UserFacingError(
                f"-:{number}: the script is not UTF-8 text", hint="Save the script as UTF-8."
            ) from None


def _read_script(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except OSError as error:
        raise UserFacingError(f"{path}: cannot read the script ({error.strerror})", path=path) from None
    except UnicodeDecodeError:
        raise UserFacingError(f"{path}: the script is not UTF-8 text", path=path) from None


def _bench(args: argparse.Namespace) -> int:
    bench = BENCH_BY_NAME[args.bench]
    run = bench.runner()
    settings = settings_with_overrides(args)
    if settings.model.backend and bench.in_process:
        raise UserFacingError(
            f"bench {args.bench} measures the in-process engine against llama-cpp-python; it cannot run on a server.",
            hint="Leave out --backend (and [model] backend), or run `simularity bench story --backend URL`.",
        )
    return run(args, settings, getattr(args, "model", None))


def _play(args: argparse.Namespace) -> int:
    """The game. Its settings are validated right after its first frame, which needs no pydantic
    (first_frame.py); where they have problems, the game's error screen says so, then this command."""
    _check_model_or_backend(args)  # at once: it needs no settings
    first_frame = first_frame_settings(args)
    # textual-image asks the terminal what it can draw (when the mode is `auto`): before Textual takes it.
    from .ui.terminal_graphics import prepare_terminal_graphics

    prepare_terminal_graphics(first_frame.graphics)
    from .exit_guard import ExitGuard
    from .ui.app import SimularityApp

    app = SimularityApp(launch_options(args, first_frame))
    guard = ExitGuard(app.exit)
    guard.install()
    app.on_exit_saved = lambda: guard.exit_saved(2 if app.error is not None else 0)
    app.run()
    if app.error is not None:  # shown in the game; said again here, where it stays after the screen clears
        raise app.error
    if app.next_room is not None:  # the library's room: this process becomes its screen (the model goes)
        restore_native_stderr()
        os.execv(sys.executable, [sys.executable, "-m", "simularity_tui", "room", "join", app.next_room])
    return 0


def first_frame_settings(args: argparse.Namespace) -> FirstFrameSettings:
    """What the game's first frame shows of the settings file (read without pydantic), with --graphics."""
    from .first_frame import read_first_frame_settings

    first_frame = read_first_frame_settings(getattr(args, "settings", None))
    return first_frame if args.graphics is None else replace(first_frame, graphics=args.graphics)


def launch_options(args: argparse.Namespace, first_frame: FirstFrameSettings) -> LaunchOptions:
    """The game's options; its settings, with this command line's overrides, are read by the app
    right after its first frame (a problem with them is a UserFacingError there, as it is here)."""
    from .ui.app import LaunchOptions

    def read_settings() -> Settings:
        settings = settings_with_overrides(args)
        if args.graphics is not None:
            settings.ui.graphics = args.graphics
        return settings

    return LaunchOptions(
        None, getattr(args, "model", None), args.pack, args.episode, args.save, args.new,
        settings_file=getattr(args, "settings", None), read_settings=read_settings, first_frame=first_frame,
    )  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
