"""Extend and lead: the model finishes a line from where it stands, with token healing, so a line
stopped or begun mid-word goes on as a whole word ("…is Par" gives a word that begins "Par"), through
the game on the real model; refusals in words; the TUI's key and prefix; script commands."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from simularity_tui.engine import SamplingParams
from simularity_tui.errors import UserFacingError
from simularity_tui.scenario import LoadedPack, bundled_packs_dir, load_pack
from simularity_tui.story import Budgets, Game
from simularity_tui.story.saves import save_path
from tests.conftest import TEST_THREADS
from tests.fake_model import FakeSession

if TYPE_CHECKING:
    from simularity_tui.engine import LlamaSession

LIGHTHOUSE = bundled_packs_dir() / "lighthouse"
GREEDY = SamplingParams(temperature=0.0)


@pytest.fixture(scope="module")
def lighthouse() -> LoadedPack:
    return load_pack(LIGHTHOUSE)


async def test_a_line_led_mid_word_goes_on_as_a_whole_word_then_extends(
    session: LlamaSession, lighthouse: LoadedPack
) -> None:
    await session.reset()
    game = Game(session, lighthouse, "storm", sampling=GREEDY, budgets=Budgets(directions=24, line=16))
    before = len(game.lines)
    led = await game.lead("Mira: The capital of France is Par").finish()
    line = game.lines[-1]
    assert len(game.lines) == before + 1 and line.speaker == "mira" and led.node_id == game.tree.head
    assert line.text.startswith("The capital of France is Par")
    assert line.text[len("The capital of France is Par")].isalpha()  # the word went on: healed, not "Par is"
    assert led.result is not None and led.result.healed_tokens >= 1
    read = session.detokenize(line.tokens)
    assert read.endswith(f"Mira ({line.clock}): {line.text}\n") and "[stage: none]\n" in read
    # Extend: the line goes on in place, from where its budget stopped it.
    held = session.kv_tokens
    extended = await game.extend().finish()
    longer = game.lines[-1]
    assert len(game.lines) == before + 1 and extended.node_id == led.node_id
    assert longer.text.startswith(line.text) and len(longer.text) > len(line.text)
    prompt = game.prompt([])
    everything = [*prompt.pinned, *(t for turn in prompt.turns for t in turn)]
    shared = next((i for i, (a, b) in enumerate(zip(held, everything)) if a != b), min(len(held), len(everything)))
    assert shared >= len(everything) - len(longer.tokens)  # only the extended line's end was read again


def test_what_cannot_be_led_or_extended_is_said_in_words(lighthouse: LoadedPack) -> None:
    game = Game(FakeSession(), lighthouse, "storm")
    with pytest.raises(UserFacingError, match="not NAME: TEXT"):
        game.lead("Mira says hello")
    with pytest.raises(UserFacingError, match="'Ash' may not speak now") as raised:
        game.lead("Ash: I will speak for myself")
    assert "Mira" in raised.value.hint
    game.tree.add(game._line(game.pack.player_id, "Hello?", "player", clock=game.clock))  # noqa: SLF001
    with pytest.raises(UserFacingError, match="Only a line of the story's can be extended"):
        game.extend()


async def test_ctrl_g_extends_and_slash_lead_leads_in_the_tui(fake_session: FakeSession) -> None:
    from tests.test_ui import SIZE, LineView, play_screen, turn
    from tests.test_ui import lighthouse as app_for

    fake_session.replies.extend([" and the sea.", " lamp is lit."])
    app = app_for(fake_session)
    async with app.run_test(size=SIZE) as pilot:
        screen = await play_screen(app)
        last = screen.game.lines[-1].text
        await turn(pilot, screen, "ctrl+g")
        assert screen.game.lines[-1].text == last + " and the sea." == screen.query(LineView)[-1].text
        await turn(pilot, screen, *"/lead Mira: The", "enter")
        assert screen.game.lines[-1].text == "The lamp is lit." == screen.query(LineView)[-1].text


def test_scripts_extend_lead_and_impersonate_and_the_save_keeps_them(tmp_path: Path, model_path: Path) -> None:
    def run(script: str, *args: str) -> list[str]:
        path = tmp_path / "script.txt"
        path.write_text(script)
        command = [sys.executable, "-m", "simularity_tui", "run", str(LIGHTHOUSE), "--script", str(path)]
        command += ["--threads", str(TEST_THREADS), "--save", "steered", *args]
        done = subprocess.run(command, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        return done.stdout.splitlines()

    def saved_lines() -> list[tuple[str, str]]:
        saved = tomllib.loads(save_path("lighthouse", "steered").read_text())
        by_id = {node["id"]: node for node in saved["nodes"]}
        path, node_id = [], saved["head"]
        while node_id in by_id:
            path.append((by_id[node_id]["speaker"], by_id[node_id]["text"]))
            node_id = by_id[node_id]["parent"]
        return path[::-1]

    out = run("/lead Mira: The storm is\n/extend\n/impersonate\n")
    led = next(line for line in out if line.startswith("Mira: The storm is"))
    assert len(led) > len("Mira: The storm is") and any(line.startswith("[extended] …") for line in out)
    said = next(line for line in out if line.startswith("[impersonated] Ash: ")).removeprefix("[impersonated] Ash: ")
    assert f"Ash: {said}" in out  # then said as the player's line
    first = saved_lines()
    # The led line is the first of Mira's to begin so (the model may echo it later).
    extended = next(text for speaker, text in first if speaker == "mira" and text.startswith("The storm is"))
    assert len(extended) > len(led.removeprefix("Mira: ")) - 1 and ("ash", said) in first
    # Resumed: the led line, the extension and the impersonated line are the story; it goes on from them.
    out = run("/lead Mira: And the boat\n/extend\n", "--resume")
    assert any(line.startswith("Mira: And the boat") for line in out)
    after = saved_lines()
    assert after[: len(first)] == first and after[-1][0] == "mira" and after[-1][1].startswith("And the boat")


async def test_impersonate_writes_the_players_line_and_keeps_nothing(
    session: LlamaSession, lighthouse: LoadedPack
) -> None:
    await session.reset()
    game = Game(session, lighthouse, "storm", budgets=Budgets(directions=24, line=24))
    before = [line.text for line in game.lines]
    written = await game.impersonate().finish()
    assert written.text and "\n" not in written.text and written.speaker == game.pack.player_id
    assert [line.text for line in game.lines] == before  # a suggestion: nothing is in the story


async def test_ctrl_o_puts_the_players_line_in_the_input_to_edit(fake_session: FakeSession) -> None:
    from textual.widgets import Input

    from tests.test_ui import SIZE, play_screen, wait_for
    from tests.test_ui import lighthouse as app_for

    fake_session.replies.append("May I warm my hands?")
    app = app_for(fake_session)
    async with app.run_test(size=SIZE) as pilot:
        screen = await play_screen(app)
        lines = len(screen.game.lines)
        await pilot.press("ctrl+o")
        await wait_for(lambda: not screen.busy and screen.query_one("#say", Input).value != "")
        assert screen.query_one("#say", Input).value == "May I warm my hands?"
        assert len(screen.game.lines) == lines  # not sent until the player sends it


async def test_an_impersonated_line_brings_no_control_characters(lighthouse: LoadedPack) -> None:
    session = FakeSession(replies=["Hello \x1b]0;owned\x07there, \x1b[31mkeeper."])
    written = await Game(session, lighthouse, "storm").impersonate().finish()
    assert written.text == "Hello ]0;ownedthere, [31mkeeper."
