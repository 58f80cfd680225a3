"""Rooms on `simularity host`: three players and a spectator in one story, over the real OpenSSH
client in tmux, on the real model; the host restarted between a `round` and a `free` part."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Iterator
from pathlib import Path

import asyncssh
import pytest
import tomli_w

from simularity_tui.scenario import bundled_packs_dir

from .conftest import TEST_THREADS
from .test_host import Host, Keys, Pane, needs_ssh, ssh_argv
from .tmux_pane import TmuxPane

pytestmark = [needs_ssh, pytest.mark.ssh, pytest.mark.model]

PLAYERS = ("alice", "bob", "carol")
SCREEN = (100, 60)
# The players' screens draw no pictures: the transcript gets the screen, and every line shows.
PLAYER_SETTINGS = {"ui": {"graphics": "none"}}


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    directory = tmp_path_factory.mktemp("keys")
    for name in (*PLAYERS, "dave"):
        key = asyncssh.generate_private_key("ssh-ed25519", comment=f"{name}@test")
        key.write_private_key(directory / name)
        (directory / name).chmod(0o600)
        key.write_public_key(directory / f"{name}.pub")
    return Keys(directory)


def cafe_with_a_regular(root: Path) -> Path:
    """The Starlight Café with a fourth character on stage (Mo), whom no player holds: the model may
    give Mo and the narrator lines, and never the three the players hold."""
    pack = root / "cafe"
    shutil.copytree(bundled_packs_dir() / "starlight-cafe", pack)
    scenario = pack / "scenario.toml"
    text = scenario.read_text()
    opening = re.search(r"^\[episodes\.(\w+)\]", text, re.MULTILINE)
    assert opening is not None
    scenario.write_text(
        text
        + '\n[characters.mo]\nname = "Mo"\ncolor = "#c3e88d"\n'
        + 'description = "A night-shift nurse, a regular, who drinks her tea in silence."\n'
        + f'\n[[episodes.{opening.group(1)}.characters]]\nid = "mo"\n'
    )
    return pack


def room_host(root: Path, keys: Keys, pack: Path, mode: str) -> Host:
    players = {name: {"keys": [keys.public(name)]} for name in (*PLAYERS, "dave")}
    room = {
        "pack": str(pack), "players": list(PLAYERS), "characters": {"alice": "rin", "bob": "juno", "carol": "bolt"},
        "mode": mode, "spectators": True, "turn_seconds": 300, "grace_seconds": 300, "lines_per_minute": 30,
    }  # fmt: skip
    # The model tests' threads (tests/conftest.py): one beside another xdist worker, where two only
    # took turns on the cores. The room's model is all that runs here; what is checked is who says what.
    config = {"n_ctx": 1024, "threads": TEST_THREADS, "max_sessions": 4, "players": players, "rooms": {"tea": room}}
    room_settings = root / "host-data" / "rooms" / "tea" / "config" / "settings.toml"
    room_settings.parent.mkdir(parents=True, exist_ok=True)
    room_settings.write_text(tomli_w.dumps({"game": {"max_reply_tokens": 12}}))
    return Host(root, config, PLAYER_SETTINGS)


@pytest.fixture
def screens(tmp_path: Path) -> Iterator[dict[str, Pane]]:
    opened = {name: Pane(tmp_path, name, size=SCREEN) for name in (*PLAYERS, "dave")}
    yield opened
    for pane in opened.values():
        pane.close()


def join(host: Host, keys: Keys, pane: Pane, name: str) -> None:
    """Players join with `ssh -t HOST room tea`; dave, who watches, through his library."""
    if name == "dave":
        pane.start(ssh_argv(host, keys, name, name, "-tt"))
        pane.wait_for("⌂ tea: Starlight Café", timeout=60)
        pane.send("Enter")
        pane.wait_for("You are watching.", timeout=60)
        return
    pane.start([*ssh_argv(host, keys, name, name, "-tt"), "room", "tea"])
    pane.wait_for("Rin: alice", timeout=60)


def transcript(screen: str) -> list[str]:
    """The story's lines on a screen: the rows between the header and the seats line."""
    rows = screen.splitlines()
    end = next(index for index, row in enumerate(rows) if "Rin: alice" in row)
    return [row.strip() for row in rows[1:end] if row.strip()]


def saved_lines(host: Host) -> list[tuple[str, str, str]]:
    save = next((host.data_dir / "rooms" / "tea" / "data" / "saves").glob("*/room.toml"))
    nodes = tomllib.loads(save.read_text(encoding="utf-8"))["nodes"]
    return [(node["speaker"], node["kind"], node["text"]) for node in nodes]


def same_story_everywhere(screens: dict[str, Pane], host: Host, expected_lines: int) -> list[str]:
    """Wait until the save holds `expected_lines` lines and every screen shows the same transcript,
    ending with the save's last lines; returns it."""
    deadline_screens: list[str] = []
    for _ in range(600):
        lines = saved_lines(host)
        if len(lines) >= expected_lines:
            shown = [transcript(pane.text()) for pane in screens.values()]
            last = lines[-1][2][:40]
            if all(view == shown[0] for view in shown) and last in " ".join(shown[0]):
                return shown[0]
            deadline_screens = [" | ".join(view[-4:]) for view in shown]
        subprocess.run(["sleep", "0.1"])
    screens_now = "\n\n".join(f"{name}:\n{pane.text()}" for name, pane in screens.items())
    raise AssertionError(
        f"screens differ or the story did not reach {expected_lines} lines ({len(lines)}): {deadline_screens}\n"
        + screens_now
    )


def room_log(host: Host) -> str:
    return (host.data_dir / "rooms" / "tea" / "cache" / "simularity.log").read_text()


def rejoined(host: Host, logged_before: int) -> None:
    """Wait until the room's process has started again (its log past `logged_before` characters)
    and all four have joined it."""
    since = ""
    for _ in range(600):
        since = room_log(host)[logged_before:]
        restarted = since[since.find("resuming room.kv") :] if "resuming room.kv" in since else ""
        if all(f"room tea: {name} joined" in restarted for name in (*PLAYERS, "dave")):
            return
        subprocess.run(["sleep", "0.1"])
    raise AssertionError(f"not everyone joined the restarted room:\n{since}")


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A directory with a short path: a room's Unix socket path must fit in 107 bytes, and pytest's
    own (under a worker's directory too) leaves too little of them."""
    directory = Path(tempfile.mkdtemp(prefix="rooms-", dir="/tmp"))
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


def test_three_players_and_a_spectator_share_one_story_over_ssh(
    tmp_path: Path, short_dir: Path, keys: Keys, screens: dict[str, Pane]
) -> None:
    pack = cafe_with_a_regular(tmp_path)
    host = room_host(short_dir / "round", keys, pack, "round")
    try:
        for name in (*PLAYERS, "dave"):  # alice first: the round starts with her
            join(host, keys, screens[name], name)
        opening = len(saved_lines(host))
        # -- round: 10 lines, each player in turn, each answered by the story --------------------
        sent: list[str] = []
        for number in range(10):
            player = PLAYERS[number % 3]
            screens[player].wait_for(f"turn: {player}", timeout=60)
            line = f"Round line {number} from {player}."
            if number == 4:  # bob's second line: his terminal is killed while the story answers it
                screens["bob"].send(line, "Enter")
                screens["alice"].wait_for(f"Juno (bob): {line}")
                os.kill(screens["bob"].ssh_pid(), signal.SIGKILL)
                screens["bob"].close()
                screens["bob"] = Pane(tmp_path, "bob-again", size=SCREEN)
                join(host, keys, screens["bob"], "bob")
            else:
                screens[player].send(line, "Enter")
            sent.append(line)
            same_story_everywhere(screens, host, opening + 2 * (number + 1))
        lines = saved_lines(host)
        said = [(speaker, text) for speaker, kind, text in lines if kind == "player"]
        assert [text for _speaker, text in said] == sent  # bob's killed line included: nothing lost
        assert {speaker for speaker, text in said if "from bob" in text} == {"juno"}  # the same character after
        model = [speaker for speaker, kind, _text in lines[opening:] if kind == "model"]
        assert len(model) == 10 and set(model) <= {"mo", "narrator"}  # never a held character
        screens["bob"].wait_for("Rin: alice · Juno: bob · Bolt: carol")
    finally:
        host.stop()  # the room saves, KV state and all
    kv = next((host.data_dir / "rooms" / "tea" / "data" / "saves").glob("*/room.kv"))
    assert kv.stat().st_size > 0
    for pane in screens.values():
        pane.close()

    # -- free: the host restarted, the room resumed; 10 lines as they come --------------------------
    again = room_host(short_dir / "free", keys, pack, "free")
    shutil.copytree(host.data_dir / "rooms", again.data_dir / "rooms", dirs_exist_ok=True)
    try:
        for name in (*PLAYERS, "dave"):
            screens[name] = Pane(tmp_path, f"{name}-free", size=SCREEN)
            join(again, keys, screens[name], name)
        before = len(saved_lines(again))
        assert before == len(lines)
        for first in range(0, 10, 3):  # the three at once, as they come; then the next three
            batch = range(first, min(first + 3, 10))
            for number in batch:
                player = PLAYERS[number % 3]
                screens[player].send(f"Free line {number} from {player}.", "Enter")
            same_story_everywhere(screens, again, before + 2 * batch.stop)
            if first == 3:  # the room's process dies: the host starts it again, the screens find it
                [room] = [p for p in again.games() if "room serve" in " ".join(p.cmdline())]
                logged_before = len(room_log(again))
                room.kill()
                again.wait_for_log("room tea: its process ended (status -9); starting it again")
                rejoined(again, logged_before)
                for player, character in zip(PLAYERS, ("Rin", "Juno", "Bolt"), strict=True):
                    screens[player].wait_for(f"Say something as {character}")  # their screen has the room again
        freed = [(speaker, text) for speaker, kind, text in saved_lines(again)[before:] if kind == "player"]
        assert sorted(text for _s, text in freed) == sorted(f"Free line {n} from {PLAYERS[n % 3]}." for n in range(10))
        assert "resuming room.kv: restore" in room_log(again)  # the restarted room read its KV state, not the story
    finally:
        again.stop()

    # -- the room's save, played solo -------------------------------------------------------------
    solo = TmuxPane(tmp_path / "solo.status", size=SCREEN)
    data = again.data_dir / "rooms" / "tea" / "data"
    try:
        env = f"SIMULARITY_DATA_DIR={data} SIMULARITY_CONFIG_DIR={tmp_path / 'solo-config'} "
        solo.run(f"{env}{sys.executable} -m simularity_tui --pack {pack} --save room --graphics none")
        last = saved_lines(again)[-1][2][:40]
        solo.wait_for(lambda text: "Say something as Rin" in text and last in " ".join(text.split()), timeout=120)
    finally:
        solo.close()
