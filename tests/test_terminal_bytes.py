"""What the game sends a real terminal, byte for byte: the stage as kitty graphics commands that
decode back to the stage picture, and never an escape sequence that the model or a pack wrote."""

from __future__ import annotations

import base64
import io
import os
import re
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image, ImageChops, ImageStat

from simularity_tui.scenario import load_pack
from simularity_tui.story.stage import Stage
from simularity_tui.ui.stage_image import compose_stage

from .pty_terminal import PtyProgram

LIGHTHOUSE = Path(__file__).parent.parent / "scenarios" / "lighthouse"
SIMULARITY = Path(sys.executable).with_name("simularity")
KITTY_COMMAND = re.compile(rb"\x1b_G([^;\x1b]*)(?:;([A-Za-z0-9+/=]*))?\x1b\\")


def game_env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        TERM="xterm-256color",
        COLORTERM="truecolor",
        SIMULARITY_CONFIG_DIR=str(tmp_path / "config"),
        SIMULARITY_DATA_DIR=str(tmp_path / "data"),
    )
    return env


@pytest.fixture
def programs() -> Iterator[list[PtyProgram]]:
    started: list[PtyProgram] = []
    yield started
    for program in started:
        program.close()


def kitty_images(output: bytes) -> list[Image.Image]:
    """Every image transmitted with the kitty graphics protocol: chunks joined by image id."""
    images, chunks = [], {}
    for match in KITTY_COMMAND.finditer(output):
        keys = dict(part.split(b"=", 1) for part in match.group(1).split(b",") if b"=" in part)
        if keys.get(b"a", b"t") not in (b"t", b"T") or b"i" not in keys:
            continue  # a placement or a delete, not image data
        chunks.setdefault(keys[b"i"], []).append(match.group(2) or b"")
        if keys.get(b"m", b"0") == b"0":
            assert keys.get(b"f") == b"100", "the stage is sent as PNG"
            png = base64.b64decode(b"".join(chunks.pop(keys[b"i"])))
            images.append(Image.open(io.BytesIO(png)).convert("RGB"))
    return images


def difference(a: Image.Image, b: Image.Image) -> float:
    """Mean absolute difference per channel (0–255), after scaling `b` to `a`'s size."""
    diff = ImageChops.difference(a, b.convert("RGB").resize(a.size, Image.Resampling.BILINEAR))
    return sum(ImageStat.Stat(diff).mean) / 3


@pytest.mark.model  # the game, on the embedded model
def test_the_kitty_protocol_bytes_decode_back_to_the_stage(tmp_path: Path, programs: list[PtyProgram]) -> None:
    game = PtyProgram(
        [str(SIMULARITY), "--graphics", "kitty", "--pack", str(LIGHTHOUSE), "--threads", "2"], game_env(tmp_path)
    )
    programs.append(game)
    output = game.wait_for(lambda out: bool(kitty_images(out)))
    assert b"U=1" in output, "the image is placed with unicode placeholders, which also work in tmux"
    shown = kitty_images(output)[0]

    loaded = load_pack(LIGHTHOUSE)
    opening_stage = Stage.opening(loaded.pack, next(iter(loaded.pack.episodes)))
    opening = compose_stage(loaded, opening_stage)
    elsewhere = compose_stage(loaded, Stage(scene=next(s for s in loaded.pack.scenes if s != opening_stage.scene)))
    assert shown.width >= 100 and shown.height >= 50, shown.size
    assert difference(shown, opening) < 6, "the terminal was sent the opening stage"
    assert difference(shown, elsewhere) > 20, "and not just any picture"


# The model is forced by its grammar to write a clipboard write (OSC 52), a screen clear (CSI),
# a bell and a C1 CSI; the pack's name carries a title change (OSC 0).
HOSTILE_LINE = 'root ::= " Look" "\\x1b]52;c;SGFja2Vk\\x07" " here" "\\x1b[2J" "\\x9b" "31m" " now" "\\n"\n'
FORCING_SCRIPT = """
import sys
from simularity_tui.story import turn, writing

assert turn.TEXT_GRAMMAR == writing.TEXT_GRAMMAR == 'root ::= " " [^\\\\n ] [^\\\\n]* "\\\\n"\\n', (
    "the line's text grammar changed: update this test"
)
turn.TEXT_GRAMMAR = sys.argv.pop(1)
from simularity_tui.cli import main

sys.exit(main(sys.argv[1:]))
"""
RAW_SEQUENCES = [b"\x1b]52", b"SGFja2Vk\x07", b"\x1b[2J", "\x9b".encode(), b"\x1b]0;pwned"]


@pytest.mark.model
def test_escape_sequences_from_the_model_never_reach_the_terminal(tmp_path: Path, programs: list[PtyProgram]) -> None:
    script = tmp_path / "forced.py"
    script.write_text(FORCING_SCRIPT, encoding="utf-8")
    argv = [
        sys.executable,
        str(script),
        HOSTILE_LINE,
        "--graphics",
        "none",
        "--pack",
        str(LIGHTHOUSE),
        "--threads",
        "2",
    ]
    game = PtyProgram(argv, game_env(tmp_path), columns=120)
    programs.append(game)
    game.wait_for(lambda out: b"Say something as" in out)
    game.send(b"What is that light?\r")
    output = game.wait_for(lambda out: b"tok/s" in out)  # the status line reports the reply's speed
    assert "␛]52;c;SGFja2Vk␇".encode() in output, "the model's line shows, as harmless text"
    assert "␛[2J".encode() in output
    for raw in RAW_SEQUENCES:
        assert raw not in output, f"{raw!r} reached the terminal"


def test_a_pack_with_escape_sequences_is_explained_never_obeyed(tmp_path: Path, programs: list[PtyProgram]) -> None:
    """A pack may not hold control characters: the game says which, at its line, as harmless text."""
    pack = tmp_path / "hostile"
    shutil.copytree(LIGHTHOUSE, pack)
    scenario = pack / "scenario.toml"
    text = scenario.read_text(encoding="utf-8")
    name_line = next(line for line in text.splitlines() if line.startswith("name = "))
    scenario.write_text(text.replace(name_line, 'name = "Gull\\u001b]0;pwned\\u0007 Point"', 1), encoding="utf-8")
    argv = [sys.executable, "-m", "simularity_tui", "--graphics", "none", "--pack", str(pack), "--threads", "2"]
    game = PtyProgram(argv, game_env(tmp_path), columns=160)
    programs.append(game)
    quoted = b"Gull\\x1b]0;pwned\\x07 Point"  # the name as harmless text
    output = game.wait_for(lambda out: b"Simularity cannot start" in out and b"has an ESC" in out and quoted in out)
    for raw in RAW_SEQUENCES:
        assert raw not in output, f"{raw!r} reached the terminal"
