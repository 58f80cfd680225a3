"""Memory: the summary of the story so far, shown and corrected, and the player's plot essentials in
the pinned block; a change costs one re-read of the story after it (said in tokens), is kept in the
save, and survives a resume. On the scripted session, and through `simularity run` on the real model."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from simularity_tui.engine.context_window import common_prefix
from simularity_tui.errors import UserFacingError
from simularity_tui.scenario import LoadedPack, bundled_packs_dir, load_pack
from simularity_tui.story import Game, open_game
from simularity_tui.story.saves import save_path
from tests.conftest import TEST_THREADS
from tests.fake_model import FakeSession

LIGHTHOUSE = bundled_packs_dir() / "lighthouse"


@pytest.fixture(scope="module")
def lighthouse() -> LoadedPack:
    return load_pack(LIGHTHOUSE)


def pinned_text(game: Game) -> str:
    return "".join(part.text for part in game.prompt_view().parts if part.section == "pinned")


async def test_a_corrected_summary_and_essentials_reach_the_pinned_block_at_the_cost_said(
    lighthouse: LoadedPack,
) -> None:
    session = FakeSession()
    game = Game(session, lighthouse, "storm")
    await game.say("Hello?").finish()
    await game.say("Is that a cat?").finish()
    prompt = game.prompt([])
    everything = [*prompt.pinned, *(t for turn in prompt.turns for t in turn)]
    assert common_prefix(session.kv_tokens, everything) == len(everything)  # nothing to read again
    cost = game.set_memory(summary="Ash came in from the storm; Pip hissed at him.")
    assert "Summary of the story so far: Ash came in from the storm; Pip hissed at him." in pinned_text(game)
    prompt = game.prompt([])
    everything = [*prompt.pinned, *(t for turn in prompt.turns for t in turn)]
    assert cost == len(everything) - common_prefix(session.kv_tokens, everything) > 0
    assert game.set_memory(summary="Ash came in from the storm; Pip hissed at him.") == 0  # unchanged: free
    cost = game.set_memory(essentials="Mira is lying about the boat.\nPip knows.")
    assert cost > 0 and "Keep in mind:\nMira is lying about the boat.\nPip knows." in pinned_text(game)
    labels = [part.label for part in game.prompt_view().parts if part.section == "pinned"]
    assert labels.index("essentials") < labels.index("summary")  # the summary stays last: it changes most
    await game.say("Go on.").finish()
    prompt = game.prompt([])
    everything = [*prompt.pinned, *(t for turn in prompt.turns for t in turn)]
    assert common_prefix(session.kv_tokens, everything) == len(everything)  # paid once, with that line


async def test_memory_is_kept_in_the_save_and_made_safe(lighthouse: LoadedPack) -> None:
    path = save_path("lighthouse", "remembered")
    opened = await open_game(FakeSession(), lighthouse, path)
    while opened.game.undo():  # back before the first line: no line to keep a summary on
        pass
    with pytest.raises(UserFacingError, match="no line yet"):
        opened.game.set_memory(summary="Nothing yet.")
    while opened.game.redo():
        pass
    opened.game.set_memory(summary="\x1b[2JA storm.\x07", essentials="The lamp \x1b]0;x\x07signals.")
    assert opened.game.summary == "[2JA storm." and opened.game.essentials == "The lamp ]0;xsignals."
    saved = tomllib.loads(path.read_text())
    assert saved["essentials"] == "The lamp ]0;xsignals."
    assert any(node.get("summary") == "[2JA storm." for node in saved["nodes"])
    resumed = await open_game(FakeSession(), lighthouse, path)
    assert (resumed.game.summary, resumed.game.essentials) == ("[2JA storm.", "The lamp ]0;xsignals.")


def test_a_script_corrects_memory_and_it_survives_a_resume(tmp_path: Path, model_path: Path) -> None:
    def run(script: str, *args: str) -> subprocess.CompletedProcess[str]:
        path = tmp_path / "script.txt"
        path.write_text(script)
        command = [sys.executable, "-m", "simularity_tui", "run", str(LIGHTHOUSE), "--script", str(path)]
        command += ["--threads", str(TEST_THREADS), "--save", "memory", *args]
        return subprocess.run(command, capture_output=True, text=True, timeout=300)

    first = run("May I come in?\n/memory Ash asked to come in.\n/essentials The boat is Mira's.\n/continue\n")
    assert first.returncode == 0, first.stderr
    out = first.stdout.splitlines()
    said = [line for line in out if line.startswith(("[memory: ", "[essentials: "))]
    assert said[0].startswith("[memory: Ash asked to come in. · the next line reads ")
    assert said[1].startswith("[essentials: The boat is Mira's. · the next line reads ")
    resumed = run("/memory\n/essentials\n", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert "[memory: Ash asked to come in.]" in resumed.stdout.splitlines()
    assert "[essentials: The boat is Mira's.]" in resumed.stdout.splitlines()
