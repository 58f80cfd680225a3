"""Shared rooms (room/): the table's rules on a scripted model, the room's socket with real
connections, and the room's process on the real model.

The whole thing over real `ssh`, several players in tmux, is tests/test_host_rooms.py.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncssh
import pytest

from simularity_tui.host.config import load_host_config
from simularity_tui.host.rooms import check_rooms
from simularity_tui.room.client import RoomConnection
from simularity_tui.room.protocol import Message, decode, encode
from simularity_tui.room.rules import RoomConfig, RoomLaunch
from simularity_tui.room.server import RoomServer
from simularity_tui.room.table import Table
from simularity_tui.scenario import LoadedPack, bundled_packs_dir, load_pack
from simularity_tui.scenario.schema import NARRATOR
from simularity_tui.story import open_game
from simularity_tui.story.saves import save_path
from simularity_tui.toml_source import TomlProblems

from .fake_model import FakeSession, Reply


@pytest.fixture(scope="module")
def cafe() -> LoadedPack:
    return load_pack(bundled_packs_dir() / "starlight-cafe")  # Rin (the pack's player), Juno and Bolt


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Seen:
    """What the table emitted, and to whom (None: everyone)."""

    def __init__(self) -> None:
        self.messages: list[tuple[Message, str | None]] = []

    def __call__(self, message: Message, to: str | None) -> None:
        self.messages.append((message, to))

    def notices(self, player: str | None = None) -> list[str]:
        return [m["text"] for m, to in self.messages if m["t"] == "notice" and to in (player, None)]

    def lines(self) -> list[dict[str, Any]]:
        return [m["line"] for m, _ in self.messages if m["t"] == "line"]


async def table_of(session: FakeSession, cafe: LoadedPack, tmp_path: Path, **rules: Any) -> tuple[Table, Seen, Clock]:
    config = RoomConfig(pack=str(cafe.root), **{"players": ["alice", "bob"], **rules})
    saved = await open_game(session, cafe, save_path(cafe.pack.id, "room"))
    seen, clock = Seen(), Clock()
    table = Table(saved, "tea", config, seen, seats_file=tmp_path / "seats.json", clock=clock)
    return table, seen, clock


async def drain(table: Table) -> None:
    """Let the table's queue run until it has nothing left (the model's lines included)."""
    runner = asyncio.ensure_future(table.run())
    for _ in range(400):
        await asyncio.sleep(0.005)
        if table.queue.empty() and not table.busy:
            break
    runner.cancel()
    with pytest.raises(asyncio.CancelledError):
        await runner


# -- the table's rules (a scripted model) ----------------------------------------------------------


async def test_players_sit_in_their_characters_and_the_model_never_speaks_for_one(
    fake_session: FakeSession, cafe: LoadedPack, tmp_path: Path
) -> None:
    table, seen, _ = await table_of(fake_session, cafe, tmp_path, characters={"bob": "bolt"}, spectators=True)
    assert table.join("alice") == ("player", table.seats["alice"])
    assert table.seats["alice"].character == "rin"  # "any": the pack's own player character first
    assert table.join("bob")[1].character == "bolt"  # type: ignore[union-attr]
    assert table.join("carol") == ("spectator", None)
    assert "bolt" not in table.game.speakers() and "juno" in table.game.speakers()
    fake_session.replies.append(Reply("A latte for you."))  # the first speaker the grammar offers
    table.send_line("bob", "Beep. Coffee is ready.")
    table.send_line("carol", "I only watch.")
    await drain(table)
    lines = seen.lines()
    assert [(line["speaker"], line["player"]) for line in lines] == [("Bolt", "bob"), ("Juno", "")]
    assert table.game.lines[-2].speaker == "bolt" and table.game.lines[-2].kind == "player"
    assert "You are watching: only players hold characters here." in seen.notices("carol")
    grammars = [params.grammar or "" for _prompt, params in fake_session.requests]
    heads = [grammar for grammar in grammars if "speaker ::=" in grammar]
    assert heads and all('speaker ::= "Juno" | "Narrator"' in grammar for grammar in heads)  # Bolt is bob's


async def test_a_players_line_reads_as_their_characters_without_a_stage_line(
    fake_session: FakeSession, cafe: LoadedPack, tmp_path: Path
) -> None:
    table, _seen, _ = await table_of(fake_session, cafe, tmp_path)
    table.join("alice")
    table.join("bob")
    table.send_line("bob", "Welcome back, Rin.")  # bob holds Juno
    await drain(table)
    line = next(line for line in table.game.lines if line.text == "Welcome back, Rin.")
    said = fake_session.detokenize(list(line.tokens))
    assert said.endswith("Juno (20:02): Welcome back, Rin.\n") and "[stage:" not in said


async def test_round_mode_takes_players_in_order_with_a_time_limit(
    fake_session: FakeSession, cafe: LoadedPack, tmp_path: Path
) -> None:
    table, seen, clock = await table_of(fake_session, cafe, tmp_path, mode="round", turn_seconds=30)
    table.join("alice")
    table.join("bob")
    assert table.turn == "alice"
    table.send_line("bob", "Me first!")
    assert "It is alice's turn; yours comes in order." in seen.notices("bob")
    table.send_line("alice", "Hello, Juno.")
    table.send_line("alice", "And one more!")  # one line a turn
    assert "You have spoken this turn; the story answers, then the next player speaks." in seen.notices("alice")
    clock.now += 31
    table.busy = True  # while the story answers, the turn's clock does not run out
    table.tick()
    table.busy = False
    await drain(table)
    assert table.turn == "bob" and "alice's time ran out." not in seen.notices()
    clock.now += 31
    table.tick()
    assert table.turn == "alice" and "bob's time ran out." in seen.notices()
    table.command("alice", "pass")
    assert table.turn == "bob"
    table.left("bob")  # the one whose turn it is goes: the next one present plays
    assert table.turn == "alice"
    assert [line["text"] for line in seen.lines()][0] == "Hello, Juno."


async def test_limits_refuse_long_lines_floods_and_a_backlog_with_a_reason(
    fake_session: FakeSession, cafe: LoadedPack, tmp_path: Path
) -> None:
    table, seen, clock = await table_of(fake_session, cafe, tmp_path, max_line_chars=100, lines_per_minute=5)
    table.join("alice")
    table.send_line("alice", "x" * 10_000)
    assert "That line is 10000 characters; lines here are at most 100." in seen.notices("alice")
    for number in range(100):
        table.send_line("alice", f"line {number}")
    queued = table.queue.qsize()
    assert queued == 3  # the backlog cap: the model has not caught up
    assert "Your lines are still waiting for the story; send more once it has caught up." in seen.notices("alice")
    await drain(table)
    for number in range(10):
        table.send_line("alice", f"more {number}")
    assert table.queue.qsize() == 2  # 5 a minute: 3 sent before, 2 more
    assert "Slow down: at most 5 lines a minute here." in seen.notices("alice")
    clock.now += 61
    table.send_line("alice", "a minute later")
    assert table.queue.qsize() == 3
    assert all(to in ("alice", None) for _, to in seen.messages)  # nothing of alice's refusals went to others


async def test_a_dropped_player_keeps_their_character_for_the_grace_then_the_model_plays_it(
    fake_session: FakeSession, cafe: LoadedPack, tmp_path: Path
) -> None:
    table, seen, clock = await table_of(fake_session, cafe, tmp_path, grace_seconds=60)
    table.join("alice")
    table.join("bob")
    juno = table.seats["bob"].character
    table.left("bob")
    clock.now += 59
    table.tick()
    assert table.join("bob")[1].character == juno  # type: ignore[union-attr]
    table.left("bob")
    clock.now += 61
    table.tick()
    assert "bob" not in table.seats and juno in table.game.speakers()
    assert "bob left; the story plays Juno again." in seen.notices()
    silent, seen_silent, clock_silent = await table_of(
        fake_session, cafe, tmp_path / "silent", grace_seconds=0, on_leave="silent"
    )
    silent.join("alice")
    silent.join("bob")
    silent.left("bob")
    assert "juno" not in silent.game.speakers() and "bob left; Juno stays silent." in seen_silent.notices()
    assert silent.join("bob")[1].character == "juno"  # type: ignore[union-attr]  # kept silent for him


async def test_a_restarted_room_gives_each_player_their_character_back(
    fake_session: FakeSession, cafe: LoadedPack, tmp_path: Path
) -> None:
    table, _seen, _ = await table_of(fake_session, cafe, tmp_path)
    table.join("bob")  # first in: Rin
    table.join("alice")
    again, _seen_again, _ = await table_of(fake_session, cafe, tmp_path)
    assert {p: s.character for p, s in again.seats.items()} == {"bob": "rin", "alice": "juno"}
    assert not any(seat.online for seat in again.seats.values()) and again.game.held == {"rin", "juno"}
    assert again.join("alice")[1].character == "juno"  # type: ignore[union-attr]


async def test_undo_and_regenerate_take_a_majority_or_the_gm(
    fake_session: FakeSession, cafe: LoadedPack, tmp_path: Path
) -> None:
    table, seen, clock = await table_of(fake_session, cafe, tmp_path, players=["alice", "bob", "carol"])
    for player in ("alice", "bob", "carol"):
        table.join(player)
    table.send_line("alice", "Hello.")
    await drain(table)
    count = len(table.game.lines)
    table.command("alice", "undo")
    assert table.queue.empty() and "alice asks to undo the last line (1/2): /undo to agree." in seen.notices()
    table.command("bob", "edit", "Hello there.")  # one vote at a time: bob cannot wipe alice's
    assert "A vote to undo the last line is open; agree to it or let it lapse." in seen.notices("bob")
    clock.now += 61
    table.tick()  # alice's vote lapsed
    table.command("carol", "edit", "Hello, everyone.")
    assert "carol asks to make the last line read “Hello, everyone.” (1/2): /edit Hello, everyone. to agree." in (
        seen.notices()
    )
    table.command("alice", "edit", "Hello, everyone.")
    await drain(table)
    assert table.game.lines[-1].text == "Hello, everyone." and len(table.game.lines) == count
    table.command("bob", "undo")
    table.send_line("alice", "And another thing.")  # the story moves on: bob's vote was for the old last line
    await drain(table)
    table.tick()
    assert "The vote to undo the last line lapsed." in seen.notices()
    table.command("bob", "undo")
    table.command("carol", "undo")
    await drain(table)
    assert len(table.game.lines) == count + 1 and seen.messages[-1][0]["t"] == "story"

    gm, gm_seen, _ = await table_of(
        fake_session, cafe, tmp_path / "gm", players=["alice", "bob"], mode="gm", gm="alice", changes="gm"
    )
    assert gm.join("alice") == ("gm", None)
    gm.join("bob")
    assert gm.seats["bob"].character == "rin"  # the gm holds no character
    gm.command("bob", "undo")
    assert "Only the gm undoes, regenerates or edits lines here." in gm_seen.notices("bob")
    gm.send_line("alice", "The lights flicker.")
    await drain(gm)
    told = gm.game.lines[-2]
    assert (told.speaker, told.kind, told.text) == (NARRATOR, "narration", "The lights flicker.")
    gm.command("alice", "kick", "bob")
    assert "bob" not in gm.seats and gm.role_of("bob") is None
    assert ({"t": "bye", "text": "alice (the gm) asked you to leave the room."}, "bob") in gm_seen.messages


def test_room_rules_are_checked_with_the_config() -> None:
    with pytest.raises(ValueError, match="not in this room's `players`"):
        RoomConfig(pack="p", players=["alice"], characters={"bob": "rin"})
    with pytest.raises(ValueError, match="the same character"):
        RoomConfig(pack="p", players=["alice", "bob"], characters={"alice": "rin", "bob": "rin"})
    with pytest.raises(ValueError, match='mode = "gm" needs `gm`'):
        RoomConfig(pack="p", players=["alice"], mode="gm")


# -- the socket (real connections, a scripted model) -----------------------------------------------


@pytest.fixture
async def room(fake_session: FakeSession, cafe: LoadedPack, tmp_path: Path) -> AsyncIterator[RoomServer]:
    """A room's server on a real Unix socket (the table's queue running), on the scripted model."""
    config = RoomConfig(pack=str(cafe.root), players=["alice", "bob"], spectators=True, lines_per_minute=120)
    socket = tmp_path / "room.sock"
    launch = RoomLaunch(
        name="tea", config=config, pack_dir=str(cafe.root), socket=str(socket), save="room",
        keys={"key-a": "alice", "key-b": "bob", "key-c": "carol"},
    )  # fmt: skip
    server = RoomServer(launch)
    saved = await open_game(fake_session, cafe, save_path(cafe.pack.id, "room"))
    server.table = Table(saved, "tea", config, server.emit)
    listening = await asyncio.start_unix_server(server.connection, path=str(socket))
    runner = asyncio.ensure_future(server.table.run())
    yield server
    runner.cancel()
    listening.close()
    for client in list(server.clients):
        client.drop()


async def until(connection: RoomConnection, predicate: Any, timeout: float = 10.0) -> list[Message]:
    """Messages read until one meets `predicate` (all of them, that one last)."""
    seen: list[Message] = []
    async with asyncio.timeout(timeout):
        while True:
            message = await connection.receive()
            assert message is not None, f"the room closed the connection after {seen}"
            seen.append(message)
            if predicate(message):
                return seen


async def test_every_client_reads_the_same_lines_in_the_same_order(room: RoomServer, tmp_path: Path) -> None:
    socket = room.launch.socket
    alice, bob, carol = [await RoomConnection.open(socket, key) for key in ("key-a", "key-b", "key-c")]
    for connection in (alice, bob, carol):
        welcome = (await until(connection, lambda m: m["t"] == "welcome"))[-1]
        assert [line["text"] for line in welcome["lines"]][0].startswith("The door sighs open.")
    await alice.send({"t": "say", "text": "One."})
    await bob.send({"t": "say", "text": "Two."})
    await alice.send({"t": "say", "text": "Three \x1b]52;c;aGk=\x07 \x9b31m."})  # an OSC 52 and a C1 CSI
    orders = []
    for connection in (alice, bob, carol):
        lines: list[str] = []
        while len(lines) < 6:  # three players' lines, each with the model's reply
            messages = await until(connection, lambda m: m["t"] == "line")
            lines.append(messages[-1]["line"]["text"])
        orders.append(lines)
    assert orders[0] == orders[1] == orders[2]
    assert {"One.", "Two.", "Three ]52;c;aGk= 31m."} <= set(orders[0])  # kept as text, without its controls
    late = await RoomConnection.open(socket, "key-c")  # a late joiner gets the whole story
    welcome = (await until(late, lambda m: m["t"] == "welcome"))[-1]
    assert [line["text"] for line in welcome["lines"]][-6:] == orders[0]
    stranger = await RoomConnection.open(socket, "not-a-key")
    assert (await stranger.receive()) == {"t": "bye", "text": "This key opens no seat in the room."}


async def test_a_client_that_never_reads_is_dropped_and_never_stalls_the_room(
    room: RoomServer, fake_session: FakeSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("simularity_tui.room.server.MAX_OUTBOX", 256 * 1024)
    socket = room.launch.socket
    stalled_reader, stalled_writer = await asyncio.open_unix_connection(socket)
    stalled_writer.write(encode({"t": "hello", "key": "key-b"}))  # bob's terminal: it never reads again
    await stalled_writer.drain()
    alice = await RoomConnection.open(socket, "key-a")
    await until(alice, lambda m: m["t"] == "welcome")
    fake_session.replies.extend(["A" * 8000] * 200)  # long lines, many of them: far past what a socket buffers
    started = time.monotonic()
    for _line in range(60):
        await alice.send({"t": "command", "name": "continue", "arg": ""})
        await until(alice, lambda m: m["t"] in ("line", "notice"))
    assert time.monotonic() - started < 30
    assert not any(client.player == "bob" for client in room.clients)  # dropped, not waited for
    stalled_writer.close()
    del stalled_reader


def test_a_message_is_one_json_line_of_ascii() -> None:
    raw = encode({"t": "piece", "text": "Mira \x1b[2J\u202e says ✓"})
    assert raw.endswith(b"\n") and raw.count(b"\n") == 1 and all(byte < 0x80 and byte != 0x1B for byte in raw)
    assert decode(raw)["text"] == "Mira \x1b[2J\u202e says ✓"


async def test_a_flood_of_long_lines_and_escapes_gets_clear_refusals_and_the_room_goes_on(room: RoomServer) -> None:
    socket = room.launch.socket
    alice = await RoomConnection.open(socket, "key-a")
    bob = await RoomConnection.open(socket, "key-b")
    await until(alice, lambda m: m["t"] == "welcome")
    await until(bob, lambda m: m["t"] == "welcome")
    hostile = [
        "x" * 10_000,  # 10 kB
        "\x1b]0;owned\x07\x1b[2J\x1b[31mred",  # a title, a clear screen, a colour
        *(f"flood {number}" for number in range(100)),
    ]
    for text in hostile:  # as fast as the socket takes them
        await bob.send({"t": "say", "text": text})
    await alice.send({"t": "say", "text": "Is anyone there?"})
    seen = await until(alice, lambda m: m["t"] == "line" and m["line"]["text"] == "Is anyone there?", timeout=30)
    seen += await until(alice, lambda m: m["t"] == "line")  # and the story answers her
    assert all("\x1b" not in json.dumps(message, ensure_ascii=False) for message in seen)
    assert "]0;owned [2J [31mred" in [m["line"]["text"] for m in seen if m["t"] == "line"]  # text, harmless
    told = [m["text"] for m in await until(bob, lambda m: m["t"] == "notice" and "waiting" in m["text"])]
    told += [m["text"] for m in await until(bob, lambda m: m["t"] == "notice")]
    assert "That line is 10000 characters; lines here are at most 500." in told
    assert "Your lines are still waiting for the story; send more once it has caught up." in told
    assert all(len(line.text) <= 500 for line in room.table.game.lines)  # type: ignore[union-attr]


def test_a_rooms_mistakes_are_told_with_the_line_of_host_toml(tmp_path: Path) -> None:
    key = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode().strip()
    config = tmp_path / "host.toml"
    config.write_text(
        "[players.alice]\n"
        f'keys = ["{key}"]\n'
        "\n"
        "[rooms.tea]\n"
        f'pack = "{bundled_packs_dir() / "starlight-cafe"}"\n'
        'players = ["alice"]\n'
        'episode = "dawn"\n'  # line 7: the pack has no such episode
        'characters = { alice = "zed" }\n'  # line 8: nor such a character
    )
    loaded = load_host_config(config)
    with pytest.raises(TomlProblems) as raised:
        check_rooms(loaded)
    problems = [str(problem) for problem in raised.value.problems]
    assert problems[0].startswith(f"{config}:7:") and "no episode 'dawn'" in problems[0]
    assert problems[1].startswith(f"{config}:8:") and "no character 'zed'; the pack has rin, juno, bolt" in problems[1]
    config.write_text(config.read_text().replace('players = ["alice"]', 'players = ["alice", "mallory"]'))
    with pytest.raises(TomlProblems, match="mallory have no \\[players.NAME\\] table"):
        load_host_config(config)
