"""The Simularity app: starts on a loading screen, then plays, or explains why it cannot."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

from textual import work
from textual.app import App

from ..engine import LlamaSession
from ..errors import UserFacingError
from ..model_choice import model_path
from ..scenario import bundled_packs_dir, load_pack
from ..settings import Settings
from ..story import Playthrough
from .error_screen import ErrorScreen
from .loading_screen import LoadingScreen
from .play_screen import PlayScreen

DEMO_PACK = "lighthouse"


@dataclass(frozen=True)
class LaunchOptions:
    settings: Settings
    model_override: Path | None = None
    pack_dir: Path | None = None
    episode: str | None = None


class SimularityApp(App[None]):
    CSS_PATH = "app.tcss"
    TITLE = "Simularity"

    def __init__(self, options: LaunchOptions, *, session: LlamaSession | None = None) -> None:
        """`session`: an already loaded model to play on (tests share one); else one is loaded."""
        super().__init__()
        self.options = options
        self.session = session
        self._owns_session = session is None
        self.error: UserFacingError | None = None

    def on_mount(self) -> None:
        self.push_screen(LoadingScreen())
        self.start()

    @work(exclusive=True, group="startup")
    async def start(self) -> None:
        try:
            playthrough = await self._prepare()
        except UserFacingError as error:
            self.error = error
            await self.switch_screen(ErrorScreen(error))
            return
        await self.switch_screen(PlayScreen(playthrough))

    async def _prepare(self) -> Playthrough:
        options = self.options
        loaded = load_pack(options.pack_dir or bundled_packs_dir() / DEMO_PACK)
        episode = options.episode or next(iter(loaded.pack.episodes))
        if episode not in loaded.pack.episodes:
            raise UserFacingError(
                f"{loaded.root / 'scenario.toml'}: no episode '{episode}'",
                hint=f"Episodes of this pack: {', '.join(loaded.pack.episodes)}",
            )
        if self.session is None:
            self.session = await self._load_model()
        return Playthrough(
            self.session,
            loaded,
            episode,
            sampling=options.settings.sampling_params(),
            max_reply_tokens=options.settings.game.max_reply_tokens,
        )

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
        if self.session is not None and self._owns_session:
            await self.session.close()
