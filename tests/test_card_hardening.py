"""`simularity import-card` against hostile and oversized cards: never a traceback, never an
unbounded read, never a write outside OUT_DIR, and real-sized content imported whole.

Every hostile input is built here, by the PNG and card specs, rather than kept as a fixture file.
"""

from __future__ import annotations

import base64
import functools
import json
import os
import resource
import struct
import subprocess
import sys
import time
import tomllib
import zlib
from pathlib import Path

import pytest
from PIL import Image

from simularity_tui.scenario import PackProblems, card_build, card_install, load_pack
from simularity_tui.scenario.card_import import CardError, import_card
from simularity_tui.text_rules import name_problem
from simularity_tui.toml_source import Problem

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
CONTROLS = ("\x1b", "\x00", "\x07", "\x9b", "\\u001b", "\\u0000", "\\u0007", "\\u009b", "\\e")


def card(name: str = "Seraphina", **data: object) -> dict:
    return {
        "spec": "chara_card_v2",
        "spec_version": "2.0",
        "data": {"name": name, "description": "{{char}} guards the forest.", "first_mes": "Hello, {{user}}.", **data},
    }


def json_card(path: Path, content: object) -> Path:
    path.write_text(json.dumps(content))
    return path


def cli(*args: str, timeout: float = 120, memory: int | None = None) -> subprocess.CompletedProcess[str]:
    """`simularity ARGS`; `memory` caps the child's address space (a runaway read fails fast)."""

    def limit() -> None:
        if memory is not None:
            resource.setrlimit(resource.RLIMIT_AS, (memory, memory))

    return subprocess.run(
        [sys.executable, "-m", "simularity_tui", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=limit,
    )


def assert_refused(run: subprocess.CompletedProcess[str], *words: str) -> None:
    """Exit status 2 and a message of one or two lines (what is wrong, what to do); no traceback."""
    lines = run.stderr.strip().splitlines()
    assert run.returncode == 2, run.stdout + run.stderr
    assert "Traceback" not in run.stderr and 1 <= len(lines) <= 2, run.stderr
    assert lines[0].startswith("simularity: "), run.stderr
    for word in words:
        assert word in run.stderr, run.stderr


def check(pack: Path) -> None:
    run = cli("check", str(pack))
    assert run.returncode == 0, run.stdout + run.stderr


def chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def text_chunk(keyword: str, text: str, kind: bytes = b"tEXt", *, compressed: bool = False) -> bytes:
    """A PNG text chunk, written by the PNG spec (section 11.3.4)."""
    key = keyword.encode("latin-1") + b"\0"
    if kind == b"tEXt":
        return chunk(kind, key + text.encode("latin-1"))
    if kind == b"zTXt":
        return chunk(kind, key + b"\0" + zlib.compress(text.encode("latin-1")))
    body = zlib.compress(text.encode()) if compressed else text.encode()
    return chunk(kind, key + (b"\1\0" if compressed else b"\0\0") + b"en\0\0" + body)


def card_chunk(content: object, kind: bytes = b"tEXt", *, keyword: str = "chara", compressed: bool = False) -> bytes:
    return text_chunk(keyword, base64.b64encode(json.dumps(content).encode()).decode(), kind, compressed=compressed)


def png(*, frames: int = 1, before: bytes = b"", after: bytes = b"", side: int = 2, claim: int = 0) -> bytes:
    """A `side`×`side` RGB PNG (whose header may `claim` another size); with frames > 1, an APNG
    whose frames all follow the default image."""

    @functools.cache
    def pixels(shade: int) -> bytes:
        return zlib.compress(b"".join(b"\0" + bytes((shade, 40, 90)) * side for _ in range(side)))

    def frame_control(sequence: int) -> bytes:
        return chunk(b"fcTL", struct.pack(">IIIIIHHBB", sequence, side, side, 0, 0, 1, 10, 0, 0))

    parts = [
        PNG_SIGNATURE,
        chunk(b"IHDR", struct.pack(">IIBBBBB", claim or side, claim or side, 8, 2, 0, 0, 0)),
        before,
    ]
    if frames > 1:
        parts += [chunk(b"acTL", struct.pack(">II", frames, 0)), frame_control(0)]
    parts.append(chunk(b"IDAT", pixels(0)))
    sequence = 1
    for number in range(1, frames):
        parts.append(frame_control(sequence))
        parts.append(chunk(b"fdAT", struct.pack(">I", sequence + 1) + pixels(number % 256)))
        sequence += 2
    parts += [after, chunk(b"IEND", b"")]
    return b"".join(parts)


def written_text(root: Path) -> str:
    return "".join(path.read_text() for path in sorted(root.rglob("*.toml")))


# -- 1. tracebacks ------------------------------------------------------------------------------


def test_a_5000_digit_integer_is_kept_as_text(tmp_path: Path) -> None:
    path = tmp_path / "big.json"
    path.write_text(json.dumps(card()).replace('"description"', '"rating": ' + "7" * 5000 + ', "description"'))
    run = cli("import-card", str(path), str(tmp_path / "out"))
    assert run.returncode == 0 and "Traceback" not in run.stderr, run.stderr
    assert load_pack(tmp_path / "out").pack.characters["seraphina"].extensions["card"]["rating"] == "7" * 5000
    check(tmp_path / "out")


def _nested(depth: int, kind: str) -> object:
    value: object = "core"
    for _ in range(depth):
        value = {"k": value} if kind == "objects" else [value]
    return value


@pytest.mark.parametrize("kind", ["objects", "arrays"])
@pytest.mark.parametrize("depth", [300, 900, 100_000])
def test_json_nested_too_deep_is_refused(tmp_path: Path, depth: int, kind: str) -> None:
    path = tmp_path / "deep.json"
    nested = "[" * depth + "1" + "]" * depth if kind == "arrays" else '{"k":' * depth + "1" + "}" * depth
    path.write_text(json.dumps(card()).replace('"description"', f'"deep": {nested}, "description"'))
    run = cli("import-card", str(path), str(tmp_path / "out"))
    assert_refused(run, str(path), "nests")
    assert not (tmp_path / "out").exists()


def test_data_nested_deep_but_within_bounds_stays_within_what_a_pack_may_hold(tmp_path: Path) -> None:
    deep = _nested(50, "objects")
    pack = import_card(json_card(tmp_path / "c.json", card(extensions={"deep": deep})), tmp_path / "out").pack
    check(tmp_path / "out")
    kept = pack.characters["seraphina"].extensions["deep"]
    for _ in range(card_build.KEPT_DEPTH - 1):
        kept = kept["k"]
    assert isinstance(kept, str) and json.loads(kept) == _nested(
        51 - card_build.KEPT_DEPTH, "objects"
    )  # deeper levels kept as JSON text


@pytest.mark.parametrize("where", ["under a file", "in /sys"])
def test_an_out_dir_that_cannot_be_written_is_a_clear_error(tmp_path: Path, where: str) -> None:
    source = json_card(tmp_path / "c.json", card())
    if where == "under a file":
        (tmp_path / "file").write_text("not a directory")
        out = tmp_path / "file" / "pack"
    else:
        if not Path("/sys/kernel").is_dir():
            pytest.skip("no /sys here")
        out = Path("/sys/kernel/simularity-pack")
    run = cli("import-card", str(source), str(out))
    assert_refused(run, str(out))
    assert not out.exists()


# -- 2. unbounded reads -------------------------------------------------------------------------


def test_a_device_is_refused_before_it_is_read() -> None:
    if not Path("/dev/zero").exists():
        pytest.skip("no /dev/zero here")
    run = cli("import-card", "/dev/zero", "/nonexistent-out", timeout=60, memory=2 << 30)
    assert_refused(run, "/dev/zero", "not a regular file")


def test_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path: Path) -> None:
    fifo = tmp_path / "card.png"
    os.mkfifo(fifo)
    run = cli("import-card", str(fifo), str(tmp_path / "out"), timeout=30)
    assert_refused(run, str(fifo), "not a regular file")


# -- 3. PNG text chunks, read without decoding frames -------------------------------------------


def test_an_animated_card_of_20000_frames_imports_in_well_under_a_few_seconds(tmp_path: Path) -> None:
    path = tmp_path / "animated.png"
    path.write_bytes(png(frames=20_000, side=400, after=card_chunk(card())))  # 21 MB
    started = time.monotonic()
    loaded = import_card(path, tmp_path / "out")
    elapsed = time.monotonic() - started
    assert elapsed < 5, f"{elapsed:.1f} s"  # Pillow's way (every frame decoded to reach the text) took ~34 s
    assert loaded.pack.name == "Seraphina"
    with Image.open(loaded.root / "art" / "avatar.png") as avatar:
        assert avatar.size == (400, 400) and not getattr(avatar, "is_animated", False)
        assert avatar.convert("RGB").getpixel((0, 0)) == (0, 40, 90)  # the default image, not a later frame


@pytest.mark.parametrize(
    "make",
    [
        lambda c: card_chunk(c, b"tEXt"),
        lambda c: card_chunk(c, b"zTXt"),
        lambda c: card_chunk(c, b"iTXt"),
        lambda c: card_chunk(c, b"iTXt", compressed=True),
        lambda c: card_chunk(c, keyword="CHARA"),
    ],
    ids=["tEXt", "zTXt", "iTXt", "compressed iTXt", "keyword case"],
)
def test_every_kind_of_text_chunk_carries_a_card(tmp_path: Path, make) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "card.png"
    path.write_bytes(png(before=make(card("Before")), after=make(card("After", extensions={"x": 1}))))
    assert import_card(path, tmp_path / "out").pack.name == "Before"  # the first chunk of a keyword counts


def test_ccv3_still_wins_over_chara_wherever_it_is(tmp_path: Path) -> None:
    v3 = card("Third")
    v3["spec"] = "chara_card_v3"
    path = tmp_path / "card.png"
    path.write_bytes(png(before=card_chunk(card("Second")), after=card_chunk(v3, keyword="ccv3")))
    assert import_card(path, tmp_path / "out").pack.name == "Third"


def _corrupt_crc(data: bytes) -> bytes:
    at = data.index(b"tEXt") + 4
    return data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1 :]  # first byte of the chunk's data


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: _corrupt_crc(png(after=card_chunk(card()))), "damaged PNG"),
        (lambda: png(after=card_chunk(card()))[:-12], "damaged PNG"),  # no IEND
        (lambda: png(after=chunk(b"zTXt", b"chara\0\0" + zlib.compress(b"A" * (64 << 20)))), "too large"),
        (lambda: png(after=chunk(b"zTXt", b"chara\0\0not zlib at all")), "damaged PNG"),
        (lambda: png(after=chunk(b"iTXt", b"chara\0\1\0\0\0" + zlib.compress(b"A" * (64 << 20)))), "too large"),
        (lambda: PNG_SIGNATURE + struct.pack(">I", 0xFFFFFFF0) + b"tEXt", "damaged PNG"),
        (lambda: png(claim=5000, after=card_chunk(card())), "5000×5000"),
    ],
    ids=["bad crc", "no IEND", "zTXt bomb", "bad zlib", "iTXt bomb", "huge length", "huge image"],
)
def test_damaged_pngs_get_a_clear_error(tmp_path: Path, make, message: str) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "card.png"
    path.write_bytes(make())
    run = cli("import-card", str(path), str(tmp_path / "out"))
    assert_refused(run, str(path), message)
    assert not (tmp_path / "out").exists()


# -- 4. all or nothing, only inside OUT_DIR -----------------------------------------------------


def test_a_symlink_inside_out_dir_is_never_written_through(tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "art").symlink_to(outside)
    path = tmp_path / "card.png"
    path.write_bytes(png(after=card_chunk(card())))
    run = cli("import-card", str(path), str(tmp_path / "out"))
    assert_refused(run, str(tmp_path / "out" / "art"), "link")
    assert list(outside.iterdir()) == [] and sorted(p.name for p in (tmp_path / "out").iterdir()) == ["art"]


def test_an_out_dir_that_is_a_symlink_is_refused(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "out").symlink_to(tmp_path / "real")
    run = cli("import-card", str(json_card(tmp_path / "c.json", card())), str(tmp_path / "out"))
    assert_refused(run, str(tmp_path / "out"), "link")
    assert list((tmp_path / "real").iterdir()) == []


def _invalid(root: Path) -> None:
    raise PackProblems([Problem(root / "scenario.toml", 1, 1, "made invalid by the test")], hint="")


def test_a_pack_that_does_not_validate_leaves_no_out_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(card_install, "load_pack", _invalid)
    path = tmp_path / "card.png"
    path.write_bytes(png(after=card_chunk(card(character_book={"entries": [{"keys": ["a"], "content": "b"}]}))))
    with pytest.raises(CardError, match="made invalid by the test"):
        import_card(path, tmp_path / "new" / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["card.png"]  # not even the parent, nor a temporary


def test_a_refused_replacement_leaves_the_old_pack_untouched(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = json_card(tmp_path / "c.json", card("Old"))
    import_card(source, tmp_path / "out")
    before = {p: p.read_bytes() for p in (tmp_path / "out").rglob("*") if p.is_file()}
    monkeypatch.setattr(card_install, "load_pack", _invalid)
    with pytest.raises(CardError):
        import_card(json_card(tmp_path / "c.json", card("New")), tmp_path / "out", replace=True)
    assert {p: p.read_bytes() for p in (tmp_path / "out").rglob("*") if p.is_file()} == before


def test_force_replaces_the_imported_files_and_keeps_the_others(tmp_path: Path) -> None:
    path = tmp_path / "card.png"
    path.write_bytes(png(after=card_chunk(card("Old"))))
    import_card(path, tmp_path / "out")
    (tmp_path / "out" / "notes.txt").write_text("mine")
    path.write_bytes(png(side=3, after=card_chunk(card("New"))))
    run = cli("import-card", "--force", str(path), str(tmp_path / "out"))
    assert run.returncode == 0, run.stderr
    assert load_pack(tmp_path / "out").pack.name == "New" and (tmp_path / "out" / "notes.txt").read_text() == "mine"
    with Image.open(tmp_path / "out" / "art" / "avatar.png") as avatar:
        assert avatar.size == (3, 3)
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]  # no temporary left


# -- 5. real-sized content ----------------------------------------------------------------------


def _book(entries: int, size: int = 300) -> dict:
    return {
        "entries": [
            {"keys": [f"key{n}"], "content": f"Entry {n}: " + "lore " * (size // 5), "name": f"Entry {n}"}
            for n in range(entries)
        ]
    }


def test_long_text_and_a_book_of_5000_entries_import_whole(tmp_path: Path) -> None:
    description = "The forest remembers. " * 1820  # 40,040 characters
    greeting = "A long greeting. " * 600  # 10,200: more than the old 4,000 cut
    source = json_card(
        tmp_path / "big.json", card(description=description, first_mes=greeting, character_book=_book(5000))
    )
    run = cli("import-card", str(source), str(tmp_path / "out"))
    assert run.returncode == 0, run.stderr
    check(tmp_path / "out")
    pack = load_pack(tmp_path / "out").pack
    assert pack.characters["seraphina"].description == description
    assert pack.episodes["greeting"].lines[0].text == greeting
    assert len(pack.lore) == 5000
    assert {entry.content for entry in pack.lore.values()} == {e["content"] for e in _book(5000)["entries"]}
    files = sorted((tmp_path / "out").rglob("*.toml"))
    assert len(files) > 2 and all(f.stat().st_size < 1 << 20 for f in files)


def test_a_book_larger_than_a_pack_may_hold_is_cut_with_a_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(card_build, "FILE_BUDGET", 16 << 10)  # 63 lore files of 16 KiB hold ~3,000 entries
    warnings: list[str] = []
    source = json_card(tmp_path / "big.json", card(character_book=_book(5000)))
    pack = import_card(source, tmp_path / "out", warn=warnings.append).pack
    assert 1000 < len(pack.lore) < 5000
    assert any(f"{5000 - len(pack.lore):,} of the 5,000 lore entries" in w for w in warnings), warnings


def test_lore_beyond_the_pack_limit_is_cut_with_a_warning_on_the_command_line(tmp_path: Path) -> None:
    book = {"entries": [{"keys": ["k"], "content": f"fact {n}"} for n in range(10_050)]}
    run = cli("import-card", str(json_card(tmp_path / "c.json", card(character_book=book))), str(tmp_path / "out"))
    assert run.returncode == 0, run.stderr
    assert "50 of the 10,050 lore entries" in run.stderr and "Traceback" not in run.stderr
    assert len(load_pack(tmp_path / "out").pack.lore) == 10_000


# -- 6. control characters ----------------------------------------------------------------------


def test_control_characters_are_cleaned_out_and_reported_once(tmp_path: Path) -> None:
    hostile = card(
        "Eve\x1b]0;pwned\x07",
        description="Calm\x00\x1b[2J\x9b31m words.",
        first_mes="\x1b[31mHi\x1b[0m",
        tags=["\x1b[1mbold\x1b[0m", " spaced\t"],
        character_book={"entries": [{"keys": ["k\x00ey"], "content": "lore\x85", "name": "n\x1b"}]},
        extensions={"k\x1b": "v\x00"},
    )
    source = json_card(tmp_path / "eve.json", hostile)
    run = cli("import-card", str(source), str(tmp_path / "out"))
    assert run.returncode == 0, run.stderr
    check(tmp_path / "out")
    for control in CONTROLS:
        assert control not in written_text(tmp_path / "out"), repr(control)
        assert control not in run.stdout + run.stderr, repr(control)
    assert len([line for line in run.stderr.splitlines() if "control characters" in line]) == 1, run.stderr
    pack = load_pack(tmp_path / "out").pack
    assert pack.name.startswith("Eve") and pack.name.endswith("]0;pwned") and len(pack.tags) == 2
    assert pack.tags[0].startswith("[1mbold") and pack.tags[1] == "spaced"  # a control may become a space
    assert all(name_problem(name) is None for name in [pack.name, *pack.tags, *pack.lore["n"].keywords])


def test_half_a_surrogate_pair_becomes_a_replacement_character(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_text(json.dumps(card(description="half \ud800 pair", extensions={"\udfff": "\ud83d"})))
    run = cli("import-card", str(path), str(tmp_path / "out"))
    assert run.returncode == 0, run.stderr
    pack = load_pack(tmp_path / "out").pack
    assert pack.characters["seraphina"].description == "half \ufffd pair"
    assert pack.characters["seraphina"].extensions == {"\ufffd": "\ufffd"}


def test_a_name_made_only_of_controls_gets_a_fallback(tmp_path: Path) -> None:
    pack = import_card(json_card(tmp_path / "wisp.json", card("\x1b\x07\x00")), tmp_path / "out").pack
    assert pack.name == "wisp"
    check(tmp_path / "out")


def test_a_card_file_name_cannot_write_into_the_pack(tmp_path: Path) -> None:
    source = json_card(tmp_path / 'evil\n[oops]\nname = "x"\x1b.json', card())
    pack = import_card(source, tmp_path / "out").pack
    check(tmp_path / "out")
    assert "[oops]" in pack.description and "\x1b" not in written_text(tmp_path / "out")


# -- 7. byte order marks ------------------------------------------------------------------------


def test_a_json_card_may_start_with_a_byte_order_mark(tmp_path: Path) -> None:
    path = tmp_path / "bom.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(card()).encode())
    assert import_card(path, tmp_path / "out").pack.name == "Seraphina"


def test_a_card_chunk_may_start_with_a_byte_order_mark(tmp_path: Path) -> None:
    path = tmp_path / "bom.png"
    encoded = base64.b64encode(b"\xef\xbb\xbf" + json.dumps(card()).encode()).decode()
    path.write_bytes(png(after=text_chunk("chara", encoded)))
    assert import_card(path, tmp_path / "out").pack.name == "Seraphina"


# -- 8. unknown data as TOML can hold it --------------------------------------------------------


def test_kept_card_data_is_valid_toml(tmp_path: Path) -> None:
    extensions = {"none": None, "list": [1, None, {"x": None, "y": 2}], "big": 2**70, "small": -(2**63), "f": 1.5}
    entry = {"keys": ["k"], "content": "c", "id": 2**64, "extensions": {"nested": {"n": None}}}
    source = json_card(tmp_path / "c.json", card(extensions=extensions, character_book={"entries": [entry]}))
    pack = import_card(source, tmp_path / "out").pack
    check(tmp_path / "out")
    kept = pack.characters["seraphina"].extensions
    assert kept == {"list": [1, {"y": 2}], "big": str(2**70), "small": -(2**63), "f": 1.5}
    assert pack.lore["entry-1"].extensions == {"nested": {}, "card": {"id": str(2**64)}}
    for path in (tmp_path / "out").rglob("*.toml"):
        tomllib.loads(path.read_text())


def test_lore_keys_written_as_one_string_are_one_keyword(tmp_path: Path) -> None:
    book = {"entries": [{"keys": "dragon", "content": "Dragons sleep.", "comment": 5}]}
    pack = import_card(json_card(tmp_path / "c.json", card(character_book=book)), tmp_path / "out").pack
    assert pack.lore["entry-1"].keywords == ["dragon"]
