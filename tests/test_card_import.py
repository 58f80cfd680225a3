"""`simularity import-card`: SillyTavern cards (V1, V2, V3; PNG and JSON), built here by the public
specs, become packs that `simularity check` accepts; hostile cards get a clear error."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from PIL import Image, PngImagePlugin

from simularity_tui.scenario import load_pack
from simularity_tui.scenario.card_import import CardError, import_card
from tests.packs import png_claiming

BOOK = {
    "name": "Glade lore",
    "entries": [
        {"keys": ["glade", "clearing"], "content": "The glade is {{char}}'s home.", "extensions": {"depth": 4},
         "enabled": True, "insertion_order": 10, "constant": False, "name": "The glade", "priority": 5},
        {"keys": [], "content": "Old magic hums under the trees.", "constant": True, "enabled": True,
         "insertion_order": 1, "extensions": {}},
        {"keys": ["wolf"], "content": "Wolves avoid the glade.", "enabled": False, "insertion_order": 2,
         "extensions": {}, "comment": "wolves"},
    ],
}  # fmt: skip
V1 = {
    "name": "Seraphina",
    "description": "<BOT> guards the forest and watches over <USER>.",
    "personality": "gentle, protective",
    "scenario": "<USER> wakes up in <BOT>'s glade.",
    "first_mes": "*<BOT> kneels beside you.* You're awake.",
    "mes_example": "<START>\n<USER>: Where am I?\n<BOT>: Safe.",
}


def v2(name: str = "Seraphina") -> dict:
    return {
        "spec": "chara_card_v2",
        "spec_version": "2.0",
        "data": {
            "name": name,
            "description": "{{char}} guards the forest and watches over {{user}}.",
            "personality": "gentle, protective",
            "scenario": "{{user}} wakes up in {{char}}'s glade.",
            "first_mes": "*{{char}} kneels beside you.* You're awake, {{user}}.",
            "mes_example": "<START>\n{{user}}: Where am I?\n{{char}}: Safe.",
            "creator_notes": "A gentle forest guardian.",
            "system_prompt": "Write in the third person.",
            "post_history_instructions": "",
            "alternate_greetings": ["Good morning, {{user}}.", "The forest is quiet tonight."],
            "character_book": BOOK,
            "tags": ["fantasy", "guardian"],
            "creator": "card-author",
            "character_version": "2.1",
            "extensions": {
                "talkativeness": "0.5",
                "fav": False,
                "world": None,
                "depth_prompt": {"depth": 4, "prompt": "x"},
            },
        },
    }


def v3(name: str = "Seraphina III") -> dict:
    card = v2(name)
    card["spec"], card["spec_version"] = "chara_card_v3", "3.0"
    card["data"].update({"nickname": "Sera", "group_only_greetings": [], "creation_date": 1700000000,
                         "assets": [{"type": "icon", "uri": "ccdefault:", "name": "main", "ext": "png"}]})  # fmt: skip
    return card


def png_card(path: Path, chunks: dict[str, dict]) -> Path:
    info = PngImagePlugin.PngInfo()
    for keyword, card in chunks.items():
        info.add_text(keyword, base64.b64encode(json.dumps(card).encode()).decode())
    Image.new("RGB", (200, 300), (40, 120, 60)).save(path, pnginfo=info)
    return path


def check(pack: Path) -> None:
    run = subprocess.run([sys.executable, "-m", "simularity_tui", "check", str(pack)], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr


def test_a_v1_json_card(tmp_path: Path) -> None:
    card = tmp_path / "v1.json"
    card.write_text(json.dumps(V1))
    pack = import_card(card, tmp_path / "out").pack
    check(tmp_path / "out")
    sera = pack.characters["seraphina"]
    assert sera.description == "Seraphina guards the forest and watches over {{user}}."  # <BOT>/<USER> handled
    assert pack.prompt.scenario == "{{user}} wakes up in Seraphina's glade."
    assert pack.episodes["greeting"].lines[0].text == "*Seraphina kneels beside you.* You're awake."
    assert sera.example_lines == ["{{user}}: Where am I?\nSeraphina: Safe."]
    assert pack.player.name == "You" and not sera.expressions  # a JSON card has no avatar


def test_a_v2_png_card(tmp_path: Path) -> None:
    card = png_card(tmp_path / "sera.png", {"chara": v2()})
    loaded = import_card(card, tmp_path / "out")
    check(tmp_path / "out")
    pack = loaded.pack
    sera = pack.characters["seraphina"]
    assert sera.expressions == {"neutral": "art/avatar.png"} and pack.cover == "art/avatar.png"
    with Image.open(loaded.root / "art" / "avatar.png") as avatar:
        assert avatar.size == (200, 300) and "chara" not in getattr(avatar, "text", {})  # pixels only
    assert list(pack.episodes) == ["greeting", "greeting-2", "greeting-3"]
    assert pack.episodes["greeting-2"].lines[0].text == "Good morning, {{user}}."
    assert (
        pack.lore["the-glade"].keywords == ["glade", "clearing"]
        and pack.lore["the-glade"].content == "The glade is Seraphina's home."
    )
    assert pack.lore["entry-2"].always and not pack.lore["wolves"].enabled
    assert pack.lore["the-glade"].order == 10  # insertion_order is mapped; what is not stays under extensions
    assert pack.lore["the-glade"].extensions == {"depth": 4, "card": {"name": "The glade", "priority": 5}}
    assert sera.extensions == {
        "talkativeness": "0.5",
        "fav": False,
        "depth_prompt": {"depth": 4, "prompt": "x"},
        "card": {"character_book": {"name": "Glade lore"}},  # the book's own data, beside its entries
    }
    assert pack.prompt.instructions == "Write in the third person."
    assert pack.version == "2.1" and pack.author == "card-author" and pack.tags == ["fantasy", "guardian"]


def test_a_v2_json_card(tmp_path: Path) -> None:
    card = tmp_path / "sera.json"
    card.write_text(json.dumps(v2()))
    assert import_card(card, tmp_path / "out").pack.characters["seraphina"].personality == "gentle, protective"
    check(tmp_path / "out")


def test_v3_wins_over_v2_in_the_same_png_and_keeps_its_extra_fields(tmp_path: Path) -> None:
    card = png_card(tmp_path / "both.png", {"chara": v2("Old Name"), "ccv3": v3("Seraphina III")})
    pack = import_card(card, tmp_path / "out").pack
    check(tmp_path / "out")
    assert "seraphina-iii" in pack.characters and "old-name" not in pack.characters
    kept = pack.characters["seraphina-iii"].extensions["card"]
    assert kept["nickname"] == "Sera" and kept["assets"][0]["uri"] == "ccdefault:"
    raw = tomllib.loads((tmp_path / "out" / "scenario.toml").read_text())
    assert raw["extensions"]["card"]["spec"] == "chara_card_v3"


def test_the_command_line(tmp_path: Path) -> None:
    card = png_card(tmp_path / "sera.png", {"chara": v2()})
    run = subprocess.run([sys.executable, "-m", "simularity_tui", "import-card", str(card), str(tmp_path / "out")],
                         capture_output=True, text=True)  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert load_pack(tmp_path / "out").pack.name == "Seraphina"
    again = subprocess.run([sys.executable, "-m", "simularity_tui", "import-card", str(card), str(tmp_path / "out")],
                           capture_output=True, text=True)  # fmt: skip
    assert again.returncode == 2 and "already holds a pack" in again.stderr and "Traceback" not in again.stderr


def _bomb(path: Path) -> Path:
    """A real card whose IHDR claims 30000 × 30000 pixels."""
    png_card(path, {"chara": v2()})
    data = path.read_bytes()
    claiming = png_claiming(path.with_name("claim.png"), 30000, 30000)
    path.write_bytes(claiming.read_bytes()[:33] + data[33:])  # signature + IHDR, then the card's chunks
    return path


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p.write_text("just some notes"), "neither a PNG nor JSON"),
        (lambda p: p.write_text("{ not json"), "is not valid JSON (line 1"),
        (lambda p: p.write_text("[1, 2]"), "not a card object"),
        (lambda p: p.write_text('{"spec": "chara_card_v2", "data": "x"}'), "needs a 'data' object"),
        (lambda p: p.write_text('{"name": 5}'), "has no character name"),
        (lambda p: p.write_text('{"name": "A", "first_mes": 3}'), "'first_mes' should be text"),
        (lambda p: p.write_text('{"name": "A", "character_book": [1]}'), "'character_book' should be an object"),
        (lambda p: Image.new("RGB", (10, 10)).save(p, format="PNG"), "without a character card in it"),
        (lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40), "is a damaged PNG"),
        (lambda p: _bad_chunk(p, "@@@not base64@@@"), "not valid base64"),
        (lambda p: _bad_chunk(p, base64.b64encode(b"\xff\xfe garbage").decode()), "is not UTF-8 text"),
        (lambda p: _bomb(p), "claims more pixels than any image may have"),
        (lambda p: _sparse(p, 40 << 20), "a card may be at most 32 MiB"),
    ],
)
def test_hostile_cards_get_a_clear_error(tmp_path: Path, make, message: str) -> None:  # type: ignore[no-untyped-def]
    card = tmp_path / "card.png"
    make(card)
    with pytest.raises(CardError, match=message.replace("(", r"\(")):
        import_card(card, tmp_path / "out")
    assert not (tmp_path / "out" / "scenario.toml").exists()
    run = subprocess.run([sys.executable, "-m", "simularity_tui", "import-card", str(card), str(tmp_path / "out")],
                         capture_output=True, text=True)  # fmt: skip
    assert run.returncode == 2 and "Traceback" not in run.stderr and message.split("(")[0] in run.stderr


def _bad_chunk(path: Path, text: str) -> None:
    info = PngImagePlugin.PngInfo()
    info.add_text("chara", text)
    Image.new("RGB", (10, 10)).save(path, pnginfo=info)


def _sparse(path: Path, size: int) -> None:
    with path.open("wb") as handle:
        handle.truncate(size)
