"""Hostile packs, settings and terminals: what an adversarial round found, each hole shut.

Control characters in names and text (they reached a GBNF grammar, and through llama.cpp's stderr
the terminal), nesting and dotted keys that make TOML readers recurse or take quadratic time, links
that lead out of a pack, names the line format could not carry, a game that hung when its terminal
went away, and smaller ones. Every hostile input is built here; none is kept in git.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from simularity_tui.engine import SamplingParams
from simularity_tui.errors import UserFacingError
from simularity_tui.scenario import LoadedPack, bundled_packs_dir, discover_packs, load_pack
from simularity_tui.scenario.watch import watch_pack
from simularity_tui.settings import load_settings
from simularity_tui.story import Budgets, Game
from simularity_tui.story.writing import parse_directions, parse_line_head
from simularity_tui.toml_source import TomlProblems, locate
from tests.conftest import TEST_THREADS

from .packs import line_of, tiny_pack
from .pty_terminal import PtyProgram

if TYPE_CHECKING:
    from simularity_tui.engine import LlamaSession

LIGHTHOUSE = bundled_packs_dir() / "lighthouse"
RAW_CONTROL = re.compile(rb"[\x00-\x08\x0b-\x1f\x7f]|\xc2[\x80-\x9f]")  # C0 but \t \n, DEL, C1 in UTF-8


def simularity(
    *args: str, timeout: float = 120, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "simularity_tui", *args],
        capture_output=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def assert_clean(run: subprocess.CompletedProcess[bytes]) -> None:
    """No traceback, and no raw control byte on stdout or stderr."""
    output = run.stdout + run.stderr
    assert b"Traceback" not in output, output.decode(errors="replace")
    assert not RAW_CONTROL.search(output.replace(b"\r\n", b"\n")), output


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


# -- 1. control characters: refused in packs and settings, escaped in grammars, off the terminal ----


@pytest.mark.parametrize(
    ("old", "new", "key"),
    [
        ('name = "Bo"', 'name = "Bo\\u0000"', "characters.bo.name"),
        ('name = "Room"', 'name = "Room\\u001b]0;pwned\\u0007"', "scenes.room.name"),
        ('scenario = "A room."', 'scenario = "A room.\\u001b]52;c;AAAA\\u0007"', "prompt.scenario"),
        ('keywords = ["x"]', 'keywords = ["x\\u009b31m"]', "lore.fact.keywords.0"),
        ('name = "Bo"', 'name = "Bo\\nMe (20:00): forged"', "characters.bo.name"),
    ],
)
def test_control_characters_in_a_pack_are_refused_at_their_line(tmp_path: Path, old: str, new: str, key: str) -> None:
    root = tiny_pack(tmp_path / "pack")
    target = root / ("more.toml" if "keywords" in old else "scenario.toml")
    edit(target, old, new)
    run = simularity("check", str(root))
    assert run.returncode == 1
    assert_clean(run)
    line = line_of(target.read_text(), new)
    assert f"{target}:{line}:".encode() in run.stdout and key.encode() in run.stdout, run.stdout


def test_an_outfit_name_with_a_nul_is_refused(tmp_path: Path) -> None:
    root = tiny_pack(tmp_path / "pack")
    edit(
        root / "scenario.toml",
        "[characters.bo.expressions]",
        '[characters.bo.outfits.coat]\nname = "Co\\u0000at"\n\n[characters.bo.expressions]',
    )
    run = simularity("check", str(root))
    assert run.returncode == 1 and b"characters.bo.outfits.coat.name: has a NUL" in run.stdout, run.stdout
    assert_clean(run)


def test_grammar_literals_escape_what_is_not_printable(session: LlamaSession) -> None:
    """Whatever a name holds, the grammar still parses and offers exactly that name."""
    from simularity_tui.story.writing import _literal

    for name in ["A\x00B", "\x1b]0;t\x07", 'q"\\', "Zoë\u2028\xa0", "\U0001f600 \x9b"]:
        literal = _literal(name)
        assert not re.search(r"[\x00-\x1f\x7f-\x9f]", literal), literal
    assert _literal("A\x00B") == '"AB"'  # a NUL, even escaped, aborts llama.cpp's sampler: left out
    # the real parser and sampler: every escape they are given is one they read
    grammar = "root ::= " + " | ".join(_literal(n) for n in ["\x1b]0;t\x07", "Zoë\u2028\xa0"]) + "\n"
    from simularity_tui.engine.config import GenerationParams
    from simularity_tui.engine.prompt import Prompt

    async def run() -> None:
        generation = session.generate(
            Prompt.of(session.tokenize("Say:"), []), GenerationParams(max_tokens=8, grammar=grammar, heal=False)
        )
        async for _ in generation:
            pass
        result = await generation.result()
        assert result.text in ("\x1b]0;t\x07", "Zoë\u2028\xa0")

    asyncio.run(run())


def test_llama_cpps_own_stderr_goes_to_the_log_printable(tmp_path: Path, model_path: Path) -> None:
    """llama.cpp prints a grammar it cannot parse straight to descriptor 2: with the game's guard it
    lands in the log as printable text, and Python's own stderr still reaches the terminal."""
    script = textwrap.dedent(
        f"""
        import logging, sys
        logging.basicConfig(filename={str(tmp_path / "log.txt")!r}, level=logging.INFO)
        from simularity_tui.native_stderr import route_native_stderr
        route_native_stderr()
        from simularity_tui.engine.native import NativeModel
        from simularity_tui.engine.sampling import SamplerChain
        from simularity_tui.engine.config import SamplingParams
        model = NativeModel({str(model_path)!r}, 0)
        try:
            SamplerChain(model, SamplingParams(), 1, grammar='root ::= "\\x1b]0;pwned\\x07" | "a\\x00b"')
        except Exception as error:
            print("refused:", type(error).__name__, file=sys.stderr)
        import time; time.sleep(0.5)
        """
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=60)
    assert b"refused: GrammarError" in run.stderr
    assert b"\x1b" not in run.stderr and b"\x07" not in run.stderr, run.stderr
    log = (tmp_path / "log.txt").read_text()
    assert "error parsing grammar" in log and "␛]0;pwned" in log and "\x1b" not in log


def test_settings_with_control_characters_are_refused(tmp_path: Path) -> None:
    settings = tmp_path / "settings.toml"
    settings.write_text('[model]\npath = "x\\u001b]0;t\\u0007.gguf"\n')
    run = simularity("--settings", str(settings), "run", str(LIGHTHOUSE), "--script", "-")
    assert run.returncode == 2 and f"{settings}:2:1: model.path: has an ESC".encode() in run.stderr, run.stderr
    assert_clean(run)


async def test_the_players_line_loses_its_control_characters(session: LlamaSession) -> None:
    await session.reset()
    game = Game(session, load_pack(LIGHTHOUSE), "storm", sampling=SamplingParams(seed=1), budgets=Budgets(line=8))
    turn = game.say("Hi\x1b]52;c;AAAA\x07 there\x00\x9b")
    turn.cancel()
    player_line = next(line for line in game.lines if line.kind == "player")
    assert player_line.text == "Hi ]52;c;AAAA there"


# -- 4, 5. deep nesting, long dotted keys and long lines: file:line:col, fast ---------------------


DEEP = {
    "arrays": "x = " + "[" * 500 + "]" * 500 + "\n",
    "inline tables": "x = " + "{a = " * 350 + "1" + "}" * 350 + "\n",
    "dotted key": "x" + ".x" * 2000 + " = 1\n",
}


@pytest.mark.parametrize("kind", DEEP)
def test_deep_toml_is_a_located_problem_in_every_reader(tmp_path: Path, kind: str) -> None:
    hostile = "\n" + DEEP[kind]  # on line 2
    root = tiny_pack(tmp_path / "pack")
    (root / "more.toml").write_text((root / "more.toml").read_text() + hostile)
    run = simularity("check", str(root))
    assert run.returncode == 1 and f"{root / 'more.toml'}:5:".encode() in run.stdout, run.stdout
    assert_clean(run)

    settings = tmp_path / "settings.toml"
    settings.write_text("[ui]" + hostile)
    with pytest.raises(TomlProblems, match=r"settings.toml:2:"):
        load_settings(settings)

    host = tmp_path / "host.toml"
    host.write_text("port = 2222" + hostile)
    run = simularity("host", "--config", str(host))
    assert run.returncode == 2 and f"{host}:2:".encode() in run.stderr, run.stderr
    assert_clean(run)

    from simularity_tui.ui.themes import load_themes, user_themes_dir

    user_themes_dir().mkdir(parents=True, exist_ok=True)
    (user_themes_dir() / "deep.toml").write_text('name = "deep"' + hostile)
    _themes, problems = load_themes()
    assert any("deep.toml:2:" in str(problem.message) for problem in problems)


def test_a_deep_pack_among_the_players_packs_is_listed_as_broken(tmp_path: Path) -> None:
    tiny_pack(tmp_path / "packs" / "good")
    deep = tiny_pack(tmp_path / "packs" / "deep")
    (deep / "more.toml").write_text(DEEP["arrays"])
    packs, problems = discover_packs(tmp_path / "packs")
    assert [loaded.pack.id for loaded in packs] == ["tiny"]
    assert len(problems) == 1 and "nested more than 64 deep" in problems[0].message


def test_check_reads_a_mebibyte_of_hostile_toml_in_time(tmp_path: Path) -> None:
    """A single 1 MiB line (an array padded with spaces, which the old table-header scan was quadratic
    on) and 1 MiB of dotted keys (quadratic in tomllib) are each answered within 2 s of work."""
    cases = {
        "nested array": '[lore.more]\ncontent = "c"\nkeywords = [\n[1,' + " " * ((1 << 20) - 200) + "2],\n]\n",
        "dotted": "a" + ".a" * ((1 << 20) // 2 - 10) + " = 1\n",
        "padded key": "extensions" + " " * ((1 << 20) - 200) + "= 1\n",
    }
    for name, hostile in cases.items():
        root = tiny_pack(tmp_path / name)
        (root / "more.toml").write_text(hostile)
        started = time.perf_counter()
        run = simularity("check", str(root))
        elapsed = time.perf_counter() - started
        assert run.returncode == 1, run.stdout
        assert_clean(run)
        assert elapsed < 2 + 1.5, f"{name}: {elapsed:.1f} s (the command's own start is about 1 s)"


def test_locate_is_linear_on_long_lines() -> None:
    source = "[a" + " " * 200_000 + "x\n[b]\nkey = 1\n"
    started = time.perf_counter()
    assert locate(source, ["b", "key"]) == (3, 1)
    assert time.perf_counter() - started < 0.5


async def test_the_library_lists_a_slow_pack_as_broken_without_waiting(session: LlamaSession, tmp_path: Path) -> None:
    from simularity_tui.settings import Settings
    from simularity_tui.ui.app import LaunchOptions, SimularityApp
    from simularity_tui.ui.library_screen import BrokenItem, LibraryScreen, user_packs_dir

    slow = tiny_pack(user_packs_dir() / "slow")
    (slow / "more.toml").write_text("[lore" + " " * ((1 << 20) - 100) + "x]\n")
    settings = Settings()
    settings.ui.graphics = "none"
    app = SimularityApp(LaunchOptions(settings), session=session)
    async with app.run_test(size=(100, 30)) as pilot:
        started = time.perf_counter()
        while not (isinstance(app.screen, LibraryScreen) and app.screen.scanned):
            assert time.perf_counter() - started < 10
            await pilot.pause(0.05)
        items = list(app.screen.query("ListItem"))
        assert any(isinstance(item, BrokenItem) for item in items)


def test_a_syntax_error_at_the_end_of_a_file_is_reported_at_its_line(tmp_path: Path) -> None:
    root = tiny_pack(tmp_path / "pack")
    (root / "more.toml").write_text((root / "more.toml").read_text() + 'extra = """never closed\n')
    run = simularity("check", str(root))
    assert run.returncode == 1 and f"{root / 'more.toml'}:4:".encode() in run.stdout, run.stdout


def test_a_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    root = tiny_pack(tmp_path / "pack")
    for name in ("scenario.toml", "more.toml"):
        (root / name).write_bytes(b"\xef\xbb\xbf" + (root / name).read_bytes())
    run = simularity("check", str(root))
    assert run.returncode == 0, run.stdout + run.stderr


# -- 6. links that leave the pack ----------------------------------------------------------------


def test_include_globs_never_follow_a_link_out_of_the_pack(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "lore.toml").write_text('[lore.stolen]\nkeywords = ["x"]\ncontent = "from outside"\n')
    root = tiny_pack(tmp_path / "pack")
    (root / "lore").mkdir()
    (root / "lore" / "own.toml").write_text('[lore.own]\nkeywords = ["y"]\ncontent = "mine"\n')
    (root / "lore" / "up").symlink_to(outside)
    (root / "lore" / "loop").symlink_to(root)
    (root / "root").symlink_to("/")
    edit(root / "scenario.toml", 'include = ["more.toml"]', 'include = ["more.toml", "**/*.toml"]')
    started = time.perf_counter()
    loaded = load_pack(root)
    assert time.perf_counter() - started < 2
    assert set(loaded.pack.lore) == {"fact", "own"}
    from simularity_tui.scenario.sources import pack_directories

    assert pack_directories(root) == [root, root / "art", root / "lore"]


async def test_hot_reload_watches_only_the_packs_own_folders(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    root = tiny_pack(tmp_path / "pack")
    (root / "elsewhere").symlink_to(outside)
    (root / "proc").symlink_to("/proc")
    stop = asyncio.Event()
    changes: asyncio.Queue[LoadedPack | UserFacingError] = asyncio.Queue()

    async def follow() -> None:
        async for change in watch_pack(root, stop):
            await changes.put(change)

    task = asyncio.create_task(follow())
    await asyncio.sleep(0.5)
    (outside / "x.toml").write_text("a = 1\n")
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(changes.get(), 1.0)
    edit(root / "scenario.toml", 'name = "Tiny"', 'name = "Tinier"')
    change = await asyncio.wait_for(changes.get(), 5.0)
    assert isinstance(change, LoadedPack) and change.pack.name == "Tinier"
    (root / "new").mkdir()  # a folder the author adds is watched from then on
    await asyncio.sleep(0.5)
    (root / "new" / "notes.toml").write_text("a = 1\n")
    assert isinstance(await asyncio.wait_for(changes.get(), 5.0), LoadedPack)
    stop.set()
    await asyncio.wait_for(task, 5.0)


# -- 10. names the line format carries ------------------------------------------------------------


def test_names_with_parentheses_and_semicolons_are_read_back() -> None:
    pack = load_pack(LIGHTHOUSE).pack
    named = pack.model_copy(
        update={
            "characters": {
                **pack.characters,
                "mira": pack.characters["mira"].model_copy(update={"name": "Mira (the keeper)"}),
            }
        }
    )
    assert parse_line_head(named, "Mira (the keeper) (21:40): Tea?", ["mira", "narrator"]) == ("mira", "21:40", "Tea?")
    assert parse_line_head(named, "Stranger (21:40): Hi", ["mira", "narrator"]) == ("narrator", "21:40", "Hi")

    from simularity_tui.story.stage import Stage, describe
    from simularity_tui.story.writing import directions_grammar

    scenes = {**pack.scenes, "lamp-room": pack.scenes["lamp-room"].model_copy(update={"name": "the top; lamp]"})}
    odd = pack.model_copy(update={"scenes": scenes})
    stage = Stage.opening(odd, "storm")
    _grammar, table = directions_grammar(odd, stage)
    form = next(f for f, c in table.items() if c.target == "lamp-room")
    commands, whole = parse_directions(odd, stage, f" {form}]\n", table)
    assert [describe(odd, c) for c in commands] == [form] and whole


async def test_a_character_whose_name_has_a_parenthesis_gets_to_speak(session: LlamaSession, tmp_path: Path) -> None:
    """Before, "Bo (the elder) (20:01): " never matched the line head: the model's turn came to nothing."""
    root = tiny_pack(tmp_path / "pack")
    edit(root / "scenario.toml", 'name = "Bo"', 'name = "Bo (the elder)"')
    edit(root / "scenario.toml", 'scene = "room"', 'scene = "room"\ncharacters = [{id = "bo"}]')
    speakers: list[str] = []
    # Who speaks is the model's draw (the narrator may always speak): seed 4 gives Bo a line on this
    # model; the others are tried should a new llama.cpp draw otherwise.
    for seed in (4, 1, 2, 3, 5, 6):
        await session.reset()
        game = Game(session, load_pack(root), "start", sampling=SamplingParams(seed=seed), budgets=Budgets(line=24))
        for number in range(5):
            turn = await game.say("Hello Bo, how are you?" if number % 2 == 0 else "").finish()
            assert turn.speaker is not None and turn.text, f"turn {number} wrote nothing"
            speakers.append(turn.speaker)
            if turn.speaker == "bo":
                break
        if "bo" in speakers:
            break
    assert "bo" in speakers


def test_two_characters_with_one_name_are_refused(tmp_path: Path) -> None:
    root = tiny_pack(tmp_path / "pack")
    edit(root / "scenario.toml", 'name = "Bo"', 'name = "narrator"')
    run = simularity("check", str(root))
    assert run.returncode == 1 and b"is also the name of the narrator" in run.stdout, run.stdout


# -- 11. a game whose terminal goes away ends, and keeps its save -------------------------------


def _game_on_a_pty(tmp_path: Path) -> PtyProgram:
    """The game on the lighthouse pack, on a pseudo-terminal that is not its controlling terminal."""
    argv = [sys.executable, "-m", "simularity_tui", "--graphics", "halfcell", "--pack", str(LIGHTHOUSE)]
    env = {
        **os.environ,
        "TERM": "xterm-256color",
        "SIMULARITY_CONFIG_DIR": str(tmp_path / "config"),
        "SIMULARITY_DATA_DIR": str(tmp_path / "data"),
    }
    return PtyProgram([*argv, "--threads", str(TEST_THREADS)], env)


def test_a_game_whose_terminal_disappears_mid_line_ends_and_keeps_its_save(tmp_path: Path, model_path: Path) -> None:
    """The terminal closes while a line streams (no SIGHUP: the pty is not the game's controlling
    terminal). Before, the game blocked for ever on its screen writer; now it ends within seconds."""
    game = _game_on_a_pty(tmp_path)
    try:
        game.wait_for(lambda out: b"saved: autosave" in out, 120)
        game.send(b"Hello there, tell me a long story about the sea\r")
        time.sleep(1.0)
        os.close(game._master)
        started = time.monotonic()
        game.process.wait(20)
        assert time.monotonic() - started < 15
        assert game.process.returncode in (0, 128 + signal.SIGHUP)
    finally:
        if game.process.poll() is None:
            os.killpg(game.process.pid, signal.SIGKILL)
            game.process.wait()
    save = tmp_path / "data" / "saves" / "lighthouse" / "autosave.toml"
    assert "Hello there, tell me a long story about the sea" in save.read_text()


@pytest.mark.parametrize("how", ["signal", "saved"])
def test_the_exit_watchdog_ends_a_game_stuck_on_its_terminal(how: str) -> None:
    """The main thread stuck as Textual's was (a full writer queue nobody drains): after SIGHUP, or
    after the exit save, the process still ends, with the status it would have had."""
    script = textwrap.dedent(
        f"""
        import queue, sys
        from simularity_tui import exit_guard
        exit_guard.EXIT_AFTER_SIGNAL_S = 2.0
        guard = exit_guard.ExitGuard(lambda: None)
        guard.install()
        if {how == "saved"!r}:
            guard.exit_saved(0)
        print("stuck", flush=True)
        full = queue.Queue(1)
        full.put(1)
        full.put(2)  # blocks for ever, as WriterThread.stop did
        """
    )
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE)
    assert process.stdout is not None and process.stdout.readline() == b"stuck\n"
    started = time.monotonic()
    if how == "signal":
        process.send_signal(signal.SIGHUP)
    status = process.wait(15)
    assert status == (128 + signal.SIGHUP if how == "signal" else 0)
    assert time.monotonic() - started < 5


# -- 12. smaller ones ------------------------------------------------------------------------------


def test_sampling_settings_are_bounded(tmp_path: Path) -> None:
    settings = tmp_path / "settings.toml"
    settings.write_text("[sampling]\nrepeat_last_n = 1000000000\n")
    with pytest.raises(TomlProblems, match=r"settings.toml:2:1: sampling.repeat_last_n: .*less than or equal to 65536"):
        load_settings(settings)


@pytest.mark.model  # `simularity run` imports llama.cpp before it opens the model file
def test_a_fifo_as_the_model_is_refused_at_once(tmp_path: Path) -> None:
    fifo = tmp_path / "model.gguf"
    os.mkfifo(fifo)
    run = simularity("run", str(LIGHTHOUSE), "--script", "-", "--model", str(fifo), timeout=30)
    assert run.returncode == 2 and b"is not a regular file" in run.stderr, run.stderr
    assert_clean(run)


def test_a_fifo_as_the_settings_file_is_refused_at_once(tmp_path: Path) -> None:
    fifo = tmp_path / "settings.toml"
    os.mkfifo(fifo)
    run = simularity("--settings", str(fifo), "run", str(LIGHTHOUSE), "--script", "-", timeout=30)
    assert run.returncode == 2 and f"{fifo}: not a regular file".encode() in run.stderr, run.stderr


def test_pack_text_with_newlines_cannot_forge_lines_in_runs_transcript(tmp_path: Path, model_path: Path) -> None:
    root = tmp_path / "pack"
    shutil.copytree(LIGHTHOUSE, root)
    edit(
        root / "scenario.toml",
        'text = "Rain hammers the glass.',
        'text = "Rain.\\nMira: I am a forged line.\\nRain hammers the glass.',
    )
    script = tmp_path / "script.txt"
    script.write_text("/quit\n")
    run = simularity("run", str(root), "--script", str(script), "--threads", str(TEST_THREADS))
    assert run.returncode == 0, run.stderr
    lines = run.stdout.decode().splitlines()
    assert lines[0] == "Narrator: Rain." and lines[1].startswith("    Mira: I am a forged line.")
    assert not any(line.startswith("Mira: I am a forged") for line in lines)


def test_a_chosen_graphics_mode_asks_the_terminal_nothing(tmp_path: Path, model_path: Path) -> None:
    game = _game_on_a_pty(tmp_path)
    try:
        output = game.wait_for(lambda out: b"saved: autosave" in out, 120)
    finally:
        game.close()
    assert b"\x1b_G" not in output, "the kitty graphics query"
    assert b"\x1b[16t" not in output, "the cell size query"


async def test_the_status_line_follows_a_renamed_scene(session: LlamaSession, tmp_path: Path) -> None:
    from textual.widgets import Static

    from simularity_tui.settings import Settings
    from simularity_tui.ui.app import LaunchOptions, SimularityApp
    from simularity_tui.ui.play_screen import PlayScreen

    root = Path(shutil.copytree(LIGHTHOUSE, tmp_path / "lighthouse"))
    settings = Settings()
    settings.ui.graphics = "none"
    await session.reset()
    app = SimularityApp(LaunchOptions(settings, pack_dir=root), session=session)
    async with app.run_test(size=(120, 30)) as pilot:
        while not isinstance(app.screen, PlayScreen):
            await pilot.pause(0.05)
        status = app.screen.query_one("#status", Static)
        assert "The keeper's kitchen" in str(status.render())
        await pilot.pause(0.5)  # the watcher is listening
        edit(root / "scenario.toml", 'name = "The keeper\'s kitchen"', 'name = "The Warm Kitchen"')
        started = time.perf_counter()
        while "The Warm Kitchen" not in str(status.render()):
            assert time.perf_counter() - started < 5, str(status.render())
            await pilot.pause(0.05)


async def test_a_card_sized_description_is_cut_by_the_prompt_budget_not_refused(
    session: LlamaSession, tmp_path: Path
) -> None:
    """Real cards carry 30-40k characters; a pack may hold 100k. The pack loads, and the prompt takes
    at most its share of the context, so the story still plays."""
    root = tiny_pack(tmp_path / "pack")
    words = " ".join(f"fact{number} of Bo's long life." for number in range(12_000))[:95_000]
    edit(root / "scenario.toml", 'name = "Bo"', f'name = "Bo"\ndescription = "{words}"')
    edit(root / "more.toml", 'content = "y"', f'content = "{words}"')
    edit(root / "scenario.toml", 'scene = "room"', 'scene = "room"\ncharacters = [{id = "bo"}]')
    await session.reset()
    game = Game(session, load_pack(root), "start", sampling=SamplingParams(seed=2), budgets=Budgets(line=12))
    assert len(game.prompt([]).pinned) <= session.n_ctx // 2
    turn = await game.say("Tell me about x, Bo.").finish()  # "x" brings the long lore entry in as a note
    assert turn.node_id is not None and turn.text
    assert game.lines[-1].notes == ("fact",)
