"""Every screen and control, driven through Textual's pilot: library, new game, saves, settings,
help, the command palette, themes and graphics modes. On the fake model: what it writes does not
matter here (tests/test_ui.py has a game on the real one)."""

from __future__ import annotations

import asyncio
import tomllib
from collections.abc import Callable

import pytest
from textual.widgets import DataTable, Input, ListView, Select, Static

from simularity_tui import paths
from simularity_tui.scenario import bundled_packs_dir, load_pack
from simularity_tui.settings import Settings, load_settings
from simularity_tui.story import open_game
from simularity_tui.story.saves import save_path
from simularity_tui.ui.app import LaunchOptions, SimularityApp
from simularity_tui.ui.commands import StoryCommands
from simularity_tui.ui.help_screen import HelpScreen
from simularity_tui.ui.library_screen import BrokenItem, LibraryScreen, PackItem, user_packs_dir
from simularity_tui.ui.new_game_screen import NewGameScreen
from simularity_tui.ui.play_screen import PlayScreen
from simularity_tui.ui.saves_screen import SavesScreen
from simularity_tui.ui.settings_screen import SettingsScreen
from simularity_tui.ui.stage_view import StageView
from tests.fake_model import FakeSession
from tests.packs import tiny_pack

SIZE = (110, 36)
LIGHTHOUSE = bundled_packs_dir() / "lighthouse"


async def wait_for(predicate: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "timed out waiting"
        await asyncio.sleep(0.02)


def halfcell() -> Settings:
    settings = Settings()
    settings.ui.graphics = "halfcell"
    return settings


async def test_the_library_lists_every_pack_and_explains_broken_ones(fake_session: FakeSession) -> None:
    tiny_pack(user_packs_dir() / "tiny")
    broken = tiny_pack(user_packs_dir() / "zz-broken")
    (broken / "scenario.toml").write_text(
        (broken / "scenario.toml").read_text().replace('scene = "room"', 'scene = "hall"')
    )
    app = SimularityApp(LaunchOptions(halfcell()), session=fake_session)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(lambda: isinstance(app.screen, LibraryScreen) and app.screen.scanned)
        items = list(app.screen.query_one("#packs", ListView).children)
        names = [item.loaded.pack.name for item in items if isinstance(item, PackItem)]
        assert names == ["The Lighthouse at Gull Point", "Starlight Café", "Tiny"]
        assert isinstance(items[-1], BrokenItem)
        await pilot.press("down", "down", "down")
        await wait_for(lambda: "no scene 'hall'" in str(app.screen.query_one("#pack-about", Static).render()))
        await pilot.press("up", "up", "up")
        await wait_for(lambda: "sharp-tongued keeper" in str(app.screen.query_one("#pack-about", Static).render()))
        assert app.screen.query_one("#cover", StageView).picture is not None  # the cover is drawn


async def test_a_new_game_starts_the_chosen_episode_with_the_players_name(fake_session: FakeSession) -> None:
    app = SimularityApp(LaunchOptions(halfcell()), session=fake_session)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(lambda: isinstance(app.screen, LibraryScreen) and app.screen.scanned)
        await pilot.press("n")
        await wait_for(lambda: isinstance(app.screen, NewGameScreen))
        await pilot.press("down", "enter")  # the second episode, then on to the name
        name = app.screen.query_one("#player-name", Input)
        assert app.focused is name and name.value == "Ash"
        name.value = ""
        await pilot.press(*"Robin", "enter")
        await wait_for(lambda: isinstance(app.screen, PlayScreen))
        game = app.screen.game
        assert game.episode == "midnight" and game.pack.player.name == "Robin"
        assert "Robin" in app.screen.query_one("#say", Input).placeholder
        document = tomllib.loads(app.screen.saved.path.read_text())
        assert document["player_name"] == "Robin" and document["episode"] == "midnight"


async def test_the_saves_screen_loads_branches_exports_and_deletes(fake_session: FakeSession) -> None:
    loaded = load_pack(LIGHTHOUSE)
    for name in ("first", "second"):
        await open_game(fake_session, loaded, save_path("lighthouse", name))
    app = SimularityApp(LaunchOptions(halfcell()), session=fake_session)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(lambda: isinstance(app.screen, LibraryScreen) and app.screen.scanned)
        await pilot.press("s")
        await wait_for(lambda: isinstance(app.screen, SavesScreen))
        table = app.screen.query_one(DataTable)
        assert table.row_count == 2
        await pilot.press("b")
        branch = app.screen.query_one("#branch-name", Input)
        branch.value = "side story"
        await pilot.press("enter")
        assert save_path("lighthouse", "side story").exists() and table.row_count == 3
        await pilot.press("e")
        exported = paths.data_dir() / "exports"
        await wait_for(lambda: exported.is_dir() and any(exported.glob("*.md")))
        assert "# The Lighthouse at Gull Point" in next(exported.glob("*.md")).read_text()
        doomed = app.screen._selected()
        await pilot.press("d")
        assert save_path("lighthouse", doomed).exists()  # asked first
        await pilot.press("d")
        assert not save_path("lighthouse", doomed).exists() and table.row_count == 2
        chosen = app.screen._selected()
        await pilot.press("enter")
        await wait_for(lambda: isinstance(app.screen, PlayScreen))
        assert app.screen.saved.path.stem == chosen


async def test_settings_are_checked_then_saved(fake_session: FakeSession) -> None:
    settings = halfcell()
    settings.model.n_ctx = 777  # as `--n-ctx 777` does: for this run, not for the file
    app = SimularityApp(LaunchOptions(settings), session=fake_session)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(lambda: isinstance(app.screen, LibraryScreen) and app.screen.scanned)
        await pilot.press("f2")
        await wait_for(lambda: isinstance(app.screen, SettingsScreen))
        screen = app.screen
        screen.query_one("#sampling-temperature", Input).value = "hot"
        await pilot.press("ctrl+s")
        assert "valid number" in str(screen.query_one("#sampling-temperature-problem", Static).render())
        assert not paths.settings_file().exists() and isinstance(app.screen, SettingsScreen)
        screen.query_one("#sampling-temperature", Input).value = "0.5"
        screen.query_one("#ui-theme", Select).value = "midnight"
        screen.query_one("#model-kv_cache", Select).value = "q8_0"
        await pilot.pause()
        assert app.theme == "midnight"  # a preview at once
        await pilot.press("ctrl+s")
        await wait_for(lambda: not isinstance(app.screen, SettingsScreen) and app.settings is not settings)
        saved = load_settings()
        assert saved.sampling.temperature == 0.5 and saved.ui.theme == "midnight" and saved.model.kv_cache == "q8_0"
        assert saved.model.n_ctx == 4096, "a command-line override is not written to the file"
        assert app.settings.sampling.temperature == 0.5 and app.theme == "midnight"
        assert app.settings.model.n_ctx == 777, "the model in use stays as it was started"


async def test_help_lists_every_key_of_every_screen(fake_session: FakeSession) -> None:
    app = SimularityApp(LaunchOptions(halfcell()), session=fake_session)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(lambda: isinstance(app.screen, LibraryScreen) and app.screen.scanned)
        await pilot.press("f1")
        await wait_for(lambda: isinstance(app.screen, HelpScreen))
        table = app.screen.query_one(DataTable)
        rows = [tuple(str(cell) for cell in table.get_row_at(i)) for i in range(table.row_count)]
        described = {row[2] for row in rows}
        for binding in PlayScreen.BINDINGS:
            if binding.description and not binding.action.startswith("toggle_speaker"):  # type: ignore[union-attr]
                assert binding.description in described  # type: ignore[union-attr]
        assert ("Play", "Alt+1 … Alt+9", "Let the pack's 1st … 9th character speak, or not") in rows
        await pilot.press("escape")
        assert isinstance(app.screen, LibraryScreen)


async def test_the_palette_offers_every_story_control(fake_session: FakeSession) -> None:
    app = SimularityApp(LaunchOptions(halfcell(), pack_dir=LIGHTHOUSE), session=fake_session)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(lambda: isinstance(app.screen, PlayScreen))
        provider = StoryCommands(app.screen)
        names = {name for name, _help, _run in provider._commands()}
        for control in ("Continue the story", "Regenerate the last line", "Previous variant", "Next variant",
                        "Step back", "Step forward", "Edit the last line", "Stop writing", "Save a copy",
                        "Export the transcript", "Saves", "Settings", "Library", "Help",
                        "Let Mira speak, or not", "Let Pip speak, or not", "Theme: parchment"):  # fmt: skip
            assert control in names
        await pilot.press("ctrl+p")
        await pilot.press(*"Let Mira")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await wait_for(lambda: isinstance(app.screen, PlayScreen) and app.screen.game.silent == {"mira"})
        await pilot.press("ctrl+p", *"Help")  # the app's own actions, run by name
        await pilot.pause(0.3)
        await pilot.press("enter")
        await wait_for(lambda: isinstance(app.screen, HelpScreen))


async def test_themes_from_files_the_players_own_and_the_packs(fake_session: FakeSession) -> None:
    user_themes = paths.config_dir() / "themes"
    user_themes.mkdir(parents=True)
    (user_themes / "broken.toml").write_text('name = "broken"\nprimary = "red"\n')
    app = SimularityApp(LaunchOptions(Settings(), pack_dir=LIGHTHOUSE), session=fake_session)
    async with app.run_test(size=SIZE):
        await wait_for(lambda: isinstance(app.screen, PlayScreen))
        assert {"lamplight", "sea-glass", "parchment", "midnight"} <= set(app.available_themes)
        assert app.theme == "pack-lighthouse"  # the setting "pack" follows the pack's [theme]
        assert any("broken.toml:2:1" in str(note.message) for note in app._notifications)
        (user_themes / "dusk.toml").write_text('name = "dusk"\nprimary = "#c080ff"\nbackground = "#201028"\n')
        await wait_for(lambda: "dusk" in app.available_themes, timeout=2.0)  # hot-reloaded
        app.settings.ui.theme = "dusk"
        app.apply_theme()
        assert app.theme == "dusk"


@pytest.mark.parametrize("graphics", ["halfcell", "unicode", "none"])
async def test_the_stage_follows_the_story(fake_session: FakeSession, graphics: str) -> None:
    settings = Settings()
    settings.ui.graphics = graphics  # type: ignore[assignment]
    app = SimularityApp(LaunchOptions(settings, pack_dir=LIGHTHOUSE), session=fake_session)
    async with app.run_test(size=SIZE):
        await wait_for(lambda: isinstance(app.screen, PlayScreen))
        stage = app.screen.query_one(StageView)
        assert stage.display is (graphics != "none")
        before = stage.picture
        assert before is not None and before.size == (640, 360)
        app.screen.game.set_scene("shore")
        app.screen._show_story()
        assert stage.picture is not None and stage.picture.tobytes() != before.tobytes()


async def test_pack_names_are_text_not_markup(fake_session: FakeSession) -> None:
    """Names go into the status line and the palette, both of which Textual would read as markup."""
    root = tiny_pack(user_packs_dir() / "tiny")
    hostile = "[@click=app.quit]Bo[/] [link=https://example.com]x[/link] [/nope]"
    scenario = root / "scenario.toml"
    scenario.write_text(scenario.read_text().replace('name = "Bo"', f"name = {hostile!r}"))
    (root / "scenario.toml").write_text(
        (root / "scenario.toml").read_text() + '\n[[episodes.start.characters]]\nid = "bo"\n'
    )
    app = SimularityApp(LaunchOptions(halfcell(), pack_dir=root), session=fake_session)
    async with app.run_test(size=(160, 40)):
        await wait_for(lambda: isinstance(app.screen, PlayScreen))
        status = str(app.screen.query_one("#status", Static).render())
        assert hostile in status, status
        hits = [hit async for hit in StoryCommands(app.screen).search("Let Bo")]
        assert any(f"Let {hostile} speak" in str(hit.match_display) for hit in hits), hits
