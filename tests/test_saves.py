"""Saves: the whole story tree in TOML, resumed exactly, with warnings when things changed.

On the scripted session (tests/fake_model.py): the story's side of saving is the point here. The
real model's KV state files are tests/test_kv_state.py's and tests/test_kv_hardening.py's."""

from __future__ import annotations

import gc
import shutil
import tomllib
import weakref
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from simularity_tui.engine import SamplingParams
from simularity_tui.engine.heap import settle_long_lived
from simularity_tui.errors import UserFacingError
from simularity_tui.scenario import LoadedPack, bundled_packs_dir, load_pack
from simularity_tui.story import Budgets, open_game
from simularity_tui.story.saves import kv_path, list_saves, save_path, transcript_markdown
from simularity_tui.toml_source import TomlProblems

if TYPE_CHECKING:
    from tests.fake_model import FakeSession

SHORT = Budgets(line=20)


@pytest.fixture
def lighthouse(tmp_path: Path) -> LoadedPack:
    return load_pack(Path(shutil.copytree(bundled_packs_dir() / "lighthouse", tmp_path / "lighthouse")))


async def test_an_open_game_is_set_apart_from_the_cycle_collector_and_the_one_before_it_freed(
    fake_session: FakeSession, lighthouse: LoadedPack
) -> None:
    # A full collection walked the whole long-lived heap: 55-85 ms on the event loop, wherever it
    # fell. What is alive once a game is open is frozen (engine/heap.py) ...
    first = await open_game(fake_session, lighthouse, save_path("lighthouse", "one"), budgets=SHORT)
    settle_long_lived()
    assert gc.get_freeze_count() > 0 and gc.is_tracked(first.game) and gc.get_count()[2] == 0
    gone = weakref.ref(first.game)  # a game holds itself in cycles (its autosave is its save's method)
    # ... and thawed once the next one is open and this one let go (the app's order), so it is freed.
    second = await open_game(fake_session, lighthouse, save_path("lighthouse", "two"), budgets=SHORT)
    del first
    settle_long_lived()
    assert gone() is None and gc.get_freeze_count() > 0 and second.game.lines


async def test_a_game_resumes_exactly_and_reads_only_what_is_new(
    fake_session: FakeSession, lighthouse: LoadedPack
) -> None:
    path = save_path("lighthouse", "mine")
    saved = await open_game(fake_session, lighthouse, path, sampling=SamplingParams(seed=8), budgets=SHORT)
    game = saved.game
    await game.say("Hello! Is there any tea?").finish()
    await game.regenerate().finish()
    await game.say("Thank you.").finish()
    game.toggle_speaker("pip")
    await game.say("What now?").finish()
    await saved.write_kv()
    assert path.is_file() and kv_path(path).is_file() and list_saves("lighthouse") == [path]

    text = path.read_text()
    document = tomllib.loads(text)
    assert 'text = "Hello! Is there any tea?"' in text  # readable by a person
    assert document["achievements"] == [{"id": "proper-cuppa", "at_line": 4}] and document["silent"] == ["pip"]

    await fake_session.reset()  # as a new process would start
    resumed = await open_game(
        fake_session, load_pack(lighthouse.root), path, sampling=SamplingParams(seed=8), budgets=SHORT
    )
    again = resumed.game
    assert resumed.warnings == []
    assert again.lines == game.lines
    assert again.tree.variants(again.tree.path()[4].id) == (1, 2)  # the regenerated reply
    assert again.unlocked == game.unlocked and again.silent == {"pip"} and again.stage == game.stage
    turn = await again.say("And then?").finish()
    assert turn.evaluated_tokens <= len(again.lines[-2].tokens) + len(again.lines[-1].tokens) + 2


async def test_a_save_whose_pack_changed_loads_with_warnings(fake_session: FakeSession, lighthouse: LoadedPack) -> None:
    path = save_path("lighthouse", "changed")
    saved = await open_game(fake_session, lighthouse, path, sampling=SamplingParams(seed=3), budgets=SHORT)
    await saved.game.say("Hello, cat.").finish()
    for toml in lighthouse.root.glob("*.toml"):  # the cat's id changes: to the save, Pip is gone
        toml.write_text(toml.read_text().replace("characters.pip", "characters.cat").replace('"pip"', '"cat"'))
    manifest = lighthouse.root / "scenario.toml"
    manifest.write_text(manifest.read_text().replace('version = "1.1.0"', 'version = "2.0.0"'))
    changed = load_pack(lighthouse.root)
    resumed = await open_game(fake_session, changed, path, budgets=SHORT)
    warnings = " ".join(resumed.warnings)
    assert "version 1.1.0" in warnings and "2.0.0" in warnings and "pip" in warnings
    assert "pip" not in resumed.game.stage.cast and "cat" in resumed.game.stage.cast  # the stage follows the pack
    assert any(line.speaker == "pip" for line in resumed.game.lines)  # its lines stay
    assert (await resumed.game.say("Where did the cat go?").finish()).speaker


async def test_a_save_from_another_model_is_tokenized_again(fake_session: FakeSession, lighthouse: LoadedPack) -> None:
    path = save_path("lighthouse", "other")
    saved = await open_game(fake_session, lighthouse, path, budgets=SHORT)
    tokens = [line.tokens for line in saved.game.lines]
    path.write_text(path.read_text().replace(f'model = "{fake_session.info.identity}"', 'model = "another"'))
    for node in tomllib.loads(path.read_text())["nodes"]:
        assert node["tokens"]
    path.write_text(path.read_text().replace('tokens = "', 'tokens = "9 '))  # this model's tokens are wrong now
    resumed = await open_game(fake_session, lighthouse, path, budgets=SHORT)
    assert "another model" in " ".join(resumed.warnings)
    assert [line.tokens for line in resumed.game.lines] == tokens


async def test_damaged_and_newer_saves_are_explained(fake_session: FakeSession, lighthouse: LoadedPack) -> None:
    path = save_path("lighthouse", "broken")
    saved = await open_game(fake_session, lighthouse, path, budgets=SHORT)
    good = path.read_text()
    path.write_text(good.replace('clock = "20:01"', 'clock = "twenty past"'))
    with pytest.raises(TomlProblems, match=r"broken\.toml:\d+:1: nodes\.1\.clock"):
        await open_game(fake_session, lighthouse, path, budgets=SHORT)
    path.write_text(good.replace("format = 1", "format = 7"))
    with pytest.raises(UserFacingError, match="newer Simularity"):
        await open_game(fake_session, lighthouse, path, budgets=SHORT)
    game = saved.game
    markdown = transcript_markdown(game.pack, game.episode, game.lines, game.unlocked)
    assert markdown.startswith("# The Lighthouse at Gull Point\n")


async def test_lines_naming_what_the_pack_dropped_still_load_and_print(
    fake_session: FakeSession, lighthouse: LoadedPack
) -> None:
    path = save_path("lighthouse", "dropped")
    saved = await open_game(fake_session, lighthouse, path, sampling=SamplingParams(seed=4), budgets=SHORT)
    game = saved.game
    await game.say("What is that signal?").finish()  # brings in the lore note "the-signal"
    game.set_scene("shore")
    game.toggle_speaker("pip")  # saved at once, with nothing else changing
    assert tomllib.loads(path.read_text())["silent"] == ["pip"]
    assert any("the-signal" in line.notes for line in game.lines)
    manifest, lore = lighthouse.root / "scenario.toml", lighthouse.root / "lore.toml"
    text = manifest.read_text()
    manifest.write_text(text[: text.index("[scenes.shore]")] + text[text.index("[episodes.storm]") :])
    lore.write_text(lore.read_text().replace("[lore.the-signal]", "[lore.the-sign]"))
    path.write_text(path.read_text().replace(f'model = "{fake_session.info.identity}"', 'model = "another"'))
    resumed = await open_game(fake_session, load_pack(lighthouse.root), path, budgets=SHORT)
    warnings = " ".join(resumed.warnings)
    assert "shore" in warnings and "the-signal" in warnings and "another model" in warnings
    assert resumed.game.stage.scene == "kitchen"  # the move to a scene that is gone is left out
    from io import StringIO

    from simularity_tui.story.script import play_script

    out = StringIO()
    await play_script(resumed, ["/quit"], source="test", out=out)
    assert "[stage: go to shore]" in out.getvalue()


async def test_a_scripts_scene_move_is_done_when_the_story_is_already_there_and_a_wrong_id_names_its_line(
    fake_session: FakeSession, lighthouse: LoadedPack
) -> None:
    # The model may move the story itself before the script's /scene: what the line asks then holds.
    from io import StringIO

    from simularity_tui.story.script import ScriptError, play_script

    saved = await open_game(fake_session, lighthouse, save_path("lighthouse", "scenes"), budgets=SHORT)
    out, opening = StringIO(), len(saved.game.lines)
    await play_script(saved, ["/scene lamp-room", "/scene lamp-room", "/scene shore"], source="moves.txt", out=out)
    printed = out.getvalue()
    assert printed.count("(The lamp room)") == 1 and "[already in The lamp room]" in printed
    assert saved.game.stage.scene == "shore" and len(saved.game.lines) == opening + 2  # two moves
    with pytest.raises(ScriptError, match="moves.txt:2: No scene 'attic' in this pack") as refused:
        await play_script(saved, ["# a comment", "/scene attic"], source="moves.txt", out=out)
    assert refused.value.hint == "Scenes: kitchen, lamp-room, shore"
