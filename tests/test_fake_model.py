"""The fake session (tests/fake_model.py) keeps the `ModelSession` contract: a whole game plays on it.

If these fail, the fast tier's tests stand on a session that is not what the game plays on.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from simularity_tui.engine import GenerationParams, ModelSession, Prompt
from simularity_tui.scenario import LoadedPack, bundled_packs_dir, load_pack
from simularity_tui.story import Budgets, Game, StageCommand, open_game
from simularity_tui.story.saves import kv_path, save_path
from simularity_tui.story.writing import directions_grammar
from tests.fake_model import BOS, FakeSession, Reply, ScriptError
from tests.playing import summarised


@pytest.fixture(scope="module")
def lighthouse() -> LoadedPack:
    return load_pack(bundled_packs_dir() / "lighthouse")


def test_it_is_a_model_session() -> None:
    session: ModelSession = FakeSession(n_ctx=1024)  # mypy checks the structure; this the values
    assert session.n_ctx == session.info.n_ctx == 1024 and session.info.identity and session.kv_tokens == ()


@pytest.mark.parametrize("text", ["", "Mira (21:40): Tea?\n", "  two  spaces,\tand a tab\n\n", "Ünïcödé — «quotes» 🙂"])
def test_tokens_read_back_as_the_text(fake_session: FakeSession, text: str) -> None:
    tokens = fake_session.tokenize(text)
    assert fake_session.detokenize(tokens) == text
    assert len(tokens) <= max(1, len(text))


def test_tokens_are_words_and_special_tokens_only_when_asked(fake_session: FakeSession) -> None:
    assert len(fake_session.tokenize("The lamp hums in the quiet.")) == 7  # six words and the full stop
    assert fake_session.tokenize("<bos>hi", special=True)[0] == BOS
    assert BOS not in fake_session.tokenize("<bos>hi")  # a player typing "<bos>" types text
    assert fake_session.tokenize("hi", add_bos=True) == [BOS, *fake_session.tokenize("hi")]
    other = FakeSession()  # one vocabulary, as one model: another session reads these tokens alike
    assert other.detokenize(fake_session.tokenize("a shared vocabulary")) == "a shared vocabulary"


async def test_a_plain_prompt_streams_the_scripted_reply_and_counts_it(fake_session: FakeSession) -> None:
    fake_session.replies.append("Hello there, traveller.")
    prompt = fake_session.tokenize("Say hello:", add_bos=True)
    generation = fake_session.generate(prompt, GenerationParams(max_tokens=50))
    pieces = [piece async for piece in generation]
    result = await generation.result()
    assert len(pieces) > 1 and "".join(pieces) == result.text == "Hello there, traveller."
    assert result.stop_reason == "eos" and fake_session.detokenize(result.tokens) == result.text
    assert result.generated_tokens == len(result.tokens) and result.evaluated_tokens == len(prompt)
    assert fake_session.kv_tokens == (*prompt, *result.tokens)
    assert generation.prefill == 1.0


async def test_a_stop_string_ends_the_text_and_a_budget_cuts_it(fake_session: FakeSession) -> None:
    fake_session.replies.extend(["One. Two.\nThree.", "One. Two.", "one two three four five"])
    result = await fake_session.generate([BOS, 5], GenerationParams(stop=("\n",))).result()
    assert result.text == "One. Two." and result.stop_reason == "stop" and result.stop_string == "\n"
    assert fake_session.detokenize(result.tokens) == "One. Two." and result.tail_text == ""
    # A stop string inside a token: the text ends before it, and the tokens before that token.
    inside = await fake_session.generate([BOS, 5], GenerationParams(stop=("wo",))).result()
    assert (inside.text, inside.tail_text, fake_session.detokenize(inside.tokens)) == ("One. T", " T", "One.")
    cut = await fake_session.generate([BOS, 5], GenerationParams(max_tokens=3)).result()
    assert cut.text == "one two three" and cut.stop_reason == "length" and cut.generated_tokens == 3


async def test_cancel_keeps_the_text_so_far(fake_session: FakeSession) -> None:
    fake_session.replies.append("a b c d e f g h")
    generation = fake_session.generate([BOS], GenerationParams())
    pieces = []
    async for piece in generation:
        pieces.append(piece)
        if len(pieces) == 2:
            generation.cancel()
    result = await generation.result()
    assert result.stop_reason == "cancelled" and result.text == "".join(pieces)
    assert 2 <= len(result.tokens) < 8 and fake_session.detokenize(result.tokens) == result.text


async def test_an_exception_in_the_script_is_the_generation_s(fake_session: FakeSession) -> None:
    fake_session.replies.append(ConnectionError("the server went away"))
    generation = fake_session.generate([BOS], GenerationParams())
    with pytest.raises(ConnectionError):
        async for _piece in generation:
            pass


async def test_a_whole_turn_plays_line_regenerate_undo(fake_session: FakeSession, lighthouse: LoadedPack) -> None:
    fake_session.replies.extend(["Come in, quick.", Reply("Tea?", speaker="Mira", stage=True)])
    game = Game(fake_session, lighthouse, "storm")
    turn = await game.say("Good evening.").finish()
    assert (turn.speaker, turn.text, turn.directions) == ("mira", "Come in, quick.", [])
    assert [line.kind for line in game.lines[-2:]] == ["player", "model"]
    assert game.lines[-1].clock == "20:02"  # written at 20:00, which would turn the clock back
    # The KV ends with the line as kept: the turn it read, then the tokens it wrote.
    assert fake_session.kv_tokens[-len(game.lines[-1].tokens) :] == game.lines[-1].tokens
    _grammar, offered = directions_grammar(game.pack, game.stage)
    again = await game.regenerate().finish()
    assert again.text == "Tea?" and game.variants() == (1, 2)
    assert again.directions == [next(iter(offered.values()))]  # the first command the grammar offers
    assert game.undo() and game.lines[-1].kind == "player"
    assert game.redo() and game.lines[-1].text == "Tea?"


async def test_the_script_cannot_break_the_grammar(fake_session: FakeSession, lighthouse: LoadedPack) -> None:
    game = Game(fake_session, lighthouse, "storm")
    fake_session.replies.append(Reply("Hi.", speaker="Ash"))  # the player: never the model's to write
    with pytest.raises(ScriptError, match="grammar allows"):
        await game.continue_story().finish()
    assert len(game.lines) == 3  # nothing kept
    fake_session.replies.append(Reply("Hi.", stage="Ash enters"))
    with pytest.raises(ScriptError, match="stage command"):
        await game.continue_story().finish()


async def test_a_stage_command_is_written_and_applied(fake_session: FakeSession, lighthouse: LoadedPack) -> None:
    game = Game(fake_session, lighthouse, "storm")
    fake_session.replies.append(Reply("Up we go.", stage="go to The lamp room"))
    turn = await game.continue_story().finish()
    assert turn.directions == [StageCommand("set_scene", "lamp-room")] and game.stage.scene == "lamp-room"
    assert "[stage: go to The lamp room]\n" in fake_session.detokenize(game.lines[-1].tokens)


async def test_cancel_mid_line_keeps_what_was_written(lighthouse: LoadedPack) -> None:
    session = FakeSession(replies=["one two three four five six seven eight"], piece_delay=0.001)
    game = Game(session, lighthouse, "storm")
    turn = game.continue_story()
    async for piece in turn:
        if piece:
            turn.cancel()
    assert turn.node_id is not None and 0 < len(turn.text) < len("one two three four five six seven eight")
    line = game.lines[-1]
    assert line.text == turn.text.strip() and session.detokenize(line.tokens).endswith(f"{line.text}\n")


async def test_a_small_context_evicts_and_summarises(lighthouse: LoadedPack) -> None:
    session = FakeSession(n_ctx=1024, summaries=["Ash came in from the storm and drank tea."])
    game = Game(session, lighthouse, "storm", budgets=Budgets(line=40))
    shifted = 0
    for number in range(40):
        turn = await game.say(f"Tell me a long story about the lighthouse, part {number}, please.").finish()
        assert turn.result is not None and len(session.kv_tokens) < session.n_ctx
        shifted += turn.shifted_tokens  # any of the turn's steps: whichever first lacks room
        if await summarised(game):
            break
    else:
        raise AssertionError("the context never evicted a line")
    assert shifted > 0 and game.summary == "Ash came in from the storm and drank tea." and game.covered > 0
    assert session.detokenize(game.prompt([]).pinned).endswith(f"{game.summary}\n\nStory:\n")
    # The next turn reads the new summary and its own line, not the kept lines nor the request.
    kept = sum(len(line.tokens) for line in game.lines[game.window_start :])
    turn = await game.say("And then?").finish()
    assert 0 < turn.evaluated_tokens < len(game.prompt([]).pinned) + kept - 16


async def test_a_shift_is_rare_and_reads_only_what_is_new(fake_session: FakeSession) -> None:
    pinned = fake_session.tokenize("pinned " * 50, add_bos=True)
    turns: list[list[int]] = []
    evaluated = []
    for number in range(60):
        turns.append(fake_session.tokenize(f"turn {number} " * 20))
        result = await fake_session.generate(Prompt.of(pinned, turns), GenerationParams(max_tokens=10)).result()
        turns[-1] += list(result.tokens)
        evaluated.append((result.evaluated_tokens, result.shifted_tokens))
    shifts = [shifted for _evaluated, shifted in evaluated if shifted]
    assert 0 < len(shifts) < 20  # in chunks, down to the low-water mark: rare
    assert all(read <= 41 + 10 for read, _shifted in evaluated[1:])  # never the kept window again
    assert fake_session.kv_tokens[: len(pinned)] == tuple(pinned)


async def test_saves_and_kv_state_round_trip(fake_session: FakeSession, lighthouse: LoadedPack, tmp_path: Path) -> None:
    path = save_path(lighthouse.pack.id, "autosave")
    opened = await open_game(fake_session, lighthouse, path)
    await opened.game.say("Hello.").finish()
    await opened.write_kv()
    held = fake_session.kv_tokens
    assert kv_path(path).exists() and held
    other = FakeSession()  # the game started again: the same model, an empty KV
    resumed = await open_game(other, lighthouse, path)
    assert [line.text for line in resumed.game.lines] == [line.text for line in opened.game.lines]
    assert other.kv_tokens == held and not resumed.warnings
    stranger = FakeSession(identity="another-model")
    moved = await open_game(stranger, lighthouse, path)
    assert stranger.kv_tokens == () and any("another model" in warning for warning in moved.warnings)


async def test_generations_run_one_at_a_time_in_order(fake_session: FakeSession) -> None:
    fake_session.replies.extend(["first reply", "second reply"])
    first = fake_session.generate([BOS, 7], GenerationParams())
    second = fake_session.generate([BOS, 8], GenerationParams())
    results = await asyncio.gather(second.result(), first.result())
    assert [result.text for result in results] == ["second reply", "first reply"]
    assert fake_session.kv_tokens[:2] == (BOS, 8)  # the later one ran last
    await fake_session.reset()
    assert fake_session.kv_tokens == ()
