"""What a player does with saves (story/saves.py): list them with their summaries, branch one, copy
the game in play, name copies, export transcripts and delete. On the scripted session."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from simularity_tui.errors import UserFacingError
from simularity_tui.scenario import LoadedPack, bundled_packs_dir, load_pack
from simularity_tui.story import Budgets, SavedGame, open_game
from simularity_tui.story.save_file import read_save
from simularity_tui.story.saves import (
    SaveExists,
    branch_save,
    delete_save,
    export_path,
    export_save,
    export_transcript,
    kv_path,
    save_path,
    save_summaries,
    saves_dir,
)

if TYPE_CHECKING:
    from tests.fake_model import FakeSession

SHORT = Budgets(line=20)


@pytest.fixture(scope="module")
def lighthouse() -> LoadedPack:
    return load_pack(bundled_packs_dir() / "lighthouse")


async def played(session: FakeSession, lighthouse: LoadedPack, name: str) -> SavedGame:
    saved = await open_game(session, lighthouse, save_path("lighthouse", name), budgets=SHORT)
    await saved.game.say("Hello! Is there any tea?").finish()
    await saved.write_kv()
    return saved


async def test_summaries_list_every_save_the_last_played_first(
    fake_session: FakeSession, lighthouse: LoadedPack
) -> None:
    older = await played(fake_session, lighthouse, "older")
    newer = await played(fake_session, lighthouse, "newer")
    os.utime(older.path, (1, 1))
    (saves_dir("lighthouse") / "broken.toml").write_bytes(b"\xff not toml")
    summaries = save_summaries("lighthouse")
    assert [summary.name for summary in summaries] == ["broken", "newer", "older"]
    broken, listed = summaries[0], summaries[1]
    assert not broken.readable and broken.lines is None and broken.last_played is None
    assert listed.readable and listed.path == newer.path and listed.lines == len(newer.game.lines)
    assert listed.last_played is not None and listed.last_played.startswith("20")


async def test_a_branch_copies_the_save_and_its_kv_state_and_never_overwrites(
    fake_session: FakeSession, lighthouse: LoadedPack
) -> None:
    saved = await played(fake_session, lighthouse, "trunk")
    branch = branch_save("lighthouse", "trunk", "limb")
    assert branch == save_path("lighthouse", "limb")
    assert branch.read_bytes() == saved.path.read_bytes()
    assert kv_path(branch).read_bytes() == kv_path(saved.path).read_bytes()
    with pytest.raises(SaveExists, match="already a save 'limb'"):
        branch_save("lighthouse", "trunk", "limb")
    with pytest.raises(UserFacingError, match="cannot name a save"):
        branch_save("lighthouse", "trunk", "../escape")
    with pytest.raises(UserFacingError, match="Cannot branch from 'nowhere'"):
        branch_save("lighthouse", "nowhere", "twig")
    assert not save_path("lighthouse", "twig").exists()


async def test_a_copy_of_the_game_in_play_is_refused_over_a_save_unless_replacing(
    fake_session: FakeSession, lighthouse: LoadedPack
) -> None:
    saved = await played(fake_session, lighthouse, "playing")
    other = await played(fake_session, lighthouse, "other")
    with pytest.raises(SaveExists):
        saved.save_copy("other")
    assert kv_path(other.path).exists()
    copy = saved.save_copy("other", replace=True)
    assert not kv_path(copy).exists()  # the old state file belonged to another story
    assert read_save(copy, lighthouse, model="").tree.lines() == saved.game.lines
    assert saved.path.exists()  # the game goes on in its own save
    delete_save(copy)
    assert not copy.exists()


async def test_transcripts_export_from_the_game_and_from_a_save_alike(
    fake_session: FakeSession, lighthouse: LoadedPack, tmp_path: Path
) -> None:
    saved = await played(fake_session, lighthouse, "told")
    target = export_path("lighthouse", "told")
    assert target.parent.is_dir() and target.name == "lighthouse - told.md"
    export_save(lighthouse, "told", target)
    export_transcript(saved.game, tmp_path / "game.md")
    markdown = target.read_text(encoding="utf-8")
    assert markdown == (tmp_path / "game.md").read_text(encoding="utf-8")
    assert markdown.startswith("# The Lighthouse at Gull Point\n") and "Hello! Is there any tea?" in markdown
    with pytest.raises(UserFacingError, match="cannot write"):
        export_transcript(saved.game, tmp_path / "no such directory" / "game.md")
