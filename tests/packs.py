"""Building small packs on disk for tests: a valid one, and ways to break it."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

from PIL import Image

TINY = """\
id = "tiny"
name = "Tiny"
include = ["more.toml"]

[prompt]
scenario = "A room."

[characters.me]
name = "Me"
player = true

[characters.bo]
name = "Bo"

[characters.bo.expressions]
calm = "art/bo.png"

[scenes.room]
name = "Room"
background = "art/room.png"

[episodes.start]
name = "Start"
scene = "room"
"""

MORE = """\
[lore.fact]
keywords = ["x"]
content = "y"
"""


def png(path: Path, size: tuple[int, int] = (32, 48), colour: tuple[int, int, int] = (90, 120, 200)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)
    return path


def png_claiming(path: Path, width: int, height: int) -> Path:
    """A small, valid PNG whose header claims `width` × `height` pixels (a decompression bomb)."""
    png(path, (8, 8))
    data = bytearray(path.read_bytes())
    ihdr = 8  # after the signature: length (4), b"IHDR" (4), width, height, …
    data[ihdr + 8 : ihdr + 16] = struct.pack(">II", width, height)
    crc = zlib.crc32(bytes(data[ihdr + 4 : ihdr + 8 + 13]))
    data[ihdr + 8 + 13 : ihdr + 8 + 17] = struct.pack(">I", crc)
    path.write_bytes(bytes(data))
    return path


def tiny_pack(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "scenario.toml").write_text(TINY)
    (root / "more.toml").write_text(MORE)
    png(root / "art" / "bo.png")
    png(root / "art" / "room.png", (64, 36))
    return root


def line_of(text: str, fragment: str) -> int:
    return next(number for number, line in enumerate(text.splitlines(), start=1) if fragment in line)
