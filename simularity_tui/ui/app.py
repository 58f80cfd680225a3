"""The Simularity app: the library opens at once while the model loads in the background; a game
then plays on it. Screens: library, new game, play, saves, settings, help (and loading, error).

The app owns navigation: screens post what the player chose (messages.py) or hand back a result
(the settings screen), and the app decides which screen shows next. Screens never import the app.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from textual import on, work
from textual.app import App
from textual.binding import Binding

from ..errors import UserFacingError
from ..first_frame import AUTOSAVE, PACK_THEME, FirstFrameSettings, read_first_frame_settings
from .error_screen import ErrorScreen
from .library_screen import LibraryScreen, pack_folders
from .loading_screen import LoadingScreen
from .messages import NewGameRequested, PlayRequested, RoomRequested, SavesRequested
from .notify import notify_plain
from .themes import DEFAULT_THEME, bundled_themes_dir, load_themes, pack_theme, quick_themes, user_themes_dir

# The first screen (the library, or the loading screen) needs none of the rest: the play, models,
# settings, saves, new-game and help screens are imported when first shown, so the first frame comes
# sooner (tests/test_imports.py). Nor does it need pydantic or the story: the settings are read
# (validated) right after it, and it shows what first_frame.py reads of them with tomllib.
if TYPE_CHECKING:
    from textual.command import Provider

    from ..engine import ModelSession
    from ..scenario import LoadedPack
    from ..settings import Settings
    from ..story import SavedGame


def _story_commands() -> type[Provider]:
    """The command palette's story commands, imported when the palette first opens."""
    from .commands import StoryCommands

    return StoryCommands


# Who the player is in a new game: a name and a description (None: the pack's own).
Persona = tuple[str | None, str | None]


@dataclass(frozen=True)
class LaunchOptions:
    settings: Settings | None  # None: read by `read_settings` right after the first frame
    model_override: Path | None = None
    pack_dir: Path | None = None  # play this pack at once, without the library
    episode: str | None = None
    save: str = AUTOSAVE  # resumed when it exists
    new_game: bool = False  # start afresh, in a new save
    settings_file: Path | None = None  # --settings; None: the default file
    # With `settings` None: the settings, validated (a UserFacingError where the file has problems;
    # None: `settings_file` as it is), and what the first frame shows until then (None: read from
    # `settings_file` with tomllib).
    read_settings: Callable[[], Settings] | None = None
    first_frame: FirstFrameSettings | None = None


class SimularityApp(App[None]):
    CSS_PATH = "app.tcss"
    TITLE = "Simularity"
    COMMANDS = App.COMMANDS | {_story_commands}
    BINDINGS = [
        Binding("f1", "help", "Help"),
        Binding("f2", "settings", "Settings"),
        Binding("f4", "library", "Library"),
        Binding("f5", "models", "Models", show=False),  # in the help, the palette and the README; the footer is full
    ]

    def __init__(self, options: LaunchOptions, *, session: ModelSession | None = None) -> None:
        """`session`: an already loaded model to play on (tests share one); else one is loaded."""
        super().__init__()
        self.options = options
        self._settings = options.settings
        self._first_frame = options.first_frame
        if self._first_frame is None and options.settings is None:
            self._first_frame = read_first_frame_settings(options.settings_file)
        self.session = session
        self._owns_session = session is None
        self._model_ready = asyncio.Event()
        self._model_error: UserFacingError | None = None
        self._after_first_frame_started = False
        self.saved: SavedGame | None = None  # the game in play; its pack is the one pack in play
        self.error: UserFacingError | None = None  # the reason the game could not start, for the CLI
        self.on_exit_saved: Callable[[], object] | None = None  # the CLI's watchdog: the process ends soon after
        self.next_room: str | None = None  # a room the player chose to join: the CLI opens it once this app ends

    @property
    def settings(self) -> Settings:
        """The player's settings with this run's overrides: read right after the first frame when
        the app was not handed them (the game starts only once they are)."""
        if self._settings is None:
            raise RuntimeError("the settings are read after the first frame")
        return self._settings

    @settings.setter
    def settings(self, settings: Settings) -> None:
        self._settings = settings

    def _shown(self) -> FirstFrameSettings:
        """What the screens show of the settings: until they are read, the first frame's reading."""
        if self._settings is None:
            assert self._first_frame is not None
            return self._first_frame
        ui = self._settings.ui
        return FirstFrameSettings(ui.graphics, ui.theme, self._settings.game.scenarios_dir)

    # -- starting up ------------------------------------------------------------------------------

    def on_mount(self) -> None:
        if self._settings is not None:  # handed in, so validated already: the theme files are too
            self.refresh_themes()
            self.watch_theme_files()
        else:  # the theme files read without pydantic; their problems are said after the first frame
            for theme in quick_themes():
                self.register_theme(theme)
            self.apply_theme()
        if self.session is not None and self._settings is not None:
            self._model_ready.set()
        if self.options.pack_dir is not None:
            self.push_screen(LoadingScreen())
            if self._model_ready.is_set():  # a model handed in (tests share one): the game can start now
                self.play_from_options()
        else:
            self.push_screen(self._library())

    def on_ready(self) -> None:
        """The first frame is laid out: what the first screen does not need starts once it is drawn,
        so that it shows (and answers keys) at once. The timer is there in case that screen went before
        it was drawn (its after-refresh callbacks go with it)."""
        self.call_after_refresh(self._after_first_frame)
        self.set_timer(0.25, self._after_first_frame)

    def _after_first_frame(self) -> None:
        """The settings, validated (where they have problems, the error screen says which); the
        theme files' problems; the model; with a pack to play, its reading too (the game waits for
        the model anyway)."""
        if self._after_first_frame_started:
            return
        self._after_first_frame_started = True
        if self._settings is None:
            if not self._read_settings():
                return
            self.refresh_themes()
            self.watch_theme_files()
        if self._model_ready.is_set():  # a model and settings handed in: the game started at mount
            return
        if self.session is None:
            self.load_model()
        else:
            self._model_ready.set()
        if self.options.pack_dir is not None:
            self.play_from_options()

    def _read_settings(self) -> bool:
        """Read and validate the settings (pydantic loads here); False, with the error screen
        showing why, where they have problems: nothing can be played then."""
        read = self.options.read_settings
        if read is None:
            from ..settings import load_settings

            read = partial(load_settings, self.options.settings_file)
        try:
            self.settings = read()
        except UserFacingError as error:
            self._model_error = error  # a game asked for meanwhile says why too
            self._model_ready.set()
            self.fail(error)
            return False
        self.options = replace(self.options, settings=self.settings)
        return True

    @work(exclusive=True, group="model")
    async def load_model(self) -> None:
        """Prepare and load the model (or reach its server) in the background: the first screen is up meanwhile."""

        from ..model_session import open_model_session

        def progress(done: int, total: int) -> None:
            self.call_from_thread(self._show_preparing, done, total)

        try:
            self.session = await open_model_session(self.settings, self.options.model_override, progress)
        except UserFacingError as error:
            self._model_error = error
            self.fail(error)  # nothing can be played: say why at once
        self._model_ready.set()

    def _show_preparing(self, done: int, total: int) -> None:
        if isinstance(self.screen, LoadingScreen):
            self.screen.show_progress(done, total)

    async def model(self) -> ModelSession:
        """The loaded model, once it is ready; the loading screen shows while it is not."""
        if not self._model_ready.is_set():
            pushed = not isinstance(self.screen, LoadingScreen)
            if pushed:
                await self.push_screen(LoadingScreen())
            await self._model_ready.wait()
            if pushed and isinstance(self.screen, LoadingScreen):
                self.pop_screen()
        if self._model_error is not None:
            raise self._model_error
        assert self.session is not None
        return self.session

    def play_from_options(self) -> None:
        from ..scenario import load_pack

        options = self.options
        try:
            loaded = load_pack(options.pack_dir or Path())
        except UserFacingError as error:
            self.fail(error)
            return
        self.play(loaded, save=None if options.new_game else options.save, episode=options.episode)

    @work(exclusive=True, group="start")
    async def play(
        self, loaded: LoadedPack, *, save: str | None, episode: str | None = None, persona: Persona | None = None
    ) -> None:
        """Start a game (an app worker: the screen that asked goes away while it runs)."""
        try:
            await self.start_game(loaded, save=save, episode=episode, persona=persona)
        except UserFacingError as error:
            self.fail(error)

    def fail(self, error: UserFacingError) -> None:
        """The game cannot go on: explain on screen (and on the command line when it exits).

        Pushed over whatever shows, never switched in: a screen still mounting must not vanish."""
        self.error = error
        if not isinstance(self.screen, ErrorScreen):
            self.push_screen(ErrorScreen(error))

    # -- playing ----------------------------------------------------------------------------------

    async def start_game(
        self, loaded: LoadedPack, *, save: str | None, episode: str | None = None, persona: Persona | None = None
    ) -> None:
        """Resume the save `save` of the pack, or start `episode` in it (`save` None: a new save named
        after the time), with the player's `persona` (name, description; None: the pack's); then play."""
        from ..engine.heap import settle_long_lived
        from ..model_session import fit_context
        from ..story import open_game
        from ..story.saves import copy_name, save_path
        from .play_screen import PlayScreen

        if episode is not None and episode not in loaded.pack.episodes:
            raise UserFacingError(
                f"{loaded.root / 'scenario.toml'}: no episode '{episode}'",
                hint=f"Episodes of this pack: {', '.join(loaded.pack.episodes)}",
            )
        session = await self.model()
        if self.saved is not None:
            await self.saved.write_kv()
        if self._owns_session:  # a session handed in (tests share one) keeps the context its owner chose
            await fit_context(session, self.settings, loaded.pack)  # the pack's context, on the same weights
        self.saved = await open_game(
            session,
            loaded,
            save_path(loaded.pack.id, copy_name(loaded.pack.id, "game") if save is None else save),
            episode=episode,
            sampling=self.settings.sampling_params(loaded.pack.sampling),
            budgets=self.settings.budgets(),
            player_name=persona[0] if persona else None,
            player_description=persona[1] if persona else None,
        )
        self.apply_theme()
        await self.switch_screen(PlayScreen(self.saved, graphics=self.settings.ui.graphics))
        settle_long_lived()  # the game before this one is let go now: collected, then this one set apart

    @on(PlayRequested)
    def _play_requested(self, request: PlayRequested) -> None:
        persona = (request.player_name, request.player_description)
        self.play(request.loaded, save=request.save, episode=request.episode, persona=persona)

    def on_play_screen_pack_reloaded(self) -> None:  # PlayScreen.PackReloaded (the screen is imported lazily)
        self.apply_theme()  # the game has the new pack already; its theme may have changed

    def _settings_saved(self, saved: Settings | None) -> None:
        """Sampling and budgets apply now, the model on the next start (the model in use, with its
        command-line overrides, stays what it is until then)."""
        if saved is None:  # left without saving
            return
        settings = saved.model_copy(update={"model": self.settings.model})
        self.settings = settings
        self.options = replace(self.options, settings=settings)
        if self.saved is not None:
            self.saved.game.sampling = settings.sampling_params(self.saved.game.pack.sampling)
            self.saved.game.budgets = settings.budgets()
        self.apply_theme()

    # -- themes -----------------------------------------------------------------------------------

    def refresh_themes(self) -> None:
        themes, problems = load_themes()
        for theme in themes:
            self.register_theme(theme)
        for problem in problems:
            notify_plain(self, problem.message, title="A theme file has problems", severity="warning")
        self.apply_theme()

    def apply_theme(self) -> None:
        wanted = self._shown().theme
        if wanted == PACK_THEME:
            own = pack_theme(self.saved.game.pack) if self.saved is not None else None
            if own is not None:
                self.register_theme(own)
            wanted = own.name if own is not None else DEFAULT_THEME
        self.theme = wanted if wanted in self.available_themes else DEFAULT_THEME

    @work(exclusive=True, group="theme-watch")
    async def watch_theme_files(self) -> None:
        """Theme files are hot-reloaded too: save one and the game's colours follow."""
        from watchfiles import awatch

        user_themes_dir().mkdir(parents=True, exist_ok=True)
        folders = [folder for folder in (bundled_themes_dir(), user_themes_dir()) if folder.is_dir()]
        async for _changes in awatch(*folders, debounce=150, step=25):
            self.refresh_themes()

    # -- screens ----------------------------------------------------------------------------------

    def _library(self) -> LibraryScreen:
        return LibraryScreen(self._shown().graphics, lambda: pack_folders(self._shown().scenarios_dir))

    def action_help(self) -> None:
        from .help_screen import HelpScreen
        from .models_screen import ModelsScreen
        from .new_game_screen import NewGameScreen
        from .play_screen import PlayScreen
        from .saves_screen import SavesScreen
        from .settings_screen import SettingsScreen

        self.push_screen(
            HelpScreen(
                [
                    ("Everywhere", self.BINDINGS),
                    ("Library", LibraryScreen.BINDINGS),
                    ("New game", NewGameScreen.BINDINGS),
                    ("Play", PlayScreen.BINDINGS),
                    ("Saves", SavesScreen.BINDINGS),
                    ("Settings", SettingsScreen.BINDINGS),
                    ("Models", ModelsScreen.BINDINGS),
                ]
            )
        )

    def action_settings(self) -> None:
        # The file as it is, without this run's command-line overrides: those are not the player's to keep.
        from ..settings import load_settings
        from .settings_screen import SettingsScreen

        try:
            on_file = load_settings(self.options.settings_file)
        except UserFacingError as error:
            notify_plain(self, error.render(), title="The settings file has problems", severity="error")
            return
        self.push_screen(SettingsScreen(on_file, self.options.settings_file), self._settings_saved)

    def action_models(self) -> None:
        from .models_screen import ModelsScreen

        if not isinstance(self.screen, ModelsScreen):
            self.push_screen(ModelsScreen(self.options.settings_file))

    def action_library(self) -> None:
        if not isinstance(self.screen, LibraryScreen):
            self.switch_screen(self._library())

    @on(NewGameRequested)
    def _new_game_requested(self, request: NewGameRequested) -> None:
        from .new_game_screen import NewGameScreen

        self.push_screen(NewGameScreen(request.loaded))

    @on(SavesRequested)
    def _saves_requested(self, request: SavesRequested) -> None:
        from .saves_screen import SavesScreen

        self.push_screen(SavesScreen(request.loaded))

    @on(RoomRequested)
    def _room_requested(self, request: RoomRequested) -> None:
        """A room is another app on this terminal (it needs no model): this one ends, saved, and the
        command line starts the room's (cli._play)."""
        self.next_room = request.door.name
        self.exit()

    async def on_unmount(self) -> None:
        try:
            if self.saved is not None:
                await self.saved.write_kv()  # resuming then reads only what is new
            if self.session is not None and self._owns_session:
                await self.session.close()
        finally:
            if self.on_exit_saved is not None:
                self.on_exit_saved()
