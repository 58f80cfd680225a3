"""The lore engine: one test per rule, each on a small pack of its own.

Most go through `simularity prompt --say` (its `prompt_output`, on the scripted session): what the
player says decides which entries come in, and no model text does. Rules that need several lines
(timers, a window that let a note go) drive a game line by line, or scan a story built here.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simularity_tui.bench.lore import measure_lore
from simularity_tui.cli import main
from simularity_tui.cli_prompt import prompt_output
from simularity_tui.scenario import LoadedPack, bundled_packs_dir, load_pack
from simularity_tui.scenario.lore_index import lore_index
from simularity_tui.scenario.lore_keys import Haystack
from simularity_tui.scenario.schema import Pack
from simularity_tui.story import Game, Line
from simularity_tui.story.lore import LoreScan, scan_lore
from tests.fake_model import FakeSession

BASE = """\
id = "lore-test"
name = "Lore test"

[prompt]
scenario = "A room."

[characters.me]
name = "Me"
player = true

[characters.bo]
name = "Bo"

[scenes.room]
name = "Room"

[episodes.start]
name = "Start"
scene = "room"
characters = [{ id = "bo" }]
"""


def lore_pack(root: Path, lore: str, scan: str = "") -> LoadedPack:
    root.mkdir(parents=True, exist_ok=True)
    (root / "scenario.toml").write_text(BASE + (f"\n[lore_scan]\n{scan}\n" if scan else "") + "\n" + lore)
    return load_pack(root)


def after_saying(session: FakeSession, loaded: LoadedPack, say: str) -> dict:
    """The lore of the next line after the player says `say`, as `simularity prompt --json` shows it."""
    output, _warnings = prompt_output(session, loaded, say=say, as_json=True)
    return json.loads(output)["lore"]


def fired(lore: dict) -> list[str]:
    return [firing["entry"] for firing in lore["fired"]]


def dropped(lore: dict) -> dict[str, str]:
    return {drop["entry"]: drop["why"] for drop in lore["dropped"]}


async def say(game: Game, text: str) -> tuple[str, ...]:
    """The player says `text`; the notes the reply brought in."""
    await game.say(text).finish()
    return game.lines[-1].notes


def story(*texts: str, notes: dict[int, tuple[str, ...]] | None = None) -> list[Line]:
    """Lines by the player, numbered from 1; `notes`: the lore each line brought in."""
    notes = notes or {}
    return [
        Line(speaker="me", text=text, clock="20:00", kind="player", tokens=(), notes=notes.get(number, ()))
        for number, text in enumerate(texts, start=1)
    ]


def scan(
    loaded: LoadedPack, lines: list[Line], *, window_start: int = 0, budget: int = 1000, seed: str = "s"
) -> LoreScan:
    return scan_lore(
        loaded.pack,
        lines,
        window_start=window_start,
        count_tokens=lambda text: len(text.split()),
        budget=budget,
        seed=seed,
    )


QUIET = ["Bo nods.", "Bo waits.", "Bo looks away.", "Bo says nothing."] * 8  # replies that hold no key


@pytest.fixture
def quiet(fake_session: FakeSession) -> FakeSession:
    fake_session.replies.extend(QUIET)
    return fake_session


# -- keys -----------------------------------------------------------------------------------------


def test_a_keyword_brings_its_note_in_with_the_line_it_was_found_on(quiet: FakeSession, tmp_path: Path) -> None:
    loaded = lore_pack(tmp_path, '[lore.well]\nkeywords = ["well"]\ncontent = "The well is dry."\n')
    lore = after_saying(quiet, loaded, "Is there a well here?")
    assert lore["fired"] == [{"entry": "well", "via": "key", "key": "well", "source": "line 1", "until": None}]
    output, _ = prompt_output(quiet, loaded, say="Is there a well here?")
    assert "[note: The well is dry.]" in output and "key “well” in line 1" in output
    assert fired(after_saying(quiet, loaded, "Is there water?")) == []


LOGIC = """\
[lore.gate]
keywords = ["gate"]
secondary = ["iron", "rust"]
logic = "{logic}"
content = "The gate has not opened in years."
"""


@pytest.mark.parametrize(
    ("logic", "text", "comes_in"),
    [
        ("and_any", "The iron gate.", True),
        ("and_any", "The gate.", False),
        ("and_all", "The iron gate, red with rust.", True),
        ("and_all", "The iron gate.", False),
        ("not_any", "The gate.", True),
        ("not_any", "The iron gate.", False),
        ("not_all", "The iron gate.", True),
        ("not_all", "The iron gate, red with rust.", False),
        ("not_all", "The iron, red with rust.", False),  # no primary key: secondary keys alone never do
    ],
)
def test_each_secondary_logic(quiet: FakeSession, tmp_path: Path, logic: str, text: str, comes_in: bool) -> None:
    loaded = lore_pack(tmp_path, LOGIC.format(logic=logic))
    assert fired(after_saying(quiet, loaded, text)) == (["gate"] if comes_in else [])


def test_a_regular_expression_key_with_its_flags(quiet: FakeSession, tmp_path: Path) -> None:
    loaded = lore_pack(
        tmp_path,
        '[lore.drake]\nkeywords = ["/dra(gon|ke)s?\\\\b/i"]\ncontent = "Drakes nest on the cliffs."\n\n'
        '[lore.exact]\nkeywords = ["/^Me: Hush/"]\ncontent = "Hush is a name."\n',
    )
    lore = after_saying(quiet, loaded, "Hush, I saw DRAKES!")
    assert fired(lore) == ["drake", "exact"]
    assert lore["fired"][0]["key"] == "/dra(gon|ke)s?\\b/i"
    assert fired(after_saying(quiet, loaded, "The dragonfly, hush.")) == []  # \b; `^` and case as written


def test_the_players_name_in_a_regular_expression_key_is_text_not_a_pattern(quiet: FakeSession, tmp_path: Path) -> None:
    loaded = lore_pack(tmp_path, '[lore.wave]\nkeywords = ["/{{user}} waves/"]\ncontent = "Waving is rude here."\n')
    named = loaded.pack.model_copy(update={"characters": {**loaded.pack.characters, "me": loaded.pack.characters["me"]
                                   .model_copy(update={"name": "A.J. (x)"})}})  # fmt: skip
    renamed = replace(loaded, pack=named)
    assert fired(after_saying(quiet, renamed, "A.J. (x) waves at Bo.")) == ["wave"]
    assert fired(after_saying(quiet, renamed, "AxJx x waves at Bo.")) == []  # "." and "(x)" as written
    # A plain key that is only the player's name stays plain, whatever the name looks like.
    plain = lore_pack(tmp_path / "plain", '[lore.me]\nkeywords = ["{{user}}"]\ncontent = "That is you."\n')
    slashed = plain.pack.characters["me"].model_copy(update={"name": "/(a+)+$/"})
    odd = replace(plain, pack=plain.pack.model_copy(update={"characters": {**plain.pack.characters, "me": slashed}}))
    assert fired(after_saying(quiet, odd, "I am /(a+)+$/ indeed.")) == ["me"]
    assert lore_index(odd.pack).entries["me"].primary[0].pattern is None


def test_case_sensitivity_per_entry_and_per_pack(quiet: FakeSession, tmp_path: Path) -> None:
    lore = '[lore.rose]\nkeywords = ["Rose"]\ncontent = "Rose is the cook."\ncase_sensitive = true\n\n'
    lore += '[lore.tide]\nkeywords = ["Tide"]\ncontent = "The tide turns at nine."\n'
    loaded = lore_pack(tmp_path / "a", lore)
    assert fired(after_saying(quiet, loaded, "a rose and the tide")) == ["tide"]
    assert fired(after_saying(quiet, loaded, "Rose and the tide")) == ["rose", "tide"]
    strict = lore_pack(tmp_path / "b", lore, "case_sensitive = true")
    assert fired(after_saying(quiet, strict, "Rose and the tide")) == ["rose"]


def test_whole_words_per_entry_and_per_pack(quiet: FakeSession, tmp_path: Path) -> None:
    lore = '[lore.king]\nkeywords = ["king"]\ncontent = "The king is away."\n\n'
    lore += '[lore.ash]\nkeywords = ["ash"]\ncontent = "Ash falls."\nwhole_words = false\n'
    loaded = lore_pack(tmp_path / "a", lore)
    assert fired(after_saying(quiet, loaded, "Liking the washing?")) == ["ash"]
    assert fired(after_saying(quiet, loaded, "The king!")) == ["king"]
    loose = lore_pack(tmp_path / "b", lore, "whole_words = false")
    assert fired(after_saying(quiet, loose, "Liking the washing?")) == ["king", "ash"]


async def test_scan_depth_counts_lines_back_per_entry_or_per_pack(quiet: FakeSession, tmp_path: Path) -> None:
    lore = '[lore.near]\nkeywords = ["lantern"]\ncontent = "Near."\nscan_depth = 1\n\n'
    lore += '[lore.far]\nkeywords = ["lantern"]\ncontent = "Far."\n'
    loaded = lore_pack(tmp_path, lore, "depth = 3")
    assert await say(Game(quiet, loaded, "start"), "Where is the lantern?") == ("near", "far")
    lines = story("Where is the lantern?", "Bo nods.")
    assert fired_ids(scan(loaded, lines)) == ["far"]  # 2 lines back: past near's depth of 1
    assert fired_ids(scan(loaded, [*lines, *story("Bo waits.", "Bo waits.")])) == []  # 4 back: past 3


def fired_ids(result: LoreScan) -> list[str]:
    return [firing.entry for firing in result.fired]


def test_speakers_names_are_scanned_unless_the_pack_says_not(quiet: FakeSession, tmp_path: Path) -> None:
    lore = '[lore.bo]\nkeywords = ["Bo"]\ncontent = "Bo is the ferryman."\n'
    assert fired(after_saying(quiet, lore_pack(tmp_path / "a", lore), "Hello.")) == []  # the player is "Me"
    lines = [Line(speaker="bo", text="Hello.", clock="20:00", kind="model", tokens=())]
    assert fired_ids(scan(lore_pack(tmp_path / "b", lore), lines)) == ["bo"]
    assert fired_ids(scan(lore_pack(tmp_path / "c", lore, "include_names = false"), lines)) == []


# -- recursion ------------------------------------------------------------------------------------

CHAIN = """\
[lore.a]
keywords = ["apple"]
content = "The apple came from the orchard."

[lore.b]
keywords = ["orchard"]
content = "The orchard belongs to the miller."

[lore.c]
keywords = ["miller"]
content = "The miller keeps bees."

[lore.d]
keywords = ["bees"]
content = "Bees sting."
"""


def test_recursion_follows_notes_up_to_its_limit(quiet: FakeSession, tmp_path: Path) -> None:
    lore = after_saying(quiet, lore_pack(tmp_path / "a", CHAIN, "recursion = 2"), "An apple?")
    assert fired(lore) == ["a", "b", "c"]  # d is a third step: past the limit
    by_entry = {firing["entry"]: firing for firing in lore["fired"]}
    assert by_entry["b"]["via"] == "recursion" and by_entry["b"]["source"] == "a" and by_entry["b"]["key"] == "orchard"
    assert by_entry["c"]["source"] == "b"
    assert fired(after_saying(quiet, lore_pack(tmp_path / "b", CHAIN, "recursion = 0"), "An apple?")) == ["a"]
    assert fired(after_saying(quiet, lore_pack(tmp_path / "c", CHAIN, "recursion = 5"), "An apple?")) == list("abcd")


def test_recursion_opts_out_per_entry(quiet: FakeSession, tmp_path: Path) -> None:
    quiet_b = CHAIN.replace('content = "The orchard belongs', 'recurse = false\ncontent = "The orchard belongs')
    assert fired(after_saying(quiet, lore_pack(tmp_path / "a", quiet_b, "recursion = 5"), "An apple?")) == ["a", "b"]
    shy_b = CHAIN.replace('content = "The orchard belongs', 'by_recursion = false\ncontent = "The orchard belongs')
    loaded = lore_pack(tmp_path / "b", shy_b, "recursion = 5")
    assert fired(after_saying(quiet, loaded, "An apple?")) == ["a"]
    assert fired(after_saying(quiet, loaded, "The orchard?")) == ["b", "c", "d"]  # a line still brings it in


def test_a_cycle_in_play_stops(quiet: FakeSession, tmp_path: Path) -> None:
    cycle = '[lore.x]\nkeywords = ["ex"]\ncontent = "See why."\n\n[lore.y]\nkeywords = ["why"]\ncontent = "See ex."\n'
    assert fired(after_saying(quiet, lore_pack(tmp_path, cycle, "recursion = 10"), "ex")) == ["x", "y"]


# -- order and budget -----------------------------------------------------------------------------

BUDGET = """\
[lore.low]
keywords = ["key"]
content = "one two three four"
order = 10

[lore.high]
keywords = ["key"]
content = "one two three four"
order = 300

[lore.mid-first]
keywords = ["key"]
content = "one two three four"
order = 100

[lore.mid-second]
keywords = ["key"]
content = "one two three four"
order = 100
"""


def test_notes_come_in_ascending_order_and_the_budget_drops_the_lowest_first(tmp_path: Path) -> None:
    loaded = lore_pack(tmp_path, BUDGET)
    everything = scan(loaded, story("the key"))
    assert fired_ids(everything) == ["low", "mid-first", "mid-second", "high"]  # higher order: nearer the line
    note = 6  # "[note: one two three four]\n" in words, as `scan` counts
    tight = scan(loaded, story("the key"), budget=3 * note)
    assert fired_ids(tight) == ["mid-first", "mid-second", "high"]
    assert [(d.entry, d.why) for d in tight.dropped] == [("low", "budget")]
    tighter = scan(loaded, story("the key"), budget=2 * note)
    assert fired_ids(tighter) == ["mid-first", "high"]  # of equal order, the one declared later goes first
    assert "of the 12 are taken by notes of higher order" in tighter.dropped[0].detail


async def test_a_note_alone_over_the_budget_comes_in_shortened(quiet: FakeSession, tmp_path: Path) -> None:
    words = " ".join(f"word{number}" for number in range(400))
    lore = f'[lore.long]\nkeywords = ["saga"]\norder = 1000\ncontent = "{words}"\n\n' + BUDGET
    loaded = lore_pack(tmp_path, lore, "budget = 100")
    lore_seen = after_saying(quiet, loaded, "Tell the saga and the key.")
    assert fired(lore_seen) == ["long"] and set(dropped(lore_seen).values()) == {"budget"}
    # The inspector shows the note as the model reads it: shortened, with as many tokens as it takes.
    document = json.loads(prompt_output(quiet, loaded, say="Tell the saga and the key.", as_json=True)[0])
    (shown,) = [part for part in document["parts"] if part["section"] == "open" and part["label"] == "lore note"]
    assert "word0" in shown["text"] and "word399" not in shown["text"] and shown["text"].endswith("…]\n")
    assert shown["tokens"] == len(quiet.tokenize(shown["text"])) <= 100
    game = Game(quiet, loaded, "start")
    assert await say(game, "Tell the saga and the key.") == ("long",)
    read = quiet.detokenize(game.lines[-1].tokens)
    assert "word0" in read and "word399" not in read and "…]" in read


def test_an_entry_brought_in_by_one_the_budget_dropped_leaves_with_it(tmp_path: Path) -> None:
    lore = CHAIN.replace('content = "The apple came', 'order = 1\ncontent = "The apple came') + (
        '\n[lore.big]\nkeywords = ["apple"]\ncontent = "' + "x " * 30 + '"\n'
    )
    loaded = lore_pack(tmp_path, lore, "recursion = 1")
    result = scan(loaded, story("apple"), budget=40)
    assert fired_ids(result) == ["big"]
    assert {d.entry: d.detail for d in result.dropped}["b"] == "brought in by 'a', which did not fit"


# -- probability ----------------------------------------------------------------------------------


def test_probability_is_drawn_once_per_line_from_the_seed(tmp_path: Path) -> None:
    loaded = lore_pack(tmp_path, '[lore.coin]\nkeywords = ["coin"]\ncontent = "Heads."\nprobability = 50\n')
    lines = story(*["a coin"] * 40)
    draws = [bool(scan(loaded, lines[:n], seed="fixed").fired) for n in range(1, 41)]
    assert draws == [bool(scan(loaded, lines[:n], seed="fixed").fired) for n in range(1, 41)]  # reproducible
    assert 10 < sum(draws) < 30  # both ways, about half
    other = [bool(scan(loaded, lines[:n], seed="other").fired) for n in range(1, 41)]
    assert other != draws
    refused = next(scan(loaded, lines[:n], seed="fixed") for n in range(1, 41) if not draws[n - 1])
    assert refused.dropped[0].why == "probability" and "against its probability of 50%" in refused.dropped[0].detail
    never = lore_pack(tmp_path / "never", '[lore.coin]\nkeywords = ["coin"]\ncontent = "x"\nprobability = 0\n')
    assert not any(scan(never, lines[:n]).fired for n in range(1, 41))


async def test_a_regenerated_line_draws_its_lore_as_the_first_did(quiet: FakeSession, tmp_path: Path) -> None:
    coins = "".join(
        f'[lore.coin{n}]\nkeywords = ["coin"]\ncontent = "Side {n}."\nprobability = 50\n\n' for n in range(8)
    )
    game = Game(quiet, lore_pack(tmp_path, coins), "start")
    first = await say(game, "Toss a coin.")
    assert 0 < len(first) < 8
    await game.regenerate().finish()
    assert game.lines[-1].notes == first and game.variants() == (1, 2)


# -- timers ---------------------------------------------------------------------------------------


async def test_delay_keeps_an_entry_out_until_the_story_is_long_enough(quiet: FakeSession, tmp_path: Path) -> None:
    game = Game(quiet, lore_pack(tmp_path, '[lore.owl]\nkeywords = ["owl"]\ncontent = "Owls."\ndelay = 4\n'), "start")
    assert await say(game, "An owl?") == ()  # line 2: the story has 1 line
    assert game.last_lore_scan is not None
    assert [(d.why, d.detail) for d in game.last_lore_scan.dropped] == [
        ("delay", "waits until the story has 4 lines (it has 1)")
    ]
    assert await say(game, "An owl?") == ()  # line 4: 3 lines
    assert await say(game, "An owl?") == ("owl",)  # line 6: 5 lines
    assert [scan.line for scan in game.lore_log] == [2, 4, 6]


STICKY_GROUP = """\
[lore.rain]
keywords = ["rain"]
content = "It rains."
group = "weather"
sticky = 3
scan_depth = 1

[lore.sun]
keywords = ["sun"]
content = "The sun is out."
group = "weather"
scan_depth = 1
"""


async def test_sticky_keeps_an_entry_in_without_its_keys(quiet: FakeSession, tmp_path: Path) -> None:
    game = Game(quiet, lore_pack(tmp_path, STICKY_GROUP), "start")
    assert await say(game, "Rain again.") == ("rain",)  # line 2: sticky until line 5
    assert game.last_lore_scan is not None and game.last_lore_scan.fired[0].until == 5
    assert await say(game, "Any sun?") == ()  # line 4: rain still holds its group, without its key
    assert game.last_lore_scan.kept == ("rain",)
    assert [(d.entry, d.why) for d in game.last_lore_scan.dropped] == [("sun", "group")]
    assert await say(game, "Any sun?") == ("sun",)  # line 6: rain's stay is over
    # A window that let rain's note go brings it back while it is sticky, with its end unchanged.
    lines = story("Rain again.", "Bo nods.", "Bo waits.", notes={2: ("rain",)})
    result = scan(lore_pack(tmp_path / "b", STICKY_GROUP), lines, window_start=2)
    assert [(f.entry, f.via, f.until) for f in result.fired] == [("rain", "sticky", 5)]
    # Brought back on line 4 for its stay, then let go again: the stay still ends on line 5.
    lines = story("Rain again.", "Bo nods.", "Bo waits.", "Bo sits.", "Bo yawns.", notes={2: ("rain",), 4: ("rain",)})
    assert scan(lore_pack(tmp_path / "c", STICKY_GROUP), lines[:4], window_start=4).fired[0].until == 5
    assert scan(lore_pack(tmp_path / "d", STICKY_GROUP), lines, window_start=5).fired == ()


def test_cooldown_keeps_an_entry_out_after_its_stay(tmp_path: Path) -> None:
    loaded = lore_pack(tmp_path, '[lore.bell]\nkeywords = ["bell"]\ncontent = "A bell."\nsticky = 1\ncooldown = 3\n')
    bells = story(*["a bell"] * 12, notes={2: ("bell",)})
    # Its note came in on line 2, and the window has let it go: sticky on line 3, cooling down on
    # lines 4 to 6, in again from line 7.
    outcomes = []
    for number in range(3, 9):
        result = scan(loaded, bells[: number - 1], window_start=2)
        outcomes.append([firing.via for firing in result.fired] + [drop.why for drop in result.dropped])
    assert outcomes == [["sticky"], ["cooldown"], ["cooldown"], ["cooldown"], ["key"], ["key"]]
    assert "it may come in again from line 7" in scan(loaded, bells[:3], window_start=2).dropped[0].detail
    in_view = scan(loaded, bells[:3], window_start=0)  # the note is still read: kept, not dropped
    assert in_view.kept == ("bell",) and not in_view.dropped


async def test_cooldown_over_a_long_game_whose_window_moves(tmp_path: Path) -> None:
    """A small context lets old lines go: the bell's note leaves the window, and its keys said again
    bring it back only once its cooldown is over."""
    lore = '[lore.bell]\nkeywords = ["bell"]\ncontent = "A bell rings for the dead."\ncooldown = 12\nscan_depth = 1\n'
    session = FakeSession(n_ctx=320, replies=["Bo nods."] * 80)
    game = Game(session, lore_pack(tmp_path, lore), "start")
    came_in: list[int] = []
    cooling = 0
    for _line in range(30):
        await game.say("The bell again.").finish()
        result = game.last_lore_scan
        assert result is not None
        if result.fired:
            assert not came_in or result.line > came_in[-1] + 12  # never within a cooldown
            came_in.append(result.line)
        elif result.dropped:
            assert result.dropped[0].why == "cooldown" and came_in[-1] < result.line <= came_in[-1] + 12
            cooling += 1
    assert len(came_in) >= 3 and cooling >= 2 and game.window_start > 0


# -- groups ---------------------------------------------------------------------------------------

GROUP = """\
[lore.red]
keywords = ["door"]
content = "The door is red."
group = "door"
group_weight = {red}

[lore.blue]
keywords = ["door"]
content = "The door is blue."
group = "door"
group_weight = {blue}

[lore.latch]
keywords = ["door"]
content = "The latch is loose."
"""


def test_one_entry_of_a_group_wins_drawn_by_weight(quiet: FakeSession, tmp_path: Path) -> None:
    lore = after_saying(quiet, lore_pack(tmp_path / "a", GROUP.format(red=1, blue=100_000)), "The door.")
    assert fired(lore) == ["blue", "latch"]
    assert lore["dropped"] == [{"entry": "red", "why": "group", "detail": "'blue' won the group 'door'"}]
    loaded = lore_pack(tmp_path / "b", GROUP.format(red=50, blue=50))
    winners = {fired_ids(scan(loaded, story(*["the door"] * n), seed="s"))[0] for n in range(1, 30)}
    assert winners == {"red", "blue"}  # even weights: each wins some lines


async def test_a_group_member_in_the_window_holds_the_group(quiet: FakeSession, tmp_path: Path) -> None:
    game = Game(quiet, lore_pack(tmp_path, GROUP.format(red=1, blue=100_000)), "start")
    assert await say(game, "The door.") == ("blue", "latch")
    assert await say(game, "The door again.") == ()
    assert game.last_lore_scan is not None and game.last_lore_scan.kept == ("blue", "latch")
    assert {d.entry: d.detail for d in game.last_lore_scan.dropped} == {
        "red": "'blue' of the group 'door' is in already"
    }


# -- the window, and what matching costs ----------------------------------------------------------


async def test_an_entry_the_window_holds_is_kept_not_noted_again(quiet: FakeSession, tmp_path: Path) -> None:
    game = Game(quiet, lore_pack(tmp_path, '[lore.well]\nkeywords = ["well"]\ncontent = "The well is dry."\n'), "start")
    assert await say(game, "A well.") == ("well",)
    assert await say(game, "The well again.") == ()
    assert game.last_lore_scan is not None and game.last_lore_scan.kept == ("well",)
    assert game.lines[1].tokens[: len(quiet.tokenize("[note: The well is dry.]\n"))] == tuple(
        quiet.tokenize("[note: The well is dry.]\n")
    )  # the note opens its line: the prompt grew at its end


def test_a_catastrophic_regular_expression_times_out_and_is_reported(tmp_path: Path) -> None:
    lore = '[lore.bad]\nkeywords = ["/(a+)+$/"]\ncontent = "Never."\n\n[lore.good]\nkeywords = ["b"]\ncontent = "B."\n'
    loaded = lore_pack(tmp_path, lore)
    result = scan(loaded, story("a" * 10_000 + "! b"))  # finishes: the key's time runs out
    assert fired_ids(result) == ["good"]
    assert [(d.entry, d.why) for d in result.dropped] == [("bad", "timeout")]
    assert "took too long" in result.dropped[0].detail


def test_a_book_of_many_slow_regular_expressions_costs_a_bounded_time_per_line(tmp_path: Path) -> None:
    """300 keys of 50 ms each would hold a line up for 15 s, and `check` for far longer: the keys of
    one scan (and those of `check`) share a budget: past it, each counts as run out of time at once."""
    lore = "".join(f'[lore.slow{n}]\nkeywords = ["/(a+)+$|z{n}q/"]\ncontent = "Slow {n}."\n\n' for n in range(300))
    loaded = lore_pack(tmp_path, lore + '[lore.good]\nkeywords = ["b"]\ncontent = "B."\n')
    line = story("b " + "a" * 10_000 + "!")
    for _ in range(3):  # a line, its regeneration, the next one
        started = time.monotonic()
        result = scan(loaded, line)
        assert time.monotonic() - started < 5  # a hang is minutes; the budget is a quarter of a second
        assert fired_ids(result) == ["good"] and {d.why for d in result.dropped} == {"timeout"}
        assert len(result.dropped) == 300
    started = time.monotonic()
    assert main(["check", str(tmp_path)]) == 0
    assert time.monotonic() - started < 30


def test_always_on_and_disabled_entries_are_never_notes(tmp_path: Path) -> None:
    lore = '[lore.on]\nkeywords = ["x"]\nalways = true\ncontent = "On."\n\n'
    lore += '[lore.off]\nkeywords = ["x"]\nenabled = false\ncontent = "Off."\n'
    result = scan(lore_pack(tmp_path, lore), story("x"))
    assert result.fired == () and result.kept == () and result.dropped == ()


WORDS = st.text(alphabet="ab_ é-", min_size=1, max_size=6).filter(lambda key: key.strip() == key)


@settings(max_examples=100, deadline=None)
@given(keys=st.lists(WORDS, min_size=1, max_size=6), text=st.text(alphabet="abAB_ é-\n", max_size=40))
def test_the_index_finds_what_trying_every_key_finds(keys: list[str], text: str) -> None:
    """The index only proposes candidates: whatever it leaves out, no key of it could match."""
    for case_sensitive in (False, True):
        for whole_words in (False, True):
            entries = {
                f"k{number}": {
                    "keywords": [key],
                    "content": "x",
                    "case_sensitive": case_sensitive,
                    "whole_words": whole_words,
                }
                for number, key in enumerate(keys)
            }
            pack = Pack.model_validate({**PACK_DATA, "lore": entries})
            index = lore_index(pack)
            haystack = Haystack([("line 1", text)])
            everywhere = {lid for lid, keys_ in index.entries.items() if keys_.primary[0].find(haystack) >= 0}
            assert everywhere <= set(index.candidates(haystack))


PACK_DATA = {
    "id": "p",
    "name": "P",
    "prompt": {},
    "characters": {"me": {"name": "Me", "player": True}, "bo": {"name": "Bo"}},
    "episodes": {"start": {"name": "Start"}},
}


def test_the_index_is_built_once_per_pack(tmp_path: Path) -> None:
    loaded = lore_pack(tmp_path, '[lore.well]\nkeywords = ["well"]\ncontent = "x"\n')
    assert lore_index(loaded.pack) is lore_index(loaded.pack)


def test_the_lore_benchmark_scans_a_book_of_5000_entries() -> None:
    """`simularity bench story` prints this (bench/lore.py); here only that it measures, not how fast."""
    figures = measure_lore(load_pack(bundled_packs_dir() / "lighthouse").pack, lines=20)
    assert figures["entries"] == 5000 and figures["lines"] == 20
    assert figures["ms_per_line"] > 0 and figures["baseline_ms_per_line"] > 0
    assert figures["ratio"] == pytest.approx(figures["ms_per_line"] / figures["baseline_ms_per_line"])


def test_the_rules_hold_through_the_command_on_the_real_tokenizer(
    model_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`simularity prompt PACK --say TEXT --json` itself, on the model's own vocabulary."""
    lore = CHAIN + LOGIC.format(logic="not_any") + GROUP.format(red=1, blue=100_000)
    root = lore_pack(tmp_path, lore, "recursion = 1").root
    argv = ["prompt", str(root), "--say", "An apple by the rusty door, and the gate.", "--json"]
    assert main([*argv, "--model", str(model_path)]) == 0
    document = json.loads(capsys.readouterr().out)
    assert fired(document["lore"]) == ["a", "b", "gate", "blue", "latch"]  # not c: one step of recursion
    assert dropped(document["lore"]) == {"red": "group"}  # "gate" is in: "rusty" is not "rust", in whole words
    notes = [part["text"] for part in document["parts"] if part["label"] == "lore note"]
    assert notes[0] == "[note: The apple came from the orchard.]\n"
