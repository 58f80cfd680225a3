"""The game in a real terminal (tmux): what a player sees, from the installed `simularity` command."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import TEST_THREADS
from .tmux_pane import TmuxPane

SIMULARITY = Path(sys.executable).with_name("simularity")
pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed (.ci/run installs it)")


class Pane(TmuxPane):
    """The game's terminal, with the test's own config and data directories."""

    def __init__(self, tmp_path: Path) -> None:
        super().__init__(tmp_path / "exit-status")
        self.env = f"SIMULARITY_CONFIG_DIR={tmp_path / 'config'} SIMULARITY_DATA_DIR={tmp_path / 'data'}"

    def start(self, command: str) -> None:
        self.run(f"{self.env} {command}")


@pytest.fixture
def pane(tmp_path: Path) -> Iterator[Pane]:
    opened = Pane(tmp_path)
    yield opened
    opened.close()


def test_a_player_types_a_line_and_reads_the_reply(pane: Pane, model_path: Path) -> None:
    pane.start(f"{SIMULARITY} --threads {TEST_THREADS}")
    pane.wait_for("The Lighthouse at Gull Point")  # the library lists it at once, while the model loads
    pane.send("Enter")  # the first pack: The Lighthouse at Gull Point
    pane.wait_for("Say something as Ash")
    # The opening lines, painted with the play screen (a frame may catch the line input first).
    screen = pane.wait_for("Shut that door before the sea follows you in", timeout=10)
    # tmux answers no graphics query: `auto` draws the stage with coloured half cells.
    assert sum(line.count("▀") for line in screen.splitlines()[1:6]) > 100, screen
    pane.send("Is that light signalling someone?", "Enter")
    pane.wait_for("Ash: Is that light signalling someone?")
    # The reply is done when the status line reports its speed.
    screen = pane.wait_for(lambda s: "tok/s" in s)
    after = screen.split("Ash: Is that light signalling someone?", 1)[1]
    assert any(word in after for word in ("Mira:", "Pip:")) or after.strip(), screen
    pane.send("C-q")
    assert pane.exit_status() == 0


def test_a_missing_model_is_explained_in_the_game_and_after_it(pane: Pane, tmp_path: Path) -> None:
    missing = tmp_path / "models" / "missing.gguf"
    pane.start(f"{SIMULARITY} --model {missing}")
    screen = pane.wait_for("Simularity cannot start")
    unwrapped = "".join(line.strip(" ┃") for line in screen.splitlines())  # a long path wraps in its box
    assert "missing.gguf" in unwrapped and "Check the path" in unwrapped, screen
    pane.send("q")
    assert pane.exit_status() == 2
    screen = pane.wait_for("simularity: Model file not found")
    assert "Traceback" not in screen


def test_not_enough_memory_is_explained_in_the_game(pane: Pane, model_path: Path) -> None:
    pane.start(f"ulimit -v {800 * 1024}; {SIMULARITY} --n-ctx 32768")
    screen = pane.wait_for("Simularity cannot start")
    assert "Not enough memory" in screen.replace("\n", " ")
    pane.send("q")
    assert pane.exit_status() == 2
