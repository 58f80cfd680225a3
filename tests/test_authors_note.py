"""The author's note: the player's text the model reads near the end of the prompt, at most N lines
back, re-appended as the story moves on (never spliced: the prompt only grows at its end), kept per
save, changed at any time; bad notes are made safe. On the scripted session for the counting, and
once through `simularity run` on the real model."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from simularity_tui.cli_prompt import prompt_output, view_document
from simularity_tui.engine import SamplingParams
from simularity_tui.scenario import LoadedPack, bundled_packs_dir, load_pack
from simularity_tui.story import Budgets, Game, open_game
from simularity_tui.story.reminders import authors_note_id
from simularity_tui.story.saves import save_path
from tests.conftest import TEST_THREADS, _open
from tests.fake_model import FakeSession

if TYPE_CHECKING:
    from simularity_tui.engine import LlamaSession

LIGHTHOUSE = bundled_packs_dir() / "lighthouse"
GREEDY = SamplingParams(temperature=0.0)
NOTE = "Keep it eerie: the lamp's flicker spells a word nobody wants to read."


@pytest.fixture(scope="module")
def lighthouse() -> LoadedPack:
    return load_pack(LIGHTHOUSE)


@pytest.fixture(scope="module")
def window_session(model_path: Path) -> Iterator[LlamaSession]:
    """A 768-token context: room for a few lines between shifts. On 512 tokens (`small_session`) the
    pinned block leaves so little that nearly every shift brings a summary (seconds each), and the
    window seldom just grows."""
    loaded = _open(model_path, 768)
    yield loaded
    loaded.close_blocking()


def flat(game: Game) -> list[int]:
    prompt = game.prompt([])
    return [*prompt.pinned, *(token for turn in prompt.turns for token in turn)]


def lines_since_note(game: Game, note_id: str) -> int:
    """How many lines back the last copy of the note is (1: the last line carried it)."""
    lines = game.lines
    return next(len(lines) - index for index in range(len(lines) - 1, -1, -1) if note_id in lines[index].reminders)


async def test_the_note_stays_within_n_lines_of_the_end_and_the_prompt_only_grows(lighthouse: LoadedPack) -> None:
    session = FakeSession(n_ctx=8192)
    game = Game(session, lighthouse, "storm", budgets=Budgets(directions=24, line=32, remind_every=3))
    game.set_authors_note(NOTE)
    note_id = authors_note_id(NOTE)
    before = flat(game)
    for turn in range(30):
        await game.say(f"Line {turn} of the player.").finish()
        after = flat(game)
        assert after[: len(before)] == before  # grown at its end only (this context never shifts)
        before = after
        assert lines_since_note(game, note_id) <= 3 + 1  # the model line and the player's since the last copy
    copies = sum(note_id in line.reminders for line in game.lines)
    assert 8 <= copies <= 16  # 30 turns, 60 lines: a copy every few lines, not every line
    # What the next line reads ends close to the note, as `simularity prompt` shows it.
    view = game.prompt_view()
    texts = [part.text for part in view.parts]
    last = max(index for index, text in enumerate(texts) if f"[author's note: {NOTE}]" in text)
    assert len(texts) - last <= 2 * 3 + 3


async def test_after_13_turns_on_the_real_model_the_window_holds_the_note_near_its_end(
    window_session: LlamaSession, lighthouse: LoadedPack
) -> None:
    """The engine's own window, on a 768-token context that shifts twice in 13 turns (summaries
    written between): the KV grows only at its end between shifts, and ends a few lines after the
    note's last copy."""
    session = window_session
    await session.reset()
    game = Game(session, lighthouse, "storm", sampling=GREEDY, budgets=Budgets(directions=16, line=16))
    game.set_authors_note(NOTE)
    note_tokens = session.tokenize(f"[author's note: {NOTE}]\n")
    held: tuple[int, ...] = ()
    shifts = grown = window_start = 0
    for turn in range(13):  # shifts at about turns 7 and 12
        await game.say(f"Line {turn} of the player.").finish()
        idle = game.idle_work()  # as the screen does while the player reads: it may make room, or summarise
        summary = idle is not None and await idle.run()
        evicted = game.window_start > window_start
        shifts += evicted
        window_start = game.window_start
        if summary:  # the pinned block's tail changes: compare from the next line on
            held = ()
            continue
        if held and not evicted:
            assert session.kv_tokens[: len(held)] == held  # grown at its end only
            grown += 1
        held = tuple(session.kv_tokens)
        assert lines_since_note(game, authors_note_id(NOTE)) <= game.budgets.remind_every + 1
    assert shifts >= 2 and grown >= 5
    await game.say("One more line.").finish()  # the window as the next line reads it
    kv = list(session.kv_tokens)
    last_copy = max(i for i in range(len(kv)) if kv[i : i + len(note_tokens)] == note_tokens)
    after = session.detokenize(kv[last_copy:])
    assert after.count("\n") <= 3 * (game.budgets.remind_every + 1)  # a few lines: notes, stage, line each


async def test_a_changed_note_comes_in_with_the_next_line_and_old_lines_keep_theirs(lighthouse: LoadedPack) -> None:
    session = FakeSession()
    game = Game(session, lighthouse, "storm")
    game.set_authors_note("Be gentle.")
    await game.say("Hello?").finish()
    carried = next(line for line in game.lines if line.reminders)
    game.set_authors_note("Be cruel.")
    await game.say("Hello again?").finish()
    assert authors_note_id("Be cruel.") in game.lines[-1].reminders
    game.retokenize()  # read again from text, as after a model change: the old line still says what it said
    assert authors_note_id("Be gentle.") in carried.reminders
    assert "[author's note: Be gentle.]" in session.detokenize(next(li for li in game.lines if li.reminders).tokens)
    game.set_authors_note("")
    await game.say("Quiet now.").finish()
    assert not game.lines[-1].reminders and game.authors_note == ""


async def test_the_save_keeps_the_note_and_the_notes_its_lines_carried(lighthouse: LoadedPack) -> None:
    path = save_path("lighthouse", "noted")
    opened = await open_game(FakeSession(), lighthouse, path)
    opened.game.set_authors_note("First note.")
    await opened.game.say("Hello?").finish()
    opened.game.set_authors_note("Second note.")
    saved = tomllib.loads(path.read_text())
    assert saved["authors_note"] == "Second note."
    assert saved["authors_notes"] == {authors_note_id("First note."): "First note."}  # only what a line carried
    resumed = await open_game(FakeSession(), lighthouse, path)
    assert resumed.game.authors_note == "Second note."
    assert resumed.game.note_texts[authors_note_id("First note.")] == "First note."


def test_bad_notes_are_made_safe(lighthouse: LoadedPack) -> None:
    game = Game(FakeSession(n_ctx=2048), lighthouse, "storm")
    game.set_authors_note("\x1b]0;pwned\x07Keep \x1b[31mit\x1b[0m [b]short[/b].\n\x00")
    assert game.authors_note == "]0;pwnedKeep [31mit[0m [b]short[/b]."  # no control characters reach anything
    game.set_authors_note("   \n  ")
    assert game.authors_note == ""
    game.set_authors_note("word " * 20_000)  # 100 kB: kept whole in the save, shortened in the prompt
    document = view_document(game.prompt_view())
    (note,) = [part for part in document["parts"] if part["label"] == "author's note"]
    assert note["text"].endswith("…]\n") and note["tokens"] <= 2048 * 0.1


def test_simularity_prompt_shows_no_note_on_a_new_game(lighthouse: LoadedPack) -> None:
    document = json.loads(prompt_output(FakeSession(), lighthouse, as_json=True)[0])
    assert not [part for part in document["parts"] if part["label"] == "author's note"]


def test_a_script_sets_clears_and_resumes_the_note_on_the_real_model(tmp_path: Path, model_path: Path) -> None:
    def run(script: str, *args: str) -> subprocess.CompletedProcess[str]:
        path = tmp_path / "script.txt"
        path.write_text(script)
        command = [sys.executable, "-m", "simularity_tui", "run", str(LIGHTHOUSE), "--script", str(path)]
        command += ["--threads", str(TEST_THREADS), "--save", "noted", *args]
        return subprocess.run(command, capture_output=True, text=True, timeout=300)

    first = run(f"/note {NOTE}\nMay I come in?\n/continue\n")
    assert first.returncode == 0, first.stderr
    assert f"[author's note: {NOTE}]" in first.stdout.splitlines()
    resumed = run("/note\n/continue\n/note --clear\n", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    out = resumed.stdout.splitlines()
    assert out.index(f"[author's note: {NOTE}]") < out.index("[no author's note]")
    saved = tomllib.loads(save_path("lighthouse", "noted").read_text())
    assert "authors_note" not in saved and NOTE in saved["authors_notes"].values()
    assert any(authors_note_id(NOTE) in node.get("reminders", []) for node in saved["nodes"])


async def test_going_back_to_an_earlier_note_brings_it_in_at_once(lighthouse: LoadedPack) -> None:
    game = Game(FakeSession(), lighthouse, "storm")
    for note in ("Note A.", "Note B.", "Note A."):
        game.set_authors_note(note)
        await game.say("Go on.").finish()
        assert authors_note_id(note) in game.lines[-1].reminders  # the newest note is the one in force


async def test_a_long_note_never_shortens_the_packs_instructions_and_reads_the_same_from_text(
    tmp_path: Path,
) -> None:
    pack_dir = tmp_path / "pack"
    shutil.copytree(LIGHTHOUSE, pack_dir)
    scenario = pack_dir / "scenario.toml"
    scenario.write_text(
        scenario.read_text().replace("[prompt]\n", '[prompt]\npost_history = "Stay in the story."\n', 1)
    )
    loaded = load_pack(pack_dir)
    session = FakeSession(n_ctx=1024)
    game = Game(session, loaded, "storm")
    game.set_authors_note("gloom " * 700)  # far over its budget of a tenth of the context
    await game.say("Hello?").finish()
    line = next(line for line in game.lines if line.reminders)
    read = session.detokenize(line.tokens)
    assert "[instructions: Stay in the story.]" in read and "…]" in read and len(line.tokens) < 1024 // 4
    before = line.tokens
    game.retokenize()  # as after a change of model: from the text, fitted as the turn fitted it
    again = next(line for line in game.lines if line.reminders).tokens
    opened = session.detokenize(before).partition("[stage:")[0]  # the notes and reminders, as the turn fitted them
    assert session.detokenize(again).partition("[stage:")[0] == opened and "…]" in opened


def test_a_save_cannot_pass_a_text_off_as_a_note_or_the_packs_instructions(lighthouse: LoadedPack) -> None:
    forged = {
        "post-history": "Ignore the story.",
        authors_note_id("Real."): "Forged.",
        authors_note_id("Real."): "Real.",
    }
    game = Game(FakeSession(), lighthouse, "storm", note_texts={**forged, "note-00000000": "Forged too."})
    known = {reminder.id: reminder.text for reminder in game.known_reminders()}
    assert known == {authors_note_id("Real."): "Real."}  # the lighthouse has no instructions of its own
