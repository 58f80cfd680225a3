"""The stage in a real sixel terminal: `xterm -ti vt340` on a virtual X display, screenshotted.

The screenshot is what a player sees. A character cell of text or of half-cell blocks shows at
most two colours (foreground, background); a picture's cells show more. So the stage band must be
full of such cells, and the transcript under it have none. The screenshot is kept beside the
test's files: docs/xterm-sixel.png is one of them.
"""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from .conftest import TEST_THREADS

LIGHTHOUSE = Path(__file__).parent.parent / "scenarios" / "lighthouse"
SIMULARITY = Path(sys.executable).with_name("simularity")
COLUMNS, ROWS = 100, 32
CELL = (6, 13)  # the 6x13 bitmap font
STAGE_ROWS = range(1, 13)  # the header is row 0; the stage is 12 rows (ui/stage_view.py)
TEXT_ROWS = range(14, 24)  # the transcript

pytestmark = [
    pytest.mark.skipif(
        not all(shutil.which(tool) for tool in ("xterm", "Xvfb", "xwd")),
        reason="xterm, Xvfb and xwd are not installed (.ci/run installs them)",
    ),
    pytest.mark.model,  # the game plays the lighthouse on the embedded model (the terminal mark: `display`)
]


@pytest.fixture
def display() -> Iterator[str]:
    """A private virtual X display; Xvfb picks a free number and tells it through a pipe."""
    read_end, write_end = os.pipe()
    server = subprocess.Popen(
        ["Xvfb", "-displayfd", str(write_end), "-screen", "0", "1024x768x24", "-nolisten", "tcp"],
        pass_fds=(write_end,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        number = pipe.readline().strip()
    assert number, "Xvfb did not start"
    # A client may still be refused a moment after the number comes (seen once on a busy machine).
    deadline = time.monotonic() + 10
    while subprocess.run(["xwd", "-root", "-silent", "-display", f":{number}"], capture_output=True).returncode:
        assert server.poll() is None and time.monotonic() < deadline, "Xvfb took no client"
        time.sleep(0.1)
    yield f":{number}"
    server.terminate()
    server.wait(10)


def screenshot(display: str) -> Image.Image:
    """The whole screen through `xwd`, read from its XWD format (Pillow has no reader for it)."""
    data = subprocess.run(["xwd", "-root", "-silent", "-display", display], capture_output=True, check=True).stdout
    fields = struct.unpack(">25I", data[:100])
    header_size, width, height = fields[0], fields[4], fields[5]
    byte_order, bytes_per_line, colours = fields[7], fields[12], fields[19]
    assert fields[11] == 32, "a 24-bit screen is stored as 32 bits per pixel"
    start = header_size + colours * 12
    mode = "BGRX" if byte_order == 0 else "XRGB"
    return Image.frombuffer("RGB", (width, height), data[start:], "raw", mode, bytes_per_line, 1)


def cells_with_detail(shot: Image.Image, rows: range) -> int:
    """Cells showing more than two colours: neither a glyph (fg, bg) nor a half-cell block can."""
    width, height = CELL
    count = 0
    for row in rows:
        for column in range(COLUMNS):
            cell = shot.crop((column * width, row * height, (column + 1) * width, (row + 1) * height))
            count += len(cell.getcolors(maxcolors=width * height) or []) > 2
    return count


def why_it_exited(xterm: subprocess.Popen[bytes], status: Path, log: Path) -> str:
    """xterm's and the game's exit statuses, and the end of what the game wrote, its escapes removed."""
    game = status.read_text().strip() if status.exists() else "never ended"
    written = log.read_bytes().decode(errors="replace") if log.exists() else ""
    text = re.sub(r"\x1b(P.*?\x1b\\|\[[0-?]*[ -/]*[@-~]|\][^\x07]*\x07|.)", "", written, flags=re.S)
    complaint = (status.parent / "xterm.err").read_text(errors="replace")
    return (
        f"xterm exited {xterm.returncode} ({complaint!r}), the game {game}; the terminal's last text: {text[-1500:]!r}"
    )


def test_the_stage_is_a_sixel_picture_in_xterm(display: str, tmp_path: Path) -> None:
    env = dict(os.environ, DISPLAY=display, COLORTERM="truecolor")
    env.update(SIMULARITY_CONFIG_DIR=str(tmp_path / "config"), SIMULARITY_DATA_DIR=str(tmp_path / "data"))
    game = [str(SIMULARITY), "--graphics", "sixel", "--pack", str(LIGHTHOUSE), "--threads", str(TEST_THREADS)]
    # The game's exit status and everything it wrote to the terminal, to say why when it exits early.
    status, log = tmp_path / "status", tmp_path / "terminal.log"
    wrapped = ["sh", "-c", f'"$@"; echo $? > {status}', "sh", *game]
    with (tmp_path / "xterm.err").open("wb") as complaints:
        xterm = subprocess.Popen(
            [
                "xterm", "-ti", "vt340", "-tn", "xterm-256color", "-fn", "6x13", "-b", "0", "-bw", "0",
                "-geometry", f"{COLUMNS}x{ROWS}+0+0",
                # A VT340 has 16 colour registers; xterm can have more, as a player would set it up.
                "-xrm", "XTerm*numColorRegisters: 1024", "-l", "-lf", str(log), "-e", *wrapped,
            ],
            env=env, stdout=subprocess.DEVNULL, stderr=complaints,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 90
        while True:
            shot = screenshot(display)
            pictured = cells_with_detail(shot, STAGE_ROWS)
            if pictured >= 150:  # of 1,200 cells; the stage picture is about 550 wide, 12 rows high
                break
            assert xterm.poll() is None, why_it_exited(xterm, status, log)
            assert time.monotonic() < deadline, f"no picture on the stage: {pictured} cells show more than 2 colours"
            time.sleep(0.5)
        shot.crop((0, 0, COLUMNS * CELL[0], ROWS * CELL[1])).save(tmp_path / "xterm-sixel.png")
        assert cells_with_detail(shot, TEXT_ROWS) == 0, "the transcript is text"
        assert len(shot.crop((0, 0, COLUMNS * CELL[0], 13)).getcolors() or []) >= 2, "the header is drawn too"
    finally:
        xterm.terminate()
        xterm.wait(10)
