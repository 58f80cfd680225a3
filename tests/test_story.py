"""The story: stage commands, variants, edits, lore, achievements, memory.

What the real model decides (which commands it stages, what an edit or a lore note costs the KV,
summaries in the story's language) plays on it; the tree's own logic (the opening, variants,
achievements, a regenerate that writes nothing) on the scripted session (tests/fake_model.py)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from simularity_tui.engine import SamplingParams
from simularity_tui.engine.context_window import unread
from simularity_tui.scenario import LoadedPack, bundled_packs_dir, load_pack
from simularity_tui.story import Budgets, Game, Stage, StageCommand, path_facts
from simularity_tui.story.writing import directions_grammar
from tests.fake_model import Reply
from tests.packs import png
from tests.playing import summarised

if TYPE_CHECKING:
    from simularity_tui.engine import LlamaSession
    from tests.fake_model import FakeSession

SHORT = Budgets(line=24)


@pytest.fixture(scope="module")
def lighthouse() -> LoadedPack:
    return load_pack(bundled_packs_dir() / "lighthouse")


def replay_is_legal(game: Game) -> bool:
    """Every stage command on the path was legal on the stage just before it."""
    stage = Stage.opening(game.pack, game.episode)
    for line in game.lines:
        for command in line.directions:
            if not stage.is_legal(game.pack, command):
                return False
            stage = stage.apply(game.pack, command)
    return True


def test_the_episode_opens_with_its_scripted_lines_and_directions(
    fake_session: FakeSession, lighthouse: LoadedPack
) -> None:
    game = Game(fake_session, lighthouse, "storm")
    assert [line.kind for line in game.lines] == ["scripted"] * 3
    assert [line.clock for line in game.lines] == ["20:00", "20:01", "20:02"]
    stage = game.stage
    assert (
        stage.scene == "kitchen" and stage.cast["mira"].expression == "stern" and stage.cast["pip"].expression == "hiss"
    )
    midnight = Game(fake_session, lighthouse, "midnight").stage
    assert "pip" in midnight.cast and midnight.cast["mira"].outfit == "nightwatch"  # a scripted entrance


def test_the_grammar_offers_only_legal_changes(lighthouse: LoadedPack) -> None:
    stage = Stage.opening(lighthouse.pack, "storm")  # in the kitchen; Mira (stern) and Pip (alert) on stage
    _grammar, table = directions_grammar(lighthouse.pack, stage)
    offered = set(table.values())
    assert StageCommand("set_scene", "lamp-room") in offered and StageCommand("set_scene", "kitchen") not in offered
    assert StageCommand("set_expression", "mira", "smile") in offered
    assert StageCommand("set_expression", "mira", "stern") not in offered  # no change is not a command
    assert StageCommand("remove_character", "pip") in offered
    assert not any(c.kind == "add_character" and c.target in ("mira", "pip") for c in offered)  # already there
    assert not any(c.target == "ash" for c in offered)  # the player is not staged
    assert StageCommand("set_outfit", "mira", "nightwatch") in offered
    alone = Stage("kitchen", {})
    _grammar, table = directions_grammar(lighthouse.pack, alone)
    assert StageCommand("add_character", "pip", "calm") in set(table.values())


async def test_the_model_stages_only_legal_commands_and_brings_characters_on(
    session: LlamaSession, tmp_path: Path
) -> None:
    pack = tmp_path / "door"
    pack.mkdir()
    (pack / "scenario.toml").write_text(DOOR_PACK)
    for name in ("bo", "cy"):
        png(pack / "art" / f"{name}.png")
    game = Game(session, load_pack(pack), "start", sampling=SamplingParams(seed=5), budgets=SHORT)
    assert game.stage.cast == {}  # the scripted lines left the room empty
    entered: list[StageCommand] = []
    for attempt in range(12):  # each line, the model may change the stage; someone soon walks in
        turn = await game.continue_story(seed=100 + attempt).finish()
        entered += [command for command in turn.directions if command.kind == "add_character"]
        if entered:
            break
    assert entered, "the model never brought a character on stage"
    assert entered[0].target in game.stage.cast
    assert replay_is_legal(game)


DOOR_PACK = """\
id = "door"
name = "The Door"
[prompt]
scenario = "A small room with a door that people keep walking in and out of."
[characters.me]
name = "Me"
player = true
[characters.bo]
name = "Bo"
[characters.bo.expressions]
calm = "art/bo.png"
[characters.cy]
name = "Cy"
[characters.cy.expressions]
calm = "art/cy.png"
[scenes.room]
name = "The room"
[episodes.start]
name = "Start"
[[episodes.start.lines]]
speaker = "narrator"
text = "The door opens."
directions = [{ add_character = "bo" }]
[[episodes.start.lines]]
speaker = "bo"
text = "Hello! I am off again."
directions = [{ remove_character = "bo" }]
[[episodes.start.lines]]
speaker = "narrator"
text = "The door opens again."
directions = [{ add_character = "cy" }]
[[episodes.start.lines]]
speaker = "cy"
text = "Just passing through."
directions = [{ remove_character = "cy" }]
[[episodes.start.lines]]
speaker = "narrator"
text = "The room is empty. Someone knocks."
"""


async def test_regenerate_writes_new_variants_and_every_variant_stays(
    fake_session: FakeSession, lighthouse: LoadedPack
) -> None:
    game = Game(fake_session, lighthouse, "storm", budgets=SHORT)  # no fixed seed: each line draws its own
    first = await game.say("Good evening. May I come in?").finish()
    assert first.result is not None
    texts, seeds = [first.text], [first.result.seed]
    for _ in range(3):
        again = await game.regenerate().finish()
        assert again.result is not None
        texts.append(again.text)
        seeds.append(again.result.seed)
    assert len(set(seeds)) == 4 and len(set(texts)) >= 3
    assert game.variants() == (3, 4)
    assert game.lines[-2].text == "Good evening. May I come in?"  # regenerating kept the player's line
    game.switch_variant(+1)  # wraps around to the first
    assert game.variants() == (0, 4) and game.lines[-1].text == texts[0]
    assert game.undo() and game.lines[-1].kind == "player"
    assert game.redo() and game.lines[-1].text == texts[0]


async def test_an_edit_is_read_again_from_the_edited_line_only(session: LlamaSession, lighthouse: LoadedPack) -> None:
    game = Game(session, lighthouse, "storm", sampling=SamplingParams(seed=9), budgets=SHORT)
    for line in ("Hello there.", "Is it always this stormy?", "Where does the stair go?"):
        await game.say(line).finish()
    edited_node = game.tree.path()[4]  # the first reply of the model
    assert edited_node.line.kind == "model"
    game.edit("The lamp room. Nobody goes up there.", edited_node.id)
    lines = game.lines
    after = sum(len(line.tokens) for line in lines[5:])
    turn = await game.continue_story(seed=1).finish()
    # Read again: the rest of the edited line, the lines after it, and the new turn's own tokens.
    new_turn = len(game.lines[-1].tokens)
    assert after < turn.evaluated_tokens <= after + len(lines[4].tokens) + new_turn
    assert game.lines[4].text == "The lamp room. Nobody goes up there."


async def test_lore_joins_the_prompt_at_its_end_when_mentioned(session: LlamaSession, lighthouse: LoadedPack) -> None:
    game = Game(session, lighthouse, "storm", sampling=SamplingParams(seed=4), budgets=SHORT)
    await game.say("Good evening.").finish()
    # What the model lacks of the story so far: a stage line the model split otherwise than the
    # story keeps it is read again (turn.py), and how it splits one depends on the CPU's roundings.
    lacking = unread(session.kv_tokens, game.prompt([]))
    turn = await game.say("Why does the lamp flash that strange signal?").finish()
    reply = game.lines[-1]
    assert reply.notes == ("the-signal",)
    assert "three long and one short" in session.detokenize(reply.tokens)
    # Appended at the end of the prompt: only that, the player's line and this turn were read.
    assert turn.evaluated_tokens <= lacking + len(game.lines[-2].tokens) + len(reply.tokens)
    again = await game.say("Tell me more about the signal.").finish()
    assert game.lines[-1].notes == () and again.speaker  # already in view: not added twice


async def test_an_achievement_unlocks_once_and_is_remembered(fake_session: FakeSession, lighthouse: LoadedPack) -> None:
    game = Game(fake_session, lighthouse, "storm", sampling=SamplingParams(seed=2), budgets=SHORT)
    turn = await game.say("Could I have a cup of tea?").finish()
    assert turn.unlocked == ["proper-cuppa"] and game.unlocked == {"proper-cuppa": 4}
    again = await game.say("More tea, please!").finish()
    assert "proper-cuppa" not in again.unlocked and game.unlocked["proper-cuppa"] == 4
    assert game.set_scene("lamp-room") == ["up-the-tower"]  # unlocked by the scene change itself
    assert game.stage.scene == "lamp-room" and "up-the-tower" in game.unlocked


def replayed_stage(game: Game) -> Stage:
    """The stage after the lines in play, worked out from the opening (as the game did once)."""
    stage = Stage.opening(game.pack, game.episode)
    for line in game.lines:
        for command in line.directions:
            stage = stage.apply(game.pack, command) if stage.is_legal(game.pack, command) else stage
    return stage


async def test_a_long_story_works_out_each_lines_stage_and_words_once(
    fake_session: FakeSession, lighthouse: LoadedPack, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A turn asks for the stage and the achievements' words several times: worked out from the
    # first line each time, its cost grew with the story (5 ms before the first token at line 600).
    game = Game(fake_session, lighthouse, "storm", sampling=SamplingParams(seed=2), budgets=SHORT)
    fake_session.replies.extend(Reply(f"Line {n}.", stage=n % 3 == 0) for n in range(40))
    for number in range(40):
        await game.say(f"Number {number}.").finish()
    assert game.stage == replayed_stage(game) and sum(len(line.directions) for line in game.lines) > 10
    applied: list[StageCommand] = []
    searched: list[str] = []
    apply, mentions = Stage.apply, path_facts.mentions
    monkeypatch.setattr(
        Stage, "apply", lambda stage, pack, command: applied.append(command) or apply(stage, pack, command)
    )
    monkeypatch.setattr(
        path_facts, "mentions", lambda text, words, seen: searched.append(text) or mentions(text, words, seen)
    )
    fake_session.replies.append(Reply("Tom waved.", stage=True))
    turn = await game.say("A cup of tea, please.").finish()
    new_commands = sum(len(line.directions) for line in game.lines[-2:])
    assert 0 < len(applied) <= 3 * new_commands, applied  # the turn's own, and each new line's once
    assert len(searched) <= 2 * 3, searched  # each new line, once per word list (tea, Tom, the Curlew)
    assert turn.unlocked == ["proper-cuppa", "the-answer"] and game.stage == replayed_stage(game)
    # Undo, a variant, an edit and a reloaded pack: each stage as replayed from the opening.
    game.undo()
    assert game.stage == replayed_stage(game)
    fake_session.replies.append(Reply("Pip stretched.", stage=True))
    await game.regenerate().finish()
    assert game.stage == replayed_stage(game)
    game.switch_variant(-1)
    assert game.stage == replayed_stage(game) and game.lines[-1].text == "Tom waved."
    game.edit("Nobody waved.")
    assert game.lines[-1].text == "Nobody waved." and game.stage == replayed_stage(game)
    game.apply_pack(load_pack(bundled_packs_dir() / "lighthouse"))
    assert game.stage == replayed_stage(game)
    fake_session.replies.append(Reply("Pip stretched.", stage=True))
    newest = (await game.continue_story().finish()).node_id
    assert newest == max(game.tree.nodes) and game.lines[-1].directions
    game.undo()
    game.delete_branch(newest)  # the newest id: a copy must not give it to its next line
    ahead = game.looking_ahead("Hello?")
    assert ahead.stage == replayed_stage(ahead)
    ahead = game.looking_ahead("Hello?")  # a copy's next line and the game's take the same id
    assert ahead.stage == replayed_stage(ahead)
    elsewhere = next(scene for scene in game.pack.scenes if scene != game.stage.scene)
    game.set_scene(elsewhere)
    assert game.stage.scene == elsewhere and game.stage == replayed_stage(game)


async def test_memory_summarises_evicted_lines_in_their_own_language(
    small_session: LlamaSession, tmp_path: Path
) -> None:
    pack = tmp_path / "station"
    pack.mkdir()
    (pack / "scenario.toml").write_text(STATION_PACK)
    # The embedded 270M base model keeps the story's language for most stories, not all (2 of 3
    # seeds tried): the seed makes the story, and so this check, repeatable.
    game = Game(small_session, load_pack(pack), "night", sampling=SamplingParams(seed=2), budgets=Budgets(line=30))
    said = [
        "Здравствуйте! Я замёрз. Когда придёт поезд? Метель такая сильная, что ничего не видно.",
        "Расскажите мне про эту станцию, пожалуйста. Давно вы здесь работаете?",
        "А что это за огонёк там, в лесу, за путями? Кто-то идёт сюда?",
    ]
    for number in range(10):
        await game.say(said[number % 3]).finish()
        if await summarised(game):
            break
    else:
        raise AssertionError("the context never evicted a line")
    assert game.summary and re.search("[а-яА-ЯёЁ]", game.summary), game.summary
    assert game.covered > 0
    prompt = game.prompt([])
    assert small_session.detokenize(prompt.pinned).endswith(f"Summary of the story so far: {game.summary}\n\nStory:\n")
    assert len(prompt.turns) == len(game.lines) - game.covered + 1  # the summarised lines left the prompt


STATION_PACK = """\
id = "station"
name = "Рассвет на станции"
[prompt]
scenario = "Маленькая железнодорожная станция в тайге. Ночь, метель. Поезд опаздывает."
instructions = "Пиши коротко, по-русски."
[characters.me]
name = "Саша"
player = true
[characters.anna]
name = "Анна"
description = "Смотрительница станции, строгая, но добрая."
[scenes.hall]
name = "Зал ожидания"
description = "Холодный зал с печкой."
[episodes.night]
name = "Ночь"
time = "23:10"
[[episodes.night.characters]]
id = "anna"
[[episodes.night.lines]]
speaker = "anna"
text = "Поезд опаздывает на три часа. Садитесь ближе к печке."
"""


async def test_a_regenerate_that_writes_nothing_shows_the_old_line_again(
    fake_session: FakeSession, lighthouse: LoadedPack
) -> None:
    game = Game(fake_session, lighthouse, "storm", sampling=SamplingParams(seed=6), budgets=SHORT)
    await game.say("Hello?").finish()
    old = game.lines[-1]
    turn = game.regenerate()
    turn.cancel()  # before it writes anything
    await turn.finish()
    assert turn.node_id is None and game.lines[-1] == old and game.variants() == (0, 1)
