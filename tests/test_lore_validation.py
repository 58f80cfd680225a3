"""Lore that cannot work, as `simularity check` tells it: problems that refuse the pack (a regular
expression that does not compile, unknown flags, an unknown logic), and warnings that do not
(recursion cycles, entries that never come in, groups that choose nothing), each at its
`file:line:col`. And the bundled lighthouse pack, which uses each lore rule, passes clean."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import pytest

from simularity_tui.cli import main
from simularity_tui.cli_prompt import prompt_output
from simularity_tui.scenario import bundled_packs_dir, load_pack
from simularity_tui.scenario.schema import LoreEntry, LoreScan
from tests.fake_model import FakeSession
from tests.packs import line_of
from tests.test_lore import BASE


def pack_with(root: Path, lore: str, scan: str = "") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "scenario.toml").write_text(BASE + (f"\n[lore_scan]\n{scan}\n" if scan else "") + "\n" + lore)
    return root


def check(root: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    status = main(["check", str(root)])
    return status, capsys.readouterr().out.splitlines()


def test_a_regular_expression_that_does_not_compile_is_a_problem_at_its_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lore = '[lore.x]\nkeywords = ["ok", "/(unclosed/"]\nsecondary = ["/a/gz"]\ncontent = "c"\n'
    root = pack_with(tmp_path, lore)
    status, out = check(root, capsys)
    text = (root / "scenario.toml").read_text()
    assert status == 1
    assert out == [
        f"{root / 'scenario.toml'}:{line_of(text, 'keywords =')}:1: the regular expression '/(unclosed/' does not "
        "compile: missing ) at position 9",
        f"{root / 'scenario.toml'}:{line_of(text, 'secondary =')}:1: the regular expression '/a/gz' has unknown "
        "flags g, z: use i, m, s or u (`g` is not needed: any match counts)",
        f"2 problems in {root}",
    ]


def test_an_unknown_logic_is_a_problem_at_its_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = pack_with(tmp_path, '[lore.x]\nkeywords = ["k"]\nsecondary = ["s"]\nlogic = "xor"\ncontent = "c"\n')
    status, out = check(root, capsys)
    line = line_of((root / "scenario.toml").read_text(), "logic =")
    assert status == 1
    assert out[0] == (
        f"{root / 'scenario.toml'}:{line}:1: lore.x.logic: Input should be 'and_any', 'and_all', 'not_any' or "
        "'not_all' (got 'xor')"
    )


CYCLE = """\
[lore.ship]
keywords = ["ship"]
content = "The ship belongs to the captain."

[lore.captain]
keywords = ["captain"]
content = "The captain sails a ship."

[lore.crew]
keywords = ["crew"]
content = "The crew fear the captain."
"""


def test_a_recursion_cycle_is_a_warning_naming_its_entries(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = pack_with(tmp_path, CYCLE)
    status, out = check(root, capsys)
    line = line_of((root / "scenario.toml").read_text(), "[lore.ship]")
    assert status == 0  # it plays: recursion stops after its steps
    assert out[0].startswith(f"{root / 'scenario.toml'}:{line}:1: warning: recursion cycle: ship → captain → ship.")
    assert "set recurse = false or by_recursion = false on one of them" in out[0]
    assert out[1].endswith("; 1 warning") and ": valid: " in out[1]
    broken = pack_with(tmp_path / "b", CYCLE.replace('content = "The captain sails', 'recurse = false\ncontent = "x'))
    assert check(broken, capsys)[1] == [check(broken, capsys)[1][0]] and "warning" not in check(broken, capsys)[1][0]
    assert "warning" not in check(pack_with(tmp_path / "c", CYCLE, "recursion = 0"), capsys)[1][0]


def test_entries_that_can_never_come_in_are_warnings(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lore = '[lore.never]\nkeywords = ["k"]\ncontent = "c"\nprobability = 0\n\n'
    lore += '[lore.blind]\nkeywords = ["k"]\ncontent = "c"\nscan_depth = 0\nby_recursion = false\n\n'
    lore += '[lore.self]\nkeywords = ["k"]\nsecondary = ["k", "j"]\nlogic = "not_any"\ncontent = "c"\n'
    root = pack_with(tmp_path, lore)
    status, out = check(root, capsys)
    text = (root / "scenario.toml").read_text()
    assert status == 0
    assert out[:3] == [
        f"{root / 'scenario.toml'}:{line_of(text, 'probability = 0')}:1: warning: probability = 0: this entry never "
        "comes in",
        f"{root / 'scenario.toml'}:{line_of(text, 'scan_depth = 0')}:1: warning: its keys are looked for in no line "
        "(scan depth 0), and no other entry may bring it in: it never comes in",
        f"{root / 'scenario.toml'}:{line_of(text, 'secondary = ')}:1: warning: logic = not_any, and every keyword is "
        "a secondary key too: when a keyword is found, so is a secondary key, and the entry never comes in",
    ]


def test_groups_that_choose_nothing_are_warnings(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lore = '[lore.alone]\nkeywords = ["k"]\ncontent = "c"\ngroup = "solo"\n\n'
    lore += '[lore.pinned]\nalways = true\ncontent = "c"\ngroup = "g"\n\n'
    lore += '[lore.heavy]\nkeywords = ["k"]\ncontent = "c"\ngroup_weight = 5\n'
    status, out = check(pack_with(tmp_path, lore), capsys)
    assert status == 0
    assert [line.split(": warning: ")[1] for line in out[:3]] == [
        "the only entry of the group 'solo': a group picks one of several entries",
        "an always-on entry is in every prompt: its group chooses nothing",
        "group_weight without a group does nothing",
    ]


# -- the bundled pack, and the guide ------------------------------------------------------------


def test_the_lighthouse_uses_each_lore_rule() -> None:
    pack = load_pack(bundled_packs_dir() / "lighthouse").pack
    lore = pack.lore.values()
    assert any(entry.secondary and entry.logic == "and_any" for entry in lore)
    assert any(entry.secondary and entry.logic.startswith("not_") for entry in lore)
    assert any(key.startswith("/") for entry in lore for key in entry.keywords)
    assert any(entry.sticky for entry in lore) and any(entry.delay and entry.cooldown for entry in lore)
    assert len({entry.group for entry in lore if entry.group}) == 1
    assert pack.lore_scan.recursion == 2 and not any(entry.recurse for entry in lore if entry.sticky)


def test_in_the_lighthouse_an_answer_brings_in_the_boat_and_tom(fake_session: FakeSession) -> None:
    loaded = load_pack(bundled_packs_dir() / "lighthouse")
    output, _ = prompt_output(fake_session, loaded, episode="midnight", say="Nothing answers yet.", as_json=True)
    lore = json.loads(output)["lore"]
    how = {firing["entry"]: (firing["via"], firing["source"]) for firing in lore["fired"]}
    assert how["answering-light"] == ("key", "line 2")  # Mira: "… tell me if anything answers", by the sea
    assert how["the-boat"] == ("recursion", "answering-light") and how["tom"] == ("recursion", "the-boat")
    assert how["the-signal"] == ("key", "line 2")  # "Three long, one short": the regular expression
    moods = {"pip-hungry", "pip-wary", "pip-fond"}  # Pip's line 3: one of his moods comes in
    assert len(moods & set(how)) == 1
    assert {drop["entry"] for drop in lore["dropped"] if drop["why"] == "group"} == moods - set(how)
    assert ("storm-peak", "delay") in {(drop["entry"], drop["why"]) for drop in lore["dropped"]}


def test_the_guides_lore_example_is_real_lore() -> None:
    guide = (Path(__file__).resolve().parents[1] / "docs" / "pack-format.md").read_text()
    section = guide[guide.index("## Lore") : guide.index("## Included files")]
    example = re.search(r"```toml\n(.+?)\n```", section, re.DOTALL)
    assert example is not None
    data = tomllib.loads(example.group(1))
    LoreScan.model_validate(data["lore_scan"])
    shipped = load_pack(bundled_packs_dir() / "lighthouse").pack.lore
    for lid, entry in data["lore"].items():
        LoreEntry.model_validate(entry)
        assert lid in shipped and entry["keywords"] == shipped[lid].keywords  # drawn from the pack itself
