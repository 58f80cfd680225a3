"""Lore while playing: the player adds, edits, disables and deletes entries in the game; they are
kept in the save (not the pack), read by the lore engine as pack lore is, survive a pack reload and
a resume; bad entries are refused in words. Through `prompt_view` (no model text decides it), the
Lore screen, and `simularity run` on the real model."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from simularity_tui.errors import UserFacingError
from simularity_tui.scenario import LoadedPack, bundled_packs_dir, load_pack
from simularity_tui.story import Game, open_game
from simularity_tui.story.player_lore import lore_command
from simularity_tui.story.saves import save_path
from tests.conftest import TEST_THREADS
from tests.fake_model import FakeSession

LIGHTHOUSE = bundled_packs_dir() / "lighthouse"


@pytest.fixture(scope="module")
def lighthouse() -> LoadedPack:
    return load_pack(LIGHTHOUSE)


def fired_after(game: Game, say: str) -> list[str]:
    view = game.prompt_view(say)
    return [firing.entry for firing in view.lore.fired]


def test_an_entry_added_in_play_fires_on_its_keys_and_can_be_edited_disabled_and_deleted(
    lighthouse: LoadedPack,
) -> None:
    game = Game(FakeSession(), lighthouse, "storm")
    assert lore_command(game, "add the-kettle kettle, teapot: The kettle whistles a tune from Mira's childhood.") == [
        "lore: add the-kettle"
    ]
    assert "the-kettle" in fired_after(game, "Is the kettle on?")
    view = game.prompt_view("Is the kettle on?")
    assert any("The kettle whistles a tune" in part.text for part in view.parts if part.label == "lore note")
    lore_command(game, "edit the-kettle: The kettle is cracked.")
    assert game.pack.lore["the-kettle"].content == "The kettle is cracked."
    assert game.pack.lore["the-kettle"].keywords == ["kettle", "teapot"]
    lore_command(game, "disable the-kettle")
    assert "the-kettle" not in fired_after(game, "Is the kettle on?")
    lore_command(game, "enable the-kettle")
    assert "the-kettle" in fired_after(game, "Is the kettle on?")
    lore_command(game, "delete the-kettle")
    assert "the-kettle" not in game.pack.lore


def test_a_packs_entry_edited_or_deleted_in_play_is_the_players_version(lighthouse: LoadedPack) -> None:
    game = Game(FakeSession(), lighthouse, "storm")
    pack_entry = next(lid for lid, entry in lighthouse.pack.lore.items() if entry.keywords and not entry.always)
    lore_command(game, f"delete {pack_entry}")
    assert not game.pack.lore[pack_entry].enabled and lighthouse.pack.lore[pack_entry].enabled  # the pack's unchanged
    game.apply_pack(load_pack(LIGHTHOUSE))  # a pack reload keeps what the player did
    assert not game.pack.lore[pack_entry].enabled


@pytest.mark.parametrize(
    ("command", "message"),
    [
        ("add Bad-Id key: text", "cannot be a lore id"),
        ("add broken /(unclosed/: text", "does not compile"),
        ("add no-text key:", "needs keys and a text"),
        ("edit nowhere: text", "no lore entry 'nowhere'"),
        ("paint the-boat", "unknown lore command"),
    ],
)
def test_bad_lore_commands_are_refused_in_words(lighthouse: LoadedPack, command: str, message: str) -> None:
    game = Game(FakeSession(), lighthouse, "storm")
    with pytest.raises(UserFacingError, match=message):
        lore_command(game, command)


async def test_the_players_lore_is_kept_in_the_save_and_a_bad_one_is_left_out(lighthouse: LoadedPack) -> None:
    path = save_path("lighthouse", "lore")
    opened = await open_game(FakeSession(), lighthouse, path)
    lore_command(opened.game, "add the-kettle kettle: The kettle is cracked.")
    saved = tomllib.loads(path.read_text())
    assert saved["lore"] == {"the-kettle": {"keywords": ["kettle"], "content": "The kettle is cracked."}}
    text = path.read_text().replace(
        'content = "The kettle is cracked."', 'content = "The kettle is cracked."\nsticky = -4'
    )
    path.write_text(text)
    resumed = await open_game(FakeSession(), lighthouse, path)
    assert "the-kettle" not in resumed.game.pack.lore
    assert any("your lore entry 'the-kettle' was left out" in warning for warning in resumed.warnings)


async def test_the_lore_screen_lists_and_changes_lore(fake_session: FakeSession) -> None:
    from textual.widgets import DataTable, Input

    from simularity_tui.ui.lore_screen import LoreScreen
    from tests.test_ui import SIZE, play_screen, wait_for
    from tests.test_ui import lighthouse as app_for

    app = app_for(fake_session)
    async with app.run_test(size=SIZE) as pilot:
        screen = await play_screen(app)
        await pilot.press("f10")
        await wait_for(lambda: isinstance(app.screen, LoreScreen))
        rows = app.screen.query_one(DataTable).row_count
        app.screen.query_one(Input).value = "add the-kettle kettle: The kettle is cracked."
        await pilot.press("enter")
        assert app.screen.query_one(DataTable).row_count == rows + 1
        app.screen.query_one(Input).value = "add Bad key: x"
        await pilot.press("enter")
        assert "cannot be a lore id" in str(app.screen.query_one("#lore-said").render())
        await pilot.press("escape")
        await wait_for(lambda: app.screen is screen)
        assert "the-kettle" in screen.game.player_lore


def test_a_script_adds_lore_that_fires_on_the_real_model(tmp_path: Path, model_path: Path) -> None:
    script = "/lore add the-kettle kettle: The kettle is cracked.\nIs the kettle on?\n/lore\n"
    path = tmp_path / "script.txt"
    path.write_text(script)
    command = [sys.executable, "-m", "simularity_tui", "run", str(LIGHTHOUSE), "--script", str(path)]
    command += ["--threads", str(TEST_THREADS)]
    done = subprocess.run([*command, "--save", "lore"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert (
        "[lore: add the-kettle]" in done.stdout and "[lore the-kettle: kettle: The kettle is cracked.]" in done.stdout
    )
    saved = tomllib.loads(save_path("lighthouse", "lore").read_text())
    assert any("the-kettle" in node.get("notes", []) for node in saved["nodes"])  # it fired, in play
    # Resumed: the entry is still the player's, and disabling it is kept (what that does: above).
    path.write_text("/lore\n/lore disable the-kettle\nIs the kettle on?\n")
    again = subprocess.run([*command, "--save", "lore", "--resume"], capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert "[lore the-kettle: kettle: The kettle is cracked.]" in again.stdout
    resumed = tomllib.loads(save_path("lighthouse", "lore").read_text())
    assert resumed["lore"]["the-kettle"]["enabled"] is False
    assert len(resumed["nodes"]) > len(saved["nodes"])  # and the story went on
