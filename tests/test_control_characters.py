"""A hypothesis round: names and texts full of control characters, through `check`, `import-card` and
a headless turn. Whatever they hold, no C0 byte (but newline and tab), DEL or C1 control reaches the
terminal raw: packs refuse them at their line, the importer removes them, a player's line loses them,
and everything shown is printable."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import TEST_THREADS

from .packs import tiny_pack

CONTROLS = [chr(code) for code in [*range(0x00, 0x20), *range(0x7F, 0xA0)]]
RAW_CONTROL = re.compile(rb"[\x00-\x08\x0b-\x1f\x7f]|\xc2[\x80-\x9f]")
hostile = st.text(alphabet=st.sampled_from([*CONTROLS, *'ab (]);:"\\é日']), min_size=1, max_size=24).filter(
    lambda text: any(char in CONTROLS for char in text)
)


def simularity(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "simularity_tui", *args], capture_output=True, timeout=180, env={**os.environ, **env}
    )


def assert_nothing_raw(run: subprocess.CompletedProcess[bytes]) -> None:
    output = run.stdout + run.stderr
    assert b"Traceback" not in output, output.decode(errors="replace")
    assert not RAW_CONTROL.search(output), output


def toml_string(text: str) -> str:
    return json.dumps(text)  # JSON's escapes (\u001b, \n, \") are TOML's too


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=hostile, text=hostile)
def test_control_characters_never_reach_the_terminal_raw(name: str, text: str, model_path: Path) -> None:
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        env = {"SIMULARITY_CONFIG_DIR": str(tmp / "config"), "SIMULARITY_DATA_DIR": str(tmp / "data")}

        # A pack that carries them: refused, at their lines.
        pack = tiny_pack(tmp / "pack")
        manifest = (pack / "scenario.toml").read_text()
        manifest = manifest.replace('name = "Bo"', f"name = {toml_string(name)}\ndescription = {toml_string(text)}")
        (pack / "scenario.toml").write_text(manifest)
        checked = simularity("check", str(pack), env=env)
        assert checked.returncode == 1
        assert_nothing_raw(checked)

        # A card that carries them: imported without them.
        card = tmp / "card.json"
        data = {
            "name": name,
            "description": text,
            "first_mes": f"{text} Hello, {{{{user}}}}.",
            "character_book": {"entries": [{"keys": [name, "tea"], "content": text}]},
        }
        card.write_text(json.dumps({"spec": "chara_card_v2", "spec_version": "2.0", "data": data}))
        imported = simularity("import-card", str(card), str(tmp / "imported"), env=env)
        assert imported.returncode == 0, imported.stderr
        assert_nothing_raw(imported)
        for written in (tmp / "imported").rglob("*.toml"):
            assert not re.search("[\x00-\x08\x0b-\x1f\x7f-\x9f]", written.read_text())

        # A headless turn on it, the player's line full of them too.
        script = tmp / "script.txt"
        script.write_text(" ".join(text.splitlines()) + " tea?\n/quit\n")  # one player line
        short = tmp / "settings.toml"
        short.write_text("[game]\nmax_reply_tokens = 12\n")
        played = simularity(
            "--settings", str(short), "run", str(tmp / "imported"), "--script", str(script),
            "--threads", str(TEST_THREADS), env=env,
        )  # fmt: skip
        assert played.returncode == 0, played.stderr
        assert_nothing_raw(played)
