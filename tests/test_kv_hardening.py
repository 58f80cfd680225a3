"""Hostile KV state files: damage that a recomputed checksum hides from a plain check is refused
with a warning before llama.cpp reads it, and the game plays on as a re-evaluation would; nothing
takes the process down (the restores that used to abort it run in a child process here)."""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import struct
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from simularity_tui.bench.script import ScriptedGame
from simularity_tui.engine.kv_state import MAGIC
from simularity_tui.scenario import bundled_packs_dir
from tests.conftest import TEST_N_CTX, TEST_THREADS
from tests.test_kv_state import next_turn, played_once

if TYPE_CHECKING:
    from simularity_tui.engine import LlamaSession

ROOT = Path(__file__).resolve().parents[1]


def split(data: bytes) -> tuple[dict[str, Any], bytes]:
    (size,) = struct.unpack_from("<I", data, len(MAGIC))
    start = len(MAGIC) + 4
    return json.loads(data[start : start + size]), data[start + size :]


def join(header: dict[str, Any], payload: bytes, *, header_bytes: bytes | None = None) -> bytes:
    encoded = header_bytes if header_bytes is not None else json.dumps(header).encode()
    return MAGIC + struct.pack("<I", len(encoded)) + encoded + payload


def sign(header: dict[str, Any], payload: bytes) -> dict[str, Any]:
    """Make the checksums fit the damaged file, as a program rewriting it would."""
    header = dict(header, payload_size=len(payload))
    if "payload_sha256" in header:  # state format 1: the payload alone
        header["payload_sha256"] = hashlib.sha256(payload).hexdigest()
    if "sha256" in header:  # the header's other fields, then the payload
        others = {name: value for name, value in header.items() if name != "sha256"}
        canonical = json.dumps(others, sort_keys=True, separators=(",", ":")).encode()
        header["sha256"] = hashlib.sha256(canonical + payload).hexdigest()
    return header


# llama.cpp's state of the whole KV: u32 magic, i32 sequence id (-1), then per KV cache u32 streams,
# u32 cells, per cell i32 position, u32 sequence ids n and n × i32 sequence id, u32 v_trans, u32
# layers, and per layer i32 key type, u64 row size, the rows.
CELLS_AT = 16


def cell_size(payload: bytes) -> int:
    """A cell's bytes: its position, how many sequence ids it has, and the ids (the story's, and its
    guard's on a sliding-window model such as Gemma 3)."""
    (ids,) = struct.unpack_from("<I", payload, CELLS_AT + 4)
    return 8 + 4 * ids


def first_cache(payload: bytes) -> tuple[int, int]:
    """(cells, where the first layer's key rows start) in the first KV cache."""
    (cells,) = struct.unpack_from("<I", payload, 12)
    return cells, CELLS_AT + cell_size(payload) * cells + 8 + 12


def first_cache_values(payload: bytes) -> list[tuple[int, int]]:
    """(start, length) of each layer's value rows in the first KV cache (not transposed)."""
    cells, _ = first_cache(payload)
    at = CELLS_AT + cell_size(payload) * cells
    _transposed, layers = struct.unpack_from("<II", payload, at)
    at += 8
    for _layer in range(layers):  # the keys
        _kind, row = struct.unpack_from("<iQ", payload, at)
        at += 12 + row * cells
    values = []
    for _layer in range(layers):
        _kind, row = struct.unpack_from("<iQ", payload, at)
        values.append((at + 12, row * cells))
        at += 12 + row * cells
    return values


def damaged_payload(payload: bytes, damage: str) -> bytes:
    data = bytearray(payload)
    cells, keys = first_cache(payload)
    if damage == "truncated":
        del data[len(data) // 2 :]
    elif damage == "positions":  # one bit of the sixth cell's position: 5 becomes 261, a twin of a later one
        data[CELLS_AT + cell_size(payload) * 5 + 1] ^= 0x01
    elif damage == "far-position":
        struct.pack_into("<i", data, CELLS_AT + cell_size(payload) * 7, 2_000_000_000)
    elif damage == "cells":
        struct.pack_into("<I", data, 12, cells + 3)
    elif damage == "nan-keys":  # NaN in the first layer's keys: every logit after it is NaN
        data[keys : keys + 512 * cells] = b"\xff" * (512 * cells)
    elif damage == "garbled":  # random bytes over the first layer's keys (some are NaN, some huge)
        rng = random.Random(0)
        data[keys : keys + 4000] = bytes(rng.randrange(256) for _ in range(4000))
    elif damage == "huge-values":  # finite, but the largest f16 in every value: the logits overflow
        for start, length in first_cache_values(payload):
            data[start : start + length] = b"\xff\x7b" * (length // 2)
    elif damage == "garbled-anywhere":  # random bytes over the middle, whatever they land on
        rng = random.Random(0)
        middle = len(data) * 2 // 3
        data[middle : middle + 4000] = bytes(rng.randrange(256) for _ in range(4000))
    else:
        raise AssertionError(damage)
    return bytes(data)


@pytest.fixture
async def saved(session: LlamaSession, tmp_path: Path) -> tuple[ScriptedGame, Path, str]:
    """A six-turn game, its state file (each test's own copy), and the text of its next turn on a
    KV read afresh. Played once per run (tests/test_kv_state.py): every test damages its copy, not the game."""
    played = await played_once(session)
    path = tmp_path / "save.kv"
    path.write_bytes(played.state)
    return played.game(session), path, played.fresh


# -- the header -------------------------------------------------------------------------------------


@pytest.mark.parametrize("damage", ["nested", "nested-tokens", "huge-size", "not-an-object"])
async def test_a_hostile_header_is_refused(session: LlamaSession, saved, damage: str) -> None:  # type: ignore[no-untyped-def]
    game, path, fresh_text = saved
    header, payload = split(path.read_bytes())
    if damage == "nested":  # json.loads recursed until RecursionError
        data = join(header, payload, header_bytes=b"[" * 100_000)
    elif damage == "nested-tokens":
        data = join(sign(dict(header, tokens=[header["tokens"]]), payload), payload)
    elif damage == "huge-size":
        data = MAGIC + struct.pack("<I", 0xFFFFFFFF) + b"{}" + payload
    else:
        data = join(header, payload, header_bytes=b'"a string"')
    path.write_bytes(data)
    await session.reset()
    restored = await session.restore_state(path)
    assert restored.tokens == 0 and restored.warning and "header" in restored.warning
    assert session.kv_tokens == ()
    assert (await next_turn(game)).text == fresh_text


async def test_a_token_list_changed_alone_is_refused(session: LlamaSession, saved) -> None:  # type: ignore[no-untyped-def]
    """The checksum covers the header: a state may not pass for other tokens than its own."""
    game, path, fresh_text = saved
    header, payload = split(path.read_bytes())
    tokens = list(header["tokens"])
    tokens[40] = tokens[41]
    path.write_bytes(join(dict(header, tokens=tokens), payload))
    await session.reset()
    restored = await session.restore_state(path)
    assert restored.tokens == 0 and restored.warning and "damaged" in restored.warning
    assert (await next_turn(game)).text == fresh_text


async def test_a_file_of_the_first_state_format_is_refused(session: LlamaSession, saved) -> None:  # type: ignore[no-untyped-def]
    _game, path, _ = saved
    header, payload = split(path.read_bytes())
    header = {k: v for k, v in header.items() if k != "sha256"} | {"format": 1, "payload_sha256": "0" * 64}
    path.write_bytes(join(sign(header, payload), payload))
    await session.reset()
    restored = await session.restore_state(path)
    assert restored.tokens == 0 and restored.warning and "state format 1" in restored.warning


# -- the payload, restored in a child process (an abort would kill it, not the tests) ---------------

# The child restores each state file given on a fresh KV (reset, as a newly opened session has it),
# then plays the next turn; one JSON line per file. One child for all the damages (one model load, not
# eight); a damage it did not answer for (it died first) is restored again in a child of its own.
CHILD = """
import asyncio, json, sys
from pathlib import Path
from simularity_tui.bench.script import ScriptedGame
from simularity_tui.engine import LlamaSession, ModelConfig
from tests.test_kv_state import next_turn

async def main(model, game_file, n_ctx, threads, *states):
    session = await LlamaSession.open(ModelConfig(Path(model), n_ctx=int(n_ctx), n_threads=int(threads)))
    saved = json.loads(Path(game_file).read_text())
    for state in states:
        await session.reset()
        restored = await session.restore_state(Path(state))
        held = len(session.kv_tokens)
        game = ScriptedGame(session)
        game.pinned, game.turns = saved["pinned"], saved["turns"]
        text = (await next_turn(game)).text
        answer = {"state": state, "tokens": restored.tokens, "held": held, "warning": restored.warning, "text": text}
        print(json.dumps(answer), flush=True)
    await session.close()

asyncio.run(main(*sys.argv[1:]))
"""
DAMAGES = ["truncated", "positions", "far-position", "cells", "nan-keys", "garbled", "garbled-anywhere", "huge-values"]
_ANSWERS: dict[str, dict[str, Any]] = {}  # damage: the shared child's answer (filled by the first test)


def restore_in_child(
    model_path: Path, game_file: Path, states: list[Path]
) -> tuple[subprocess.CompletedProcess[str], dict[str, dict[str, Any]]]:
    """The child run on `states`, and its answers by state file."""
    child = subprocess.run(
        [sys.executable, "-c", CHILD, str(model_path), str(game_file), str(TEST_N_CTX), str(TEST_THREADS),
         *map(str, states)],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )  # fmt: skip
    answers = [json.loads(line) for line in child.stdout.splitlines() if line.startswith('{"state": ')]
    return child, {answer["state"]: answer for answer in answers}


@pytest.mark.parametrize("damage", DAMAGES)
async def test_a_damaged_payload_with_a_matching_checksum_is_refused(
    saved, model_path: Path, tmp_path: Path, damage: str
) -> None:  # type: ignore[no-untyped-def]
    game, path, fresh_text = saved
    header, payload = split(path.read_bytes())
    game_file = tmp_path / "game.json"
    game_file.write_text(json.dumps({"pinned": game.pinned, "turns": game.turns}))
    if not _ANSWERS:  # the first of these tests: every damage, in one child
        states = {name: tmp_path / f"{name}.kv" for name in DAMAGES}
        for name, state in states.items():
            broken = damaged_payload(payload, name)
            state.write_bytes(join(sign(header, broken), broken))
        child, answers = restore_in_child(model_path, game_file, list(states.values()))
        for name, state in states.items():  # what a child that exited cleanly answered
            if child.returncode == 0 and str(state) in answers:
                _ANSWERS[name] = answers[str(state)]
        _ANSWERS.setdefault("", {})  # the shared child ran
    answer = _ANSWERS.get(damage)
    if answer is None:  # the shared child died before answering: this damage alone, to see if it kills
        broken = damaged_payload(payload, damage)
        path.write_bytes(join(sign(header, broken), broken))
        child, answers = restore_in_child(model_path, game_file, [path])
        assert child.returncode == 0, f"the restore took the process down ({child.returncode}): {child.stderr[-2000:]}"
        answer = answers[str(path)]
    assert answer["tokens"] == 0 and answer["held"] == 0 and answer["warning"], answer
    assert answer["text"] == fresh_text  # as a re-evaluation plays it


# -- what must still restore ------------------------------------------------------------------------


async def test_a_state_saved_after_context_shifts_is_restored(small_session: LlamaSession, tmp_path: Path) -> None:
    """The payload checks refuse nothing llama.cpp writes: here the KV has been shifted (its cells
    reused out of position order, the evicted positions gone)."""
    await small_session.reset()
    game = ScriptedGame(small_session)
    shifted = 0
    for turn in range(11):  # it shifts at the tenth turn
        shifted += (await game.play(turn, 16)).shifted_tokens
    assert shifted > 0, "the context never shifted"
    path = tmp_path / "shifted.kv"
    assert await small_session.save_state(path) > 0
    _header, payload = split(path.read_bytes())
    (cells,) = struct.unpack_from("<I", payload, 12)
    positions = [struct.unpack_from("<i", payload, CELLS_AT + cell_size(payload) * cell)[0] for cell in range(cells)]
    assert positions != sorted(positions)  # the new turns' cells are the evicted ones, reused
    held = small_session.kv_tokens
    await small_session.reset()
    restored = await small_session.restore_state(path)
    assert restored.warning is None and restored.tokens == len(held) > 200 and small_session.kv_tokens == held
    # Only the new turn is read. (Its text may differ from the live KV's in the last digits: the cells
    # come back packed, not in the live cache's order, and attention sums them in another order.)
    result = await next_turn(game, 11)
    assert result.evaluated_tokens <= len(game.prompt(11).turns[-1]) + 1


# -- through the real command line ------------------------------------------------------------------


def test_run_resumes_past_a_garbled_state_file_as_if_it_had_none(tmp_path: Path, model_path: Path) -> None:
    config = Path(os.environ["SIMULARITY_CONFIG_DIR"])
    config.mkdir(parents=True, exist_ok=True)
    (config / "settings.toml").write_text("[sampling]\nseed = 42\n")  # the same story on every run
    saves = Path(os.environ["SIMULARITY_DATA_DIR"]) / "saves" / "lighthouse"
    script = tmp_path / "script.txt"

    def run(name: str, lines: str, *options: str) -> subprocess.CompletedProcess[str]:
        # The model tests' threads (tests/conftest.py): one beside another xdist worker, where two
        # only took turns on the cores. `clean` and `garbled` run alike, so their stories compare.
        script.write_text(lines)
        command = [sys.executable, "-m", "simularity_tui", "run", str(bundled_packs_dir() / "lighthouse"),
                   "--script", str(script), "--save", name, "--threads", str(TEST_THREADS), "--n-ctx", "1024",
                   *options]  # fmt: skip
        return subprocess.run(command, capture_output=True, text=True, timeout=300)

    first = run("first", "Hello! Is there any tea?\n/continue\n")
    assert first.returncode == 0, first.stderr
    for name in ("clean", "garbled"):
        shutil.copyfile(saves / "first.toml", saves / f"{name}.toml")
    header, payload = split((saves / "first.kv").read_bytes())
    broken = damaged_payload(payload, "garbled")
    (saves / "garbled.kv").write_bytes(join(sign(header, broken), broken))

    # Read by llama.cpp, this file's NaNs reach the logits, and the grammar sampler aborts the process
    # (SIGABRT, "Unexpected empty grammar stack after accepting piece") within these turns.
    clean = run("clean", "/continue\n/continue\nWhat now?\n/continue\n", "--resume")
    garbled = run("garbled", "/continue\n/continue\nWhat now?\n/continue\n", "--resume")
    assert garbled.returncode == 0 and "Traceback" not in garbled.stderr, garbled.stderr[-2000:]
    assert "simularity: warning: garbled.kv is damaged" in garbled.stderr
    assert clean.returncode == 0 and garbled.stdout == clean.stdout
