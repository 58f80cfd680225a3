"""Starting or resuming a game with its save: the one way the TUI and `simularity run` open one.

The save is written after every change to the story (atomically); its KV state file every
KV_SAVE_EVERY lines and when the game closes, so that resuming reads only what is new.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from ..engine import ModelSession, SamplingParams
from ..scenario.loader import LoadedPack
from .budgets import Budgets
from .game import Game
from .save_file import LoadedSave, read_save, write_save
from .saves import SaveExists, delete_save, kv_path, save_exists, save_path

KV_SAVE_EVERY = 10  # lines between KV state files (one is written, too, when a game is left or closed)
log = logging.getLogger("simularity")


@dataclass
class SavedGame:
    """A game and the save it is written to."""

    game: Game
    path: Path
    created: datetime
    warnings: list[str] = field(default_factory=list)
    _kv_lines: int = 0

    def write(self, game: Game) -> None:
        write_save(self.path, game=game, created=self.created)

    def save_copy(self, name: str, *, replace: bool = False) -> Path:
        """Write the game as it stands as the save `name` (a branch; the game goes on in its own
        save); returns its path. A save by that name is refused (SaveExists) unless `replace`: then
        it goes, KV state file and all (that state belongs to another story)."""
        copy = save_path(self.game.pack.id, name)
        if save_exists(copy) and not replace:
            raise SaveExists(f"There is already a save '{name}'.", hint="Choose another name.")
        if copy != self.path:
            delete_save(copy)
        write_save(copy, game=self.game, created=self.created)
        return copy

    def save_branch(self, name: str, node_id: int) -> Path:
        """A new save `name` whose story ends at the line `node_id` (the game goes on as it is)."""
        copy = save_path(self.game.pack.id, name)
        if save_exists(copy):
            raise SaveExists(f"There is already a save '{name}'.", hint="Choose another name.")
        branch = self.game.looking_ahead()
        branch.tree.jump(node_id)
        write_save(copy, game=branch, created=self.created)
        return copy

    async def after_turn(self) -> None:
        """Refresh the KV state file now and then (it is cheap to keep, costly to write each turn)."""
        if len(self.game.lines) - self._kv_lines >= KV_SAVE_EVERY:
            await self.write_kv()

    async def write_kv(self) -> None:
        await self.game.session.save_state(kv_path(self.path))
        self._kv_lines = len(self.game.lines)


async def open_game(
    session: ModelSession,
    loaded: LoadedPack,
    path: Path,
    *,
    episode: str | None = None,
    resume: bool = True,
    sampling: SamplingParams | None = None,
    budgets: Budgets | None = None,
    player_name: str | None = None,
    player_description: str | None = None,
) -> SavedGame:
    """Resume the save at `path` if there is one (and `resume`), else start `episode` afresh."""
    if resume and path.exists():
        game, saved = read_game(session, loaded, path, sampling=sampling, budgets=budgets)
        opened = SavedGame(game, path, saved.created, saved.warnings, _kv_lines=len(game.lines))
        if (warning := await _resume_kv(session, kv_path(path))) is not None:
            opened.warnings.append(warning)
    else:
        first = next(iter(loaded.pack.episodes))
        game = Game(
            session, loaded, episode or first, sampling=sampling, budgets=budgets,
            player_name=player_name, player_description=player_description,
        )  # fmt: skip
        opened = SavedGame(game, path, datetime.now(UTC).replace(microsecond=0))
    game.on_commit = opened.write
    opened.write(game)
    return opened


async def _resume_kv(session: ModelSession, state: Path) -> str | None:
    """Bring the KV to the saved window the faster way (engine/resume_path.py): restore the state
    file, or leave it and let the first turn re-evaluate the window. A warning if the file was
    tried and could not be used."""
    # Only the in-process engine weighs the two (a model server keeps its cache itself).
    weigh = getattr(session, "resume_choice", None)
    choice = await weigh(state) if weigh is not None else None
    if choice is not None:
        log.info("resuming %s: %s", state.name, choice.describe())
        if choice.path == "re-evaluate":
            return None
    restored = await session.restore_state(state)
    return restored.warning if restored.warning and state.exists() else None


def read_game(
    session: ModelSession,
    loaded: LoadedPack,
    path: Path,
    *,
    sampling: SamplingParams | None = None,
    budgets: Budgets | None = None,
) -> tuple[Game, LoadedSave]:
    """The game the save at `path` holds, its lines' tokens read again where they must be; not
    written back, and the KV left as it is (open_game does both; `simularity prompt` only looks)."""
    # The in-process model knows its vocabulary; a model server may not say (then only what is
    # no token id at all counts as damage, and the server refuses the rest with an error).
    n_vocab = getattr(session.info, "n_vocab", None)
    saved = read_save(path, loaded, model=session.info.identity, n_vocab=n_vocab)
    game = Game(
        session, loaded, saved.episode, sampling=sampling, budgets=budgets, tree=saved.tree,
        unlocked=saved.unlocked, silent=saved.silent, player_name=saved.player_name,
        player_description=saved.player_description,
        authors_note=saved.authors_note, note_texts=saved.note_texts, essentials=saved.essentials,
        player_lore=saved.player_lore,
    )  # fmt: skip
    game.retokenize(None if saved.stale_tokens else saved.damaged_tokens)
    return game, saved
