"""Persona: the player's name and description, chosen at a new game and changed in play, kept in
the save; `{{user}}` follows the name, lines written keep theirs, and bad names are refused in words."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from simularity_tui.errors import UserFacingError
from simularity_tui.scenario import LoadedPack, bundled_packs_dir, load_pack
from simularity_tui.story import Game, open_game
from simularity_tui.story.saves import save_path
from tests.conftest import TEST_THREADS
from tests.fake_model import FakeSession

LIGHTHOUSE = bundled_packs_dir() / "lighthouse"


@pytest.fixture(scope="module")
def lighthouse() -> LoadedPack:
    return load_pack(LIGHTHOUSE)


def pinned(game: Game) -> str:
    return "".join(part.text for part in game.prompt_view().parts if part.section == "pinned")


async def test_a_persona_changes_who_the_story_says_the_player_is(lighthouse: LoadedPack) -> None:
    session = FakeSession()
    game = Game(session, lighthouse, "storm", player_name="Wren", player_description="A lost cartographer.")
    assert "- Wren (the player): A lost cartographer." in pinned(game) and "Ash" not in pinned(game)
    await game.say("Hello?").finish()
    assert game.lines[-2].speaker == game.pack.player_id and game.pack.speaker_name(game.pack.player_id) == "Wren"
    said = session.detokenize(game.lines[-2].tokens)
    cost = game.set_persona("Sable [the quiet]", "A smuggler with wet boots.")
    assert cost > 0 and "- Sable [the quiet] (the player): A smuggler with wet boots." in pinned(game)
    assert session.detokenize(game.lines[-2].tokens) == said  # written as Wren, read as written
    await game.say("Any tea?").finish()
    assert session.detokenize(game.lines[-2].tokens).startswith("Sable [the quiet] (")
    game.set_persona(None, None)  # back to the pack's own
    assert "- Ash (the player): A tired traveller" in pinned(game)


@pytest.mark.parametrize("name", ["Line\nbreak", " padded", "bell\x07"])
def test_a_bad_name_is_refused_in_words(lighthouse: LoadedPack, name: str) -> None:
    game = Game(FakeSession(), lighthouse, "storm")
    with pytest.raises(UserFacingError, match="That name cannot be used"):
        game.set_persona(name, None)
    assert game.pack.player.name == "Ash"


async def test_the_persona_is_kept_in_the_save(lighthouse: LoadedPack) -> None:
    path = save_path("lighthouse", "persona")
    opened = await open_game(FakeSession(), lighthouse, path, player_name="Wren")
    opened.game.set_persona("Wren", "A lost cartographer.")
    saved = tomllib.loads(path.read_text())
    assert (saved["player_name"], saved["player_description"]) == ("Wren", "A lost cartographer.")
    resumed = await open_game(FakeSession(), lighthouse, path)
    assert (resumed.game.pack.player.name, resumed.game.pack.player.description) == ("Wren", "A lost cartographer.")


def test_a_script_changes_the_persona_and_it_survives_a_resume(tmp_path: Path, model_path: Path) -> None:
    def run(script: str, *args: str) -> subprocess.CompletedProcess[str]:
        path = tmp_path / "script.txt"
        path.write_text(script)
        command = [sys.executable, "-m", "simularity_tui", "run", str(LIGHTHOUSE), "--script", str(path)]
        command += ["--threads", str(TEST_THREADS), "--save", "persona", *args]
        return subprocess.run(command, capture_output=True, text=True, timeout=300)

    first = run("/persona Wren: A lost cartographer.\nMay I come in?\n")
    assert first.returncode == 0, first.stderr
    assert any(line.startswith("[persona: Wren: A lost cartographer.") for line in first.stdout.splitlines())
    assert "Wren: May I come in?" in first.stdout.splitlines()
    resumed = run("/persona\n", "--resume")
    assert "[persona: Wren: A lost cartographer.]" in resumed.stdout.splitlines()
