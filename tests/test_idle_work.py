"""Summaries in idle time: written between turns (story/idle_work.py), never inside one; the
player's next line cancels one being written at once, and the next idle time writes it. On the real
model for the cancel's latency, and in the TUI on the scripted session."""

from __future__ import annotations

import asyncio
import re
import time
from typing import TYPE_CHECKING

import pytest

from simularity_tui.engine import Prompt, SamplingParams
from simularity_tui.engine.context_window import common_prefix, unread
from simularity_tui.scenario import LoadedPack, bundled_packs_dir, load_pack
from simularity_tui.story import Budgets, Game
from tests.fake_model import FakeSession
from tests.playing import summarised

if TYPE_CHECKING:
    from simularity_tui.engine import LlamaSession

LIGHTHOUSE = bundled_packs_dir() / "lighthouse"


@pytest.fixture(scope="module")
def lighthouse() -> LoadedPack:
    return load_pack(LIGHTHOUSE)


async def game_with_a_summary_due(session: LlamaSession | FakeSession, pack: LoadedPack) -> Game:
    game = Game(session, pack, "storm", sampling=SamplingParams(seed=3), budgets=Budgets(directions=16, line=24))
    for number in range(40):
        await game.say(f"Tell me about the lamp and the sea, part {number}.").finish()
        if game.summary_due() is not None:
            return game
    raise AssertionError("the context never evicted a line")


async def test_a_line_sent_during_a_summary_starts_at_once_and_the_summary_lands_later(
    small_session: LlamaSession, lighthouse: LoadedPack
) -> None:
    await small_session.reset()
    game = await game_with_a_summary_due(small_session, lighthouse)
    lines = len(game.lines)
    job = game.idle_work()
    assert job is not None
    writing = asyncio.ensure_future(job.run())
    await asyncio.sleep(0.3)  # the summary is being written: its request read, tokens coming
    assert not writing.done()
    cancelled_at = time.perf_counter()
    job.cancel()
    turn = game.say("Is the kettle on?")
    kept = await writing
    latency = time.perf_counter() - cancelled_at
    await turn.finish()
    print(f"cancel latency {latency * 1000:.1f} ms")
    assert not kept and latency < 0.05 and game.summary is None  # nothing half-written is kept
    assert len(game.lines) == lines + 2 and turn.node_id is not None  # the player's turn played
    assert await summarised(game) and game.summary and game.covered > 0  # the next idle time writes it


async def test_a_summary_for_a_story_that_moved_on_is_not_kept(lighthouse: LoadedPack) -> None:
    session = FakeSession(n_ctx=1024)
    game = await game_with_a_summary_due(session, lighthouse)
    job = game.idle_work()
    assert job is not None
    game.undo()  # the story changed under it (the screen cancels first; this is the guard behind that)
    assert not await job.run() and game.summary is None


async def test_the_screen_writes_the_summary_while_the_player_reads(lighthouse: LoadedPack) -> None:
    from tests.test_ui import SIZE, play_screen, turn, wait_for
    from tests.test_ui import lighthouse as app_for

    session = FakeSession(n_ctx=640, summaries=["Ash came in from the storm."])
    app = app_for(session)
    async with app.run_test(size=SIZE) as pilot:
        screen = await play_screen(app)
        for number in range(40):
            await turn(pilot, screen, *f"Part {number} of a long story about the sea.", "enter")
            if screen.game.summary_due() is not None or screen.game.summary:
                break
        # No key pressed: the summary lands on its own, after the turn, and the status said so.
        await wait_for(lambda: screen.game.summary == "Ash came in from the storm.")
        assert not screen.busy and screen.idle_job is None


async def test_on_the_screen_a_summary_written_aside_joins_the_prompt_when_the_player_pauses_typing(
    lighthouse: LoadedPack,
) -> None:
    from tests.test_ui import SIZE, play_screen, turn, wait_for
    from tests.test_ui import lighthouse as app_for

    session = FakeSession(n_ctx=640, aside=256, summaries=["Ash came in from the storm."])
    app = app_for(session)
    async with app.run_test(size=SIZE) as pilot:
        screen = await play_screen(app)
        for number in range(40):
            await turn(pilot, screen, *f"Part {number} of a long story about the sea.", "enter")
            await wait_for(lambda: screen.idle_job is None)
            if screen.game.summary_waiting is not None:
                break
        assert screen.game.summary is None  # written while the player read, beside the turn written ahead
        await pilot.press(*"Is the")  # the player types, and pauses
        await wait_for(lambda: screen.game.summary == "Ash came in from the storm.")
        assert screen.game.summary_waiting is None


async def test_what_the_model_has_not_read_is_read_ahead_and_the_next_line_reads_only_its_own(
    lighthouse: LoadedPack,
) -> None:
    session = FakeSession(n_ctx=2048)
    game = Game(session, lighthouse, "storm")
    job = game.idle_work()  # a story just opened: nothing of it read yet
    assert job is not None and not job.summarising
    assert not await job.run()  # no summary: only read ahead
    assert game.idle_work() is None  # nothing left to read
    said = session.tokenize("Ash (20:02): Hello?\n")
    turn = await game.say("Hello?").finish()
    assert turn.evaluated_tokens <= len(said) + len(game.lines[-1].tokens)  # its own tokens, not the story's


async def test_the_line_being_typed_is_read_ahead_with_the_notes_its_turn_brings_in(
    session: LlamaSession, lighthouse: LoadedPack
) -> None:
    """Reading ahead with the player's draft: the line, the lore notes it brings in and `[stage:`
    are read before it is sent, then the turn's stage line and its line's head are written and read;
    sent as typed, the turn finds them written and draws its text without reading anything. A draft
    changed afterwards costs only what changed."""
    await session.reset()
    game = Game(session, lighthouse, "storm", sampling=SamplingParams(seed=5), budgets=Budgets(line=24))
    draft = "What is that pattern the lamp keeps making?"  # "pattern": the lore entry "the-signal"
    job = game.idle_work(lambda: draft)
    assert job is not None
    await job.run()
    read = session.detokenize(list(session.kv_tokens))
    signal = " ".join(lighthouse.pack.lore["the-signal"].content.split())
    said, _, after = read.rpartition(f"): {draft}\n")
    assert said and after.startswith("[note: ") and f"[note: {signal}]\n" in after  # the line, its notes
    written = after[after.index("]\n[stage:") + 2 :]  # then the stage line and the head, written ahead
    assert re.fullmatch(r"\[stage: [^\n]*\]\n\w[^\n(]* \(2\d:\d\d\):", written), written  # and read to its end
    assert game.idle_work(lambda: draft) is None  # nothing left to read or write for it
    turn = await game.say(draft).finish()
    assert turn.steps_written_ahead == 2 and "the-signal" in game.lines[-1].notes
    assert written in session.detokenize(game.lines[-1].tokens)  # the line goes on from them
    assert turn.evaluated_tokens == 0, turn.evaluated_tokens  # the head's end read ahead too, its logits at hand
    # The KV holds the story as the game keeps it: what was read ahead is what was said. (In text:
    # the model may split the stage line otherwise than the story keeps it; idle time reads it again.)
    story = [*game.prompt([]).pinned, *(token for line in game.lines[game.window_start :] for token in line.tokens)]
    assert session.detokenize(story).startswith(session.detokenize(list(session.kv_tokens)))
    # A draft read ahead, then changed at its end: the turn reads the change, not the story again.
    job = game.idle_work(lambda: "Where does the keeper sleep?")
    assert job is not None
    await job.run()
    turn = await game.say("Where does the keeper sleep at night?").finish()
    assert turn.steps_written_ahead == 0  # written for another line
    stage_line = len(session.tokenize("[stage: none]\n"))
    assert turn.evaluated_tokens <= len(session.tokenize(" at night?\n")) + stage_line + 30, turn.evaluated_tokens


async def test_a_line_written_ahead_whose_text_prompt_left_the_kv_is_read_again(
    session: LlamaSession, lighthouse: LoadedPack
) -> None:
    """Written ahead to its end, and then something else took the KV's end (a summary written at
    the story's end where there was no room aside, then not kept): the next idle time finds the
    steps written and reads the text's prompt again, so the send still reads nothing."""
    from simularity_tui.story.turn import READ_ONLY  # llama.cpp: not at collection

    await session.reset()
    game = Game(session, lighthouse, "storm", sampling=SamplingParams(seed=5), budgets=Budgets(line=24))
    draft = "Where does the keeper keep the spare wicks?"
    job = game.idle_work(lambda: draft)
    assert job is not None
    await job.run()
    stage_prompt = game.read_ahead_prompt(draft)
    assert game.written_ahead.finished(stage_prompt, session.kv_tokens)
    # The stage prompt stays read; the written stage line and head after it are replaced.
    other = session.generate(Prompt.plain([*stage_prompt.flat(), *session.tokenize(" none]\n")]), READ_ONLY)
    async for _piece in other:
        pass
    await other.result()
    assert unread(session.kv_tokens, stage_prompt) == 0
    assert not game.written_ahead.finished(stage_prompt, session.kv_tokens)
    job = game.idle_work(lambda: draft)
    assert job is not None  # not written to its end any more: idle time has work
    await job.run()
    assert job.read_tokens == 0 and game.written_ahead.finished(stage_prompt, session.kv_tokens)
    assert game.idle_work(lambda: draft) is None
    turn = await game.say(draft).finish()
    assert turn.steps_written_ahead == 2 and turn.evaluated_tokens == 0, turn.evaluated_tokens


async def test_a_turn_written_ahead_writes_the_line_it_would_have_written(
    session: LlamaSession, lighthouse: LoadedPack
) -> None:
    """With a fixed seed, the line is the same whether its stage line and head were written while
    the player paused typing or after the send: written ahead is the same generation, done sooner.
    (Both read the typed line ahead: the model's numbers then come out bit for bit the same.)"""
    draft = "Is the storm getting worse?"
    lines = []
    for ahead in (False, True):
        await session.reset()
        game = Game(session, lighthouse, "storm", sampling=SamplingParams(seed=11), budgets=Budgets(line=24))
        job = game.idle_work(lambda: draft, write_ahead=ahead)
        assert job is not None
        await job.run()
        turn = await game.say(draft).finish()
        assert turn.steps_written_ahead == (2 if ahead else 0)
        lines.append(game.lines[-1])
    assert lines[0].text and (lines[1].speaker, lines[1].text) == (lines[0].speaker, lines[0].text)
    assert lines[1].tokens == lines[0].tokens and lines[1].directions == lines[0].directions


async def test_the_screen_reads_the_line_ahead_when_the_player_pauses_typing(lighthouse: LoadedPack) -> None:
    from tests.test_ui import SIZE, play_screen, wait_for
    from tests.test_ui import lighthouse as app_for

    session = FakeSession(n_ctx=2048)
    app = app_for(session)
    async with app.run_test(size=SIZE) as pilot:
        screen = await play_screen(app)
        await wait_for(lambda: screen.idle_job is None)  # the opening, read ahead
        said = session.tokenize("Ash (20:02): Is the kettle on?\n")
        assert not _holds(session.kv_tokens, said)
        await pilot.press(*"Is the kettle on?")
        await wait_for(lambda: _holds(session.kv_tokens, said))  # read while the player pauses
        assert screen.game.lines[-1].kind != "player"  # nothing was said: only read
        await pilot.press("enter")
        await wait_for(lambda: not screen.busy and screen.game.lines[-1].kind == "model")
        assert screen.game.lines[-2].text == "Is the kettle on?"


def _holds(tokens: tuple[int, ...], part: list[int]) -> bool:
    return any(list(tokens[at : at + len(part)]) == part for at in range(len(tokens) - len(part) + 1))


def test_a_pinned_block_made_while_the_pack_changed_under_it_is_not_kept() -> None:
    """A pinned block made in a thread (ModelSession.tokens_ahead, on a server) while the loop
    changes the pack, the persona or the lore may be made from the old texts: it serves that run
    only, and the game makes the next one afresh."""

    class ChangedMidway(FakeSession):
        game: Game | None = None
        preambles = 0  # pinned blocks tokenized

        def tokenize(self, text: str, *, special: bool = False, add_bos: bool = False) -> list[int]:
            if "Story:" in text:
                self.preambles += 1
                if self.game is not None:  # as the loop takes in a changed pack mid-way (hot reload)
                    game, self.game = self.game, None
                    game.apply_pack(load_pack(LIGHTHOUSE))
            return super().tokenize(text, special=special, add_bos=add_bos)

    session = ChangedMidway()
    game = Game(session, load_pack(LIGHTHOUSE), "storm")
    game.apply_pack(load_pack(LIGHTHOUSE))  # a first reload: the next prompt makes the block
    session.game = game
    game.prompt([])  # made while a second reload comes in
    made = session.preambles
    game.prompt([])
    assert session.preambles > made  # the block made mid-change was not kept: made again
    made = session.preambles
    game.prompt([])
    assert session.preambles == made  # and that one is kept


async def test_with_room_aside_the_summary_waits_behind_the_turn_read_and_written_ahead(
    small_session: LlamaSession, lighthouse: LoadedPack
) -> None:
    """With room aside, idle time reads the typed line ahead and writes its turn's first steps,
    then writes the summary beside them: a line sent during the summary starts from what was
    written ahead, nothing read again; a summary written waits, and joins the prompt at the next
    idle time, put in place without reading the window again."""
    from simularity_tui.engine.kv_cache import REFRESH_TOKENS  # llama.cpp loads here, not at collection

    await small_session.reset()
    game = await game_with_a_summary_due(small_session, lighthouse)
    draft = "Is the kettle on?"
    for send_during_the_summary in (True, False):
        job = game.idle_work(lambda: draft)
        assert job is not None and not job.summarising  # with room aside, reading ahead comes first
        began = asyncio.Event()
        writing = asyncio.ensure_future(job.run(began.set))
        await began.wait()  # the summary begins: the turn was read and written ahead before it
        assert game.written_ahead.finished(game.read_ahead_prompt(draft), small_session.kv_tokens) and job.summarising
        held = small_session.kv_tokens
        if send_during_the_summary:
            await asyncio.sleep(0.05)  # the summary is being written, aside
            assert not job.summary_in_the_way
            job.cancel()
        await writing
        assert small_session.kv_tokens == held  # the summary, aside, left the turn to come as it was
        assert job.written != send_during_the_summary and game.summary is None  # the prompt is as read
        assert (game.summary_waiting is None) == send_during_the_summary
        turn = await game.say(draft).finish()
        assert turn.steps_written_ahead == 2 and turn.evaluated_tokens == 0, turn.evaluated_tokens
    waiting = game.summary_waiting
    assert waiting is not None
    typed, old_pinned = unread_by(small_session, game, draft), game.prompt([]).pinned  # the new line, its opening
    window = len(small_session.kv_tokens) - len(old_pinned)
    job = game.idle_work(lambda: draft)
    assert job is not None
    assert await job.run() and game.summary == waiting.text  # kept as the next idle time begins
    pinned = game.prompt([]).pinned
    assert small_session.kv_tokens[: len(pinned)] == pinned  # in place, the window not read again:
    tail = len(pinned) - common_prefix(old_pinned, pinned)  # its own tokens, a few refreshed, the typed line:
    assert job.read_tokens <= tail + REFRESH_TOKENS + typed, (job.read_tokens, tail, typed)
    assert window > 2 * REFRESH_TOKENS  # (reading the window again would read more)


def unread_by(session: LlamaSession, game: Game, draft: str) -> int:
    """What the model lacks of the prompt for the line `draft`, from the engine's window on (the
    prompt holds the lines it evicted too, until a summary covers them)."""
    ahead = game.read_ahead_prompt(draft)
    return unread(session.kv_tokens, Prompt(ahead.pinned, ahead.turns[game.window_start - game.covered :]))


async def test_with_room_aside_the_summary_comes_last_and_waits_for_the_lines_it_covers(
    lighthouse: LoadedPack,
) -> None:
    """The order with room aside: the typed line read ahead, its turn's stage line and head, then
    the summary beside them. The summary waits for the next idle time, and is dropped there if a
    line it covers changed meanwhile (then the next one is asked for again)."""
    session = FakeSession(n_ctx=1024, aside=256, summaries=["Ash came in from the storm."])
    game = await game_with_a_summary_due(session, lighthouse)
    asked = len(session.requests)
    job = game.idle_work(lambda: "Is the kettle on?")
    assert job is not None and game.summary_due() is not None and not job.summarising  # due, but last
    assert not await job.run() and job.written and game.summary is None  # written, not in the prompt yet
    steps = [(params.max_tokens, params.aside, params.grammar is not None) for _p, params in session.requests[asked:]]
    assert steps[0] == (0, False, False) and all(not aside for _n, aside, _g in steps[:-1])  # read, written ahead
    assert steps[3] == (0, False, False)  # the line's text prompt read to its end: drawn from at once
    assert len(steps) == 5 and steps[-1][1:] == (True, True)  # then the summary, aside
    waiting = game.summary_waiting
    assert waiting is not None and game.summary_due() is None  # asked for once
    covered = game.tree.path()[waiting.request.covers - 1].id
    game.edit("Ash shakes the rain off.", covered)  # a line it stands for changes
    job = game.idle_work(lambda: "Is the kettle on?")
    assert job is not None and game.summary_due() is not None  # due again
    await job.run()
    assert game.summary is None and game.summary_waiting is not None  # the old one dropped, a new one written
    assert game.summary_waiting.text != waiting.text
    job = game.idle_work()
    assert job is not None and await job.run() and game.summary == game.tree.summary_at()[1]  # type: ignore[index]
    for number in range(40):  # the next summary written, waiting: the player corrects the memory first
        await game.say(f"More about the sea, part {number}.").finish()
        job = game.idle_work(lambda: "Is the kettle on?")
        if job is not None:
            await job.run()
        if game.summary_waiting is not None:
            break
    assert game.summary_waiting is not None
    game.set_memory(summary="The player's own account.")
    job = game.idle_work()
    if job is not None:
        await job.run()
    assert game.summary == "The player's own account."  # theirs stands over the one written before it
