"""Prompt fidelity and the prompt inspector's view: example lines within their budget, each fact
once, post-history instructions as a reminder after the story that keeps the prompt append-only,
and `Game.prompt_view`, whose parts add up to exactly what the next turn sends.

The scripted session (tests/fake_model.py) plays the turns; one test plays on the real model."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from simularity_tui.scenario import LoadedPack, bundled_packs_dir, load_pack
from simularity_tui.story import Budgets, Game, Line
from simularity_tui.story.examples import HEADER, examples_text
from simularity_tui.story.reminders import POST_HISTORY, REMIND_EVERY, due, pack_reminders
from simularity_tui.story.save_file import read_save, write_save
from simularity_tui.story.writing import STAGE_OPEN, preamble
from tests.fake_model import FakeSession

if TYPE_CHECKING:
    from simularity_tui.engine import LlamaSession, ModelSession
    from simularity_tui.engine.prompt import Prompt

POST = "Keep replies short. {{user}} is soaked."


@pytest.fixture(scope="module")
def lighthouse() -> LoadedPack:
    return load_pack(bundled_packs_dir() / "lighthouse")


def changed(
    loaded: LoadedPack, *, prompt: dict[str, Any] | None = None, mira: dict[str, Any] | None = None
) -> LoadedPack:
    """The pack with some of its prompt's and Mira's fields changed."""
    pack = loaded.pack
    update: dict[str, Any] = {}
    if prompt:
        update["prompt"] = pack.prompt.model_copy(update=prompt)
    if mira:
        update["characters"] = {**pack.characters, "mira": pack.characters["mira"].model_copy(update=mira)}
    return replace(loaded, pack=pack.model_copy(update=update))


def flat(prompt: Prompt) -> list[int]:
    return [*prompt.pinned, *(token for turn in prompt.turns for token in turn)]


def count(session: ModelSession) -> Any:
    return lambda text: len(session.tokenize(text))


# -- example lines ----------------------------------------------------------------------------------


def test_examples_come_in_order_within_their_budget(fake_session: FakeSession, lighthouse: LoadedPack) -> None:
    lines = [f"Example number {n} of how Mira talks." for n in range(1, 9)]
    pack = changed(lighthouse, mira={"example_lines": lines}).pack
    everything = examples_text(pack, count(fake_session), 10_000)
    assert everything.startswith(HEADER) and all(f"Mira: {line}" in everything for line in lines)
    some = examples_text(pack, count(fake_session), 40)
    assert len(fake_session.tokenize(some)) <= 40
    kept = [line for line in lines if line in some]
    assert kept == lines[: len(kept)] and 0 < len(kept) < len(lines)  # the first ones, and only they
    assert examples_text(pack, count(fake_session), 0) == ""


def test_examples_take_turns_between_characters_and_read_as_story_lines(
    fake_session: FakeSession, lighthouse: LoadedPack
) -> None:
    pack = changed(lighthouse, mira={"example_lines": ["{{user}}: Where am I?\n{{char}}: Safe.\nFor now.", "Two."]})
    pip = pack.pack.characters["pip"].model_copy(update={"example_lines": ["*hisses*", "*purrs*"]})
    pack = replace(pack, pack=pack.pack.model_copy(update={"characters": {**pack.pack.characters, "pip": pip}}))
    text = examples_text(pack.pack, count(fake_session), 10_000)
    assert "Ash: Where am I?\nMira: Safe. For now." in text  # macros expanded, one line per speaker
    assert "Pip: *hisses*" in text and "Pip: *purrs*" in text
    first_of_each = len(fake_session.tokenize(HEADER + "\nAsh: Where am I?\nMira: Safe. For now.\nPip: *hisses*\n"))
    tight = examples_text(pack.pack, count(fake_session), first_of_each + 1)
    assert "Pip: *hisses*" in tight and "Two." not in tight and "*purrs*" not in tight  # everyone's first first


def test_the_pinned_block_has_the_examples_and_the_pack_budget_rules(
    fake_session: FakeSession, lighthouse: LoadedPack
) -> None:
    pinned = fake_session.detokenize(Game(fake_session, lighthouse, "storm").prompt([]).pinned)
    assert "Mira: Mind the stairs. They are older than both of us." in pinned
    assert pinned.index("Characters:") < pinned.index(HEADER) < pinned.index("Places:")
    none = changed(lighthouse, prompt={"example_tokens": 0})
    assert HEADER not in fake_session.detokenize(Game(fake_session, none, "storm").prompt([]).pinned)


# -- each fact once ---------------------------------------------------------------------------------


def test_a_scenario_that_a_description_already_says_is_said_once(lighthouse: LoadedPack) -> None:
    long = "Mira keeps the Gull Point light alone, and has done for nine long years; she trusts nobody."
    same = changed(lighthouse, prompt={"scenario": long}, mira={"description": long}).pack
    assert preamble(same, "storm", None).count("trusts nobody") == 1
    within = changed(lighthouse, prompt={"scenario": f"A storm. {long} The lamp flickers."}, mira={"description": long})
    text = preamble(within.pack, "storm", None)
    assert text.count("trusts nobody") == 1 and "The lamp flickers." in text and "- Mira: Dry humour" in text


# -- post-history instructions: a reminder ----------------------------------------------------------


def model_line(reminders: tuple[str, ...] = ()) -> Line:
    return Line("mira", "Hm.", "20:00", "model", (1,), reminders=reminders)


def test_a_reminder_is_due_when_never_carried_far_back_or_out_of_the_window(lighthouse: LoadedPack) -> None:
    reminders = pack_reminders(changed(lighthouse, prompt={"post_history": POST}).pack)
    assert [r.text for r in reminders] == ["Keep replies short. Ash is soaked."]
    assert not pack_reminders(lighthouse.pack)
    lines = [model_line() for _ in range(3)]
    assert due(reminders, lines, 0) == tuple(reminders)  # never carried
    carried = [model_line((POST_HISTORY,)), *[model_line() for _ in range(REMIND_EVERY - 2)]]
    assert due(reminders, carried, 0) == ()  # the copy is among the last few lines
    assert due(reminders, [*carried, model_line()], 0) == tuple(reminders)  # REMIND_EVERY back
    assert due(reminders, carried, 1) == tuple(reminders)  # its line left the window


async def test_post_history_follows_the_story_every_few_lines_and_the_prompt_only_grows(
    fake_session: FakeSession, lighthouse: LoadedPack
) -> None:
    game = Game(fake_session, changed(lighthouse, prompt={"post_history": POST}), "storm")
    reminder = fake_session.tokenize("[instructions: Keep replies short. Ash is soaked.]\n")
    before: list[int] = []
    for _turn in range(3 * REMIND_EVERY):
        await game.continue_story().finish()
        now = flat(game.prompt([]))
        assert now[: len(before)] == before  # each prompt starts with the one before: the KV stays valid
        before = now
        stage_step = flat(fake_session.requests[-3][0])  # what the model read before the stage line
        assert stage_step[-len(reminder) - 3 : -3] == reminder or POST_HISTORY not in game.lines[-1].reminders
    carriers = [index for index, line in enumerate(game.lines) if line.reminders == (POST_HISTORY,)]
    scripted = len(lighthouse.pack.episodes["storm"].lines)
    assert carriers == list(range(scripted, len(game.lines), REMIND_EVERY))
    tail = fake_session.detokenize(game.lines[carriers[-1]].tokens)
    assert tail.startswith("[instructions: Keep replies short.") and "[stage:" in tail  # before the stage line


async def test_a_reminder_comes_again_once_its_copy_leaves_the_window(lighthouse: LoadedPack) -> None:
    session = FakeSession(n_ctx=1024)
    game = Game(session, changed(lighthouse, prompt={"post_history": POST}), "storm", budgets=Budgets(line=24))
    for _turn in range(20):
        await game.say("Tell me about the lamp and the long nights out here.").finish()
        copies = [i for i, line in enumerate(game.lines) if POST_HISTORY in line.reminders]
        assert copies and copies[-1] >= game.window_start  # the model always reads one
    assert game.window_start > 0  # lines did leave the window


async def test_reminders_are_saved_and_old_saves_load(
    fake_session: FakeSession, lighthouse: LoadedPack, tmp_path: Path
) -> None:
    loaded = changed(lighthouse, prompt={"post_history": POST})
    game = Game(fake_session, loaded, "storm")
    await game.continue_story().finish()
    path = tmp_path / "save.toml"
    write_save(path, game=game, created=datetime.now(UTC))
    assert read_save(path, loaded, model="fake-model").tree.lines()[-1].reminders == (POST_HISTORY,)
    written = path.read_text()
    path.write_text(re.sub(r"reminders = \[[^\]]*\]\n", "", written))  # as a save from before reminders
    assert "reminders" in written and "reminders" not in path.read_text()
    old = read_save(path, loaded, model="fake-model")
    assert old.tree.lines()[-1].reminders == () and not old.warnings


# -- the view ---------------------------------------------------------------------------------------


def open_turn_of(game: Game) -> list[int]:
    """The open part a turn puts at the prompt's end before its stage step (turn.py)."""
    _notes, notes_tokens = game.lore_notes()
    _ids, reminder_tokens = game.reminders()
    return notes_tokens + reminder_tokens + game.session.tokenize(STAGE_OPEN)


async def test_the_view_adds_up_to_the_prompt_the_next_turn_sends(
    fake_session: FakeSession, lighthouse: LoadedPack
) -> None:
    game = Game(fake_session, changed(lighthouse, prompt={"post_history": POST}), "storm")
    await game.say("Is that signal meant for a boat?").finish()
    await game.continue_story().finish()
    view = game.prompt_view()
    assert view.total_tokens == sum(part.tokens for part in view.parts) == len(game.prompt(open_turn_of(game)))
    labels = {(part.section, part.label) for part in view.parts}
    assert {
        ("pinned", "scenario"),
        ("pinned", "characters"),
        ("pinned", "examples"),
        ("pinned", "always-on lore"),
    } <= labels
    assert {("story", "line"), ("story", "lore note"), ("story", "post-history"), ("open", "stage")} <= labels
    line_parts = [part for part in view.parts if part.section == "story" and part.label == "line"]
    assert [part.detail.split(" · ")[0] for part in line_parts] == [f"line {n}" for n in range(1, len(game.lines) + 1)]
    assert line_parts[3].detail == "line 4 · Ash"
    note = next(part for part in view.parts if part.label == "lore note")
    assert note.detail.startswith("line 5 · ") and "key “" in note.detail  # the key that fired it
    requests = len(fake_session.requests)
    await game.continue_story().finish()
    assert len(fake_session.requests[requests][0]) == view.total_tokens  # exactly what was read next
    assert view.n_ctx == fake_session.n_ctx and 0 < view.reused_tokens < view.total_tokens


async def test_the_view_after_a_player_line_changes_nothing(fake_session: FakeSession, lighthouse: LoadedPack) -> None:
    saved: list[Game] = []
    game = Game(fake_session, lighthouse, "storm", on_commit=saved.append)
    lines, log = list(game.lines), list(game.lore_log)
    view = game.prompt_view("Whose boat was lost near the Point?")
    assert game.lines == lines and game.lore_log == log and not saved and not fake_session.requests
    said = [part for part in view.parts if part.section == "story"][-1]
    assert said.text == "Ash (20:02): Whose boat was lost near the Point?\n" and said.detail == "line 4 · Ash"
    boat = [part for part in view.parts if part.section == "open" and part.detail.startswith("the-boat ·")]
    assert "the-boat" in [f.entry for f in view.lore.fired] and "key “boat” in line 4" in boat[0].detail
    assert view.total_tokens == sum(part.tokens for part in view.parts)


async def test_the_view_on_the_real_model_adds_up_and_the_prompt_only_grows(
    session: LlamaSession, lighthouse: LoadedPack
) -> None:
    game = Game(
        session,
        changed(lighthouse, prompt={"post_history": POST}),
        "storm",
        sampling=replace(game_sampling(), seed=7),
        budgets=Budgets(line=24),
    )
    before: list[int] = []
    for _turn in range(2):
        view = game.prompt_view("Is that signal meant for a boat?")
        assert view.total_tokens == sum(part.tokens for part in view.parts)
        await game.say("Is that signal meant for a boat?").finish()
        now = flat(game.prompt([]))
        assert now[: len(before)] == before
        before = now
    view = game.prompt_view()
    assert view.total_tokens == sum(part.tokens for part in view.parts) == len(game.prompt(open_turn_of(game)))
    assert view.reused_tokens > view.total_tokens // 2  # the KV holds the story already
    pinned = session.detokenize(game.prompt([]).pinned)
    assert "Mira: Mind the stairs." in pinned and game.lines[4].reminders == (POST_HISTORY,)


def game_sampling() -> Any:
    from simularity_tui.engine import SamplingParams

    return SamplingParams(temperature=0.0)
