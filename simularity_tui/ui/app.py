"""The Simularity app: starts on a loading screen, then plays, or explains why it cannot."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from textual import work
from textual.app import App

from ..engine import LlamaSession
from ..errors import UserFacingError
from ..model_choice import model_path
from ..scenario import bundled_packs_dir, load_pack
from ..settings import Settings
from ..story import SavedGame, open_game
from ..story.saves import save_path
from .error_screen import ErrorScreen
from .loading_screen import LoadingScreen
from .play_screen import PlayScreen

DEFAULT_PACK = "lighthouse"


@dataclass(frozen=True)
class LaunchOptions:
    settings: Settings
    model_override: Path | None = None
    pack_dir: Path | None = None
    episode: str | None = None
    save: str = "autosave"  # resumed when it exists
    new_game: bool = False  # start afresh, in a new save


class SimularityApp(App[None]):
    CSS_PATH = "app.tcss"
    TITLE = "Simularity"

    def __init__(self, options: LaunchOptions, *, session: LlamaSession | None = None) -> None:
        """`session`: an already loaded model to play on (tests share one); else one is loaded."""
        super().__init__()
        self.options = options
        self.session = session
        self._owns_session = session is None
        self.saved: SavedGame | None = None
        self.error: UserFacingError | None = None

    def on_mount(self) -> None:
        self.push_screen(LoadingScreen())
        self.start()

    @work(exclusive=True, group="startup")
    async def start(self) -> None:
        try:
            saved = await self._prepare()
        except UserFacingError as error:
            self.error = error
            await self.switch_screen(ErrorScreen(error))
            return
        await self.switch_screen(PlayScreen(saved))

    async def _prepare(self) -> SavedGame:
        options = self.options
        loaded = load_pack(options.pack_dir or bundled_packs_dir() / DEFAULT_PACK)
        if options.episode is not None and options.episode not in loaded.pack.episodes:
            raise UserFacingError(
                f"{loaded.root / 'scenario.toml'}: no episode '{options.episode}'",
                hint=f"Episodes of this pack: {', '.join(loaded.pack.episodes)}",
            )
        name = f"game {datetime.now():%Y-%m-%d %H.%M.%S}" if options.new_game else options.save
        if self.session is None:
            self.session = await self._load_model()
        self.saved = await open_game(
            self.session,
            loaded,
            save_path(loaded.pack.id, name),
            episode=options.episode,
            sampling=options.settings.sampling_params(),
            budgets=options.settings.budgets(),
        )
        return self.saved

    async def _load_model(self) -> LlamaSession:
        loading = self.screen
        assert isinstance(loading, LoadingScreen)

        def progress(done: int, total: int) -> None:
            self.call_from_thread(loading.show_progress, done, total)

        settings = self.options.settings
        path = await asyncio.to_thread(model_path, settings, self.options.model_override, progress)
        loading.show_status(f"Loading {path.name}…")
        return await LlamaSession.open(settings.model_config_for(path))

    async def on_unmount(self) -> None:
        if self.saved is not None:
            await self.saved.write_kv()  # resuming then reads only what is new
        if self.session is not None and self._owns_session:
            await self.session.close()
