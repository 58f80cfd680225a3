"""KV state files: resuming evaluates only new tokens; anything wrong with a file costs a
re-evaluation and a warning, never a crash or different output."""

from __future__ import annotations

import json
import shutil
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from simularity_tui.bench.script import ScriptedGame
from simularity_tui.engine import ModelConfig
from simularity_tui.engine.kv_state import MAGIC
from tests.conftest import TEST_THREADS

if TYPE_CHECKING:
    from simularity_tui.engine import LlamaSession


async def played_game(session: LlamaSession, turns: int = 6) -> ScriptedGame:
    await session.reset()
    game = ScriptedGame(session)
    for turn in range(turns):
        await game.play(turn, 16)
    return game


async def next_turn(game: ScriptedGame, turn: int = 6):  # type: ignore[no-untyped-def]
    probe = ScriptedGame(game.session)
    probe.pinned, probe.turns = game.pinned, list(game.turns)
    result = await probe.play(turn, 16)
    return result


@dataclass(frozen=True)
class Played:
    """The six-turn game, its state file's bytes, and the text of its next turn: played straight on
    (`live`), and on a KV read afresh from nothing (`fresh`)."""

    pinned: list[int]
    turns: list[list[int]]
    state: bytes
    live: str
    fresh: str

    def game(self, session: LlamaSession) -> ScriptedGame:
        """The game as it was played, on `session` (a copy each time)."""
        game = ScriptedGame(session)
        game.pinned, game.turns = list(self.pinned), [list(turn) for turn in self.turns]
        return game


_PLAYED: list[Played] = []


async def played_once(session: LlamaSession) -> Played:
    """The game of `played_game`, played once per run (here and in tests/test_kv_hardening.py):
    every test that damages or restores its state file gets its own copy of the bytes."""
    if not _PLAYED:
        game = await played_game(session)
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "save.kv"
            assert await session.save_state(path) > 1_000_000
            state = path.read_bytes()
        live = await next_turn(game)
        await session.reset()
        fresh = await next_turn(game)
        _PLAYED.append(Played(game.pinned, [list(turn) for turn in game.turns], state, live.text, fresh.text))
    return _PLAYED[0]


@pytest.fixture
async def saved(session: LlamaSession, tmp_path: Path) -> tuple[ScriptedGame, Path, str]:
    """A six-turn game, its state file (this test's own copy), and the text of its next turn played
    straight on."""
    played = await played_once(session)
    path = tmp_path / "save.kv"
    path.write_bytes(played.state)
    return played.game(session), path, played.live


async def test_restoring_evaluates_only_the_new_turn(session: LlamaSession, saved) -> None:  # type: ignore[no-untyped-def]
    game, path, live_text = saved
    await session.reset()
    restored = await session.restore_state(path)
    assert restored.warning is None and restored.tokens == len(session.kv_tokens) > 300
    result = await next_turn(game)
    opened = len(game.prompt(6).turns[-1])
    assert result.evaluated_tokens <= opened + 1  # the new turn (and the last reply's final token)
    assert result.text == live_text  # the same state gives the same story


async def test_a_damaged_file_is_ignored_with_a_warning(session: LlamaSession, saved) -> None:  # type: ignore[no-untyped-def]
    game, path, _ = saved
    await session.reset()
    fresh = await next_turn(game)  # what re-evaluating from nothing gives
    data = bytearray(path.read_bytes())
    data[-5000] ^= 0xFF
    path.write_bytes(bytes(data))
    await session.reset()
    restored = await session.restore_state(path)
    assert restored.tokens == 0 and "damaged" in restored.warning
    assert session.kv_tokens == ()
    again = await next_turn(game)
    assert again.evaluated_tokens > 300 and again.text == fresh.text


@pytest.mark.parametrize(
    ("damage", "said"),
    [
        ("missing", "does not exist"),
        ("not-a-state-file", "not a Simularity KV state file"),
        ("other-format", "state format 2"),
        ("other-runtime", "was written by llama-cpp-python 0.0.1"),
        ("truncated", "damaged"),
    ],
)
async def test_unusable_files_are_explained(session: LlamaSession, saved, damage: str, said: str) -> None:  # type: ignore[no-untyped-def]
    _game, path, _ = saved
    if damage == "missing":
        path.unlink()
    elif damage == "not-a-state-file":
        path.write_text("[story]\nturns = 3\n")
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[:-100])
    else:
        data = path.read_bytes()
        (size,) = struct.unpack_from("<I", data, len(MAGIC))
        start = len(MAGIC) + 4
        header = json.loads(data[start : start + size])
        header["format" if damage == "other-format" else "runtime"] = (
            2 if damage == "other-format" else "llama-cpp-python 0.0.1"
        )
        encoded = json.dumps(header).encode()
        path.write_bytes(MAGIC + struct.pack("<I", len(encoded)) + encoded + data[start + size :])
    await session.reset()  # as a game that just started
    restored = await session.restore_state(path)
    assert restored.tokens == 0 and said in restored.warning and session.kv_tokens == ()


async def test_a_file_from_another_model_is_refused(
    session: LlamaSession, saved, model_path: Path, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    _game, path, _ = saved
    # Another model: the same weights under another name, which llama.cpp loads just the same.
    other = tmp_path / "renamed.gguf"
    shutil.copyfile(model_path, other)
    data = bytearray(other.read_bytes()[: 1 << 16])
    at = data.index(b"Gemma 3 270m")
    with other.open("r+b") as handle:
        handle.seek(at)
        handle.write(b"Gemma 3 270X")
    from simularity_tui.engine import LlamaSession

    renamed = await LlamaSession.open(ModelConfig(other, n_ctx=2048, n_threads=TEST_THREADS))
    try:
        assert renamed.info.identity != session.info.identity
        restored = await renamed.restore_state(path)
        assert restored.tokens == 0 and "another model" in restored.warning
    finally:
        await renamed.close()
