"""The sidecar beside a save that names its llama-server slot file (engine/remote/slots.py): read
back as written, and anything else refused in words before a name reaches the server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from simularity_tui.engine.remote.slots import SlotFileError, SlotState, read_sidecar, slot_filename, write_sidecar

SERVER = "remote:http://127.0.0.1:8080#model"


def a_state(save: Path) -> SlotState:
    return SlotState(
        server=SERVER, build="b1", filename=slot_filename(SERVER, save, None), n_saved=7,
        held=[2, 10, 11, 12, 13, 14, 15], window=[2, 10, 11, 12, 13], n_keep=2, first_turn=0,
    )  # fmt: skip


def test_a_sidecar_reads_back_as_written_and_its_save_alternates_two_files(tmp_path: Path) -> None:
    save = tmp_path / "autosave.kv"
    state = a_state(save)
    assert write_sidecar(save, state) == save.stat().st_size
    assert read_sidecar(save) == state
    other = slot_filename(SERVER, save, state.filename)
    assert other != state.filename and slot_filename(SERVER, save, other) == state.filename
    assert slot_filename(SERVER, tmp_path / "other.kv", None) not in (state.filename, other)


@pytest.mark.parametrize(
    ("change", "said"),
    [
        ({"filename": "../../../etc/passwd"}, "is not a slot file"),
        ({"filename": "simularity-" + "0" * 40 + "-a.bin/x"}, "is not a slot file"),
        ({"n_keep": "2"}, "is not a slot file"),
        ({"held": [2, -1]}, "is not a slot file"),
        ({"held": [2, True]}, "is not a slot file"),
        ({"window": [9, 9]}, "is not a slot file"),  # not the start of what the cache holds
        ({"format": "simularity remote slot 0"}, "is not a slot file"),
        ({"extra": 1}, "is not a slot file"),
    ],
)
def test_a_sidecar_that_is_not_one_is_refused_in_words(tmp_path: Path, change: dict[str, Any], said: str) -> None:
    save = tmp_path / "autosave.kv"
    write_sidecar(save, a_state(save))
    document = json.loads(save.read_text())
    document.update(change)
    save.write_text(json.dumps(document))
    with pytest.raises(SlotFileError, match=said):
        read_sidecar(save)


@pytest.mark.parametrize(
    ("content", "said"),
    [
        (None, "autosave.kv does not exist"),
        (b"\x00SIMULARITY-KV\n", "autosave.kv is not a slot file"),  # an in-process state file
        (b"[" * 100_000, "autosave.kv is not a slot file"),  # nested past what Python parses
    ],
)
def test_a_missing_or_foreign_file_is_said(tmp_path: Path, content: bytes | None, said: str) -> None:
    save = tmp_path / "autosave.kv"
    if content is not None:
        save.write_bytes(content)
    with pytest.raises(SlotFileError, match=said):
        read_sidecar(save)
