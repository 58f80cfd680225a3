"""Real content: a card and a world-info book shaped like SillyTavern's default character and its
world (an empty `scenario`, a long `description`, `<START>` examples, a character book with
secondary keys and timers, `extensions.world` naming a book that sits beside the card), written
here from the public formats with our own text. After `import-card` every lore field is mapped, the
description reaches the prompt once, the examples are there, and the world's entries fire on their
keys; `import-lorebook` adds a book to a pack (the bundled lighthouse) and re-imports it without
doubling; expression folders, V3 assets, a 5,000-entry book and bad input are covered too.
"""

from __future__ import annotations

import base64
import io
import json
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest
from PIL import Image, PngImagePlugin

from simularity_tui.cli_prompt import prompt_output
from simularity_tui.scenario import bundled_packs_dir, load_pack
from simularity_tui.scenario.card_errors import CardError, LorebookError
from simularity_tui.scenario.card_import import import_card
from simularity_tui.scenario.import_report import ImportReport
from simularity_tui.scenario.lorebook_import import import_lorebook
from simularity_tui.story.writing import preamble
from tests.fake_model import FakeSession

NAME = "Liora"
WORLD = "Veldoria"
# About 3,000 characters of description, in the shape of a default card's: who, where, how.
DESCRIPTION = " ".join(
    [
        "{{char}} is the warden of the Hollow, a hidden vale of old oaks deep inside the Shadowfang Forest.",
        "She is tall and slight, with hair the colour of birch bark and eyes that change with the weather,",
        "grey in the rain and green in the sun, and she moves through the undergrowth without a sound.",
        "For three hundred years she has kept the paths of the Hollow open for travellers who mean no harm,",
        "and closed them, quietly and completely, to anyone who carries an axe or a torch with ill intent.",
        "Her magic is slow and patient: she coaxes roots to close a wound, and asks rain to fall on a fever.",
        "She cannot fight the way a soldier fights, and she knows it, so she guards with wards and warnings,",
        "with fog that turns a hunter round in circles and with brambles that grow across a path overnight.",
        "{{char}} found {{user}} at dusk, lying in the ferns at the edge of the Hollow, hurt and half awake,",
        "and carried {{user}} to her cottage under the great oak, where a fire burns that gives no smoke.",
        "The cottage is one round room of living wood, with shelves of dried herbs, jars of honey and seeds,",
        "a bed of moss and wool, a table grown from the floor, and a window that looks out on the moonwell.",
        "She talks to the birds and the foxes as if they were neighbours, and they seem to answer her.",
        "She is gentle, curious about the world beyond the forest, and a little lonely, though she hides it,",
        "and she laughs easily at small things: a squirrel's temper, a wrong word, her own clumsy cooking.",
        "When she is afraid she goes very still and very formal, speaking as if to a stranger at a gate.",
        "She distrusts the court of King Aldric, whose foresters burned the eastern woods a generation ago,",
        "and she will not speak of the Ashen Wastes beyond the mountains, where her sister went and stayed.",
        "She keeps a journal of every traveller she has helped, with a pressed leaf for each of them.",
        "Her one vanity is a silver comb, a gift from a traveller long dead, which she wears every day.",
        "She has never left the forest, and part of her wants to, while the rest of her is rooted here.",
        "If {{user}} is kind, she is fiercely loyal; if {{user}} lies to her, she knows, and says so plainly.",
        "Deer come to the moonwell at night to drink, and she counts them as a shepherd counts a flock.",
        "She hums old songs while she works, songs in a language no one else in Veldoria still speaks.",
    ]
)
MES_EXAMPLE = """<START>
{{user}}: Where am I?
{{char}}: *She sets down a cup of something warm that smells of mint.* In the Hollow, under my oak. You are safe here.
<START>
{{user}}: Why did you help me?
{{char}}: Because you were hurt, and the forest asked me to. *She smiles.* And because I was curious.
<START>
{{char}}: *She frowns at the door.* Someone is on the eastern path. Stay by the fire, {{user}}."""
GREETING = "*The fire crackles.* Ah, you are awake at last, {{user}}. Lie still; the wound is closing."
PHI = "{{original}}Keep {{char}}'s replies short and gentle; never speak for {{user}}."


def character_book() -> dict:
    """A card's own book, in the card spec's shape with SillyTavern's extensions."""
    return {
        "name": "Liora's Lorebook",
        "scan_depth": 6,
        "token_budget": 900,
        "recursive_scanning": True,
        "extensions": {},
        "entries": [
            {"id": 0, "keys": ["glade", "clearing"], "secondary_keys": ["night", "moon"], "selective": True,
             "content": "The glade is where {{char}} sleeps on summer nights.", "constant": False, "enabled": True,
             "insertion_order": 20, "comment": "The glade", "position": "after_char",
             "extensions": {"selectiveLogic": 3, "scan_depth": 2, "sticky": 2, "cooldown": 1, "delay": 0,
                            "match_whole_words": True, "case_sensitive": False, "prevent_recursion": True,
                            "probability": 100, "useProbability": True, "position": 1, "depth": 4,
                            "display_index": 0, "group": ""}},
            {"id": 1, "keys": ["ward", "wards"], "secondary_keys": ["shadow"], "selective": True,
             "content": "Her wards turn hunters round in the fog.", "constant": False, "enabled": True,
             "insertion_order": 10, "comment": "Wards",
             "extensions": {"selectiveLogic": 2, "probability": 60, "useProbability": True, "delay": 3,
                            "group": "magic", "group_weight": 40}},
            {"id": 2, "keys": ["heal", "wound"], "secondary_keys": ["poison", "venom"], "selective": True,
             "content": "Roots close wounds; poison she cannot mend.", "constant": False, "enabled": True,
             "insertion_order": 30, "comment": "Healing",
             "extensions": {"selectiveLogic": 1, "group": "magic", "group_weight": 60, "exclude_recursion": True,
                            "case_sensitive": True, "group_override": True}},
            {"id": 3, "keys": [], "content": "{{char}} has sworn never to harm a living tree.", "constant": True,
             "enabled": True, "insertion_order": 1, "comment": "Vow", "extensions": {}},
        ],
    }  # fmt: skip


def world_entry(uid: int, comment: str, keys: list[str], content: str, **fields: object) -> dict:
    """A world-info entry as SillyTavern saves it: every field, most at their defaults."""
    entry = {
        "uid": uid, "key": keys, "keysecondary": [], "comment": comment, "content": content, "constant": False,
        "vectorized": False, "selective": True, "selectiveLogic": 0, "addMemo": True, "order": 100, "position": 0,
        "disable": False, "excludeRecursion": False, "preventRecursion": False, "delayUntilRecursion": False,
        "probability": 100, "useProbability": True, "depth": 4, "group": "", "groupOverride": False,
        "groupWeight": 100, "scanDepth": None, "caseSensitive": None, "matchWholeWords": None,
        "useGroupScoring": None, "automationId": "", "role": None, "sticky": 0, "cooldown": 0, "delay": 0,
        "displayIndex": uid,
    }  # fmt: skip
    entry.update(fields)
    return entry


def world_book() -> dict:
    """A world-info file in SillyTavern's object format, shaped like its default world."""
    entries = [
        world_entry(0, "Veldoria", ["Veldoria", "realm"], "Veldoria is a small kingdom of forests and hills.",
                    order=100),
        world_entry(1, "Shadowfang Forest", ["Shadowfang", "forest"], "The Shadowfang is old and does not forgive."),
        world_entry(2, "The Crystal Spire", ["/crystal (spire|tower)/gi"], "A tower of glass where mages study.",
                    position=1, order=90),
        world_entry(3, "Ashen Wastes", ["ashen", "wastes"], "Grey land beyond the mountains; few return.",
                    keysecondary=["journey", "travel"], selectiveLogic=0),
        world_entry(4, "King Aldric", ["Aldric", "king"], "King Aldric rules from Highmere, and fears the forest.",
                    keysecondary=["court"], selectiveLogic=3, caseSensitive=True, matchWholeWords=True),
        world_entry(5, "Moonwell", ["moonwell"], "The moonwell shows what was, never what will be.",
                    probability=50, sticky=3, cooldown=2, delay=1, scanDepth=3),
        world_entry(6, "Tavern rumour (wolves)", ["rumour", "tavern"], "They say the wolves speak at midwinter.",
                    group="rumours", groupWeight=30),
        world_entry(7, "Tavern rumour (ghost)", ["rumour", "tavern"], "They say a ghost keeps the old mill.",
                    group="rumours", groupWeight=70, groupOverride=True),
        world_entry(8, "The old war", ["war"], "Forty years ago the forest and the crown were at war.",
                    position=4, depth=2, role=0),
        world_entry(9, "Elder dragon", ["dragon"], "An elder dragon sleeps under Mount Carn; {{char}} has met it.",
                    excludeRecursion=True, preventRecursion=True),
        world_entry(10, "Forgotten", ["forgotten"], "An entry its author turned off.", disable=True),
        world_entry(11, "Nothing yet", ["empty"], ""),
        world_entry(12, "Author's note lore", ["note"], "Placed at the author's note in SillyTavern.", position=2),
        world_entry(13, "Magic hums", [], "Magic hums under every stone in Veldoria.", constant=True),
    ]  # fmt: skip
    return {"entries": {str(entry["uid"]): entry for entry in entries}}


def card_data(**changes: object) -> dict:
    data = {
        "name": NAME, "description": DESCRIPTION, "personality": "gentle, curious, protective", "scenario": "",
        "first_mes": GREETING, "mes_example": MES_EXAMPLE, "creator_notes": "A forest warden (test card).",
        "system_prompt": "", "post_history_instructions": PHI, "alternate_greetings": [], "tags": ["fantasy"],
        "creator": "tests", "character_version": "1.0", "character_book": character_book(),
        "extensions": {"talkativeness": "0.5", "fav": False, "world": WORLD,
                       "depth_prompt": {"prompt": "", "depth": 4, "role": "system"}},
    }  # fmt: skip
    data.update(changes)
    return data


def png_card(path: Path, data: dict, *, keyword: str = "chara", spec: str = "chara_card_v2") -> Path:
    info = PngImagePlugin.PngInfo()
    card = {"spec": spec, "spec_version": "3.0" if spec.endswith("v3") else "2.0", "data": data}
    info.add_text(keyword, base64.b64encode(json.dumps(card).encode()).decode())
    Image.new("RGB", (64, 96), (30, 90, 60)).save(path, pnginfo=info)
    return path


def tiny_png(colour: tuple[int, int, int] = (200, 80, 80)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (4, 4), colour).save(out, "PNG")
    return out.getvalue()


def cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "simularity_tui", *args], capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture
def default_card(tmp_path: Path) -> Path:
    """The card, with its world-info file beside it (as SillyTavern's worlds/ would hold it)."""
    (tmp_path / f"{WORLD}.json").write_text(json.dumps(world_book(), indent=2))
    return png_card(tmp_path / f"{NAME}.png", card_data())


# -- the default card ---------------------------------------------------------------------------


def test_the_card_and_its_world_import_with_every_field_mapped(default_card: Path, tmp_path: Path) -> None:
    report = ImportReport()
    pack = import_card(default_card, tmp_path / "out", report=report).pack
    lore = pack.lore
    glade = lore["the-glade"]
    assert (glade.keywords, glade.secondary, glade.logic) == (["glade", "clearing"], ["night", "moon"], "and_all")
    assert (glade.scan_depth, glade.sticky, glade.cooldown, glade.delay, glade.order) == (2, 2, 1, 0, 20)
    assert glade.whole_words is True and glade.case_sensitive is False and not glade.recurse and glade.by_recursion
    assert glade.content == "The glade is where Liora sleeps on summer nights."
    wards = lore["wards"]
    assert (wards.logic, wards.probability, wards.delay, wards.group, wards.group_weight) == (
        "not_any",
        60,
        3,
        "magic",
        40,
    )
    healing = lore["healing"]
    assert healing.logic == "not_all" and not healing.by_recursion and healing.case_sensitive is True
    assert healing.extensions["group_override"] is True  # not mapped: kept where the card had it
    assert lore["vow"].always and lore["vow"].keywords == []
    assert (pack.lore_scan.depth, pack.lore_scan.budget, pack.lore_scan.recursion) == (6, 900, 3)

    world = {lid: entry for lid, entry in lore.items() if entry.extensions.get("sillytavern", {}).get("book") == WORLD}
    assert len(world) == 13  # 14 entries, one without content (SillyTavern leaves it out too)
    assert lore["veldoria"].keywords == ["Veldoria", "realm"] and lore["veldoria"].extensions["sillytavern"]["uid"] == 0
    assert lore["the-crystal-spire"].keywords == ["/crystal (spire|tower)/i"]  # JavaScript's `g` means nothing here
    assert lore["the-crystal-spire"].order == 90
    ashen = lore["ashen-wastes"]
    assert ashen.secondary == ["journey", "travel"] and ashen.logic == "and_any"
    king = lore["king-aldric"]
    assert (king.logic, king.case_sensitive, king.whole_words) == ("and_all", True, True)
    assert lore["shadowfang-forest"].case_sensitive is None and lore["shadowfang-forest"].scan_depth is None
    moon = lore["moonwell"]
    assert (moon.probability, moon.sticky, moon.cooldown, moon.delay, moon.scan_depth) == (50, 3, 2, 1, 3)
    ghost, wolves = lore["tavern-rumour-ghost"], lore["tavern-rumour-wolves"]
    assert (ghost.group, ghost.group_weight, wolves.group_weight) == ("rumours", 70, 30)
    assert ghost.extensions["sillytavern"]["groupOverride"] is True
    assert lore["elder-dragon"].recurse is False and lore["elder-dragon"].by_recursion is False
    assert lore["elder-dragon"].content.endswith("Liora has met it.")  # {{char}}: the card's character
    assert lore["forgotten"].enabled is False
    assert lore["magic-hums"].always
    war = lore["the-old-war"].extensions["sillytavern"]
    assert (war["position"], war["depth"], war["role"]) == (4, 2, 0)

    unmapped = "\n".join(report.unmapped)
    assert "position 4, at a depth in the chat (2 back, as system)" in unmapped and "the-old-war" in unmapped
    assert "position 2, at the top of the author's note" in unmapped and "author-s-note-lore" in unmapped
    assert "groupOverride" in unmapped and "tavern-rumour-ghost" in unmapped and "healing" in unmapped
    assert f"13 lore entries from the world info '{WORLD}'" in report.done
    run = cli("check", str(tmp_path / "out"))
    assert run.returncode == 0, run.stdout + run.stderr


def test_the_description_reaches_the_prompt_once_and_the_examples_and_world_are_read(
    default_card: Path, tmp_path: Path
) -> None:
    loaded = import_card(default_card, tmp_path / "out")
    pack = loaded.pack
    liora = pack.characters["liora"]
    assert pack.prompt.scenario == "" and pack.prompt.instructions == ""
    assert pack.prompt.post_history == "Keep Liora's replies short and gentle; never speak for {{user}}."
    assert len(liora.example_lines) == 3 and liora.example_lines[0].startswith("{{user}}: Where am I?\nLiora: *She")
    description = liora.description.replace("{{user}}", pack.player.name)
    pinned = preamble(pack, "greeting", None)
    assert pinned.count(description) == 1
    assert pinned.count("warden of the Hollow") == 1

    session = FakeSession(n_ctx=16384)
    said = "Have you been to the Shadowfang forest, or seen the crystal spire? King Aldric's court fears it."
    document = json.loads(prompt_output(session, loaded, say=said, as_json=True)[0])
    text = "".join(part["text"] for part in document["parts"])
    assert text.count("warden of the Hollow") == 1  # what `simularity prompt` shows: once
    examples = [part["text"] for part in document["parts"] if part["label"] == "examples"]
    assert examples and "Why did you help me?" in examples[0]
    post = [part["text"] for part in document["parts"] if part["label"] == "post-history"]
    assert len(post) == 1 and "short and gentle" in post[0] and text.count("short and gentle") == 1  # after the story
    fired = {firing["entry"]: firing for firing in document["lore"]["fired"]}
    assert {"shadowfang-forest", "the-crystal-spire", "king-aldric"} <= set(fired), fired
    assert fired["the-crystal-spire"]["key"] == "/crystal (spire|tower)/i"
    assert "ashen-wastes" not in fired  # its key is not there, and its secondary keys would be needed too


def test_the_command_line_lists_what_came_in_and_what_did_not_then_checks(default_card: Path, tmp_path: Path) -> None:
    run = cli("import-card", str(default_card), str(tmp_path / "out"))
    assert run.returncode == 0, run.stderr
    out = run.stdout
    assert "4 lore entries from the card's character book" in out
    assert f"13 lore entries from the world info '{WORLD}'" in out
    assert "3 example exchanges from mes_example" in out and "as [lore_scan]" in out
    assert "not mapped" in out and "position 4" in out and "the-old-war" in out
    assert "left out 1 entries with no key" not in out  # Magic hums is constant: mapped
    assert f"{tmp_path / 'out'}: valid: {NAME}" in out and out.rstrip().endswith(
        f"simularity --pack {tmp_path / 'out'}"
    )


def test_the_book_the_card_names_is_found_in_a_worlds_folder_and_never_outside(tmp_path: Path) -> None:
    (tmp_path / "characters").mkdir()
    (tmp_path / "worlds").mkdir()
    (tmp_path / "worlds" / f"{WORLD}.json").write_text(json.dumps(world_book()))
    card = png_card(tmp_path / "characters" / "liora.png", card_data())
    pack = import_card(card, tmp_path / "out").pack
    assert "moonwell" in pack.lore
    (tmp_path / "secret.json").write_text(json.dumps(world_book()))
    hostile = png_card(tmp_path / "characters" / "evil.png", card_data(extensions={"world": "../secret"}))
    report = ImportReport()
    pack = import_card(hostile, tmp_path / "evil", report=report).pack
    assert "moonwell" not in pack.lore and any("not a plain file name" in line for line in report.unmapped)
    (tmp_path / "characters" / "link.json").symlink_to(tmp_path / "secret.json")
    linked = png_card(tmp_path / "characters" / "link.png", card_data(extensions={"world": "link"}))
    report = ImportReport()
    assert "moonwell" not in import_card(linked, tmp_path / "linked", report=report).pack.lore
    assert any("give it with --lorebook FILE" in line for line in report.unmapped)


def test_a_lorebook_given_on_the_command_line_wins(tmp_path: Path) -> None:
    book = tmp_path / "elsewhere" / "Other.json"
    book.parent.mkdir()
    book.write_text(json.dumps({"entries": {"0": world_entry(0, "Lonely", ["lonely"], "A lonely fact.")}}))
    card = png_card(tmp_path / "liora.png", card_data())
    run = cli("import-card", "--lorebook", str(book), str(card), str(tmp_path / "out"))
    assert run.returncode == 0, run.stderr
    lore = load_pack(tmp_path / "out").pack.lore
    assert "lonely" in lore and "moonwell" not in lore
    assert lore["lonely"].extensions["sillytavern"]["book"] == "Other"


# -- import-lorebook ----------------------------------------------------------------------------


def lighthouse_copy(tmp_path: Path) -> Path:
    copy = tmp_path / "lighthouse"
    shutil.copytree(bundled_packs_dir() / "lighthouse", copy)
    return copy


def write_book(path: Path, book: dict) -> Path:
    path.write_text(json.dumps(book, indent=2))
    return path


def test_import_lorebook_adds_a_book_to_the_lighthouse_and_keeps_its_files(tmp_path: Path) -> None:
    pack_dir = lighthouse_copy(tmp_path)
    manifest = (pack_dir / "scenario.toml").read_text()
    own_lore = (pack_dir / "lore.toml").read_bytes()
    before = load_pack(pack_dir).pack
    book = write_book(tmp_path / f"{WORLD}.json", world_book())
    run = cli("import-lorebook", str(book), str(pack_dir))
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"13 lore entries from the world info '{WORLD}'" in run.stdout  # "Magic hums" too: always on
    assert "not mapped" in run.stdout and "position 4" in run.stdout
    assert f"{pack_dir}: valid: The Lighthouse at Gull Point" in run.stdout
    after = load_pack(pack_dir).pack
    assert set(before.lore) < set(after.lore) and len(after.lore) == len(before.lore) + 13
    assert after.lore["moonwell"].sticky == 3 and after.lore["king-aldric"].logic == "and_all"
    assert "{{char}}" in after.lore["elder-dragon"].content  # the lighthouse has two characters: no guess
    assert (pack_dir / "lore.toml").read_bytes() == own_lore
    edited = (pack_dir / "scenario.toml").read_text()
    assert edited == manifest.replace(
        'include = ["characters.toml", "lore.toml", "achievements.toml"]',
        'include = ["characters.toml", "lore.toml", "achievements.toml", "lore/veldoria-001.toml"]',
    )
    assert (pack_dir / "lore" / "veldoria-001.toml").read_text().startswith("# simularity: imported lore")


def test_importing_a_book_again_replaces_what_it_brought(tmp_path: Path) -> None:
    pack_dir = lighthouse_copy(tmp_path)
    book = world_book()
    path = write_book(tmp_path / f"{WORLD}.json", book)
    import_lorebook(path, pack_dir)
    first = load_pack(pack_dir).pack
    files = {p: p.read_bytes() for p in pack_dir.rglob("*.toml")}
    import_lorebook(path, pack_dir)  # the same book: nothing changes
    assert {p: p.read_bytes() for p in pack_dir.rglob("*.toml")} == files
    # The author edits the book: an entry goes, one changes, one comes; ids stay for the others.
    del book["entries"]["6"]
    book["entries"]["5"]["content"] = "The moonwell is dry this year."
    book["entries"]["14"] = world_entry(14, "Highmere", ["Highmere"], "The king's city, all white stone.")
    write_book(path, book)
    report = ImportReport()
    second = import_lorebook(path, pack_dir, report).pack
    assert "tavern-rumour-wolves" not in second.lore and second.lore["highmere"].keywords == ["Highmere"]
    assert second.lore["moonwell"].content == "The moonwell is dry this year."
    assert set(second.lore) == set(first.lore) - {"tavern-rumour-wolves"} | {"highmere"}
    assert any("replaced the 13 entries" in line for line in report.done)
    assert (pack_dir / "scenario.toml").read_text().count("lore/veldoria-001.toml") == 1


def test_the_world_a_card_brought_is_replaced_by_importing_the_book_later(default_card: Path, tmp_path: Path) -> None:
    first = import_card(default_card, tmp_path / "out").pack
    again = import_lorebook(default_card.with_name(f"{WORLD}.json"), tmp_path / "out").pack
    assert set(again.lore) == set(first.lore) and again.lore["elder-dragon"] == first.lore["elder-dragon"]


def test_an_entry_the_author_moved_is_theirs_and_not_imported_again(tmp_path: Path) -> None:
    pack_dir = lighthouse_copy(tmp_path)
    path = write_book(tmp_path / f"{WORLD}.json", world_book())
    import_lorebook(path, pack_dir)
    imported = pack_dir / "lore" / "veldoria-001.toml"
    data = tomllib.loads(imported.read_text())
    moonwell = data["lore"].pop("moonwell")
    moonwell["content"] = "My own moonwell."
    import tomli_w

    with (pack_dir / "lore.toml").open("a") as handle:
        handle.write("\n" + tomli_w.dumps({"lore": {"moonwell": moonwell}}))
    imported.write_text("# simularity: imported lore: edited by hand\n" + tomli_w.dumps(data))
    report = ImportReport()
    pack = import_lorebook(path, pack_dir, report).pack
    assert pack.lore["moonwell"].content == "My own moonwell." and "moonwell-2" not in pack.lore
    assert any("where you moved them" in line for line in report.done)


def test_a_book_of_5000_entries_imports_and_checks_in_reasonable_time(tmp_path: Path) -> None:
    pack_dir = lighthouse_copy(tmp_path)
    entries = {
        str(n): world_entry(n, f"Fact {n}", [f"key{n}", f"word{n}"], f"Fact number {n}: " + "lore " * 60,
                            keysecondary=[f"also{n}"] if n % 3 == 0 else [], selectiveLogic=n % 4,
                            group=f"g{n % 50}" if n % 7 == 0 else "", sticky=n % 3)
        for n in range(5000)
    }  # fmt: skip
    path = write_book(tmp_path / "Big.json", {"entries": entries})
    started = time.perf_counter()
    run = cli("import-lorebook", str(path), str(pack_dir))
    took = time.perf_counter() - started
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr
    assert "5,000 lore entries" in run.stdout and "valid" in run.stdout
    assert took < 60, f"{took:.1f} s"
    pack = load_pack(pack_dir).pack
    assert len([e for e in pack.lore.values() if e.extensions.get("sillytavern", {}).get("book") == "Big"]) == 5000
    assert all(p.stat().st_size < 1 << 20 for p in pack_dir.rglob("*.toml"))


# -- bad input ----------------------------------------------------------------------------------


def test_malformed_world_info_json_is_an_error_at_its_line_and_column(tmp_path: Path) -> None:
    pack_dir = lighthouse_copy(tmp_path)
    path = tmp_path / "broken.json"
    path.write_text('{\n  "entries": {\n    "0": {"key": ["a"], "content": "b",}\n  }\n}\n')
    run = cli("import-lorebook", str(path), str(pack_dir))
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert f"{path}:3:40: not valid JSON" in run.stderr, run.stderr
    assert load_pack(pack_dir).pack.lore.keys() == load_pack(bundled_packs_dir() / "lighthouse").pack.lore.keys()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"selectiveLogic": 7}, "entry 4 ('King Aldric'): 'selectiveLogic' is '7', which is not a secondary-key logic"),
        ({"order": "soon"}, "entry 4 ('King Aldric'): 'order' should be a number"),
        ({"key": ["/unclosed(/i"]}, "entry 4 ('King Aldric'): the key '/unclosed(/i' the regular expression"),
        ({"keysecondary": [3]}, "entry 4 ('King Aldric'): 'keysecondary' should be a list of text"),
    ],
)
def test_a_bad_value_names_the_entry_and_the_field(tmp_path: Path, change: dict, message: str) -> None:
    pack_dir = lighthouse_copy(tmp_path)
    book = world_book()
    book["entries"]["4"].update(change)
    path = write_book(tmp_path / f"{WORLD}.json", book)
    files = {p: p.read_bytes() for p in pack_dir.rglob("*") if p.is_file()}
    with pytest.raises(LorebookError, match=message.replace("(", r"\(").replace(")", r"\)")):
        import_lorebook(path, pack_dir)
    assert {p: p.read_bytes() for p in pack_dir.rglob("*") if p.is_file()} == files  # nothing written
    run = cli("import-lorebook", str(path), str(pack_dir))
    assert run.returncode == 2 and "Traceback" not in run.stderr and "King Aldric" in run.stderr


def test_a_card_book_with_an_unknown_logic_is_refused(tmp_path: Path) -> None:
    book = character_book()
    book["entries"][1]["extensions"]["selectiveLogic"] = 9
    card = png_card(tmp_path / "liora.png", card_data(character_book=book, extensions={}))
    with pytest.raises(CardError, match=r"entry 1 \('Wards'\), extensions: 'selectiveLogic' is '9'"):
        import_card(card, tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"lorebookVersion": 5, "entries": []}', "a NovelAI lorebook"),
        ('{"entries": {"0": "not an entry"}}', "entry 0 should be an object"),
        ('{"name": "no entries"}', "no 'entries' object"),
        ("[1, 2]", "not a lorebook object"),
        ('{"entries": {}}', "no entries with content"),
    ],
)
def test_what_is_not_a_world_info_file_is_said_so(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "book.json"
    path.write_text(content)
    with pytest.raises(LorebookError, match=message):
        import_lorebook(path, lighthouse_copy(tmp_path))


def test_control_characters_in_a_book_are_cleaned_and_said_once(tmp_path: Path) -> None:
    pack_dir = lighthouse_copy(tmp_path)
    book = {"entries": {"0": world_entry(0, "Evil\x1b[2J", ["bad\x1bkey"], "Text\x00 with \x9bcontrols")}}
    run = cli("import-lorebook", str(write_book(tmp_path / "evil.json", book)), str(pack_dir))
    assert run.returncode == 0, run.stderr
    written = "".join(p.read_text() for p in pack_dir.rglob("*.toml"))
    assert "\x1b" not in written and "\x00" not in written and "\x9b" not in written
    assert "\x1b" not in run.stdout + run.stderr
    assert run.stderr.count("control characters") == 1


# -- pictures -----------------------------------------------------------------------------------


def test_an_expression_folder_becomes_the_characters_expressions(tmp_path: Path) -> None:
    folder = tmp_path / "Liora"
    folder.mkdir()
    labels = ["joy", "anger", "neutral", "surprise", "sadness"]
    for number, label in enumerate(labels):
        (folder / f"{label}.png").write_bytes(tiny_png((40 * number, 90, 90)))
    (folder / "joy-1.png").write_bytes(tiny_png())
    (folder / "fear.png").write_bytes(b"not a picture")
    (folder / "notes.txt").write_text("hello")
    card = png_card(tmp_path / "liora.png", card_data(extensions={}))
    report = ImportReport()
    pack = import_card(card, tmp_path / "out", expressions=folder, report=report).pack
    liora = pack.characters["liora"]
    assert set(liora.expressions) == set(labels)
    assert liora.expressions["joy"] == "art/expressions/joy.png" and liora.default_expression == "neutral"
    assert (tmp_path / "out" / "art" / "expressions" / "joy.png").read_bytes() == (folder / "joy.png").read_bytes()
    unmapped = "\n".join(report.unmapped)
    assert "fear.png: not an image" in unmapped and "notes.txt" in unmapped and "joy-1.png" in unmapped
    assert pack.episodes["greeting"].characters[0].expression == "neutral"
    run = cli("check", str(tmp_path / "out"))
    assert run.returncode == 0, run.stdout


def test_v3_assets_become_expressions_and_scenes(tmp_path: Path) -> None:
    def data_uri(colour: tuple[int, int, int]) -> str:
        return "data:image/png;base64," + base64.b64encode(tiny_png(colour)).decode()

    assets = [
        {"type": "icon", "uri": "ccdefault:", "name": "main", "ext": "png"},
        {"type": "emotion", "uri": data_uri((250, 200, 0)), "name": "Joy", "ext": "png"},
        {"type": "expression", "uri": data_uri((0, 0, 250)), "name": "sadness", "ext": "png"},
        {"type": "background", "uri": data_uri((10, 60, 10)), "name": "Forest Hollow", "ext": "png"},
        {"type": "emotion", "uri": "embeded://assets/emotion/anger.png", "name": "anger", "ext": "png"},
        {"type": "background", "uri": "https://example.com/bg.png", "name": "far", "ext": "png"},
        {"type": "emotion", "uri": "data:image/png;base64,@@@", "name": "fear", "ext": "png"},
    ]
    card = png_card(tmp_path / "liora.png", card_data(assets=assets, extensions={}), keyword="ccv3",
                    spec="chara_card_v3")  # fmt: skip
    report = ImportReport()
    pack = import_card(card, tmp_path / "out", report=report).pack
    liora = pack.characters["liora"]
    assert set(liora.expressions) == {"neutral", "joy", "sadness"}  # neutral: the card's own image
    assert pack.scenes["forest-hollow"].background == "art/scenes/forest-hollow.png"
    assert pack.scenes["forest-hollow"].name == "Forest Hollow"
    unmapped = "\n".join(report.unmapped)
    assert "'anger': it is inside a CHARX archive" in unmapped and "'far': it is on the web" in unmapped
    assert "'fear': a data: uri that is not valid base64" in unmapped
    kept = liora.extensions["card"]["assets"]
    assert kept[1]["uri"] == "data: (read at import)" and kept[4]["uri"].startswith("embeded://")
    run = cli("check", str(tmp_path / "out"))
    assert run.returncode == 0, run.stdout


def test_a_pack_that_would_not_load_is_put_back_as_it_was(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from simularity_tui.scenario import PackProblems, lorebook_install
    from simularity_tui.toml_source import Problem

    def refuse(root: Path) -> None:
        raise PackProblems([Problem(root / "scenario.toml", 1, 1, "made invalid by the test")], hint="")

    pack_dir = lighthouse_copy(tmp_path)
    files = {p: p.read_bytes() for p in pack_dir.rglob("*") if p.is_file()}
    monkeypatch.setattr(lorebook_install, "load_pack", refuse)
    with pytest.raises(LorebookError, match="made invalid by the test"):
        import_lorebook(write_book(tmp_path / f"{WORLD}.json", world_book()), pack_dir)
    assert {p: p.read_bytes() for p in pack_dir.rglob("*") if p.is_file()} == files


def test_a_lore_folder_that_is_a_link_is_never_written_through(tmp_path: Path) -> None:
    pack_dir = lighthouse_copy(tmp_path)
    (tmp_path / "elsewhere").mkdir()
    (pack_dir / "lore").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(CardError, match="symbolic link"):
        import_lorebook(write_book(tmp_path / f"{WORLD}.json", world_book()), pack_dir)
    assert not list((tmp_path / "elsewhere").iterdir())


def test_a_cards_recommended_context_becomes_the_packs(tmp_path: Path) -> None:
    card = png_card(tmp_path / "liora.png", card_data(extensions={"recommended_n_ctx": 8192}))
    assert import_card(card, tmp_path / "out").pack.recommended_n_ctx == 8192
