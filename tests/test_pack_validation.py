"""`simularity check` and the loader: every kind of bad pack reported at its exact file and line."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from simularity_tui.scenario import Pack, PackProblems, bundled_packs_dir, load_pack
from tests.packs import MORE, TINY, line_of, png, png_claiming, tiny_pack


def problems_of(root: Path) -> list[str]:
    with pytest.raises(PackProblems) as raised:
        load_pack(root)
    return [str(problem) for problem in raised.value.problems]


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


def test_a_small_valid_pack_loads(tmp_path: Path) -> None:
    loaded = load_pack(tiny_pack(tmp_path / "tiny"))
    assert loaded.pack.player_id == "me" and "fact" in loaded.pack.lore
    assert loaded.files == (tmp_path / "tiny" / "scenario.toml", tmp_path / "tiny" / "more.toml")


@pytest.mark.parametrize("pack", ["lighthouse", "starlight-cafe"])
def test_check_passes_every_bundled_pack(pack: str) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "simularity_tui", "check", str(bundled_packs_dir() / pack)],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.count("\n") == 1 and ": valid: " in run.stdout


def test_the_bundled_lighthouse_pack_uses_every_part_of_the_format() -> None:
    loaded = load_pack(bundled_packs_dir() / "lighthouse")
    pack = loaded.pack
    assert pack.cover and pack.theme and pack.recommended_n_ctx and pack.include and pack.extensions
    mira = pack.characters["mira"]
    assert mira.personality and mira.appearance and mira.example_lines and mira.outfits and mira.default_outfit
    assert all(scene.background for scene in pack.scenes.values())
    commands = {d.command for e in pack.episodes.values() for line in e.lines for d in line.directions}
    assert {"set_expression", "add_character"} <= commands
    assert any(e.characters for e in pack.episodes.values())
    assert any(entry.always for entry in pack.lore.values()) and any(not e.enabled for e in pack.lore.values())
    kinds = {a.condition.kind for a in pack.achievements.values()}
    assert {"player_says", "scene", "all", "any"} <= kinds
    assert len(loaded.files) > 1
    for character in pack.characters.values():  # an image for every expression, a background for every scene
        assert all((loaded.root / path).is_file() for path in character.expressions.values())


def test_a_syntax_error(tmp_path: Path) -> None:
    root = tiny_pack(tmp_path / "p")
    edit(root / "scenario.toml", 'scenario = "A room."', 'scenario = "A room.')
    assert problems_of(root) == [f"{root / 'scenario.toml'}:6:20: TOML syntax error: Illegal character '\\n'"]


def test_a_wrong_type(tmp_path: Path) -> None:
    root = tiny_pack(tmp_path / "p")
    edit(root / "scenario.toml", 'name = "Bo"', "name = 5")
    assert problems_of(root) == [
        f"{root / 'scenario.toml'}:13:1: characters.bo.name: Input should be a valid string (got 5)"
    ]


def test_a_wrong_type_in_an_included_file(tmp_path: Path) -> None:
    root = tiny_pack(tmp_path / "p")
    edit(root / "more.toml", 'keywords = ["x"]', 'keywords = "x"')
    assert problems_of(root) == [
        f"{root / 'more.toml'}:2:1: lore.fact.keywords: Input should be a valid list (got 'x')"
    ]


def test_an_unknown_key(tmp_path: Path) -> None:
    root = tiny_pack(tmp_path / "p")
    edit(root / "scenario.toml", 'name = "Room"', 'nmae = "Room"')
    assert problems_of(root) == [
        f"{root / 'scenario.toml'}:18:1: scenes.room.name: required, but missing",
        f"{root / 'scenario.toml'}:19:1: unknown key 'scenes.room.nmae'; did you mean 'name'?",
    ]


def test_a_dangling_reference(tmp_path: Path) -> None:
    root = tiny_pack(tmp_path / "p")
    edit(root / "scenario.toml", 'scene = "room"', 'scene = "rooom"')
    assert problems_of(root) == [f"{root / 'scenario.toml'}:24:1: no scene 'rooom'; did you mean 'room'?"]


def test_every_problem_is_reported_not_just_the_first(tmp_path: Path) -> None:
    root = tiny_pack(tmp_path / "p")
    edit(root / "scenario.toml", 'scene = "room"', 'scene = "hall"')
    edit(root / "scenario.toml", 'background = "art/room.png"', 'background = "art/hall.png"')
    edit(root / "scenario.toml", "player = true", "player = false")
    assert problems_of(root) == [
        f"{root / 'scenario.toml'}:8:1: no character has player = true: exactly one must be the player",
        f"{root / 'scenario.toml'}:20:1: 'art/hall.png': no such file in the pack",
        f"{root / 'scenario.toml'}:24:1: no scene 'hall' (the pack has: room)",
    ]


def test_a_missing_asset(tmp_path: Path) -> None:
    root = tiny_pack(tmp_path / "p")
    (root / "art" / "bo.png").unlink()
    assert problems_of(root) == [f"{root / 'scenario.toml'}:16:1: 'art/bo.png': no such file in the pack"]


def test_an_asset_that_is_not_an_image(tmp_path: Path) -> None:
    root = tiny_pack(tmp_path / "p")
    (root / "art" / "bo.png").write_text("<html>not a picture</html>")
    assert problems_of(root) == [
        f"{root / 'scenario.toml'}:16:1: 'art/bo.png' is not an image: use PNG, JPEG, WebP or GIF"
    ]


@pytest.mark.parametrize(
    ("background", "message"),
    [
        ("../outside.png", "'../outside.png' leads outside the pack"),
        ("/etc/hostname", "'/etc/hostname' must be a path relative to the pack (with / between folders)"),
        ("art/escape.png", "'art/escape.png' leads outside the pack"),  # a symlink to outside
    ],
)
def test_a_path_that_escapes_the_pack(tmp_path: Path, background: str, message: str) -> None:
    root = tiny_pack(tmp_path / "p")
    png(tmp_path / "outside.png")
    os.symlink(tmp_path / "outside.png", root / "art" / "escape.png")
    edit(root / "scenario.toml", 'background = "art/room.png"', f'background = "{background}"')
    assert problems_of(root) == [f"{root / 'scenario.toml'}:20:1: {message}"]


def test_an_include_that_escapes_the_pack(tmp_path: Path) -> None:
    root = tiny_pack(tmp_path / "p")
    (tmp_path / "evil.toml").write_text(MORE)
    edit(root / "scenario.toml", 'include = ["more.toml"]', 'include = ["../evil.toml"]')
    assert problems_of(root) == [f"{root / 'scenario.toml'}:3:1: include '../evil.toml' must stay inside the pack"]
    os.symlink(tmp_path / "evil.toml", root / "linked.toml")
    edit(root / "scenario.toml", 'include = ["../evil.toml"]', 'include = ["linked.toml"]')
    assert problems_of(root) == [f"{root / 'linked.toml'}:1:1: this file is a link to a place outside the pack"]


@pytest.mark.parametrize(
    ("size", "message"),
    [
        ((5000, 5000), "'art/room.png' is 5000×5000 pixels: at most 4096×4096"),
        ((30000, 30000), "'art/room.png' claims more pixels than any image may have (a decompression bomb?)"),
    ],
)
def test_a_huge_image(tmp_path: Path, size: tuple[int, int], message: str) -> None:
    root = tiny_pack(tmp_path / "p")
    png_claiming(root / "art" / "room.png", *size)
    assert problems_of(root) == [f"{root / 'scenario.toml'}:20:1: {message}"]


def test_an_oversized_toml_file(tmp_path: Path) -> None:
    root = tiny_pack(tmp_path / "p")
    (root / "more.toml").write_text(MORE + "# padding\n" * 120_000)
    size = (root / "more.toml").stat().st_size
    assert problems_of(root) == [
        f"{root / 'more.toml'}:1:1: {size:,} bytes: a pack's TOML file may be at most 1,048,576"
    ]


def test_an_id_defined_in_two_files(tmp_path: Path) -> None:
    root = tiny_pack(tmp_path / "p")
    (root / "more.toml").write_text(MORE + '\n[characters.bo]\nname = "Bo again"\n')
    assert problems_of(root) == [f"{root / 'more.toml'}:5:1: characters.bo is defined twice (also at scenario.toml:12)"]


def test_check_lists_problems_and_exits_1(tmp_path: Path) -> None:
    root = tiny_pack(tmp_path / "p")
    edit(root / "scenario.toml", 'scene = "room"', 'scene = "rooom"')
    run = subprocess.run([sys.executable, "-m", "simularity_tui", "check", str(root)], capture_output=True, text=True)
    assert run.returncode == 1 and "Traceback" not in run.stderr
    assert run.stdout.splitlines() == [
        f"{root / 'scenario.toml'}:{line_of(TINY, 'scene = ')}:1: no scene 'rooom'; did you mean 'room'?",
        f"1 problem in {root}",
    ]


def test_the_authors_guide_example_matches_the_schema() -> None:
    guide = (Path(__file__).resolve().parents[1] / "docs" / "pack-format.md").read_text()
    example = re.search(r"```toml\n(.+?)\n```", guide, re.DOTALL)
    assert example is not None
    Pack.model_validate(tomllib.loads(example.group(1)))  # every key it shows is a real one, rightly typed
