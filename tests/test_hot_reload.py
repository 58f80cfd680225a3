"""Hot reload: a running story sees each valid save within a second, keeps its KV cache where the
prompt did not change, and plays on the last good pack while a save is invalid."""

from __future__ import annotations

import asyncio
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from simularity_tui.engine import SamplingParams
from simularity_tui.errors import UserFacingError
from simularity_tui.scenario import LoadedPack, bundled_packs_dir, load_pack
from simularity_tui.story import Budgets, Game
from tests.packs import png

if TYPE_CHECKING:
    from simularity_tui.engine import LlamaSession


class Follower:
    """The story following its pack's files, as the play screen does."""

    def __init__(self, game: Game) -> None:
        self.game = game
        self.changes: asyncio.Queue[LoadedPack | UserFacingError] = asyncio.Queue()
        self.task = asyncio.create_task(self._follow())

    async def _follow(self) -> None:
        async for change in self.game.follow_pack_changes():
            await self.changes.put(change)

    async def after(self, edit_file: Path, old: str, new: str) -> tuple[LoadedPack | UserFacingError, float]:
        """Save an edit; return what the story saw and how long that took."""
        await asyncio.sleep(0.3)  # the watcher is listening, and has seen any earlier change
        while not self.changes.empty():
            self.changes.get_nowait()
        text = edit_file.read_text()
        assert old in text
        started = time.perf_counter()
        edit_file.write_text(text.replace(old, new))
        change = await asyncio.wait_for(self.changes.get(), timeout=5)
        return change, time.perf_counter() - started


async def turn(game: Game, line: str) -> int:
    """Play a turn; return how many prompt tokens the engine read for it."""
    return (await game.say(line).finish()).evaluated_tokens


@pytest.fixture
def pack_copy(tmp_path: Path) -> Path:
    return Path(shutil.copytree(bundled_packs_dir() / "lighthouse", tmp_path / "lighthouse"))


async def test_saves_apply_within_a_second_and_bad_ones_keep_the_last_good_pack(
    session: LlamaSession, pack_copy: Path
) -> None:
    await session.reset()
    game = Game(session, load_pack(pack_copy), "storm", sampling=SamplingParams(seed=3), budgets=Budgets(line=24))
    follower = Follower(game)
    characters = pack_copy / "characters.toml"
    try:
        await turn(game, "Hello?")

        # A colour: nothing the model reads changes, so nothing in the KV cache is lost.
        change, seconds = await follower.after(characters, 'color = "#ffb86b"', 'color = "#ff3355"')
        assert isinstance(change, LoadedPack) and seconds < 1.0
        assert game.pack.characters["mira"].color == "#ff3355"
        evaluated = await turn(game, "Is it always this loud?")
        player, reply = game.lines[-2:]
        assert evaluated <= len(player.tokens) + len(reply.tokens)  # only the new lines: the KV was kept

        # A description: the prompt changes there, and only from there is read again.
        change, seconds = await follower.after(characters, "kind underneath, and lonely", "kind underneath, and tired")
        assert isinstance(change, LoadedPack) and seconds < 1.0
        evaluated = await turn(game, "Can I help with the lamp?")
        assert len(game.lines[-2].tokens) + len(game.lines[-1].tokens) < evaluated  # read again from the change…
        assert evaluated < len(session.kv_tokens) - 150  # …but the pinned block up to it was kept

        # A new lore entry and a new expression image.
        png(pack_copy / "art" / "mira" / "sleepy.png")
        change, seconds = await follower.after(
            characters,
            'surprised = "art/mira/surprised.png"',
            'surprised = "art/mira/surprised.png"\nsleepy = "art/mira/sleepy.png"',
        )
        assert isinstance(change, LoadedPack) and seconds < 1.0 and "sleepy" in game.pack.characters["mira"].expressions
        change, seconds = await follower.after(
            pack_copy / "lore.toml",
            "[lore.logbook]",
            '[lore.cocoa]\nalways = true\ncontent = "Mira hoards cocoa."\n\n[lore.logbook]',
        )
        assert isinstance(change, LoadedPack) and seconds < 1.0 and "cocoa" in game.pack.lore

        # An invalid save: reported at its file and line; the game plays on with the last good pack.
        lines_before = len(game.lines)
        change, seconds = await follower.after(characters, 'name = "Pip"', "name = [")
        assert isinstance(change, UserFacingError) and seconds < 1.0
        assert f"{characters}:" in change.message and "TOML syntax error" in change.message
        assert game.pack.characters["pip"].name == "Pip"
        await turn(game, "Did you hear that?")
        assert len(game.lines) == lines_before + 2

        # The next valid save applies.
        change, seconds = await follower.after(characters, "name = [", 'name = "Pipkin"')
        assert isinstance(change, LoadedPack) and seconds < 1.0
        assert game.pack.characters["pip"].name == "Pipkin"

        # A valid pack without the episode in play cannot take over this game.
        manifest = pack_copy / "scenario.toml"
        change, seconds = await follower.after(manifest, "episodes.storm", "episodes.tempest")
        assert isinstance(change, UserFacingError) and "'storm', is no longer in the pack" in change.message
        assert "storm" in game.pack.episodes and game.stage.scene == "kitchen"
    finally:
        follower.task.cancel()
