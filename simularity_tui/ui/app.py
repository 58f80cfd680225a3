"""The Simularity app: the library opens at once while the model loads in the background; a game
then plays on it. Screens: library, new game, play, saves, settings, help (and loading, error).

The app owns navigation: screens post what the player chose (messages.py) or hand back a result
(the settings screen), and the app decides which screen shows next. Screens never import the app.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from textual import on, work
from textual.app import App
from textual.binding import Binding
from watchfiles import awatch

from ..engine import ModelSession
from ..errors import UserFacingError
from ..model_session import fit_context, open_model_session
from ..scenario import LoadedPack, load_pack
from ..settings import Settings, load_settings
from ..story import SavedGame, open_game
from ..story.saves import AUTOSAVE, copy_name, save_path
from .commands import StoryCommands
from .error_screen import ErrorScreen
from .help_screen import HelpScreen
from .library_screen import LibraryScreen, pack_folders
from .loading_screen import LoadingScreen
from .messages import NewGameRequested, PlayRequested, SavesRequested
from .models_screen import ModelsScreen
from .new_game_screen import NewGameScreen
from .notify import notify_plain
from .play_screen import PlayScreen
from .saves_screen import SavesScreen
from .settings_screen import SettingsScreen
from .themes import DEFAULT_THEME, PACK_THEME, bundled_themes_dir, load_themes, pack_theme, user_themes_dir

# Who the player is in a new game: a name and a description (None: the pack's own).
Persona = tuple[str | None, str | None]


@dataclass(frozen=True)
class LaunchOptions:
    settings: Settings
    model_override: Path | None = None
    pack_dir: Path | None = None  # play this pack at once, without the library
    episode: str | None = None
    save: str = AUTOSAVE  # resumed when it exists
    new_game: bool = False  # start afresh, in a new save
    settings_file: Path | None = None  # --settings; None: the default file


class SimularityApp(App[None]):
    CSS_PATH = "app.tcss"
    TITLE = "Simularity"
    COMMANDS = App.COMMANDS | {StoryCommands}
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
        self.settings = options.settings
        self.session = session
        self._owns_session = session is None
        self._model_ready = asyncio.Event()
        self._model_error: UserFacingError | None = None
        self.saved: SavedGame | None = None  # the game in play; its pack is the one pack in play
        self.error: UserFacingError | None = None  # the reason the game could not start, for the CLI
        self.on_exit_saved: Callable[[], object] | None = None  # the CLI's watchdog: the process ends soon after

    # -- starting up ------------------------------------------------------------------------------

    def on_mount(self) -> None:
        self.refresh_themes()
        self.watch_theme_files()
        if self.session is not None:
            self._model_ready.set()
        else:
            self.load_model()
        if self.options.pack_dir is not None:
            self.push_screen(LoadingScreen())
            self.play_from_options()
        else:
            self.push_screen(self._library())

    @work(exclusive=True, group="model")
    async def load_model(self) -> None:
        """Prepare and load the model (or reach its server) in the background: the first screen is up meanwhile."""

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

    @on(PlayRequested)
    def _play_requested(self, request: PlayRequested) -> None:
        persona = (request.player_name, request.player_description)
        self.play(request.loaded, save=request.save, episode=request.episode, persona=persona)

    @on(PlayScreen.PackReloaded)
    def _pack_reloaded(self) -> None:
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
        wanted = self.settings.ui.theme
        if wanted == PACK_THEME:
            own = pack_theme(self.saved.game.pack) if self.saved is not None else None
            if own is not None:
                self.register_theme(own)
            wanted = own.name if own is not None else DEFAULT_THEME
        self.theme = wanted if wanted in self.available_themes else DEFAULT_THEME

    @work(exclusive=True, group="theme-watch")
    async def watch_theme_files(self) -> None:
        """Theme files are hot-reloaded too: save one and the game's colours follow."""
        user_themes_dir().mkdir(parents=True, exist_ok=True)
        folders = [folder for folder in (bundled_themes_dir(), user_themes_dir()) if folder.is_dir()]
        async for _changes in awatch(*folders, debounce=150, step=25):
            self.refresh_themes()

    # -- screens ----------------------------------------------------------------------------------

    def _library(self) -> LibraryScreen:
        return LibraryScreen(self.settings.ui.graphics, lambda: pack_folders(self.settings.game.scenarios_dir))

    def action_help(self) -> None:
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
        try:
            on_file = load_settings(self.options.settings_file)
        except UserFacingError as error:
            notify_plain(self, error.render(), title="The settings file has problems", severity="error")
            return
        self.push_screen(SettingsScreen(on_file, self.options.settings_file), self._settings_saved)

    def action_models(self) -> None:
        if not isinstance(self.screen, ModelsScreen):
            self.push_screen(ModelsScreen(self.options.settings_file))

    def action_library(self) -> None:
        if not isinstance(self.screen, LibraryScreen):
            self.switch_screen(self._library())

    @on(NewGameRequested)
    def _new_game_requested(self, request: NewGameRequested) -> None:
        self.push_screen(NewGameScreen(request.loaded))

    @on(SavesRequested)
    def _saves_requested(self, request: SavesRequested) -> None:
        self.push_screen(SavesScreen(request.loaded))

    async def on_unmount(self) -> None:
        try:
            if self.saved is not None:
                await self.saved.write_kv()  # resuming then reads only what is new
            if self.session is not None and self._owns_session:
                await self.session.close()
        finally:
            if self.on_exit_saved is not None:
                self.on_exit_saved()
